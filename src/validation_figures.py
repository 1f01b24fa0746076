"""ValidationFigures: after each validation epoch, the confusion matrix and the most confident mistakes
in TensorBoard's IMAGES tab, so a run shows which digits it confuses while it trains."""

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from src.data.transforms import denormalise
from src.figures import MISTAKES_SHOWN


class ValidationFigures(pl.Callback):
    """Each batch keeps its `shown` most confident mistakes on the device, chosen by `topk`, and adds to the
    epoch's confusion matrix: nothing is read back to the host until the epoch ends. Under DDP the matrix
    sums every process's share, and the mistakes shown are the most confident of every process's."""

    def __init__(self, shown: int = MISTAKES_SHOWN):
        self.shown = shown
        self.matrix: torch.Tensor | None = None
        self.kept: list[tuple[torch.Tensor, ...]] = []

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.matrix, self.kept = torch.zeros(10, 10, dtype=torch.long, device=pl_module.device), []

    def on_validation_batch_end(self, trainer, pl_module, logits, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.sanity_checking:
            return
        inputs, labels = batch
        confidence, predicted = logits.detach().float().softmax(dim=1).max(dim=1)
        # Counted with index_add_: torch's bincount (torchmetrics' confusion matrix) reads the min and max
        # back to the host on CUDA, twice a batch.
        self.matrix.view(-1).index_add_(0, labels * 10 + predicted, torch.ones_like(labels))
        wrongness = torch.where(predicted != labels, confidence, -1.0)  # right answers sort last
        top = wrongness.topk(min(self.shown, len(labels)))
        self.kept.append((inputs[top.indices], labels[top.indices], predicted[top.indices], top.values))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        # Under DDP every process has validation batches (DigitsDataModule shards so that none is left without),
        # so all of them reach the two collectives below.
        if trainer.sanity_checking or not self.kept:
            return
        matrix = trainer.strategy.reduce(self.matrix, reduce_op="sum")
        mistakes = self._most_confident_mistakes(trainer)
        if trainer.is_global_zero and isinstance(trainer.logger, TensorBoardLogger):
            self._log(trainer, matrix.cpu(), *mistakes)
        self.kept = []

    def _most_confident_mistakes(self, trainer) -> tuple[torch.Tensor, ...]:
        """(inputs, labels, predicted, wrongness) of the epoch's `shown` most confident mistakes over all
        processes. Each pads its own to `shown` with right answers (label 0, predicted 0), which the figure
        leaves out, so that the gathered tensors have one shape."""
        inputs, labels, predicted, wrongness = (torch.cat(parts) for parts in zip(*self.kept, strict=True))
        top = wrongness.topk(min(self.shown, len(wrongness)))
        kept = [inputs[top.indices], labels[top.indices], predicted[top.indices], top.values]
        if trainer.world_size == 1:
            return tuple(kept)
        missing = self.shown - len(top.values)
        kept = [torch.cat([part, part.new_zeros((missing, *part.shape[1:]))]) for part in kept[:3]] + [
            torch.cat([top.values, top.values.new_full((missing,), -1.0)])
        ]
        gathered = [trainer.strategy.all_gather(part).flatten(0, 1) for part in kept]
        top = gathered[3].topk(self.shown)
        return (*(part[top.indices] for part in gathered[:3]), top.values)

    def _log(self, trainer, matrix, inputs, labels, predicted, wrongness) -> None:
        from src.figures import confusion_matrix_figure, mistakes_figure

        images = (denormalise(inputs.float()) * 255).round().to(torch.uint8).squeeze(1).cpu()
        epoch, mistakes = trainer.current_epoch + 1, int(matrix.sum() - matrix.trace())
        experiment, step = trainer.logger.experiment, trainer.global_step
        experiment.add_figure(
            "val/confusion_matrix", confusion_matrix_figure(matrix, f"Validation, epoch {epoch}"), step
        )
        title = f"Epoch {epoch}: {mistakes} validation mistakes, most confident first"
        figure = mistakes_figure(images, labels.cpu(), predicted.cpu(), wrongness.cpu(), title, self.shown)
        experiment.add_figure("val/mistakes", figure, step)
