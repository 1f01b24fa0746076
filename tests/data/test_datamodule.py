from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DistributedSampler

from src.data.datamodule import DigitsDataModule
from src.data.transforms import MNIST_MEAN, MNIST_STD
from tests.conftest import KAGGLE_DIR


def test_batches_are_uint8_slices_and_become_normalised_floats():
    dm = DigitsDataModule(batch_size=32, val_fraction=0.1, val_split="tail")
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (54000, 6000, 10000)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (32, 28, 28) and images.dtype == torch.uint8 and labels.shape == (32,)
    inputs, same_labels = dm.on_after_batch_transfer((images, labels), 0)
    assert inputs.shape == (32, 1, 28, 28) and inputs.dtype == torch.float32
    assert torch.equal(same_labels, labels)
    expected = (images[0, 14, 14].item() / 255 - MNIST_MEAN) / MNIST_STD
    assert inputs[0, 0, 14, 14].item() == pytest.approx(expected, abs=1e-6)


def test_training_batches_cover_the_split_once_per_epoch_in_a_new_order():
    dm = DigitsDataModule(batch_size=1000, val_fraction=0.1, val_split="tail")
    dm.setup()
    loader = dm.train_dataloader()
    first = torch.cat([labels for _, labels in loader])
    loader.sampler.set_epoch(1)  # what Lightning does at each epoch's start
    second = torch.cat([labels for _, labels in loader])
    assert len(first) == 54000
    assert torch.equal(first.sort().values, dm.train_set.labels.sort().values)
    assert not torch.equal(first, second)


def test_batch_schedule_changes_the_batch_size_per_epoch():
    dm = DigitsDataModule(batch_size=1000, val_fraction=1 / 6, val_split="head", batch_schedule={10: 10000})
    dm.setup()
    assert [dm.batch_size_at(epoch) for epoch in (0, 9, 10, 12)] == [1000, 1000, 10000, 10000]
    assert dm.train_batches_per_epoch() == 5  # 50,000 images at 10,000: what log_every_n_steps must not exceed
    assert dm.train_batches_per_epoch(processes=2) == 3  # each DDP process: 25,000 images at 10,000
    assert (dm.val_batches_per_epoch(), dm.val_batches_per_epoch(processes=3)) == (10, 4)  # 10,000; 3,333 at 1,000


def test_on_an_accelerator_training_batches_come_from_one_copy_on_its_device():
    dm = DigitsDataModule(batch_size=32, val_fraction=0.1, val_split="tail")
    dm.setup()
    # "meta" stands in for a GPU: tensors there have shapes and a device but no memory.
    accelerator = SimpleNamespace(root_device=torch.device("meta"))
    progress = SimpleNamespace(
        epoch_loop=SimpleNamespace(batch_progress=SimpleNamespace(current=SimpleNamespace(ready=0)))
    )
    dm.trainer = SimpleNamespace(current_epoch=0, global_rank=0, world_size=1, strategy=accelerator, fit_loop=progress)
    first, second = dm.train_dataloader(), dm.train_dataloader()
    images, labels = next(iter(first))
    assert images.device.type == labels.device.type == "meta" and images.shape == (32, 28, 28)
    assert first.images is second.images  # copied once, not per epoch
    assert dm.train_set.images.device.type == "cpu"  # validation and tests still read the host copy


def test_under_ddp_validation_is_sharded_without_duplicates_unless_that_could_leave_a_process_without():
    dm = DigitsDataModule(data="kaggle", data_dir=str(KAGGLE_DIR), val_fraction=0.1005, eval_batch_size=50)
    dm.setup()
    assert len(dm.val_set) == 201

    def shards(world_size: int, limit: int | float = 1.0) -> list[list[int] | None]:
        """Each process's validation indices; None where Lightning will put in its padding sampler."""
        indices = []
        for rank in range(world_size):
            dm.trainer = SimpleNamespace(world_size=world_size, global_rank=rank, limit_val_batches=limit)
            sampler = dm.val_dataloader().sampler
            indices.append(list(sampler) if isinstance(sampler, DistributedSampler) else None)
        return indices

    halves = shards(2)
    assert [len(half) for half in halves] == [101, 100] and sorted(halves[0] + halves[1]) == list(range(201))
    # Lightning then puts its padding DistributedSampler in: 101 + 101, every process as many batches.
    assert shards(2, limit=0.4) == [None, None]  # 3 and 2 batches would round to 1 and 0
    assert shards(2, limit=2) == halves  # a batch count: each process runs min(2, its own)
    assert shards(300) == [None] * 300  # 201 images cannot give every process one


@pytest.mark.parametrize("data, labelled", [("mnist", 60000), ("kaggle", 2000)])
def test_val_fraction_0_trains_on_every_labelled_image(data, labelled):
    dm = DigitsDataModule(data=data, data_dir=str(KAGGLE_DIR) if data == "kaggle" else None, val_fraction=0.0)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set)) == (labelled, 0)
    assert len(dm.test_set) == (10000 if data == "mnist" else 0)  # Kaggle's test split was its validation split
