"""Train every notebook model with its own recipe on MNIST and compare with the notebook's figure.

    python scripts/reproduce_seeds.py                       # the full recipes (about an hour on 2 CPU cores)
    python scripts/reproduce_seeds.py --epochs-scale 0.2    # a quick pass: a fifth of each recipe's epochs
    python scripts/reproduce_seeds.py --models lenet5 mlp --max-epochs 1

Each model runs through `python -m src.train` (in-process), so its run directory, checkpoints and
results.json land under --logdir as usual. Prints one markdown table (also written to --output).
"""

import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.atomic import atomic_write_text, check_file_writable  # noqa: E402
from src.cli import Parser, positive_int, run_command  # noqa: E402
from src.config import resolve_recipe  # noqa: E402
from src.errors import UserError  # noqa: E402
from src.hardware import HardwareRequest, plan_hardware, probe_machine  # noqa: E402
from src.models.registry import ARCHITECTURES  # noqa: E402
from src.runs import check_writable, version_dirs  # noqa: E402
from src.train import main as train  # noqa: E402

NOTEBOOK_MODELS = [name for name, arch in ARCHITECTURES.items() if arch.reported_accuracy is not None]


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: reproduce(argv))


def reproduce(argv: list[str] | None) -> int:
    parser = Parser(prog="scripts/reproduce_seeds.py", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=NOTEBOOK_MODELS, choices=NOTEBOOK_MODELS)
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="multiply each recipe's max_epochs")
    parser.add_argument("--max-epochs", type=positive_int, default=None, help="cap every recipe's epochs")
    parser.add_argument("--logdir", default="lightning_logs/reproduce")
    parser.add_argument("--output", default=None, help="also write the table to this file")
    parser.add_argument("--accelerator", default="auto")
    args = parser.parse_args(argv)
    # What every model would fail on is said once, before the first one trains.
    if not 0 < args.epochs_scale < float("inf"):
        raise UserError("--epochs-scale", f"must be a positive number, got {args.epochs_scale}")
    probe = probe_machine()
    plan_hardware(HardwareRequest(accelerator=args.accelerator), probe)
    check_writable(Path(args.logdir), "--logdir")
    if args.output:
        check_file_writable(args.output)

    rows, failed = [], []
    for name in args.models:
        epochs = max(1, math.ceil(resolve_recipe({"model": name}).max_epochs * args.epochs_scale))
        if args.max_epochs:
            epochs = min(epochs, args.max_epochs)
        started = time.perf_counter()
        status = train(
            ["--model", name, "--max-epochs", str(epochs), "--logdir", args.logdir, "--accelerator", args.accelerator]
        )
        wall = time.perf_counter() - started
        if status != 0:
            failed.append(name)
            rows.append(f"| {name} | | {epochs} | | failed (exit {status}) | {wall:.0f} | | |")
            continue
        results = json.loads((version_dirs(args.logdir, name)[-1] / "results.json").read_text())
        reported = ARCHITECTURES[name].reported_accuracy
        ours = results["test_acc"] * 100
        verdict = "beats" if ours >= reported else "short of"
        rows.append(
            f"| {name} | {results['parameters']:,} | {results['epochs_run']} | {reported:.2f}% | "
            f"{ours:.2f}% ({verdict}) | {wall:.0f} | {results['train_images_per_second']:,.0f} | {probe.machine}, "
            f"{results['hardware']['precision']} |"
        )
    table = "\n".join(
        [
            "| model | parameters | epochs | notebook | ours (MNIST test) | wall s | train images/s | machine |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
            *rows,
        ]
    )
    print("\n" + table)
    if args.output:
        atomic_write_text(args.output, table + "\n")
    if failed:
        print(f"error: {', '.join(failed)}: failed (their lines above say why)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
