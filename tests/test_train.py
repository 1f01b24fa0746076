import collections
import json
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils._python_dispatch import TorchDispatchMode

import src.callbacks
import src.data.mnist
from src.evaluate import main as evaluate
from src.hardware import HardwareRequest, plan_hardware, probe_machine
from src.models.classifier import DigitClassifier
from src.train import main
from tests.conftest import KAGGLE_DIR, ROOT, add_callback, logged


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    """One real epoch of lenet5 (its own recipe) on the full MNIST training split."""
    logdir = tmp_path_factory.mktemp("logs")
    assert main(["--model", "lenet5", "--max-epochs", "1", "--logdir", str(logdir)]) == 0
    return logdir / "lenet5" / "version_0"


@pytest.mark.slow
def test_one_epoch_reaches_98_percent_and_writes_results(one_epoch_run):
    results = json.loads((one_epoch_run / "results.json").read_text())
    assert results["test_acc"] >= 0.98
    assert results["evaluated_on"] == "MNIST test set (10,000 images)"
    assert (results["model"], results["parameters"], results["epochs_run"], results["best_epoch"]) == (
        "lenet5",
        61706,
        1,
        1,
    )
    assert results["train_images"] == 54000 and results["train_images_per_second"] > 0
    plan = plan_hardware(HardwareRequest(), probe_machine())  # bf16-mixed and channels_last on an AMX CPU
    assert results["hardware"]["accelerator"] == "cpu"
    assert (results["hardware"]["precision"], results["hardware"]["memory_format"]) == (
        plan.precision,
        plan.memory_format,
    )
    for key in ("test_loss", "train_seconds", "wall_seconds", "best_checkpoint", "last_checkpoint", "seed"):
        assert key in results
    config = yaml.safe_load((one_epoch_run / "config.yaml").read_text())
    assert config["model"] == "lenet5" and config["max_epochs"] == 1 and config["batch_size"] == 32


@pytest.mark.slow
def test_the_fast_recipe_reaches_99_percent_in_its_one_epoch(tmp_path):
    """configs/fast.yaml's promise, whose time scripts/benchmark.py measures."""
    assert main(["--config", str(ROOT / "configs" / "fast.yaml"), "--logdir", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "fast_cnn" / "version_0" / "results.json").read_text())
    assert results["test_acc"] >= 0.99 and results["epochs_run"] == 1


@pytest.mark.slow
def test_tensorboard_has_the_promised_scalars_and_images(one_epoch_run):
    events = EventAccumulator(str(one_epoch_run))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "test/acc", "hp_metric"} <= scalars
    assert any(tag.startswith("lr-") for tag in scalars)
    assert {"train/inputs", "val/confusion_matrix", "val/mistakes"} <= set(events.Tags()["images"])
    results = json.loads((one_epoch_run / "results.json").read_text())
    # TensorBoard's HPARAMS tab lists a run only if hparams were logged with a metric: a placeholder at the start
    assert (events.Scalars("hp_metric")[0].step, events.Scalars("hp_metric")[0].value) == (0, -1)
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")
    assert events.Scalars("hp_metric")[-1].value == pytest.approx(results["test_acc"])


@pytest.mark.slow
def test_checkpoints_load_safely_without_naming_the_architecture(one_epoch_run):
    checkpoints = sorted((one_epoch_run / "checkpoints").glob("*.ckpt"))
    assert [p.name for p in checkpoints] == ["best-epoch000.ckpt", "last.ckpt"]
    for path in checkpoints:
        torch.load(path, weights_only=True)
    model = DigitClassifier.load_from_checkpoint(checkpoints[0], map_location="cpu", weights_only=True)
    assert model.hparams.arch == "lenet5" and model.parameter_count == 61706


class RecordBatchLosses(pl.Callback):
    def __init__(self):
        self.losses = collections.defaultdict(list)
        self.monitored = []  # train/loss as the plateau and early stopping read it, after each epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses[trainer.current_epoch].append(outputs["loss"].item())

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch > 0:
            self.monitored.append(trainer.callback_metrics["train/loss"].item())

    def on_train_end(self, trainer, pl_module):
        self.monitored.append(trainer.callback_metrics["train/loss"].item())


def test_the_monitored_training_loss_is_the_epochs_mean_not_its_last_batch(tmp_path, monkeypatch):
    """lenet5's plateau and early stopping watch train/loss, as the notebook did: each must read the
    epoch's mean, in TensorBoard and in results.json too."""
    recorder = RecordBatchLosses()
    add_callback(monkeypatch, recorder)
    argv = ["--model", "lenet5", "--max-epochs", "2", "--limit-train-batches", "4", "--limit-val-batches", "1"]
    assert main([*argv, "--logdir", str(tmp_path)]) == 0
    means = [sum(batches) / len(batches) for batches in recorder.losses.values()]
    assert [len(batches) for batches in recorder.losses.values()] == [4, 4]
    assert recorder.monitored == pytest.approx(means, rel=1e-5)
    assert all(abs(batches[-1] - mean) > 1e-3 for batches, mean in zip(recorder.losses.values(), means, strict=True))
    run = tmp_path / "lenet5" / "version_0"
    assert [value for _, value in logged(run, "train/loss")] == pytest.approx(means, rel=1e-5)
    assert json.loads((run / "results.json").read_text())["best_monitor_value"] == pytest.approx(min(means), rel=1e-5)


class RecordOptimizer(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        self.optimizer = trainer.optimizers[0]


@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_every_recipe_trains_with_its_optimizer_and_its_checkpoints_load_with_weights_only(
    recipe, tmp_path, monkeypatch
):
    recorder = RecordOptimizer()
    add_callback(monkeypatch, recorder)
    # Each recipe adds its own hyperparameters and callback state (EMA, plateau, batch schedule, one-cycle)
    argv = ["--config", str(ROOT / "configs" / recipe), "--data", "kaggle", "--data-dir", str(KAGGLE_DIR)]
    argv += ["--max-epochs", "1", "--limit-train-batches", "1", "--limit-val-batches", "1"]
    assert main([*argv, "--logdir", str(tmp_path)]) == 0
    values = yaml.safe_load((ROOT / "configs" / recipe).read_text())
    # the notebooks' Keras values (PITFALLS.md: Keras' eps, rho and alpha are not torch's defaults)
    assert type(recorder.optimizer).__name__.lower() == values["optimizer"]
    expected = {"lr": float(values["lr"]), **values.get("optimizer_args", {})}
    assert {key: recorder.optimizer.defaults[key] for key in expected} == expected
    [run] = (tmp_path / values["model"]).iterdir()
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert checkpoints == ["best-epoch000.ckpt", "last.ckpt"]
    for name in checkpoints:
        torch.load(run / "checkpoints" / name, weights_only=True)


# Full precision tests in the training Trainer; mixed precision and EMA in a second one (train.test_best).
@pytest.mark.parametrize(
    "flags",
    [
        ["--model", "lenet5", "--precision", "32"],
        ["--model", "lenet5", "--precision", "bf16-mixed"],
        ["--model", "deep_bn_cnn"],
    ],
)
def test_fast_dev_run_on_mnist_writes_nothing(flags, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # where Lightning's default logger would write
    assert main([*flags, "--fast-dev-run", "--logdir", str(tmp_path / "logs")]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "on one batch of the MNIST test set (10,000 images)" in out
    assert "fast-dev-run: nothing was written" in out
    assert list(tmp_path.iterdir()) == []


def test_fast_dev_run_on_kaggle_reports_validation_metrics(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["--model", "lenet5", "--data", "kaggle", "--data-dir", str(KAGGLE_DIR), "--fast-dev-run"]
    assert main([*argv, "--logdir", str(tmp_path / "logs")]) == 0
    assert (
        "on one batch of the validation split of train.csv (200 images; Kaggle's test.csv has no labels)"
        in capsys.readouterr().out
    )
    assert list(tmp_path.iterdir()) == []


def test_a_kaggle_run_and_its_evaluation_never_read_the_mnist_files(tmp_path, monkeypatch, capsys):
    def no_mnist(*args):
        raise AssertionError(f"read the MNIST files: {args}")

    monkeypatch.setattr(src.data.mnist, "find_file", no_mnist)  # every MNIST read and fetch goes through it
    argv = ["--model", "lenet5", "--data", "kaggle", "--data-dir", str(KAGGLE_DIR), "--max-epochs", "1"]
    assert main([*argv, "--limit-train-batches", "5", "--logdir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert evaluate(["--ckpt", str(tmp_path / "lenet5" / "version_0")]) == 0
    assert "on the validation split of train.csv (200 images" in capsys.readouterr().out


def test_interrupted_run_resumes_in_the_same_directory(tmp_path, recwarn, capsys):
    common = ["--model", "lenet5", "--logdir", str(tmp_path), "--limit-train-batches", "20", "--limit-val-batches", "2"]
    assert main([*common, "--max-epochs", "1"]) == 0
    assert main([*common, "--max-epochs", "2", "--resume", "last"]) == 0
    runs = sorted(p.name for p in (tmp_path / "lenet5").iterdir())
    assert runs == ["version_0"]
    results = json.loads((tmp_path / "lenet5" / "version_0" / "results.json").read_text())
    assert results["epochs_run"] == 2 and results["train_images"] == 2 * 20 * 32  # the run's, both processes
    assert not [w for w in recwarn if "exists and is not empty" in str(w.message)]  # resuming is the point
    assert main([*common, "--max-epochs", "1", "--resume", "last"]) == 2
    last = tmp_path / "lenet5" / "version_0" / "checkpoints" / "last.ckpt"
    assert (
        capsys.readouterr().err == f"error: {last}: has trained 2 epochs, more than --max-epochs 1; give at least 2\n"
    )
    sgd = tmp_path / "sgd.yaml"
    sgd.write_text("model: lenet5\noptimizer: sgd\n")
    assert main([*common, "--config", str(sgd), "--max-epochs", "3", "--resume", "last"]) == 2
    assert capsys.readouterr().err == f"error: {last}: was trained with adam; the recipe now says sgd\n"
    # The restored optimizer state keeps its lr: another --lr was written to config.yaml but never used.
    assert main([*common, "--max-epochs", "3", "--lr", "0.5", "--resume", "last"]) == 2
    assert capsys.readouterr().err == f"error: {last}: was trained with lr 0.001; give --lr 0.001 to resume it\n"
    # Between epochs another batch size may continue the run (inside one it would skip or repeat images).
    assert main([*common, "--max-epochs", "3", "--batch-size", "64", "--resume", "last"]) == 0
    results = json.loads((tmp_path / "lenet5" / "version_0" / "results.json").read_text())
    assert results["train_images"] == 2 * 20 * 32 + 20 * 64


@pytest.mark.parametrize(
    "schedule, longer, message",
    [  # OneCycleLR raised a ValueError past its last step; the cosine silently climbed back up
        ("onecycle", ["--max-epochs", "2"], "spans 10 steps, this run 20: resume with the --max-epochs, --batch-size"),
        (
            "onecycle",
            ["--limit-train-batches", "0.024"],
            "spans 10 steps, this run 20: resume with the --max-epochs, --batch-size",
        ),
        ("cosine", ["--max-epochs", "2"], "spans 1 epoch, this run 2: resume with the --max-epochs it was trained"),
    ],
)
def test_a_fixed_length_lr_schedule_resumes_only_at_its_length(schedule, longer, message, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model: lenet5\nscheduler: {schedule}\n")
    common = ["--config", str(recipe), "--limit-train-batches", "0.012", "--limit-val-batches", "1"]  # 10 steps
    assert main([*common, "--max-epochs", "1", "--logdir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main([*common, "--max-epochs", "1", *longer, "--resume", "last", "--logdir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: --resume: the checkpoint's LR schedule {message}")
    assert sorted(p.name for p in (tmp_path / "lenet5" / "version_0" / "checkpoints").iterdir()) == [
        "best-epoch000.ckpt",
        "last.ckpt",
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "resnet999"], "error: --model: unknown model 'resnet999'; choose from bn_cnn"),
        (["--max-epochs", "many"], "error: python -m src.train: argument --max-epochs: invalid int value: 'many'"),
        (["--data-dir", "/no/such/dir"], "error: /no/such/dir: data directory does not exist"),
        (["--data", "kaggle"], "error: --data-dir: --data kaggle needs the folder that holds Kaggle's train.csv"),
        (
            ["--precision", "16-mixed", "--accelerator", "cpu"],
            "error: --precision: 16-mixed needs a CUDA GPU of capability 7.0 or newer, not cpu",
        ),
        (["--resume", "last"], "error: --resume last: no run of lenet5 under"),
        (
            ["--accelerator", "cpu", "--devices", "2", "--batch-size", "33"],
            "error: --batch-size: 33 does not divide across 2 processes",
        ),
        (
            ["--memory-format", "nhwc"],
            "error: --memory-format: unknown memory format 'nhwc'; choose from auto, channels_last, contiguous",
        ),
        (  # Lightning's MisconfigurationException came with a traceback, after the run directory was made
            ["--limit-val-batches", "0.1"],
            "error: --limit-val-batches: 0.1 of 6 batch(es) per epoch is none; give at least 0.1667 or a number",
        ),
        (
            ["--limit-train-batches", "0.0005"],
            "error: --limit-train-batches: 0.0005 of 1688 batch(es) per epoch is none; give at least 0.0006 or",
        ),
    ],
)
def test_user_errors_are_one_line_and_exit_2(argv, message, tmp_path, capsys):
    assert main([*argv, "--logdir", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "logs").exists()


CUT_AFTER_8_BATCHES = {"current": {"ready": 8, "completed": 8, "started": 8, "processed": 8}, "is_last_batch": False}


@pytest.mark.parametrize(
    "content, message",
    [
        ({"state_dict": {}, "hyper_parameters": {"arch": "mlp"}}, "is a checkpoint of 'mlp', not of --model lenet5"),
        (  # a cosine's state loaded silently into a onecycle
            {"state_dict": {}, "hyper_parameters": {"arch": "lenet5", "scheduler": "cosine"}},
            "was trained with scheduler cosine; the recipe now says plateau",
        ),
        (b"not a checkpoint", "is not a readable checkpoint (not a file torch.save wrote)"),
        (
            {
                "state_dict": {},
                "hyper_parameters": {"arch": "lenet5"},
                "datamodule_hyper_parameters": {"val_fraction": 0.0},
            },
            "was trained with val_fraction 0; give --val-fraction 0 to resume it",
        ),
        *[
            (
                {"state_dict": {}, "hyper_parameters": {"arch": "lenet5"}, "datamodule_hyper_parameters": trained},
                f"was trained with {message}",
            )
            for trained, message in [
                ({"data": "kaggle"}, "data kaggle; give --data kaggle to resume it"),  # it trained on MNIST instead
                ({"seed": 3}, "seed 3; give --seed 3 to resume it"),
                ({"split_seed": 5}, "split_seed 5; give --split-seed 5 to resume it"),
                ({"val_split": "head"}, "val_split head; resume it with a recipe that says so"),
            ]
        ],
        *[  # another batch size slices the interrupted epoch differently; the checkpoint says how many processes
            (
                {
                    "state_dict": {},
                    "hyper_parameters": {"arch": "lenet5"},
                    "datamodule_hyper_parameters": {"batch_size": size, "batch_schedule": schedule},
                    "DigitsDataModule": {"processes": 2},
                    "loops": {"fit_loop": {"epoch_loop.batch_progress": CUT_AFTER_8_BATCHES}},
                },
                f"was trained with {message}",
            )
            for size, schedule, message in [  # lenet5's recipe: batch 32, no schedule
                (32, None, "batch_size 64; give --batch-size 64 to resume it"),
                (16, {2: 64}, "batch_schedule {2: 128}; resume it with a recipe that says so"),
            ]
        ],
    ],
)
def test_resuming_from_an_incompatible_checkpoint_is_one_line(content, message, tmp_path, capsys):
    checkpoint = tmp_path / "other.ckpt"
    if isinstance(content, bytes):
        checkpoint.write_bytes(content)
    else:
        torch.save(content, checkpoint)
    argv = ["--model", "lenet5", "--resume", str(checkpoint), "--logdir", str(tmp_path / "logs")]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"error: {checkpoint}: {message}\n"
    assert not (tmp_path / "logs").exists()


def test_a_csv_too_small_to_split_stops_before_anything_is_written(tmp_path, capsys):
    lines = (KAGGLE_DIR / "train.csv").read_text().splitlines()[:4]  # header and 3 digits
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    argv = ["--data", "kaggle", "--data-dir", str(tmp_path), "--logdir", str(tmp_path / "logs")]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'train.csv'}: 3 labelled images leave 3 for training and 0 for validation at val_fraction 0.1; --val-fraction 0 trains on all\n"
    )
    assert not (tmp_path / "logs").exists()


def test_bad_csv_row_stops_the_command_with_the_line(tmp_path, capsys):
    lines = (KAGGLE_DIR / "train.csv").read_text().splitlines()[:50]
    lines[17] = lines[17].replace(",0,", ",256,", 1)
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    argv = ["--data", "kaggle", "--data-dir", str(tmp_path), "--fast-dev-run"]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'train.csv'}, line 18: pixel0 is 256, outside 0..255\n"


def test_command_line_exit_status_and_no_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "src.train", "--model", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert (
        done.stderr
        == "error: --model: unknown model 'nope'; choose from bn_cnn, keras_cnn, deep_cnn, mlp, simple_cnn, lenet5, fast_cnn, deep_bn_cnn, m3_cnn\n"
    )


def run_recipe(tmp_path, recipe: str, *flags: str) -> Path:
    """Train a recipe given as YAML text for a few batches; returns its run directory."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    assert main(["--config", str(path), "--logdir", str(tmp_path), "--limit-val-batches", "1", *flags]) == 0
    return tmp_path / "lenet5" / "version_0"


@pytest.mark.parametrize("monitor", ["val/acc", "val/loss"])  # a maximised and a minimised one
def test_val_fraction_0_trains_on_all_of_train_csv_and_keeps_the_final_epoch(tmp_path, capsys, recwarn, monitor):
    """Kaggle's usual last step: no image is held out, so nothing can pick an epoch or test the model."""
    recipe = tmp_path / "all.yaml"
    recipe.write_text(f"model: lenet5\nmonitor: {monitor}\nema_decay: 0.9\nmax_epochs: 2\nprecision: 32-true\n")
    argv = ["--config", str(recipe), "--data", "kaggle", "--data-dir", str(KAGGLE_DIR), "--val-fraction", "0"]
    assert main([*argv, "--logdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "not tested: every labelled image of train.csv was trained on (val_fraction 0)\n" in out
    assert [str(w.message) for w in recwarn] == []  # no validation loop over nothing ("DataLoader ... is zero")
    run = tmp_path / "lenet5" / "version_0"
    results = json.loads((run / "results.json").read_text())
    assert results["train_images"] == 2 * 2000
    assert (results["epochs_run"], results["best_epoch"], results["monitor"]) == (2, 2, None)
    assert (results["test_acc"], results["test_loss"], results["evaluated_on"], results["best_monitor_value"]) == (
        None,
        None,
        None,
        None,
    )
    kept = torch.load(results["best_checkpoint"], weights_only=True)["state_dict"]
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(kept[name], last[name]) for name in last)
    assert evaluate(["--ckpt", str(run)]) == 2
    assert capsys.readouterr().err == (
        f"error: {results['best_checkpoint']}: trained on every labelled image of train.csv (val_fraction 0): "
        "none is left to evaluate on\n"
    )
    assert not (run / "evaluation").exists()


def test_val_fraction_0_on_mnist_still_tests_on_the_mnist_test_set(tmp_path):
    argv = ["--model", "keras_cnn", "--val-fraction", "0", "--max-epochs", "1", "--limit-train-batches", "5"]
    assert main([*argv, "--logdir", str(tmp_path)]) == 0
    run = tmp_path / "keras_cnn" / "version_0"
    results = json.loads((run / "results.json").read_text())
    assert results["evaluated_on"] == "MNIST test set (10,000 images)"
    assert (results["monitor"], results["best_epoch"]) == (None, 1)
    # What was tested is the kept final checkpoint, on the MNIST test set: evaluate reads the same accuracy.
    assert evaluate(["--ckpt", str(run), "--output-dir", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["members"][0]["accuracy"] == pytest.approx(results["test_acc"], abs=1e-6)


def test_batch_schedule_is_followed_by_a_real_run(tmp_path):
    recipe = "model: lenet5\nbatch_size: 32\nbatch_schedule: {1: 64}\nmax_epochs: 2\nmonitor: val/acc\n"
    run = run_recipe(tmp_path, recipe, "--limit-train-batches", "3")
    assert json.loads((run / "results.json").read_text())["train_images"] == 3 * 32 + 3 * 64


def test_tensorboard_grid_shows_the_augmented_inputs(tmp_path):
    """Same seed, same first batch: the grid differs from the plain run's only if augmentation reached it."""
    grids = {}
    for name, extra in (("plain", ""), ("augmented", "augment: {rotation: 10, zoom: 0.1, shift: 0.1}\n")):
        run = run_recipe(tmp_path / name, "model: lenet5\nmax_epochs: 1\n" + extra, "--limit-train-batches", "2")
        events = EventAccumulator(str(run), size_guidance={"images": 0})
        events.Reload()
        grids[name] = events.Images("train/inputs")[0]
    assert (grids["plain"].width, grids["plain"].height) == (grids["augmented"].width, grids["augmented"].height)
    assert grids["plain"].encoded_image_string != grids["augmented"].encoded_image_string
    again = run_recipe(tmp_path / "plain_again", "model: lenet5\nmax_epochs: 1\n", "--limit-train-batches", "2")
    events = EventAccumulator(str(again), size_guidance={"images": 0})
    events.Reload()
    assert events.Images("train/inputs")[0].encoded_image_string == grids["plain"].encoded_image_string


@pytest.mark.slow
def test_two_cpu_processes_through_the_real_launcher_make_one_run(tmp_path):
    # A Kaggle run whose validation split (also its test set) has an odd size, 201 of 2,000 images: a
    # DistributedSampler would pad it to 202 with a duplicate. Validation is sharded without padding,
    # 101 + 100 images in batches of 50: one process runs a batch more, which must not hang batch norm.
    # Full precision, so that validation and the final test (always fp32) see the same logits.
    recipe = tmp_path / "odd.yaml"
    recipe.write_text(
        "model: bn_cnn\nbatch_size: 32\neval_batch_size: 50\nval_fraction: 0.1005\nmonitor: val/acc\nprecision: 32-true\n"
    )
    command = [sys.executable, "-m", "src.train", "--config", str(recipe), "--accelerator", "cpu", "--devices", "2"]
    command += ["--data", "kaggle", "--data-dir", str(KAGGLE_DIR), "--max-epochs", "1", "--limit-train-batches", "20"]
    done = subprocess.run([*command, "--logdir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # Lightning's advice that does not apply here (more workers, sync_dist, ...) is silenced, nothing else
    assert [line for line in done.stderr.splitlines() if not line.startswith("Initializing distributed: ")] == []
    assert "ddp           DDP: more than one process (gloo)" in done.stdout
    assert "16 per process x 2 process(es)" in done.stdout
    run = tmp_path / "bn_cnn"
    assert [p.name for p in run.iterdir()] == ["version_0"]
    results = json.loads((run / "version_0" / "results.json").read_text())
    assert results["train_images"] == 20 * 16 * 2  # each process its own 20 batches of 16
    # What a resume reads to tell the global batch size from the per-process one
    last = torch.load(run / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["DigitsDataModule"], last["datamodule_hyper_parameters"]["batch_size"]) == ({"processes": 2}, 16)
    # The final test ran in one process on exactly the 201 images: one-process evaluation agrees, and
    # so does the val/acc that the two processes logged for the same weights (their only epoch).
    assert results["evaluated_on"].startswith("validation split of train.csv (201 images")
    assert results["best_monitor_value"] == pytest.approx(results["test_acc"], abs=1e-6)
    events = EventAccumulator(str(run / "version_0"))
    events.Reload()
    assert {"val/confusion_matrix", "val/mistakes"} <= set(events.Tags()["images"])  # its matrix sum did not hang
    assert evaluate(["--ckpt", str(run / "version_0")]) == 0
    metrics = json.loads((run / "version_0" / "evaluation" / "metrics.json").read_text())
    assert metrics["members"][0]["accuracy"] == pytest.approx(results["test_acc"], abs=1e-6)


def test_ema_weights_are_what_is_validated_checkpointed_and_tested(tmp_path):
    recipe = "model: lenet5\nmax_epochs: 1\nmonitor: val/acc\nema_decay: 0.999\n"
    run = run_recipe(tmp_path, recipe, "--limit-train-batches", "60")
    results = json.loads((run / "results.json").read_text())
    # The decay warms up, so 60 steps in the average already follows training instead of the random init.
    assert results["test_acc"] >= 0.8
    checkpoint = torch.load(results["best_checkpoint"], weights_only=True)
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged)  # the average, not the last step's weights
    assert evaluate(["--ckpt", str(run), "--output-dir", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["members"][0]["accuracy"] == pytest.approx(results["test_acc"], abs=1e-6)


class HostReads(TorchDispatchMode):
    """Counts, by the line that asks, the reads of a tensor's value by the host (.item(), bool(), int())."""

    def __init__(self):
        super().__init__()
        self.sites = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            stack = reversed(traceback.extract_stack())
            caller = next(f for f in stack if "/torch/" not in f.filename and f.filename != __file__)
            self.sites[f"{caller.filename}:{caller.lineno} {caller.name}"] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("recipe", ["fast", "deep_bn_cnn"])  # one-cycle; EMA, augmentation and cosine
def test_training_steps_read_no_value_back_from_the_device(tmp_path, recipe):
    """On a GPU each read waits for every kernel queued so far: one per step would hold the GPU to the
    host's pace. A run of 15 steps must read no more than a run of 5, nor one of 3 validation batches more
    than one of 1 (reads per epoch are fine)."""
    reads = {}
    for steps in (5, 15):
        argv = ["--config", str(ROOT / "configs" / f"{recipe}.yaml"), "--max-epochs", "1", "--batch-size", "16"]
        with HostReads() as reads[steps]:
            assert (
                main(
                    [*argv, "--limit-train-batches", str(steps), "--limit-val-batches", "1", "--logdir", str(tmp_path)]
                )
                == 0
            )
    per_step = {site: n - reads[5].sites[site] for site, n in reads[15].sites.items() if n != reads[5].sites[site]}
    assert per_step == {}
    with HostReads() as more_validation:  # and validation batches none either (ValidationFigures reads once an epoch)
        assert main([*argv, "--limit-train-batches", "5", "--limit-val-batches", "3", "--logdir", str(tmp_path)]) == 0
    per_batch = {s: n - reads[5].sites[s] for s, n in more_validation.sites.items() if n != reads[5].sites[s]}
    assert per_batch == {}


def test_compiled_run_writes_checkpoints_that_load_into_the_plain_module(tmp_path):
    run = run_recipe(tmp_path, "model: lenet5\nmax_epochs: 1\ncompile: true\n", "--limit-train-batches", "3")
    assert yaml.safe_load((run / "config.yaml").read_text())["compile"] is True
    results = json.loads((run / "results.json").read_text())
    state = torch.load(results["best_checkpoint"], weights_only=True)["state_dict"]
    assert not any("_orig_mod" in key for key in state)
    assert evaluate(["--ckpt", str(run), "--output-dir", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["members"][0]["accuracy"] == pytest.approx(results["test_acc"], abs=1e-6)


def test_a_mixed_precision_run_is_tested_in_full_precision_as_evaluate_reads_it(tmp_path):
    run = run_recipe(tmp_path, "model: lenet5\nmax_epochs: 1\nprecision: bf16-mixed\n", "--limit-train-batches", "30")
    results = json.loads((run / "results.json").read_text())
    assert results["hardware"]["precision"] == "bf16-mixed" and results["test_acc"] >= 0.5
    assert evaluate(["--ckpt", str(run), "--output-dir", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["members"][0]["accuracy"] == pytest.approx(results["test_acc"], abs=1e-6)
    assert metrics["members"][0]["loss"] == pytest.approx(results["test_loss"], rel=1e-5)


def test_the_final_test_runs_without_the_tf32_a_gpu_trains_with(tmp_path, monkeypatch):
    import src.hardware

    apply_global_settings = src.hardware.apply_global_settings

    def as_on_an_ampere_gpu(plan):
        apply_global_settings(plan)
        torch.set_float32_matmul_precision("high")  # what a plan with tf32 sets

    monkeypatch.setattr(src.hardware, "apply_global_settings", as_on_an_ampere_gpu)
    seen = []
    monkeypatch.setattr(
        DigitClassifier, "on_test_start", lambda self: seen.append(torch.get_float32_matmul_precision()), raising=False
    )
    try:
        run_recipe(tmp_path, "model: lenet5\nmax_epochs: 1\n", "--limit-train-batches", "5")
    finally:
        torch.set_float32_matmul_precision("highest")
    assert seen == ["highest"]  # as evaluate reads the checkpoint


@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_the_memory_format_asked_for_is_the_one_trained_in(layout, tmp_path):
    run = run_recipe(
        tmp_path, "model: lenet5\nmax_epochs: 1\n", "--limit-train-batches", "3", "--memory-format", layout
    )
    assert json.loads((run / "results.json").read_text())["hardware"]["memory_format"] == layout
    weight = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]["net.features.3.weight"]
    assert weight.is_contiguous(
        memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format
    )
    assert weight.is_contiguous() == (layout == "contiguous")


class ZeroWeightsBeforeLastValidation(pl.Callback):
    """Makes the last epoch the worst: all-zero weights predict class 0 for every image."""

    def on_validation_start(self, trainer, pl_module):
        if trainer.current_epoch == trainer.max_epochs - 1 and not trainer.sanity_checking:
            with torch.no_grad():
                for parameter in pl_module.parameters():
                    parameter.zero_()


def test_the_run_tests_its_best_checkpoint_not_its_last(tmp_path, monkeypatch, capsys):
    add_callback(monkeypatch, ZeroWeightsBeforeLastValidation())
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: lenet5\nmonitor: val/acc\nprecision: '32'\n")
    argv = ["--config", str(recipe), "--max-epochs", "3", "--limit-train-batches", "60", "--limit-val-batches", "5"]
    assert main([*argv, "--logdir", str(tmp_path / "logs")]) == 0
    results = json.loads((tmp_path / "logs" / "lenet5" / "version_0" / "results.json").read_text())
    assert results["epochs_run"] == 3 and results["best_epoch"] in (1, 2) and results["monitor"] == "val/acc"
    assert results["best_checkpoint"].endswith(f"best-epoch{results['best_epoch'] - 1:03d}.ckpt")
    val_acc = [value for _, value in logged(tmp_path / "logs" / "lenet5" / "version_0", "val/acc")]
    assert len(val_acc) == 3 and results["best_monitor_value"] == pytest.approx(val_acc[results["best_epoch"] - 1])
    assert results["best_monitor_value"] == max(val_acc[:2]) and results["test_acc"] > 0.5

    capsys.readouterr()
    for checkpoint, name in ((results["best_checkpoint"], "best"), (results["last_checkpoint"], "last")):
        assert evaluate(["--ckpt", checkpoint, "--output-dir", str(tmp_path / name)]) == 0
    best, last = (json.loads((tmp_path / n / "metrics.json").read_text())["members"][0] for n in ("best", "last"))
    assert best["accuracy"] == pytest.approx(results["test_acc"], abs=1e-6)
    assert last["accuracy"] < 0.2  # the zeroed weights: what a run testing its last checkpoint would report


def test_a_moved_or_copied_run_directory_resumes_with_one_best_checkpoint(tmp_path, monkeypatch, recwarn):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: lenet5\nmonitor: val/loss\nprecision: '32'\n")
    argv = ["--config", str(recipe), "--limit-train-batches", "20", "--limit-val-batches", "5"]
    assert main([*argv, "--logdir", str(tmp_path / "a"), "--max-epochs", "1"]) == 0
    shutil.copytree(tmp_path / "a", tmp_path / "copied")
    (tmp_path / "a").rename(tmp_path / "moved")

    def resume(logdir: str) -> tuple[list[str], dict]:
        run = tmp_path / logdir / "lenet5" / "version_0"
        assert main([*argv, "--logdir", str(tmp_path / logdir), "--max-epochs", "2", "--resume", str(run)]) == 0
        results = json.loads((run / "results.json").read_text())
        assert Path(results["best_checkpoint"]).parent == run / "checkpoints"
        return sorted(p.name for p in (run / "checkpoints").iterdir()), results

    assert resume("moved")[0] == ["best-epoch001.ckpt", "last.ckpt"]  # the better epoch replaced the old best
    add_callback(monkeypatch, ZeroWeightsBeforeLastValidation())
    checkpoints, results = resume("copied")
    assert checkpoints == ["best-epoch000.ckpt", "last.ckpt"] and results["best_epoch"] == 1
    assert results["test_acc"] > 0.5  # the best checkpoint was tested, not the zeroed last weights
    assert not [w for w in recwarn if "dirpath has changed" in str(w.message)]


class RecordDeterminism(pl.Callback):
    enabled: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        RecordDeterminism.enabled.append(torch.are_deterministic_algorithms_enabled())


def test_the_same_seed_trains_the_same_weights_and_deterministic_is_in_force(tmp_path, monkeypatch):
    add_callback(monkeypatch, RecordDeterminism())
    monkeypatch.setattr(RecordDeterminism, "enabled", [])

    def weights(name: str, *flags: str) -> dict[str, torch.Tensor]:
        argv = ["--model", "lenet5", "--max-epochs", "1", "--limit-train-batches", "10", "--limit-val-batches", "2"]
        assert main([*argv, "--logdir", str(tmp_path / name), *flags]) == 0
        run = tmp_path / name / "lenet5" / "version_0"
        assert json.loads((run / "results.json").read_text())["seed"] == int(flags[1])
        return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]

    first, again = (weights(name, "--seed", "7", "--deterministic") for name in ("first", "again"))
    assert RecordDeterminism.enabled == [True] * 20
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    other = weights("other", "--seed", "8")
    assert RecordDeterminism.enabled[20:] == [False] * 10
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_a_plateau_on_a_validation_metric_lowers_the_lr(tmp_path):
    # min_delta 100: no epoch improves on the first, so with patience 1 the LR drops after epoch 2
    recipe = "model: lenet5\nmonitor: val/loss\nscheduler: plateau\nscheduler_args: {patience: 1, min_delta: 100}\n"
    run = run_recipe(tmp_path, recipe, "--max-epochs", "3", "--limit-train-batches", "10")
    assert [round(lr, 9) for _, lr in logged(run, "lr-Adam")] == [1e-3, 1e-3, 1e-4]
    assert [len(logged(run, f"{stage}/loss")) for stage in ("train", "val")] == [3, 3]  # once an epoch, not a step


def test_early_stopping_counts_its_patience_across_a_resume(tmp_path):
    # min_delta 100: no epoch improves on the first, so with patience 1 the run stops after epoch 2
    recipe = "model: lenet5\nmonitor: val/loss\nearly_stopping: {patience: 1, min_delta: 100}\nprecision: '32'\n"
    flags = ("--limit-train-batches", "5")
    unbroken = run_recipe(tmp_path / "unbroken", recipe, "--max-epochs", "3", *flags)
    run_recipe(tmp_path / "resumed", recipe, "--max-epochs", "1", *flags)
    resumed = run_recipe(tmp_path / "resumed", recipe, "--max-epochs", "3", "--resume", "last", *flags)
    for run in (unbroken, resumed):
        results = json.loads((run / "results.json").read_text())
        assert (results["epochs_run"], results["stopped_early"]) == (2, True)
    # Resumed once it has stopped (as after a stop requested at that epoch's end), it trains no more: Lightning
    # restores early stopping's state, not its decision.
    run_recipe(tmp_path / "unbroken", recipe, "--max-epochs", "3", "--resume", "last", *flags)
    results = json.loads((unbroken / "results.json").read_text())
    assert (results["epochs_run"], results["stopped_early"], results["train_images"]) == (2, True, 2 * 5 * 64)


def test_the_logged_validation_accuracy_is_the_accuracy_of_the_validated_weights(tmp_path, capsys):
    # Kaggle's 200-image validation split is one batch, the same one the sanity check validates first
    argv = ["--model", "lenet5", "--data", "kaggle", "--data-dir", str(KAGGLE_DIR), "--precision", "32"]
    assert main([*argv, "--max-epochs", "1", "--logdir", str(tmp_path)]) == 0
    run = tmp_path / "lenet5" / "version_0"
    assert evaluate(["--ckpt", str(run / "checkpoints" / "last.ckpt"), "--output-dir", str(tmp_path / "eval")]) == 0
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["evaluated_on"].startswith("validation split of train.csv (200 images")
    [(_, val_acc)] = logged(run, "val/acc")  # one point: epoch 1's, without the sanity check's
    assert val_acc == pytest.approx(evaluated["members"][0]["accuracy"], abs=1e-6)


def test_print_config_shows_the_resolved_recipe_and_names_the_recipes_of_a_model_without_its_own(capsys):
    assert main(["--model", "lenet5", "--batch-size", "64", "--print-config"]) == 0
    captured = capsys.readouterr()
    assert yaml.safe_load(captured.out)["batch_size"] == 64 and yaml.safe_load(captured.out)["lr"] == 0.001
    assert captured.err == ""
    # fast_cnn's recipes are named for what they reach: --model fast_cnn alone trained the code defaults, silently
    assert main(["--model", "fast_cnn", "--print-config"]) == 0
    assert capsys.readouterr().err == (
        "note: there is no configs/fast_cnn.yaml: fast_cnn trains with the code defaults; its recipes: "
        "configs/fast.yaml, configs/fast_995.yaml (give one with --config)\n"
    )
