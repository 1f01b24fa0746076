"""The callbacks and checkpoint writer a training run uses, built from its recipe."""

import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import (
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.plugins.io import TorchCheckpointIO

from src.atomic import WriteError, atomic_save
from src.config import Recipe, checkpoint_monitor, early_stopping_args
from src.ema import EmaWeightAveraging
from src.errors import UserError
from src.interruption import SaveOnInterrupt
from src.metrics import MONITOR_MODES
from src.validation_figures import ValidationFigures


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes beside the target and renames. Lightning's own "atomic" save stages the file in the
    system temp dir and moves it, which is a copy (not atomic) when that is another filesystem."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        try:
            atomic_save(path, lambda f: torch.save(checkpoint, f))
        except WriteError as e:  # a full disk, say: the previous file is untouched
            raise UserError(path, f"{e.problem}; the previous checkpoint is intact") from None
        except RuntimeError as e:  # torch's zip writer reports a full disk as "[enforce fail ...] unexpected pos"
            raise UserError(
                path, f"could not be written ({str(e).splitlines()[0][:100]}); the previous checkpoint is intact"
            ) from None


class RunCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint that keeps its record when the run directory was moved or copied before --resume.

    Lightning's forgets the best checkpoint when the folder changes: the next better epoch left a second
    best-*.ckpt beside the first, and a run with no better epoch looked for its best in the old folder.
    A new run resumed from a loose checkpoint starts a fresh record of its own."""

    def load_state_dict(self, state_dict: dict) -> None:
        saved_dir = state_dict.get("dirpath")
        if saved_dir and self.dirpath and saved_dir != self.dirpath:
            state_dict = _moved_to(state_dict, Path(saved_dir), Path(self.dirpath))
            if state_dict is None:
                self.best_model_path = ""  # the next epoch is the best
                return
        super().load_state_dict(state_dict)


class LastCheckpoint(RunCheckpoint):
    """last.ckpt, rewritten every epoch. A class of its own because Lightning keys a callback's saved state
    by class, monitor and mode, not filename: a run without validation has no monitor for its best
    checkpoint either, and two such callbacks of one class stop the Trainer from starting."""


def _moved_to(state: dict, old: Path, new: Path) -> dict | None:
    """`state` with its checkpoint paths in `old` moved to `new` if those files are there; else None."""

    def moved(path: str | None) -> str | None:
        return str(new / Path(path).name) if path and Path(path).parent == old else path

    best_k_models = {moved(path): score for path, score in state.get("best_k_models", {}).items()}
    best = moved(state["best_model_path"])
    if not all(Path(path).is_file() for path in [*best_k_models, best] if path):
        return None
    path_keys = ("kth_best_model_path", "last_model_path")
    moved_paths = {key: moved(state[key]) for key in path_keys if key in state}
    return {**state, **moved_paths, "dirpath": str(new), "best_k_models": best_k_models, "best_model_path": best}


class RunEarlyStopping(EarlyStopping):
    """An EarlyStopping whose decision holds after --resume. Lightning restores its state but not the trainer's
    should_stop, so a run resumed after it had stopped (a stop requested at that epoch's end, say) trained one
    more epoch than the unbroken run."""

    def on_train_start(self, trainer, pl_module) -> None:
        if self.stopped:
            trainer.should_stop = True

    @property
    def stopped(self) -> bool:
        return self.stopping_reason != EarlyStoppingReason.NOT_STOPPED


class StopOnNonFiniteLoss(pl.Callback):
    """A NaN or infinite training loss ends the run at the end of its epoch (one check per epoch, no
    per-step sync), before validation and checkpointing can save the broken weights."""

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._check(trainer, pl_module)

    def _check(self, trainer, pl_module) -> None:
        loss_sum = pl_module.train_metrics.loss_sum
        if not torch.isfinite(loss_sum):
            raise UserError(
                "training",
                f"the loss became {loss_sum.item()} in epoch {trainer.current_epoch + 1}; "
                f"try a lower learning rate than {pl_module.hparams.lr:g} (--lr)",
            )


class TrainThroughput(pl.Callback):
    """Wall seconds spent in training batches (data fetch included, validation excluded) and images seen.
    Both travel in checkpoints, so a resumed run reports the whole run's, not its last process's.

    A GPU runs behind the host: each timed span (an epoch's batches) starts and ends with a device sync,
    and none happens in between, so the clock counts the GPU's work without a sync per step."""

    def __init__(self):
        self.seconds = 0.0
        self.images = 0
        self.first_step_at = None  # wall-clock time.time() of the first training batch
        self._last = None

    def _sync(self, trainer: "pl.Trainer") -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._sync(trainer)
        self._last = time.perf_counter()

    on_train_start = on_train_epoch_start  # a run resumed mid-epoch starts without an epoch start

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.first_step_at is None:
            self.first_step_at = time.time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx + 1 >= trainer.num_training_batches:  # the span's end: count the work still queued
            self._sync(trainer)
        now = time.perf_counter()
        self.seconds += now - self._last
        self._last = now
        self.images += len(batch[1]) * trainer.world_size

    def state_dict(self) -> dict:
        return {"seconds": self.seconds, "images": self.images}

    def load_state_dict(self, state: dict) -> None:
        self.seconds, self.images = state["seconds"], state["images"]

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def build_callbacks(recipe: Recipe, run_dir: Path | None) -> list[pl.Callback]:
    """Progress, throughput and early stopping; checkpoints and LR logging unless `run_dir` is None."""
    mode = MONITOR_MODES[recipe.monitor]
    callbacks = [TQDMProgressBar(refresh_rate=recipe.progress_refresh), TrainThroughput(), StopOnNonFiniteLoss()]
    if recipe.ema_decay is not None:
        callbacks.append(EmaWeightAveraging(recipe.ema_decay))
    if run_dir is not None:
        callbacks += [
            LearningRateMonitor(logging_interval="epoch"),
            ValidationFigures(),
        ]
        # `auto_insert_metric_name=False`: Lightning would otherwise name the file best-epochepoch=004.ckpt.
        callbacks.append(
            RunCheckpoint(
                dirpath=run_dir / "checkpoints",
                filename="best-epoch{epoch:03d}",
                monitor=checkpoint_monitor(recipe),
                mode=mode,
                save_top_k=1,
                auto_insert_metric_name=False,
            )
        )
        # Since Lightning 2.6, `save_last=True` writes last.ckpt only in epochs that save a best checkpoint
        # too: after the best epoch it went stale, and --resume repeated every epoch since. This unmonitored
        # one rewrites it every epoch; being after the best one, its file holds that one's updated state.
        callbacks.append(LastCheckpoint(dirpath=run_dir / "checkpoints", filename="last", enable_version_counter=False))
    if recipe.early_stopping is not None:
        callbacks.append(
            RunEarlyStopping(
                monitor=recipe.monitor,
                mode=mode,
                check_finite=True,
                **early_stopping_args(recipe),
            )
        )
    if run_dir is not None:  # after EarlyStopping: at an epoch's end it reads whether training stops there
        callbacks.append(SaveOnInterrupt(run_dir / "checkpoints"))
    return callbacks
