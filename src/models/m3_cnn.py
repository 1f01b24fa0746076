"""Model M3 of An, Lee, Park, Yang and So (2020), "An Ensemble of Simple Convolutional Neural Network
Models for MNIST Digit Recognition" (arXiv:2008.10400), whose majority vote of three such models (3x3, 5x5
and 7x7 kernels) reaches 99.87% and whose two-layer ensemble of them reaches 99.91%.

Ten 3x3 convolutions without padding or pooling, each followed by batch norm and ReLU, widening by 16
channels a layer (32 -> 176) as the map shrinks by 2 (28 -> 8); one linear layer reads the whole 8x8
map, with batch norm on the logits. 1,126,280 parameters as Keras counts them (with the running
statistics). The paper trained 150 epochs and kept the epoch best on the test set; configs/m3_cnn.yaml
trains 40 and selects on the validation split instead.
"""

from torch import nn


def conv_bn_relu(channels_in: int, channels_out: int) -> list[nn.Module]:
    return [nn.Conv2d(channels_in, channels_out, 3, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU()]


class M3Cnn(nn.Module):
    def __init__(self, widths: tuple[int, ...] = tuple(range(32, 177, 16))):
        super().__init__()
        layers, channels = [], 1
        for width in widths:
            layers += conv_bn_relu(channels, width)
            channels = width
        side = 28 - 2 * len(widths)
        self.layers = nn.Sequential(
            *layers,
            nn.Flatten(),
            nn.Linear(channels * side * side, 10, bias=False),
            nn.BatchNorm1d(10),
        )

    def forward(self, x):
        """[N, 1, 28, 28] float -> logits [N, 10]."""
        return self.layers(x)
