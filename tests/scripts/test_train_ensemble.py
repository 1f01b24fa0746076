"""scripts/train_ensemble.py: K seeds, their ensemble evaluated by src.evaluate, finished members reused."""

import json

import pytest

from tests.scripts import load_script

train_ensemble = load_script("train_ensemble")

QUICK = ["--max-epochs", "1", "--limit-train-batches", "40", "--limit-val-batches", "2"]


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("ensemble")
    table = logdir / "table.md"
    argv = ["--model", "lenet5", "--members", "2", "--logdir", str(logdir), "--output", str(table), *QUICK]
    assert train_ensemble.main(argv) == 0
    return logdir, table, argv


def test_members_have_their_own_seeds_and_the_ensemble_is_scored_on_the_test_set(ensemble):
    logdir, table, _ = ensemble
    runs = sorted((logdir / "lenet5").glob("version_*"))
    results = [json.loads((run / "results.json").read_text()) for run in runs]
    assert [r["seed"] for r in results] == [0, 1]
    metrics = json.loads((logdir / "lenet5" / "ensemble-seeds-0-1" / "metrics.json").read_text())
    assert metrics["evaluated_on"] == "MNIST test set (10,000 images)"
    # src.evaluate scores each member exactly as its training run's own test did
    for member, result in zip(metrics["members"], results, strict=True):
        assert member["accuracy"] == pytest.approx(result["test_acc"], abs=1e-6)
    ensemble = metrics["ensemble"]["accuracy"] * 100
    lines = table.read_text().splitlines()
    assert (
        lines[-1] == f"| **ensemble of 2** | | | | **{ensemble:.2f}%** ({metrics['ensemble']['errors']} errors) | | | |"
    )
    mean = sum(r["test_acc"] for r in results) / 2 * 100
    assert lines[-2].startswith(f"| mean of 2 | | | | {mean:.2f}% ± ")


def test_a_rerun_reuses_finished_members_instead_of_training_again(ensemble, capsys):
    logdir, _, argv = ensemble
    # a run trained before a recipe key existed counts as having had the key's default
    config = logdir / "lenet5" / "version_0" / "config.yaml"
    config.write_text("".join(line for line in config.read_text().splitlines(True) if not line.startswith("compile:")))
    assert train_ensemble.main(argv) == 0
    assert len(list((logdir / "lenet5").glob("version_*"))) == 2
    out = capsys.readouterr().out
    assert "seed 0: reusing the finished run" in out and "seed 1: reusing the finished run" in out


def test_a_bad_training_flag_is_one_line(capsys, tmp_path):
    assert train_ensemble.main(["--model", "lenet5", "--logdir", str(tmp_path), "--max-epochs", "zero"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "error: python -m src.train: argument --max-epochs: invalid int value: 'zero'"
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--members", "0"], "error: --members: must be at least 1, got 0"),
        (["--output", "{tmp}"], "error: {tmp}: could not be written (Is a directory)"),
        (
            ["--output", "{tmp}/a-file/table.md"],
            "error: {tmp}/a-file/table.md: could not be written ({tmp}/a-file is a file, not a folder)",
        ),
        # each said "error: None: no such checkpoint file or run directory" after every member had run
        (["--fast-dev-run"], "error: --fast-dev-run: writes no run, so there would be no members to evaluate"),
        (["--print-config"], "error: --print-config: writes no run, so there would be no members to evaluate"),
        # said so only after the first member had trained
        (
            ["--first-seed", "4294967295", "--members", "2"],
            "error: seed: must be between 0 and 2**32 - 1, got 4294967296",
        ),
        (["--members", "many"], "error: scripts/train_ensemble.py: argument --members: invalid int value: 'many'"),
    ],
)
def test_bad_ensemble_flags_are_one_line_before_any_training(flags, message, tmp_path, capsys):
    (tmp_path / "a-file").write_text("keep")
    flags = [flag.format(tmp=tmp_path) for flag in flags]
    assert train_ensemble.main(["--model", "lenet5", "--logdir", str(tmp_path), *flags, *QUICK]) == 2
    assert capsys.readouterr().err == message.format(tmp=tmp_path) + "\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_kaggle_members_trained_on_all_of_train_csv_lead_to_the_submission_command(tmp_path, capsys):
    from src.predict import main as predict
    from tests.conftest import KAGGLE_DIR

    kaggle = ["--data", "kaggle", "--data-dir", str(KAGGLE_DIR), "--val-fraction", "0", "--max-epochs", "1"]
    members = ["--model", "lenet5", "--members", "2", "--tta"]
    assert train_ensemble.main([*members, "--logdir", str(tmp_path), *kaggle]) == 0
    runs = [tmp_path / "lenet5" / f"version_{i}" for i in (0, 1)]
    command = capsys.readouterr().out.splitlines()[-1]
    assert command == (
        f"python -m src.predict --ckpt {runs[0]} {runs[1]} --input {KAGGLE_DIR / 'test.csv'} --tta "
        "--output submission.csv"
    )
    submission = tmp_path / "submission.csv"
    assert predict([*command.split()[3:-1], str(submission)]) == 0
    rows = submission.read_text().splitlines()
    assert rows[0] == "ImageId,Label" and len(rows) == 1 + 1000


def test_a_member_without_a_validation_split_is_listed_with_its_final_epoch(tmp_path):
    run = tmp_path / "version_0"
    run.mkdir()
    results = {"seed": 3, "parameters": 61706, "epochs_run": 2, "monitor": None, "best_monitor_value": None}
    (run / "results.json").write_text(json.dumps({**results, "train_seconds": 12.3}))
    metrics = {"members": [{"accuracy": 0.9912}], "ensemble": None}
    row = train_ensemble.results_table([run], metrics, "a CPU").splitlines()[2]
    assert row == f"| seed 3 | 61,706 | 2 | final epoch (no validation split) | 99.12% | 12 | a CPU | {run} |"


def test_kaggle_members_hold_out_the_same_images_and_are_scored_on_them(tmp_path):
    import yaml

    from tests.conftest import KAGGLE_DIR

    recipe = tmp_path / "random_split.yaml"
    recipe.write_text("model: lenet5\nval_split: random\nmax_epochs: 1\nmonitor: val/acc\n")
    kaggle = ["--config", str(recipe), "--data", "kaggle", "--data-dir", str(KAGGLE_DIR), "--limit-train-batches", "5"]
    argv = ["--model", "lenet5", "--members", "2", "--first-seed", "3", "--logdir", str(tmp_path), *kaggle]
    assert train_ensemble.main(argv) == 0
    runs = [tmp_path / "lenet5" / f"version_{i}" for i in (0, 1)]
    configs = [yaml.safe_load((run / "config.yaml").read_text()) for run in runs]
    assert [(config["seed"], config["split_seed"]) for config in configs] == [(3, 3), (4, 3)]
    metrics = json.loads((tmp_path / "lenet5" / "ensemble-seeds-3-4" / "metrics.json").read_text())
    assert metrics["evaluated_on"].startswith("validation split of train.csv (200 images")
    for member, run in zip(metrics["members"], runs, strict=True):  # each on its own held-out images
        assert member["accuracy"] == pytest.approx(json.loads((run / "results.json").read_text())["test_acc"], abs=1e-6)
