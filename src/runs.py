"""Run directories on disk: LOGDIR/MODEL/version_N/{events, hparams.yaml, config.yaml, checkpoints/, results.json};
finding them, resuming them, and the logger that writes them."""

import json
import os
import shutil
import tempfile
from pathlib import Path

from src.atomic import atomic_write_text, why_not
from src.errors import UserError

RUN_VERSION_VARIABLE = "MNIST_LIGHTNING_RUN_VERSION"


def version_dirs(logdir: str | Path, model: str) -> list[Path]:
    """Existing run directories of `model`, oldest first."""
    root = Path(logdir) / model
    runs = [p for p in root.glob("version_*") if p.is_dir() and p.name.removeprefix("version_").isdigit()]
    return sorted(runs, key=lambda p: int(p.name.removeprefix("version_")))


def resume_checkpoint(recipe) -> Path:
    """The recipe's `resume`: `last` (the newest run's last.ckpt), a run directory, or a .ckpt file -> the
    checkpoint to resume, checked to be one of its model, optimizer and validation share that has not
    trained past its `max_epochs`."""
    resume, logdir, model = recipe.resume, recipe.logdir, recipe.model
    if resume == "last":
        candidates = [run / "checkpoints" / "last.ckpt" for run in version_dirs(logdir, model)]
        candidates = [c for c in candidates if c.exists()]
        if not candidates:
            raise UserError("--resume last", f"no run of {model} under {logdir} has checkpoints/last.ckpt")
        path = candidates[-1]
    else:
        path = Path(resume)
        if path.is_dir():
            path = path / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise UserError("--resume", f"{path} does not exist")
    _check_resumable(path, recipe)
    return path


def _check_resumable(checkpoint: Path, recipe) -> None:
    from src.checkpoints import read_checkpoint

    model, max_epochs, optimizer = recipe.model, recipe.max_epochs, recipe.optimizer
    saved = read_checkpoint(checkpoint)
    hyperparameters = saved.get("hyper_parameters") or {}
    arch = hyperparameters.get("arch")
    if arch != model:
        raise UserError(checkpoint, f"is a checkpoint of {arch!r}, not of --model {model}")
    trained_with = hyperparameters.get("optimizer")
    if trained_with is not None and trained_with != optimizer:  # its state would not load into another optimizer
        raise UserError(checkpoint, f"was trained with {trained_with}; the recipe now says {optimizer}")
    scheduled = hyperparameters.get("scheduler")  # another's state loads silently: a cosine's into a onecycle
    if scheduled is not None and scheduled != recipe.scheduler:
        raise UserError(checkpoint, f"was trained with scheduler {scheduled}; the recipe now says {recipe.scheduler}")
    # The optimizer's saved state restores its learning rate: another --lr would be recorded but not used.
    if isinstance(hyperparameters.get("lr"), float | int) and hyperparameters["lr"] != recipe.lr:
        raise UserError(checkpoint, f"was trained with {_differing('lr', float(hyperparameters['lr']))}")
    # Other data, another share or split would move images between training and validation (validation would
    # score trained-on ones), and another seed would draw the rest of the run differently.
    trained = saved.get("datamodule_hyper_parameters") or {}
    for key in ("data", "val_fraction", "val_split", "seed", "split_seed"):
        if key in trained and trained[key] != getattr(recipe, key):
            raise UserError(checkpoint, f"was trained with {_differing(key, trained[key])}")
    # Another batch size would slice an interrupted epoch differently: Lightning's count of batches done
    # would skip or repeat images. (Between epochs it may change.) Older checkpoints do not say how many
    # processes divided it.
    fit_loop = saved.get("loops", {}).get("fit_loop", {})
    batches = fit_loop.get("epoch_loop.batch_progress", {})
    mid_epoch = batches.get("current", {}).get("ready", 0) > 0 and not batches.get("is_last_batch", True)
    processes = (saved.get("DigitsDataModule") or {}).get("processes")
    if mid_epoch and isinstance(processes, int) and isinstance(trained.get("batch_size"), int):
        if trained["batch_size"] * processes != recipe.batch_size:
            raise UserError(
                checkpoint, f"was trained with {_differing('batch_size', trained['batch_size'] * processes)}"
            )
        schedule = {epoch: size * processes for epoch, size in (trained.get("batch_schedule") or {}).items()}
        if schedule != (recipe.batch_schedule or {}):
            raise UserError(checkpoint, f"was trained with {_differing('batch_schedule', schedule or None)}")
    loops = fit_loop.get("epoch_progress", {}).get("current", {})
    done = loops.get("processed", 0)  # "completed" lags by one in an end-of-epoch checkpoint
    if isinstance(done, int) and done > max_epochs:
        raise UserError(
            checkpoint, f"has trained {done} epochs, more than --max-epochs {max_epochs}; give at least {done}"
        )


def _differing(key: str, value) -> str:
    """What a run was trained with, and how to resume it so."""
    flag = "--" + key.replace("_", "-")
    recipe_only = key in ("val_split", "batch_schedule")  # keys without a flag
    if value is None:
        return f"no {key}; resume it with a recipe without one" if recipe_only else f"no {flag}; resume it without one"
    shown = f"{value:g}" if isinstance(value, float) else value
    if recipe_only:
        return f"{key} {shown}; resume it with a recipe that says so"
    return f"{key} {shown}; give {flag} {shown} to resume it"


def check_writable(directory: Path, flag: str) -> None:
    """Fail before training, not at the first checkpoint, when run output cannot be written; `flag` is
    the one that named `directory`."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise UserError(f"{flag} {directory}", f"cannot be written ({why_not(directory, e)})") from None


def run_dir_to_continue(resume_from: Path | None) -> Path | None:
    """The run directory that resuming `resume_from` continues in; None (a new run under --logdir) when
    there is nothing to resume or the checkpoint lies loose in a folder of the user's."""
    if resume_from is None or not is_run_dir(run_dir_of(resume_from)):
        return None
    return run_dir_of(resume_from)


def make_logger(logdir: str | Path, model: str, processes: int, run_dir: Path | None):
    """The run's TensorBoardLogger: in `run_dir` (a resumed run), else a new version that every DDP process shares."""
    from lightning.pytorch.loggers import TensorBoardLogger

    if run_dir is not None:
        return TensorBoardLogger(save_dir=run_dir.parent.parent, name=run_dir.parent.name, version=run_dir.name)
    # DDP re-runs this command in every process; they must all use the version rank 0 chose.
    version = os.environ.get(RUN_VERSION_VARIABLE) if os.environ.get("LOCAL_RANK", "0") != "0" else None
    logger = TensorBoardLogger(save_dir=logdir, name=model, version=version)
    if processes > 1:
        os.environ[RUN_VERSION_VARIABLE] = (
            logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
        )
    return logger


def remove_if_unsaved(run_dir: Path) -> None:
    """Remove a new run directory that failed before its first checkpoint: it holds nothing to resume or
    evaluate, only a config.yaml and events that would show in TensorBoard as an empty run."""
    if not any((run_dir / "checkpoints").glob("*.ckpt")):
        shutil.rmtree(run_dir, ignore_errors=True)


def is_run_dir(path: Path) -> bool:
    """Whether src.train made `path` (it writes config.yaml first): not a folder a checkpoint was copied to."""
    return (path / "config.yaml").is_file()


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory that holds `checkpoint` (…/version_N/checkpoints/x.ckpt -> …/version_N)."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def write_json(path: str | Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def best_run(logdir: str | Path) -> Path:
    """The finished run under `logdir` (at any depth) with the highest MNIST test accuracy."""
    scored = []
    for results in Path(logdir).rglob("results.json"):
        try:
            content = json.loads(results.read_text())
        except (json.JSONDecodeError, OSError, UnicodeDecodeError):
            continue
        if isinstance(content, dict) and content.get("data") == "mnist" and isinstance(content.get("test_acc"), float):
            scored.append((content["test_acc"], str(results.parent)))
    if not scored:
        raise UserError(logdir, "holds no finished MNIST run (results.json); train one with python -m src.train")
    return Path(max(scored)[1])
