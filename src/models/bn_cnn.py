"""Small CNN with batch norm, notebook 1 (SEEDS.md §1): 316,602 parameters (Keras counts BN's 4 vectors)."""

from torch import nn


class BnCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(32, eps=1e-3, momentum=0.01),  # Keras' momentum 0.99 is torch's 0.01
            nn.Conv2d(32, 16, 3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * 11 * 11, 160),
            nn.ReLU(),
            nn.Linear(160, 10),
        )

    def forward(self, x):
        """[N, 1, 28, 28] float -> logits [N, 10]."""
        return self.layers(x)
