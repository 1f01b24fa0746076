import torch

from src.data.train_batches import EpochOrder, TrainBatches

IMAGES = torch.arange(10 * 28 * 28, dtype=torch.int32).reshape(10, 28, 28).to(torch.uint8)
LABELS = torch.arange(10)


def epoch_labels(loader: TrainBatches) -> list[list[int]]:
    return [labels.tolist() for _, labels in loader]


def draws_per_batch(loader: TrainBatches) -> list[tuple[float, ...]]:
    """What augmentation would draw from torch's generator for each batch, as it reaches the device."""
    torch.manual_seed(123)  # whatever was drawn before must not matter
    return [tuple(torch.rand(4).tolist()) for _ in loader]


def test_each_epoch_has_its_own_order_and_the_same_one_for_the_same_seed():
    orders = [EpochOrder(10, seed=3), EpochOrder(10, seed=3), EpochOrder(10, seed=4)]
    assert torch.equal(orders[0].indices(), orders[1].indices())
    assert not torch.equal(orders[0].indices(), orders[2].indices())
    first = orders[0].indices()
    orders[0].set_epoch(1)
    assert not torch.equal(first, orders[0].indices())
    assert sorted(first.tolist()) == list(range(10))


def test_processes_get_disjoint_shards_of_equal_length():
    shards = [EpochOrder(10, seed=0, rank=rank, world_size=4).indices() for rank in range(4)]
    assert [len(s) for s in shards] == [3, 3, 3, 3]  # padded like DistributedSampler: 12 slots for 10 images
    assert set(torch.cat(shards).tolist()) == set(range(10))
    assert len(set(torch.cat(shards[:2]).tolist())) == 6


def test_batches_are_slices_of_the_images_and_labels_in_that_order():
    loader = TrainBatches(IMAGES, LABELS, batch_size=4, sampler=EpochOrder(10, seed=0))
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and [len(labels) for _, labels in batches] == [4, 4, 2]
    order = EpochOrder(10, seed=0).indices()
    assert torch.equal(torch.cat([labels for _, labels in batches]), order)
    images, labels = batches[0]
    assert images.dtype == torch.uint8 and torch.equal(images, IMAGES[labels])


def test_a_resumed_epoch_continues_with_its_next_batch_and_the_next_epoch_is_whole():
    unbroken = epoch_labels(TrainBatches(IMAGES, LABELS, batch_size=2, sampler=EpochOrder(10, seed=0)))
    done = iter([2, 0])  # what Lightning's progress says at each pass's first batch
    resumed = TrainBatches(
        IMAGES, LABELS, batch_size=2, sampler=EpochOrder(10, seed=0), batches_done=lambda: next(done)
    )
    assert epoch_labels(resumed) == unbroken[2:]
    assert epoch_labels(resumed) == unbroken


def test_each_batch_is_drawn_for_by_its_seed_process_epoch_and_index():
    def loader(seed=0, rank=0, epoch=0, done=0) -> TrainBatches:
        sampler = EpochOrder(10, seed=seed, rank=rank, world_size=2, epoch=epoch)
        return TrainBatches(IMAGES, LABELS, batch_size=2, sampler=sampler, batches_done=lambda: done)

    unbroken = draws_per_batch(loader())
    assert len(unbroken) == 3 and draws_per_batch(loader()) == unbroken
    # A resumed epoch draws for its batch 2 what the unbroken epoch drew for its batch 2.
    assert draws_per_batch(loader(done=2)) == unbroken[2:]
    # Every batch, process, epoch and seed its own: DDP processes must not augment their images alike.
    every = (
        unbroken + draws_per_batch(loader(rank=1)) + draws_per_batch(loader(epoch=1)) + draws_per_batch(loader(seed=1))
    )
    assert len(set(every)) == len(every) == 12
