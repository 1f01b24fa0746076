"""The figures evaluation and prediction write: confusion matrix, image grids, training curves."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from src.atomic import atomic_save  # noqa: E402

# An image grid's tile, in pixels: the 28x28 image with a margin each side, then room for its caption.
TILE_MARGIN, CAPTION_HEIGHT = 2, 12
TILE_WIDTH, TILE_HEIGHT = 28 + 2 * TILE_MARGIN, 28 + CAPTION_HEIGHT
MISTAKES_SHOWN = 32


def save_figure(figure, path: str | Path) -> None:
    """Write a PNG atomically and release the figure."""
    atomic_save(path, lambda f: figure.savefig(f, format="png", dpi=120, bbox_inches="tight"))
    plt.close(figure)


def confusion_matrix_figure(matrix: torch.Tensor, title: str):
    """matrix [10, 10]: rows are true digits, columns predicted."""
    figure, axes = plt.subplots(figsize=(6.5, 5.5))
    shown = axes.imshow(matrix.numpy(), cmap="Blues")
    figure.colorbar(shown, ax=axes)
    limit = matrix.max().item() / 2
    for true in range(10):
        for predicted in range(10):
            count = int(matrix[true, predicted])
            colour = "white" if count > limit else "black"
            axes.text(predicted, true, str(count), ha="center", va="center", fontsize=7, color=colour)
    axes.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true", title=title)
    return figure


def image_grid_figure(images: torch.Tensor, captions: list[str], title: str, columns: int = 8):
    """images uint8 [N, 28, 28] (white ink on black), one caption under each. One mosaic in one axes:
    a subplot per image took 0.5-0.7 s for 32 images, too slow to draw after every validation epoch."""
    rows = max(1, -(-len(images) // columns))
    mosaic = np.full((rows * TILE_HEIGHT, columns * TILE_WIDTH), 255, dtype=np.uint8)
    for index, image in enumerate(images.numpy()):
        top, left = (index // columns) * TILE_HEIGHT, (index % columns) * TILE_WIDTH + TILE_MARGIN
        mosaic[top : top + 28, left : left + 28] = image
    figure, axes = plt.subplots(figsize=(columns * 1.3, rows * 1.55 + 0.4))
    axes.imshow(mosaic, cmap="gray", vmin=0, vmax=255)
    axes.axis("off")
    for index, caption in enumerate(captions[: len(images)]):
        x = (index % columns) * TILE_WIDTH + TILE_WIDTH / 2
        y = (index // columns) * TILE_HEIGHT + 28 + CAPTION_HEIGHT / 2
        axes.text(x, y, caption, ha="center", va="center", fontsize=7)
    figure.suptitle(title)
    return figure


def mistakes_figure(images, labels, predicted, confidence, title: str, shown: int = MISTAKES_SHOWN):
    """The `shown` most confident mistakes: images uint8 [N, 28, 28], labels, predicted digits and the
    confidence of each prediction [N], on the CPU; captioned "true 4 -> 9 (97%)"."""
    wrong = (predicted != labels).nonzero().flatten()
    worst = wrong[confidence[wrong].argsort(descending=True)][:shown]
    captions = [
        f"true {t} -> {p} ({c:.0%})"
        for t, p, c in zip(labels[worst].tolist(), predicted[worst].tolist(), confidence[worst].tolist(), strict=True)
    ]
    return image_grid_figure(images[worst], captions, title)


def curves_figure(scalars: dict[str, list[tuple[int, float]]], title: str):
    """Loss and accuracy per epoch; scalars maps a tag (train/loss, val/acc...) to (epoch, value) pairs."""
    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(10, 3.8))
    for tag, points in sorted(scalars.items()):
        axes = loss_axes if tag.endswith("loss") else acc_axes
        epochs, values = zip(*points, strict=True)
        axes.plot(epochs, values, marker="o", markersize=3, label=tag)
    for axes, name in ((loss_axes, "loss"), (acc_axes, "accuracy")):
        axes.set(xlabel="epoch", ylabel=name)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    return figure
