"""Train K members of one recipe with different seeds, then evaluate them and their ensemble on MNIST's test set.

    python scripts/train_ensemble.py --model deep_bn_cnn --members 5
    python scripts/train_ensemble.py --model lenet5 --members 2 --max-epochs 1     # a quick look (flags go to src.train)

Members train one after another through `python -m src.train` (in-process) under --logdir; a member
whose seed and recipe already finished there is reused, so an interrupted ensemble continues where it
stopped. Each member picks its checkpoint on its own validation split; the test set is only read by
`src.evaluate` at the end. Prints one markdown table (also written to --output).

    python scripts/train_ensemble.py --model deep_bn_cnn --members 5 --data kaggle --data-dir DIR --val-fraction 0

trains each member on every image of Kaggle's DIR/train.csv (its final epoch kept): nothing labelled is
left to score them on, so it prints the `src.predict` command of their ensemble's submission instead.
"""

import json
import shlex
import statistics
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.atomic import atomic_write_text, check_file_writable  # noqa: E402
from src.cli import Parser, run_command  # noqa: E402
from src.config import Recipe, resolve_recipe  # noqa: E402
from src.errors import UserError  # noqa: E402
from src.evaluate import main as evaluate  # noqa: E402
from src.hardware import probe_machine  # noqa: E402
from src.runs import version_dirs  # noqa: E402
from src.train import build_parser as build_train_parser  # noqa: E402
from src.train import main as train  # noqa: E402

DEFAULTS = Recipe().to_dict()
RUN_ONLY_KEYS = ("logdir", "resume", "progress_refresh", "accelerator", "devices", "precision")


def same_recipe(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in set(a) | set(b) if k not in RUN_ONLY_KEYS)


def finished_run(logdir: str, recipe: dict) -> Path | None:
    """The newest run under `logdir` that trained exactly `recipe` (seed included) to the end."""
    for run in reversed(version_dirs(logdir, recipe["model"])):
        config, results = run / "config.yaml", run / "results.json"
        if not (results.exists() and config.exists()):
            continue
        # A key added to Recipe after the run was trained takes its default value.
        if same_recipe({**DEFAULTS, **yaml.safe_load(config.read_text())}, recipe):
            return run
    return None


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: train_ensemble(argv))


def train_ensemble(argv: list[str] | None) -> int:
    parser = Parser(
        prog="scripts/train_ensemble.py",
        description=__doc__.splitlines()[0],
        epilog="Other flags go to python -m src.train (e.g. --max-epochs 5).",
    )
    parser.add_argument("--model", required=True, help="architecture; its recipe is configs/MODEL.yaml")
    parser.add_argument("--members", type=int, default=5, help="how many seeds to train (default: 5)")
    parser.add_argument("--first-seed", type=int, default=0, help="members use seeds first, first+1, ...")
    parser.add_argument("--logdir", default="lightning_logs/ensemble")
    parser.add_argument("--output", default=None, help="also write the table to this file")
    parser.add_argument("--tta", action="store_true", help="evaluate with test-time augmentation (src.evaluate --tta)")
    args, train_flags = parser.parse_known_args(argv)
    if args.members < 1:
        raise UserError("--members", f"must be at least 1, got {args.members}")
    if args.output:
        check_file_writable(args.output)

    for flag in ("--fast-dev-run", "--print-config"):
        if flag in train_flags:
            raise UserError(flag, "writes no run, so there would be no members to evaluate")
    common = ["--model", args.model, "--logdir", args.logdir, *train_flags]
    first = member_recipe([*common, "--seed", str(args.first_seed)])
    member_recipe([*common, "--seed", str(args.first_seed + args.members - 1)])  # a seed out of range fails now
    if first["data"] == "kaggle" and first["val_fraction"] > 0 and first["split_seed"] is None:
        # The ensemble is scored on held-out images of train.csv: every member must hold out the same ones.
        common += ["--split-seed", str(args.first_seed)]
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.members):
        argv = [*common, "--seed", str(seed)]
        recipe = member_recipe(argv)
        run = finished_run(args.logdir, recipe)
        if run is None:
            status = train(argv)
            if status == 130:  # src.train said what was saved; a user error (2) needs no second line
                print(
                    f"member with seed {seed} interrupted: rerun to continue (finished members are reused)",
                    file=sys.stderr,
                )
            if status != 0:
                return status
            run = finished_run(args.logdir, recipe)
        else:
            print(f"seed {seed}: reusing the finished run {run}")
        runs.append(run)

    if recipe["data"] == "kaggle" and recipe["val_fraction"] == 0:
        test_csv = Path(recipe["data_dir"]) / "test.csv"
        predict = ["python", "-m", "src.predict", "--ckpt", *map(str, runs), "--input", str(test_csv)]
        print(
            f"\n{len(runs)} member(s) trained on every labelled image of train.csv (val_fraction 0): none is left "
            f"to score them on. Their ensemble's Kaggle submission:\n"
            + shlex.join([*predict, *["--tta"] * args.tta, "--output", "submission.csv"])
        )
        return 0
    output_dir = Path(args.logdir) / args.model / f"ensemble-seeds-{args.first_seed}-{seed}{'-tta' * args.tta}"
    status = evaluate(["--ckpt", *map(str, runs), "--output-dir", str(output_dir), *["--tta"] * args.tta])
    if status != 0:
        return status
    metrics = json.loads((output_dir / "metrics.json").read_text())
    table = results_table(runs, metrics, probe_machine().machine)
    print("\n" + table)
    if args.output:
        atomic_write_text(args.output, table + "\n")
    return 0


def member_recipe(argv: list[str]) -> dict:
    """The recipe `python -m src.train ARGV` would train."""
    flags = vars(build_train_parser().parse_args(argv))
    config_file = flags.pop("config")
    flags.pop("print_config")
    return resolve_recipe(flags, config_file).to_dict()


def selected_by(results: dict) -> str:
    if results["monitor"] is None:
        return "final epoch (no validation split)"
    return f"{results['monitor']} {results['best_monitor_value']:.4f}"


def results_table(runs: list[Path], metrics: dict, machine: str) -> str:
    rows = []
    accuracies = []
    for run, member in zip(runs, metrics["members"], strict=True):
        results = json.loads((run / "results.json").read_text())
        accuracies.append(member["accuracy"] * 100)
        rows.append(
            f"| seed {results['seed']} | {results['parameters']:,} | {results['epochs_run']} | "
            f"{selected_by(results)} | {accuracies[-1]:.2f}% | {results['train_seconds']:,.0f} | "
            f"{machine} | {run} |"
        )
    mean = statistics.mean(accuracies)
    spread = f" ± {statistics.stdev(accuracies):.2f}" if len(accuracies) > 1 else ""
    rows.append(f"| mean of {len(runs)} | | | | {mean:.2f}%{spread} | | | |")
    if metrics["ensemble"]:
        ensemble = metrics["ensemble"]
        rows.append(
            f"| **ensemble of {len(runs)}** | | | | **{ensemble['accuracy'] * 100:.2f}%** "
            f"({ensemble['errors']} errors) | | | |"
        )
    header = [
        "| member | parameters | epochs | best monitored value (selects the checkpoint) | MNIST test | train s | machine | run |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    return "\n".join(header + rows)


if __name__ == "__main__":
    sys.exit(main())
