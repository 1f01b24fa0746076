"""Fully connected network, notebook 4 (SEEDS.md §4): 784-512-256-128-32-10, 570,602 parameters."""

from torch import nn


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        widths = [28 * 28, 512, 256, 128, 32]
        layers: list[nn.Module] = [nn.Flatten()]
        for width_in, width_out in zip(widths, widths[1:], strict=False):
            layers += [nn.Linear(width_in, width_out), nn.ReLU()]
        self.layers = nn.Sequential(*layers, nn.Linear(widths[-1], 10))

    def forward(self, x):
        """[N, 1, 28, 28] float -> logits [N, 10]."""
        return self.layers(x)
