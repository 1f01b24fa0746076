"""Architectures by name, with the notebook each comes from."""

from dataclasses import dataclass

from torch import nn

from src.errors import UserError
from src.models.bn_cnn import BnCnn
from src.models.deep_bn_cnn import DeepBnCnn
from src.models.deep_cnn import DeepCnn
from src.models.fast_cnn import FastCnn
from src.models.keras_cnn import KerasCnn
from src.models.lenet5 import LeNet5
from src.models.m3_cnn import M3Cnn
from src.models.mlp import Mlp
from src.models.simple_cnn import SimpleCnn


@dataclass(frozen=True)
class Architecture:
    builder: type[nn.Module]
    notebook: str
    reported_accuracy: float | None  # the notebook's own figure, percent


ARCHITECTURES = {
    "bn_cnn": Architecture(BnCnn, "1: small CNN with batch norm (MNIST)", 98.89),
    "keras_cnn": Architecture(KerasCnn, "2: the classic Keras MNIST example (MNIST)", 99.04),
    "deep_cnn": Architecture(DeepCnn, "3: deeper CNN with augmentation (Kaggle CSV)", 99.14),
    "mlp": Architecture(Mlp, "4: fully connected (MNIST)", 96.0),
    "simple_cnn": Architecture(SimpleCnn, "4: one convolution (MNIST)", 96.0),
    "lenet5": Architecture(LeNet5, "5: LeNet-5 (Kaggle CSV)", 97.19),
    "fast_cnn": Architecture(FastCnn, "ours: fastest to 99% (configs/fast.yaml)", None),
    "deep_bn_cnn": Architecture(DeepBnCnn, "ours: member CNN of a 99.757% Kaggle ensemble", None),
    "m3_cnn": Architecture(M3Cnn, "ours: model M3 of a 99.87% published ensemble (An et al.)", None),
}
INITS = ("torch", "keras")


def build_model(name: str, init: str = "torch") -> nn.Module:
    """A fresh architecture by name; init "keras" uses glorot_uniform weights and zero biases."""
    if name not in ARCHITECTURES:
        raise UserError("--model", f"unknown model {name!r}; choose from {', '.join(ARCHITECTURES)}")
    if init not in INITS:
        raise UserError("init", f"unknown initialisation {init!r}; choose from {', '.join(INITS)}")
    model = ARCHITECTURES[name].builder()
    if init == "keras":
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    return model


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters plus BatchNorm running statistics, as Keras counts them."""
    trainable = sum(p.numel() for p in model.parameters())
    running = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return trainable + running
