import json
import shutil
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from src.evaluate import main


def test_evaluation_matches_the_runs_test_accuracy_and_writes_figures(short_run, capsys):
    assert main(["--ckpt", str(short_run)]) == 0
    out = capsys.readouterr().out
    results = json.loads((short_run / "results.json").read_text())
    metrics = json.loads((short_run / "evaluation" / "metrics.json").read_text())
    member = metrics["members"][0]
    assert member["accuracy"] == pytest.approx(results["test_acc"], abs=1e-6)
    assert member["loss"] == pytest.approx(results["test_loss"], rel=1e-4)
    assert sum(map(sum, member["confusion_matrix"])) == 10000
    assert member["errors"] == 10000 - sum(member["confusion_matrix"][d][d] for d in range(10))
    assert f"{results['test_acc']:.2%} accuracy" in out and "digit  precision  recall" in out
    for figure in ("confusion_matrix.png", "misclassified.png", "curves.png"):
        assert (short_run / "evaluation" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = EventAccumulator(str(short_run))
    events.Reload()
    assert {"evaluation/confusion_matrix", "evaluation/misclassified", "evaluation/curves"} <= set(
        events.Tags()["images"]
    )


def test_a_loose_checkpoint_gets_its_figures_beside_it_and_no_tensorboard_events(short_run, tmp_path):
    loose = tmp_path / "downloads" / "model.ckpt"
    loose.parent.mkdir()
    shutil.copy(short_run / "checkpoints" / "last.ckpt", loose)
    assert main(["--ckpt", str(loose)]) == 0
    assert sorted(p.name for p in loose.parent.iterdir()) == ["evaluation", "model.ckpt"]
    assert (loose.parent / "evaluation" / "metrics.json").is_file()


def test_ensemble_reports_each_member_and_the_mean(short_run, capsys):
    assert main(["--ckpt", str(short_run), str(short_run / "checkpoints" / "last.ckpt")]) == 0
    metrics = json.loads((short_run / "evaluation-ensemble" / "metrics.json").read_text())
    first, second = metrics["members"]
    # best and last are the same weights here, so their mean must score exactly like each of them.
    assert first["accuracy"] == second["accuracy"] == metrics["ensemble"]["accuracy"]
    assert metrics["ensemble"]["loss"] == pytest.approx(first["loss"], rel=1e-5)
    assert "ensemble of 2 (mean of probabilities)" in capsys.readouterr().out


def test_a_kaggle_run_is_evaluated_on_its_own_validation_split(kaggle_run, tmp_path, capsys):
    assert main(["--ckpt", str(kaggle_run), "--output-dir", str(tmp_path / "own")]) == 0
    captured = capsys.readouterr()
    assert "evaluated on the validation split of train.csv (200 images" in captured.out and captured.err == ""
    metrics = json.loads((tmp_path / "own" / "metrics.json").read_text())
    results = json.loads((kaggle_run / "results.json").read_text())
    assert metrics["members"][0]["accuracy"] == pytest.approx(results["test_acc"], abs=1e-6)

    assert main(["--ckpt", str(kaggle_run), "--data", "mnist", "--output-dir", str(tmp_path / "mnist")]) == 0
    captured = capsys.readouterr()
    assert "evaluated on the MNIST test set (10,000 images)" in captured.out
    assert captured.err.startswith("note: ") and "its MNIST test accuracy overstates it" in captured.err


def test_ctrl_c_is_one_line_and_status_130(short_run, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("src.inference.predict_probabilities", interrupted)
    assert main(["--ckpt", str(short_run), "--output-dir", str(tmp_path / "out")]) == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert not (tmp_path / "out").exists()


def test_a_read_only_run_directory_still_gets_its_figures_written_elsewhere(short_run, tmp_path, monkeypatch, capsys):
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("torch.utils.tensorboard.SummaryWriter", read_only)
    assert main(["--ckpt", str(short_run), "--output-dir", str(tmp_path / "out")]) == 0
    assert (
        capsys.readouterr().err
        == f"note: the figures were not logged to {short_run}'s TensorBoard (Permission denied)\n"
    )
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "metrics.json",
        "confusion_matrix.png",
        "misclassified.png",
        "curves.png",
    }


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["--ckpt", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'none'}: no such checkpoint file or run directory\n"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: b"", "is an empty file, not a checkpoint"),
        (
            lambda data: data[: len(data) // 2],
            "is not a readable checkpoint (truncated, or not a file torch.save wrote)",
        ),
        (lambda data: data[:5000], "is not a readable checkpoint (truncated, or not a file torch.save wrote)"),
        # Zeros over part of a tensor: torch.load reads such a file without complaint.
        (
            lambda data: data[: len(data) // 2] + bytes(1000) + data[len(data) // 2 + 1000 :],
            "is damaged: its record archive/data/",
        ),
    ],
    ids=["empty", "truncated", "cut-near-its-start", "bytes-changed"],
)
def test_a_damaged_checkpoint_is_one_line_and_writes_nothing(damage, message, short_run, tmp_path, capsys):
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(damage((short_run / "checkpoints" / "last.ckpt").read_bytes()))
    assert main(["--ckpt", str(damaged), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {damaged}: {message}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_tta_is_reported_apart_from_the_plain_evaluation(short_run, capsys):
    assert main(["--ckpt", str(short_run), "--tta"]) == 0
    metrics = json.loads((short_run / "evaluation-tta" / "metrics.json").read_text())
    assert metrics["evaluated_on"] == "MNIST test set (10,000 images), with test-time augmentation (1-pixel shifts)"
    assert "with test-time augmentation" in capsys.readouterr().out


@pytest.fixture(scope="module")
def kaggle_splits(tmp_path_factory) -> dict[str, Path]:
    """Kaggle runs with a random split: seed 0; seed 1; seed 1 holding out seed 0's images (--split-seed 0);
    seed 0 holding out a fifth."""
    from src.train import main as train
    from tests.conftest import KAGGLE_DIR

    logdir = tmp_path_factory.mktemp("kaggle_splits")
    recipe = logdir / "random_split.yaml"
    recipe.write_text("model: lenet5\nval_split: random\nmax_epochs: 1\nmonitor: val/acc\n")
    runs = {}
    for name, seeds in {
        "seed 0": ["--seed", "0"],
        "seed 1": ["--seed", "1"],
        "shared": ["--seed", "1", "--split-seed", "0"],
        "fifth": ["--val-fraction", "0.2"],
    }.items():
        argv = ["--config", str(recipe), "--data", "kaggle", "--data-dir", str(KAGGLE_DIR), *seeds]
        assert train([*argv, "--limit-train-batches", "5", "--logdir", str(logdir / name.replace(" ", "_"))]) == 0
        runs[name] = next((logdir / name.replace(" ", "_")).glob("lenet5/version_0"))
    return runs


def best_checkpoint(run: Path) -> str:
    return json.loads((run / "results.json").read_text())["best_checkpoint"]


def test_a_kaggle_ensemble_is_scored_only_on_images_none_of_its_members_trained_on(kaggle_splits, tmp_path, capsys):
    first, other = kaggle_splits["seed 0"], kaggle_splits["seed 1"]
    assert main(["--ckpt", str(first), str(other), "--output-dir", str(tmp_path / "leaky")]) == 2
    assert capsys.readouterr().err == (
        f"error: {best_checkpoint(other)}: held out other images of train.csv (val_fraction 0.1, random, seed 1) "
        f"than {best_checkpoint(first)}, so it trained on some that are scored; "
        "train ensemble members with one --split-seed\n"
    )
    assert not (tmp_path / "leaky").exists()
    fifth = kaggle_splits["fifth"]
    assert main(["--ckpt", str(first), str(fifth), "--output-dir", str(tmp_path / "leaky")]) == 2
    assert capsys.readouterr().err.endswith(
        "(val_fraction 0.2, random, seed 0) than "
        f"{best_checkpoint(first)}, so it trained on some that are scored; "
        "train ensemble members with one --val-fraction and val_split, and one --split-seed\n"
    )

    shared = kaggle_splits["shared"]
    assert main(["--ckpt", str(first), str(shared), "--output-dir", str(tmp_path / "shared")]) == 0
    metrics = json.loads((tmp_path / "shared" / "metrics.json").read_text())
    assert metrics["evaluated_on"] == "validation split of train.csv (200 images; Kaggle's test.csv has no labels)"
    # The shared member is scored on its own held-out images, exactly as its run tested itself.
    own = json.loads((shared / "results.json").read_text())["test_acc"]
    assert metrics["members"][1]["accuracy"] == pytest.approx(own, abs=1e-6)


def test_an_mnist_model_is_not_scored_on_kaggles_images(short_run, tmp_path, capsys):
    from tests.conftest import KAGGLE_DIR

    argv = ["--ckpt", str(short_run), "--data", "kaggle", "--data-dir", str(KAGGLE_DIR)]
    assert main([*argv, "--output-dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        f"error: {best_checkpoint(short_run)}: was trained on MNIST, whose files hold most of train.csv's images: "
        "none is held out\n"
    )


def test_a_figure_that_cannot_be_written_leaves_no_metrics_file(short_run, tmp_path, capsys):
    output = tmp_path / "out"
    (output / "confusion_matrix.png").mkdir(parents=True)  # a folder where the figure would go
    assert main(["--ckpt", str(short_run), "--output-dir", str(output)]) == 2
    assert (
        capsys.readouterr().err == f"error: {output / 'confusion_matrix.png'}: could not be written (Is a directory)\n"
    )
    assert not (output / "metrics.json").exists()
