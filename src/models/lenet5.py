"""LeNet-5 with ReLU and max pooling, as in notebook 5 (SEEDS.md §5): 61,706 parameters."""

from torch import nn


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),  # 'same' padding keeps 28x28
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        )

    def forward(self, x):
        """[N, 1, 28, 28] float -> logits [N, 10]."""
        return self.classifier(self.features(x))
