"""The objects a recipe describes: its DigitsDataModule and its DigitClassifier."""

import torch

from src.config import Recipe
from src.data.datamodule import DigitsDataModule
from src.models.classifier import DigitClassifier


def make_datamodule(recipe: Recipe, processes: int = 1) -> DigitsDataModule:
    """The recipe's DigitsDataModule; batch sizes are per process."""
    return DigitsDataModule(
        data=recipe.data,
        data_dir=recipe.data_dir,
        batch_size=recipe.batch_size // processes,
        eval_batch_size=recipe.eval_batch_size,
        val_fraction=recipe.val_fraction,
        val_split=recipe.val_split,
        seed=recipe.seed,
        split_seed=recipe.split_seed,
        batch_schedule={epoch: size // processes for epoch, size in (recipe.batch_schedule or {}).items()},
        augment=recipe.augment,
    )


def make_classifier(recipe: Recipe, memory_format: str = "contiguous") -> DigitClassifier:
    """The recipe's DigitClassifier (architecture, loss, optimizer, schedule), its weights laid out in
    `memory_format` (the hardware plan's "channels_last" or "contiguous"; checkpoints load either way)."""
    classifier = DigitClassifier(
        arch=recipe.model,
        optimizer=recipe.optimizer,
        lr=recipe.lr,
        optimizer_args=recipe.optimizer_args,
        scheduler=recipe.scheduler,
        scheduler_args=recipe.scheduler_args,
        monitor=recipe.monitor,
        label_smoothing=recipe.label_smoothing,
        init=recipe.init,
    )
    lay_out(classifier, memory_format)
    if recipe.compile:
        classifier.net.compile()  # in place: the state_dict keys stay those of the plain module
    return classifier


def lay_out(module: torch.nn.Module, memory_format: str) -> torch.nn.Module:
    """`module`, its 4-d weights converted in place to `memory_format` ("channels_last" or "contiguous")."""
    return module.to(memory_format=torch.channels_last if memory_format == "channels_last" else torch.contiguous_format)
