"""Which data a recipe trains on and how its labelled images split into training and validation.

Apart from the DataModule so that checking a recipe does not import Lightning (3 s of start-up).
"""

import torch

SOURCES = ("mnist", "kaggle")
SPLITS = ("head", "tail", "random")


def split_seed_of(hparams) -> int | None:
    """The seed of a run's random split (a DataModule's hyperparameters): its split_seed, else its seed."""
    return hparams.get("seed") if hparams.get("split_seed") is None else hparams["split_seed"]


def split_indices(count: int, val_fraction: float, how: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic train/validation indices: the first or last `val_fraction`, or a seeded draw."""
    val_count = round(count * val_fraction)
    if how == "random":
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.arange(count)
    if how == "head":
        return order[val_count:], order[:val_count]
    return order[: count - val_count], order[count - val_count :]
