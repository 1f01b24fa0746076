"""Weight averaging for recipes with `ema_decay`: an exponential moving average with a warm-up, kept on
the training device, that Lightning swaps in for validation, checkpoints and the end of training."""

import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch.optim.swa_utils import AveragedModel


class WarmedUpEma(AveragedModel):
    """An exponential moving average of a model's weights and buffers whose decay warms up as
    min(decay, (1 + n) / (10 + n)) over its first n updates, as TensorFlow's ExponentialMovingAverage(num_updates=...)
    does. Lightning's EMAWeightAveraging uses the full decay from step 0, so for the first ~1/(1 - decay) steps the
    average is mostly the random initial weights and validation reads chance.

    Written over AveragedModel.update_parameters, which reads its count (a device tensor) twice per update: on a GPU
    each read waits for every queued kernel. This keeps the count on the host as well, reading it from the
    device once after construction or loading. Its update is one foreach kernel per dtype where Lightning's
    is a Python loop over tensors: 0.36 ms instead of 1.1 ms per step for deep_bn_cnn on a 2-core CPU."""

    def __init__(self, model: torch.nn.Module, decay: float, device: torch.device):
        super().__init__(model, device=device, use_buffers=True)
        self.decay = decay
        self._updates: int | None = None  # n_averaged, on the host
        # Fixed for the average's life (loading copies into these tensors): floats are averaged, integer
        # buffers (batch norm's num_batches_tracked) follow the model.
        self._floating = [t.is_floating_point() for t in tensors_of(self.module)]
        self._averaged_floats, self._averaged_counters = split(tensors_of(self.module), self._floating)

    def load_state_dict(self, *args, **kwargs):
        self._updates = None
        return super().load_state_dict(*args, **kwargs)

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        if self._updates is None:
            self._updates = int(self.n_averaged)
        current_floats, current_counters = split([t.detach() for t in tensors_of(model)], self._floating)
        if self._updates == 0:
            torch._foreach_copy_(self._averaged_floats, current_floats)
        else:
            n = self._updates
            torch._foreach_lerp_(self._averaged_floats, current_floats, 1 - min(self.decay, (1 + n) / (10 + n)))
        if current_counters:
            torch._foreach_copy_(self._averaged_counters, current_counters)
        self._updates += 1
        self.n_averaged += 1


def tensors_of(module: torch.nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]


def split(tensors: list[torch.Tensor], chosen: list[bool]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(the tensors where `chosen`, the others)."""
    pairs = list(zip(tensors, chosen, strict=True))
    return [t for t, c in pairs if c], [t for t, c in pairs if not c]


class EmaWeightAveraging(WeightAveraging):
    """Lightning's WeightAveraging (which swaps the average in for validation, checkpoints and the end of
    training) with a WarmedUpEma on the training device. Lightning's builds its average in `setup`, before the
    strategy moves the model to the GPU, so on a GPU the average stayed on the CPU and every step copied each
    weight to the host and waited for it."""

    def __init__(self, decay: float):
        super().__init__()
        self.decay = decay

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            self._average_model = WarmedUpEma(pl_module, self.decay, trainer.strategy.root_device)
