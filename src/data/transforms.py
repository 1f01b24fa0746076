"""Batch transforms that run on whatever device the batch lives on."""

import torch

# Mean and standard deviation of MNIST's 60,000 training images, pixels scaled to [0, 1].
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float32 [N, 1, 28, 28], standardised with MNIST's statistics."""
    return ((images.unsqueeze(1).float() / 255.0) - MNIST_MEAN) / MNIST_STD


def denormalise(inputs: torch.Tensor) -> torch.Tensor:
    """The inverse of `normalise`, clamped to [0, 1] for display."""
    return (inputs * MNIST_STD + MNIST_MEAN).clamp(0.0, 1.0)
