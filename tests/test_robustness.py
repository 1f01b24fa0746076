import errno
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from src.train import main
from tests.conftest import ROOT, add_callback, logged


def started_until_epoch_2(command: list[str], last: Path) -> subprocess.Popen:
    """`command` started in a process group of its own, a second into epoch 2: once epoch 1 wrote `last`."""
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 240
    while not last.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert last.exists(), "the first epoch never finished"
    time.sleep(1.0)
    return process


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_interrupt_saves_last_checkpoint_and_resume_finishes_the_epochs(tmp_path, stop):
    common = ["--model", "lenet5", "--max-epochs", "3", "--limit-train-batches", "300", "--limit-val-batches", "2"]
    command = [sys.executable, "-m", "src.train", *common, "--logdir", str(tmp_path)]
    last = tmp_path / "lenet5" / "version_0" / "checkpoints" / "last.ckpt"
    process = started_until_epoch_2(command, last)
    process.send_signal(stop)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    run = tmp_path / "lenet5" / "version_0"
    assert f"saved {last}; continue with the same command and --resume {run}" in err
    assert "Traceback" not in err
    if stop == signal.SIGINT:
        assert (
            "stopping at the next batch boundary to save a checkpoint; Ctrl-C again stops at once without saving" in err
        )
    saved = torch.load(last, weights_only=True)
    assert saved["epoch"] >= 1 and not (run / "results.json").exists()

    assert main([*common, "--logdir", str(tmp_path), "--resume", "last"]) == 0
    assert sorted(p.name for p in (tmp_path / "lenet5").iterdir()) == ["version_0"]
    results = json.loads((run / "results.json").read_text())
    assert results["epochs_run"] == 3
    events = EventAccumulator(str(run))
    events.Reload()
    # Metrics continue across the interruption in the same run. (An epoch cut very near its end may
    # resume with no batches left, so not every epoch is guaranteed its own train/loss point.)
    assert {0, 1, 2} <= {int(e.value) for e in events.Scalars("epoch")}
    steps = [e.step for e in events.Scalars("train/loss")]
    assert min(steps) < saved["global_step"] < max(steps)  # logged before the interruption and after the resume


def press_ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # as a terminal sends it


@pytest.mark.slow
def test_sigterm_to_every_ddp_process_saves_and_resumes_instead_of_hanging(tmp_path):
    # As a cluster's pre-emption (or Ctrl-C in a terminal) signals every process at once. Lightning's own
    # SIGTERM handling let each process stop at its own batch, and they waited on each other forever.
    common = ["--model", "lenet5", "--accelerator", "cpu", "--devices", "2", "--max-epochs", "2"]
    common += ["--limit-train-batches", "150", "--limit-val-batches", "2", "--logdir", str(tmp_path)]
    command = [sys.executable, "-m", "src.train", *common]
    last = tmp_path / "lenet5" / "version_0" / "checkpoints" / "last.ckpt"
    process = started_until_epoch_2(command, last)
    os.killpg(process.pid, signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.returncode == 130
    assert f"interrupted in epoch 2: saved {last}" in err
    assert "Traceback" not in err
    done = subprocess.run([*command, "--resume", "last"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "lenet5" / "version_0" / "results.json").read_text())
    assert (results["epochs_run"], results["train_images"]) == (2, 2 * 150 * 16 * 2)  # none skipped, none twice


class SigtermInSecondValidationsBatches(pl.Callback):
    """A SIGTERM while epoch 2 validates (Lightning's own handling stopped between two validation batches)."""

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if trainer.current_epoch == 1 and not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGTERM)


class SigtermInSanityCheck(pl.Callback):
    def on_sanity_check_start(self, trainer, pl_module):
        os.kill(os.getpid(), signal.SIGTERM)


class CtrlCTwiceInSanityCheck(pl.Callback):
    def on_sanity_check_start(self, trainer, pl_module):
        press_ctrl_c()
        press_ctrl_c()


def in_second_epochs_step(trainer, step: int) -> bool:
    return trainer.current_epoch == 1 and trainer.fit_loop.epoch_loop.batch_progress.current.ready == step


class CtrlCInSecondEpochsEighthStep(pl.Callback):
    """Between the backward pass and the optimizer step, after batch norm has updated its running statistics."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if in_second_epochs_step(trainer, 8):
            press_ctrl_c()


class CtrlCTwiceInSecondEpochsEighthStep(pl.Callback):
    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if in_second_epochs_step(trainer, 8):
            press_ctrl_c()
            press_ctrl_c()


class CtrlCAfterSecondEpochsStep(pl.Callback):
    """Ctrl-C in on_train_batch_end: the optimizer step ran, Lightning has not yet counted the batch done."""

    def __init__(self, batch_idx: int):
        self.batch_idx = batch_idx

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == self.batch_idx:
            press_ctrl_c()


class CtrlCInSecondEpochsStart(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            press_ctrl_c()


class CtrlCInSecondEpochsEnd(pl.Callback):
    """Ctrl-C among the epoch-end hooks, before the plateau scheduler, checkpoints and early stopping have run."""

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            press_ctrl_c()


def test_a_resumed_run_matches_an_unbroken_one(tmp_path, monkeypatch, caplog, capsys):
    # fast_cnn (batch norm, whose running statistics must not count a batch twice) on lenet5's recipe: a plateau
    # scheduler and early stopping on train/loss, whose state must carry over, with random augmentation,
    # whose draws must repeat too, and an average of the weights (EMA).
    # The plateau's min_delta makes epoch 2 count as bad, so the LR drops for epoch 3 only if the resumed
    # scheduler remembers epoch 1's loss.
    recipe = tmp_path / "fast_cnn_augmented.yaml"
    lenet5 = (ROOT / "configs" / "lenet5.yaml").read_text()
    assert "  patience: 2\n  min_delta: 1.0e-4\n" in lenet5
    recipe.write_text(
        lenet5.replace("  patience: 2\n  min_delta: 1.0e-4\n", "  patience: 1\n  min_delta: 100.0\n")
        + "augment: {rotation: 10, zoom: 0.1, shift: 0.1}\nema_decay: 0.99\n"
    )
    limits = ["--limit-train-batches", "12", "--limit-val-batches", "2", "--max-epochs", "3"]
    common = ["--model", "fast_cnn", "--config", str(recipe), *limits]
    assert main([*common, "--logdir", str(tmp_path / "unbroken")]) == 0
    # Stopped after epoch 1, then resumed three times: the first resume is cut by two Ctrl-Cs in its sanity
    # check and saves nothing; the second by a SIGTERM there, which stops it after epoch 2's first batch.
    stopped = [*common, "--logdir", str(tmp_path / "stopped")]
    assert main([*stopped, "--max-epochs", "1"]) == 0
    for cut, message in [
        (CtrlCTwiceInSanityCheck(), "stopped at once, without saving; continue from its last checkpoint"),
        (SigtermInSanityCheck(), "interrupted in epoch 2: saved"),
    ]:
        with monkeypatch.context() as patch:
            add_callback(patch, cut)
            assert main([*stopped, "--resume", "last"]) == 130
        assert message in capsys.readouterr().err
    assert main([*stopped, "--resume", "last"]) == 0

    def interrupted_then_resumed(name: str, interruption: pl.Callback, message: str = "interrupted in epoch 2: saved"):
        with monkeypatch.context() as patch, caplog.at_level(logging.INFO):
            add_callback(patch, interruption)
            assert main([*common, "--logdir", str(tmp_path / name)]) == 130
        # Lightning's "`weights_only` was not set" on the save read as if the checkpoint held code
        assert "weights_only" not in caplog.text
        assert message in capsys.readouterr().err
        if isinstance(interruption, CtrlCInSecondEpochsEighthStep):
            # Inside an epoch another batch size would slice the rest of it differently.
            assert main([*common, "--logdir", str(tmp_path / name), "--batch-size", "64", "--resume", "last"]) == 2
            assert "was trained with batch_size 32; give --batch-size 32 to resume it" in capsys.readouterr().err
        assert main([*common, "--logdir", str(tmp_path / name), "--resume", "last"]) == 0

    # Ctrl-C and SIGTERM make the same request, so each place is cut by one of them.
    cuts = {
        # Ctrl-C in epoch 2's eighth training step, between its backward pass and the optimizer step.
        "mid_step": CtrlCInSecondEpochsEighthStep(),
        # Ctrl-C after that step, in on_train_batch_end, and after the epoch's last step.
        "after_step": CtrlCAfterSecondEpochsStep(batch_idx=7),
        "after_last_step": CtrlCAfterSecondEpochsStep(batch_idx=11),
        # Ctrl-C as epoch 2 starts, and among its end's hooks.
        "epoch_start": CtrlCInSecondEpochsStart(),
        "epoch_end": CtrlCInSecondEpochsEnd(),
        # SIGTERM (a scheduler's pre-emption) between two of epoch 2's validation batches.
        "sigterm_validating": SigtermInSecondValidationsBatches(),
    }
    for name, cut in cuts.items():
        # A cut among epoch 2's end hooks, after SaveOnInterrupt's own, stops after epoch 3's first batch.
        epoch = 3 if name == "epoch_end" else 2
        interrupted_then_resumed(name, cut, f"interrupted in epoch {epoch}: saved")
    # A second Ctrl-C stops at once and saves nothing: the resume repeats epoch 2 from its start.
    forced = "stopped at once, without saving; continue from its last checkpoint with the same command"
    interrupted_then_resumed("twice", CtrlCTwiceInSecondEpochsEighthStep(), forced)

    names = ("unbroken", "stopped", *cuts, "twice")
    assert [round(v, 6) for _, v in logged(tmp_path / "unbroken" / "fast_cnn" / "version_0", "lr-Adam")] == [
        1e-3,
        1e-3,
        1e-4,
    ]
    runs = {name: tmp_path / name / "fast_cnn" / "version_0" for name in names}
    results = {name: json.loads((run / "results.json").read_text()) for name, run in runs.items()}
    weights = {name: torch.load(r["last_checkpoint"], weights_only=True)["state_dict"] for name, r in results.items()}
    for name in names[1:]:
        # The same batches in the same order: the same weights (batch norm's statistics and the average
        # included), the same curves at the same steps, and the same test result.
        assert all(torch.equal(weights[name][k], weights["unbroken"][k]) for k in weights["unbroken"]), name
        for tag in ("train/loss", "val/acc", "lr-Adam"):
            points = logged(runs[name], tag)
            if name == "twice":  # the repeated part of epoch 2 logged its points (its LR) a second time
                points = sorted(set(points))
            assert points == logged(runs["unbroken"], tag), (name, tag)
        assert results[name]["test_acc"] == results["unbroken"]["test_acc"]
        assert results[name]["best_epoch"] == results["unbroken"]["best_epoch"] == 3
        # Training images (and seconds, carried with them) add up over the processes of a resumed run.
        assert results[name]["train_images"] == results["unbroken"]["train_images"] == 3 * 12 * 32, name


class CtrlCInTheFinalTest(pl.Callback):
    def on_test_start(self, trainer, pl_module):
        self.last = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
        self.written_by_training = self.last.read_bytes()
        press_ctrl_c()


def test_ctrl_c_in_the_final_test_leaves_last_ckpt_as_training_wrote_it(tmp_path, monkeypatch, capsys):
    # Full precision, no EMA, one process: the training Trainer itself runs the test, with the best weights
    # loaded. Saving last.ckpt there would put those weights, not the last ones, into what --resume reads.
    interrupt = CtrlCInTheFinalTest()
    add_callback(monkeypatch, interrupt)
    argv = ["--model", "lenet5", "--precision", "32", "--max-epochs", "1", "--limit-train-batches", "5"]
    assert main([*argv, "--limit-val-batches", "1", "--logdir", str(tmp_path)]) == 130
    run = tmp_path / "lenet5" / "version_0"
    assert capsys.readouterr().err.endswith(
        f"interrupted in the final test; training is complete: test it with python -m src.evaluate --ckpt {run}\n"
    )
    assert interrupt.last.read_bytes() == interrupt.written_by_training


class CtrlCTwiceInThirdStep(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 2:
            press_ctrl_c()
            press_ctrl_c()


def test_ctrl_c_twice_before_a_new_runs_first_checkpoint_leaves_no_run_directory(tmp_path, monkeypatch, capsys):
    add_callback(monkeypatch, CtrlCTwiceInThirdStep())
    argv = ["--model", "lenet5", "--max-epochs", "1", "--limit-train-batches", "5", "--limit-val-batches", "1"]
    assert main([*argv, "--logdir", str(tmp_path)]) == 130
    assert capsys.readouterr().err.endswith(
        "stopped at once, without saving; the run had no checkpoint yet, so nothing is left to resume\n"
    )
    assert list((tmp_path / "lenet5").iterdir()) == []


def test_a_sigterm_that_lightning_caught_before_the_takeover_still_stops_at_a_batch_boundary(
    tmp_path, monkeypatch, capsys
):
    # ahead of SaveOnInterrupt: Lightning's own handler takes this SIGTERM
    add_callback(monkeypatch, SigtermInSanityCheck(), first=True)
    argv = ["--model", "lenet5", "--max-epochs", "1", "--limit-train-batches", "5", "--limit-val-batches", "2"]
    assert main([*argv, "--logdir", str(tmp_path)]) == 130
    # Lightning would have stopped inside the sanity check, where nothing can be saved
    assert "interrupted in epoch 1: saved" in capsys.readouterr().err


class CtrlCAtTrainingsEnd(pl.Callback):
    def on_train_end(self, trainer, pl_module):
        press_ctrl_c()


def test_ctrl_c_after_the_last_epochs_check_finishes_training_and_skips_the_test(tmp_path, monkeypatch, capsys):
    add_callback(monkeypatch, CtrlCAtTrainingsEnd())
    argv = ["--model", "lenet5", "--max-epochs", "2", "--limit-train-batches", "3", "--limit-val-batches", "1"]
    assert main([*argv, "--logdir", str(tmp_path)]) == 130
    run = tmp_path / "lenet5" / "version_0"
    assert capsys.readouterr().err.endswith(
        f"interrupted after the last epoch; training is complete: test it with python -m src.evaluate --ckpt {run}\n"
    )
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1  # both epochs saved
    assert not (run / "results.json").exists()


class CtrlCAgainWhileSaving(pl.Callback):
    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if trainer.interrupted:
            press_ctrl_c()


def test_ctrl_c_during_the_interruptions_save_keeps_the_last_checkpoint_and_gives_back_the_signals(
    tmp_path, monkeypatch, capsys
):
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    common = ["--model", "lenet5", "--limit-train-batches", "3", "--limit-val-batches", "1", "--logdir", str(tmp_path)]
    assert main([*common, "--max-epochs", "1"]) == 0
    last = tmp_path / "lenet5" / "version_0" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    add_callback(monkeypatch, CtrlCAgainWhileSaving())
    add_callback(monkeypatch, CtrlCInSecondEpochsEighthStep())
    assert main([*common, "--max-epochs", "2", "--limit-train-batches", "10", "--resume", "last"]) == 130
    assert "stopped at once, without saving; continue from its last checkpoint" in capsys.readouterr().err
    assert last.read_bytes() == before
    assert {signum: signal.getsignal(signum) for signum in handlers} == handlers  # a later SIGTERM still ends it


class SigtermInFirstStep(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_in_a_fast_dev_run_exits_130_not_0(monkeypatch, capsys):
    add_callback(monkeypatch, SigtermInFirstStep())
    assert main(["--model", "lenet5", "--fast-dev-run"]) == 130
    assert capsys.readouterr().err.endswith("interrupted; a fast-dev-run writes nothing\n")


def test_nan_loss_stops_with_the_epoch_and_keeps_no_broken_checkpoint(tmp_path, capsys):
    argv = ["--model", "lenet5", "--lr", "1e6", "--max-epochs", "2", "--limit-train-batches", "30"]
    assert main([*argv, "--limit-val-batches", "2", "--logdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"error: training: the loss became (nan|inf) in epoch 1; try a lower learning rate than 1e\+06 \(--lr\)\n", err
    )
    assert not (tmp_path / "lenet5" / "version_0").exists()  # nothing half-written: no empty run in TensorBoard


def test_a_recipe_that_fails_once_training_starts_leaves_no_run_directory(tmp_path, capsys):
    # fast.yaml's one-cycle over 4 steps has a warm-up of one step: torch's schedule cannot be built.
    argv = ["--config", str(ROOT / "configs" / "fast.yaml"), "--limit-train-batches", "4"]
    assert main([*argv, "--logdir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: scheduler_args: onecycle cannot schedule 4 steps")
    assert list((tmp_path / "fast_cnn").iterdir()) == []


def test_a_loose_checkpoint_resumes_into_a_new_run_and_leaves_its_folder_alone(tmp_path, monkeypatch, capsys, recwarn):
    common = ["--model", "lenet5", "--limit-train-batches", "5", "--limit-val-batches", "1", "--logdir", str(tmp_path)]
    assert main([*common, "--max-epochs", "1"]) == 0
    loose = tmp_path / "downloads" / "mine.ckpt"
    loose.parent.mkdir()
    loose.write_bytes((tmp_path / "lenet5" / "version_0" / "checkpoints" / "last.ckpt").read_bytes())

    def full_disk(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr("src.callbacks.torch.save", full_disk)
        assert main([*common, "--max-epochs", "2", "--resume", str(loose)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "lenet5").iterdir()) == ["version_0"]  # the failed run left nothing

    assert main([*common, "--max-epochs", "2", "--resume", str(loose)]) == 0
    assert f"run directory: {tmp_path / 'lenet5' / 'version_1'} (resuming mine.ckpt)" in capsys.readouterr().out
    assert [p.name for p in loose.parent.iterdir()] == ["mine.ckpt"]  # it wrote checkpoints and events there
    results = json.loads((tmp_path / "lenet5" / "version_1" / "results.json").read_text())
    assert results["epochs_run"] == 2 and results["best_epoch"] == 2  # its own record: epoch 1 is in version_0
    assert not [w for w in recwarn if "dirpath has changed" in str(w.message)]


def test_unwritable_logdir_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["--model", "lenet5", "--logdir", str(blocker / "logs")]) == 2
    assert (
        capsys.readouterr().err
        == f"error: --logdir {blocker / 'logs' / 'lenet5'}: cannot be written ({blocker} is a file, not a folder)\n"
    )


def test_a_file_in_the_way_of_the_model_folder_fails_before_training(tmp_path, capsys):
    (tmp_path / "lenet5").write_text("not a folder")
    assert (
        main(["--model", "lenet5", "--max-epochs", "1", "--limit-train-batches", "2", "--logdir", str(tmp_path)]) == 2
    )
    model_folder = tmp_path / "lenet5"
    assert (
        capsys.readouterr().err
        == f"error: --logdir {model_folder}: cannot be written ({model_folder} is a file, not a folder)\n"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["lenet5"]


def test_resuming_a_run_from_another_folder_writes_nothing_under_the_default_logdir(tmp_path, monkeypatch):
    common = ["--model", "lenet5", "--limit-train-batches", "2", "--limit-val-batches", "1"]
    assert main([*common, "--max-epochs", "1", "--logdir", str(tmp_path / "runs")]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = tmp_path / "runs" / "lenet5" / "version_0"
    assert main([*common, "--max-epochs", "2", "--resume", str(run)]) == 0
    assert json.loads((run / "results.json").read_text())["epochs_run"] == 2
    assert list(elsewhere.iterdir()) == []  # no empty lightning_logs/lenet5 for the run that never used it


def test_full_disk_on_checkpoint_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch, capsys):
    common = ["--model", "lenet5", "--limit-train-batches", "5", "--limit-val-batches", "1", "--logdir", str(tmp_path)]
    assert main([*common, "--max-epochs", "1"]) == 0
    last = tmp_path / "lenet5" / "version_0" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("src.callbacks.torch.save", full_disk)
    assert main([*common, "--max-epochs", "2", "--resume", "last"]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"error: \S+\.ckpt: could not be written \(No space left on device\); the previous checkpoint is intact\n", err
    )
    assert last.read_bytes() == before
    assert not list(last.parent.glob(".*.tmp"))


@pytest.mark.slow
def test_sigkill_mid_epoch_leaves_the_previous_last_checkpoint_loadable(tmp_path):
    common = ["--model", "lenet5", "--max-epochs", "3", "--limit-train-batches", "300", "--limit-val-batches", "2"]
    command = [sys.executable, "-m", "src.train", *common, "--logdir", str(tmp_path)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "lenet5" / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    process.kill()
    process.wait(timeout=60)
    assert torch.load(last, weights_only=True)["epoch"] >= 0  # intact: it loads; at most one epoch lost
    assert main([*common, "--logdir", str(tmp_path), "--resume", "last"]) == 0
    assert json.loads((tmp_path / "lenet5" / "version_0" / "results.json").read_text())["epochs_run"] == 3
