"""Mean loss and accuracy over an epoch, as one torchmetrics Metric (synced across DDP processes)."""

import torch
from torchmetrics import Metric


class LossAndAccuracy(Metric):
    """Three running sums; accuracy is correct / N over the whole epoch, never a mean of batch means.

    Written by hand because torchmetrics' MeanMetric + MulticlassAccuracy cost several times more
    per update (input checks) at batch 32, and MeanMetric's NaN check syncs the GPU every step.
    """

    full_state_update = False

    def __init__(self):
        super().__init__()
        # float32, not float64: Apple's MPS has no float64, and an epoch of 1,875 batches loses 3e-7 of its mean
        self.add_state("loss_sum", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, labels: torch.Tensor, mean_loss: torch.Tensor) -> None:
        """logits [N, 10], labels [N], mean_loss: the batch's mean loss (a scalar)."""
        count = labels.numel()
        self.loss_sum.add_(mean_loss.detach().float(), alpha=count)
        self.correct.add_((logits.detach().argmax(dim=1) == labels).sum())
        self.count.add_(count)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss, accuracy in [0, 1])."""
        count = self.count.clamp(min=1)
        return self.loss_sum / count, self.correct.float() / count

    def continue_from(self, sums: dict[str, torch.Tensor]) -> None:
        """Resume an epoch from `metric_state` saved part-way through it."""
        for name, value in sums.items():
            getattr(self, name).copy_(value)
        if self.count > 0:
            self._update_count += 1  # torchmetrics warns when compute() comes before any update()
