"""DigitsDataModule: MNIST or a Kaggle CSV held in memory as uint8 tensors, served by batched indexing."""

import math
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from src.data.augment import Augmentation
from src.data.kaggle_csv import read_kaggle_csv
from src.data.mnist import ensure_files, load_mnist
from src.data.splits import SOURCES, SPLITS, split_indices, split_seed_of
from src.data.train_batches import EpochOrder, TrainBatches
from src.data.transforms import normalise
from src.errors import UserError


class TensorBatches(torch.utils.data.Dataset):
    """Images and labels indexed a whole batch at a time (the DataLoader calls `__getitems__`)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]


def keep_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collation is already done by `TensorBatches.__getitems__`."""
    return batch


class DigitsDataModule(pl.LightningDataModule):
    def __init__(
        self,
        data: str = "mnist",
        data_dir: str | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        val_fraction: float = 0.1,
        val_split: str = "random",
        seed: int = 0,
        split_seed: int | None = None,
        batch_schedule: dict | None = None,
        augment: dict | None = None,
    ):
        super().__init__()
        if data not in SOURCES:
            raise UserError("--data", f"unknown source {data!r}; choose from {', '.join(SOURCES)}")
        if val_split not in SPLITS:
            raise UserError("val_split", f"unknown split {val_split!r}; choose from {', '.join(SPLITS)}")
        self.save_hyperparameters()
        self.augment = Augmentation.from_recipe(augment)  # training batches only
        self.train_set = self.val_set = self.test_set = None
        self._device_train_set: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def test_description(self) -> str:
        if self.hparams.data == "mnist":
            return f"MNIST test set ({len(self.test_set):,} images)"
        return f"validation split of train.csv ({len(self.test_set):,} images; Kaggle's test.csv has no labels)"

    def prepare_data(self) -> None:
        if self.hparams.data == "mnist":  # fetches missing files once, on one process; setup() reads them
            ensure_files(self.hparams.data_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        images, labels = self._load_training_source()
        split = (self.hparams.val_fraction, self.hparams.val_split, split_seed_of(self.hparams))
        train, val = split_indices(len(labels), *split)
        if len(train) == 0 or (len(val) == 0 and self.hparams.val_fraction > 0):
            source = (
                "MNIST's training set" if self.hparams.data == "mnist" else Path(self.hparams.data_dir) / "train.csv"
            )
            raise UserError(
                source,
                f"{len(labels):,} labelled images leave {len(train)} for training and {len(val)} for validation "
                f"at val_fraction {self.hparams.val_fraction:g}; --val-fraction 0 trains on all",
            )
        self.train_set = TensorBatches(images[train], labels[train])
        self.val_set = TensorBatches(images[val], labels[val])
        if self.hparams.data == "mnist":
            self.test_set = TensorBatches(*load_mnist("test", self.hparams.data_dir))
        else:
            self.test_set = self.val_set

    def _load_training_source(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.hparams.data == "mnist":
            return load_mnist("train", self.hparams.data_dir)
        if not self.hparams.data_dir:
            raise UserError("--data-dir", "--data kaggle needs the folder that holds Kaggle's train.csv")
        csv = Path(self.hparams.data_dir) / "train.csv"
        images, labels = read_kaggle_csv(csv)
        if labels is None:
            raise UserError(csv, "has no label column; training needs Kaggle's labelled train.csv")
        return images, labels

    def state_dict(self) -> dict:
        """Saved in checkpoints: the process count that divided the batch sizes, so that a resume can tell the
        global batch size it was trained with (src/runs.py)."""
        return {"processes": self.trainer.world_size if self.trainer else 1}

    def batch_size_at(self, epoch: int) -> int:
        """The per-process training batch size of `epoch` (0-based), following `batch_schedule`."""
        size = self.hparams.batch_size
        for start, scheduled in sorted((self.hparams.batch_schedule or {}).items()):
            if epoch >= start:
                size = scheduled
        return size

    def train_batches_per_epoch(self, limit: int | float | None = None, processes: int = 1) -> int:
        """The fewest training batches any of `processes` runs in an epoch (the largest scheduled batch)."""
        largest = max([self.hparams.batch_size, *(self.hparams.batch_schedule or {}).values()])
        batches = math.ceil(math.ceil(len(self.train_set) / processes) / largest)  # shards are padded to equal size
        if isinstance(limit, int):
            return max(1, min(batches, limit))
        return max(1, int(batches * limit)) if limit is not None else batches

    # Data is already in memory: worker processes would only add start-up and copying. On a GPU the
    # training set (47 MB of uint8 for MNIST) is copied there once, so no step waits for a host copy.
    def train_dataloader(self) -> TrainBatches:
        trainer = self.trainer
        epoch, rank, world_size = (
            (trainer.current_epoch, trainer.global_rank, trainer.world_size) if trainer else (0, 0, 1)
        )
        order = EpochOrder(len(self.train_set), self.hparams.seed, rank, world_size, epoch)
        images, labels = self.train_set.images, self.train_set.labels
        if trainer is not None and trainer.strategy.root_device != images.device:
            images, labels = self._train_tensors_on(trainer.strategy.root_device)
        size = self.batch_size_at(epoch)
        # Lightning's own count of the epoch's batches done, as its restart leaves it (a new epoch after a
        # stop at an epoch's end). Its loop asks the loader for exactly these batches next.
        done = (lambda: trainer.fit_loop.epoch_loop.batch_progress.current.ready) if trainer else (lambda: 0)
        return TrainBatches(images, labels, size, order, batches_done=done)

    def _train_tensors_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self._device_train_set is None or self._device_train_set[0].device != device:
            self._device_train_set = (self.train_set.images.to(device), self.train_set.labels.to(device))
        return self._device_train_set

    def val_batches_per_epoch(self, processes: int = 1) -> int:
        """The fewest validation batches any of `processes` runs (shards are not padded: some hold one image less)."""
        return math.ceil(max(1, len(self.val_set) // processes) / self.hparams.eval_batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set, self._unpadded_shard(self.val_set))

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set)

    def _unpadded_shard(self, dataset: TensorBatches) -> UnrepeatedDistributedSampler | None:
        # Under DDP, Lightning's DistributedSampler would pad validation with up to world_size - 1
        # duplicates, and val/acc (which picks the best checkpoint) would count them. Lightning's own
        # sampler for prediction shards without padding; the processes may then run one batch more or
        # less, which is safe here: DDP syncs buffers only on the first forward without gradients, and
        # metrics are synced once an epoch. Each process needs one image at least, and a fraction of
        # the batches (--limit-val-batches 0.5) could round to none in one process only: both pad.
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1 or len(dataset) < trainer.world_size:
            return None
        if isinstance(trainer.limit_val_batches, float) and trainer.limit_val_batches < 1.0:
            return None
        return UnrepeatedDistributedSampler(dataset, trainer.world_size, trainer.global_rank, shuffle=False)

    def _eval_loader(self, dataset: TensorBatches, sampler: UnrepeatedDistributedSampler | None = None) -> DataLoader:
        # Its own generator: each pass draws a seed, which must not come from the stream that training's
        # augmentation and dropout draw from (a resumed run would otherwise draw differently).
        batch_size = self.hparams.eval_batch_size
        return DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, collate_fn=keep_batch, generator=torch.Generator()
        )

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        inputs = normalise(images)
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            inputs = self.augment(inputs)
        return inputs, labels
