"""DigitClassifier: the one LightningModule (loss, optimizer, schedule, metrics, logging) around any architecture."""

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchvision.utils import make_grid

from src.data.transforms import denormalise
from src.metrics import MONITOR_MODES
from src.models.epoch_metrics import LossAndAccuracy
from src.models.optim import build_optimizer, build_scheduler, check_resumed_length
from src.models.registry import build_model, count_parameters

SAMPLE_GRID = 64  # training inputs shown in TensorBoard once, after augmentation


class DigitClassifier(pl.LightningModule):
    """Hyperparameters are plain values (architecture name included), so any checkpoint loads
    with `DigitClassifier.load_from_checkpoint(path, weights_only=True)`."""

    def __init__(
        self,
        arch: str = "lenet5",
        optimizer: str = "adam",
        lr: float = 1e-3,
        optimizer_args: dict | None = None,
        scheduler: str = "none",
        scheduler_args: dict | None = None,
        monitor: str = "val/loss",
        label_smoothing: float = 0.0,
        init: str = "torch",
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = build_model(arch, init)
        self.parameter_count = count_parameters(self.net)
        self.train_metrics, self.val_metrics, self.test_metrics = (
            LossAndAccuracy(),
            LossAndAccuracy(),
            LossAndAccuracy(),
        )
        self.plateau: ReduceLROnPlateau | None = None  # stepped here, not by Lightning: see configure_optimizers
        self._plateau_state: dict | None = None
        # A resumed checkpoint's LR schedules: Lightning loads them after configure_optimizers.
        self._scheduler_states: list[dict] = []

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets `_current_fx_name` around every hook, ~42 times a training step; nn.Module's
        # __setattr__ (parameter/module/buffer checks) made that ~60 us of a ~2 ms lenet5 step at batch 32.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Normalised images [N, 1, 28, 28] -> logits [N, 10]."""
        return self.net(inputs)

    def stage_metrics(self, stage: str) -> LossAndAccuracy:
        return getattr(self, f"{stage}_metrics")

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        inputs, labels = batch
        if self.global_step == 0 and batch_idx == 0:
            self._log_sample_inputs(inputs)
        logits = self(inputs)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)
        self.train_metrics.update(logits, labels, loss)
        return loss

    def _eval_step(self, stage: str, batch) -> torch.Tensor:
        inputs, labels = batch
        logits = self(inputs)
        self.stage_metrics(stage).update(logits, labels, F.cross_entropy(logits, labels))
        return logits

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step("val", batch)  # the logits, for ValidationFigures

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step("test", batch)

    # Metrics are logged once per epoch, never per step: no host sync in the training loop.
    def _log_epoch(self, stage: str) -> None:
        metrics = self.stage_metrics(stage)
        loss, accuracy = metrics.compute()  # synced across processes by torchmetrics
        metrics.reset()
        self.log_dict({f"{stage}/loss": loss, f"{stage}/acc": accuracy}, prog_bar=stage != "train")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")
        monitored = self.trainer.callback_metrics.get(self.hparams.monitor)
        if self.plateau is not None and monitored is not None:  # (no val/ point after a cut validation)
            self.plateau.step(monitored)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def on_train_start(self) -> None:
        # The sanity check's few validation batches must not count towards epoch 1.
        self.val_metrics.reset()

    # A checkpoint cut mid-epoch (Ctrl-C, SIGTERM) carries the epoch's running training sums, so that
    # the resumed epoch reports all its batches, not only those after the cut. Lightning skips
    # on_train_epoch_start when it resumes mid-epoch, and calls it when an epoch starts afresh: there the
    # carried sums are dropped. (Under DDP, rank 0's
    # sums are carried to every process: exact counts, the loss and accuracy of rank 0's share.)
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["train_epoch_sums"] = {
            name: state.clone() for name, state in self.train_metrics.metric_state.items()
        }
        if self.plateau is not None:
            checkpoint["plateau_scheduler"] = self.plateau.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.train_metrics.continue_from(checkpoint.get("train_epoch_sums", {}))
        # Checkpoints before 2026-12-02 hold it in Lightning's lr_schedulers (one epoch behind).
        older = [state for state in checkpoint.get("lr_schedulers", []) if "num_bad_epochs" in state]
        self._plateau_state = checkpoint.get("plateau_scheduler") or next(iter(older), None)
        self._scheduler_states = checkpoint.get("lr_schedulers", [])

    def on_train_epoch_start(self) -> None:
        self.train_metrics.reset()

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = build_optimizer(hp.optimizer, self.parameters(), hp.lr, hp.optimizer_args or {})
        scheduler = build_scheduler(
            hp.scheduler,
            optimizer,
            hp.scheduler_args or {},
            mode=MONITOR_MODES[hp.monitor],
            total_steps=self.trainer.estimated_stepping_batches,
            epochs=self.trainer.max_epochs,
        )
        if scheduler is not None and isinstance(scheduler["scheduler"], ReduceLROnPlateau):
            # Lightning steps a plateau scheduler after the epoch's checkpoint is saved, and skips that step
            # when it resumes from that checkpoint (its fit loop), so a resumed run's LR dropped an epoch late.
            # Stepped in on_train_epoch_end instead, before the checkpoint callbacks, and saved with the model.
            self.plateau = scheduler["scheduler"]
            if self._plateau_state is not None:
                self.plateau.load_state_dict(self._plateau_state)
            return optimizer
        if scheduler is None:
            return optimizer
        for saved in self._scheduler_states:
            check_resumed_length(scheduler["scheduler"], saved)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _log_sample_inputs(self, inputs: torch.Tensor) -> None:
        if isinstance(self.logger, TensorBoardLogger):
            grid = make_grid(denormalise(inputs[:SAMPLE_GRID].float()), nrow=8, pad_value=0.5)
            self.logger.experiment.add_image("train/inputs", grid, self.global_step)
