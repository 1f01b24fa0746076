"""The member CNN of Chris Deotte's 15-CNN Kaggle ensemble (99.757%, "25 Million Images!"), 327,242 parameters.

Chosen by his kernel "How to choose CNN Architecture MNIST": two blocks of conv3-conv3-conv5/stride 2
(the strided 5x5 convolution learns its own pooling), batch norm after every convolution, 40% dropout
after each block, and a 4x4 convolution that reads the last 4x4 map as a whole. Shapes:
28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 4 -> 1.
"""

from torch import nn


def conv_bn(channels_in: int, channels_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    padding = kernel // 2 if stride > 1 else 0
    return [nn.Conv2d(channels_in, channels_out, kernel, stride, padding), nn.ReLU(), nn.BatchNorm2d(channels_out)]


class DeepBnCnn(nn.Module):
    def __init__(self, dropout: float = 0.4):
        super().__init__()
        self.layers = nn.Sequential(
            *conv_bn(1, 32, 3),
            *conv_bn(32, 32, 3),
            *conv_bn(32, 32, 5, stride=2),
            nn.Dropout(dropout),
            *conv_bn(32, 64, 3),
            *conv_bn(64, 64, 3),
            *conv_bn(64, 64, 5, stride=2),
            nn.Dropout(dropout),
            *conv_bn(64, 128, 4),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(128, 10),
        )

    def forward(self, x):
        """[N, 1, 28, 28] float -> logits [N, 10]."""
        return self.layers(x)
