from types import SimpleNamespace

import pytest
import torch

from src.callbacks import SeedEachBatch, warmed_up_ema


@pytest.mark.parametrize(("updates_so_far", "decay"), [(1, 2 / 11), (90, 91 / 100), (100_000, 0.999)])
def test_ema_decay_warms_up_to_the_recipes_value(updates_so_far, decay):
    averaged = [torch.zeros(3)]
    warmed_up_ema(0.999)(averaged, [torch.ones(3)], torch.tensor(updates_so_far))
    assert torch.allclose(averaged[0], torch.full((3,), 1 - decay))


def test_ema_integer_buffers_follow_the_model():
    averaged = [torch.tensor(3), torch.tensor(5)]
    warmed_up_ema(0.999)(averaged, [torch.tensor(40), torch.tensor(41)], torch.tensor(7))
    assert [int(t) for t in averaged] == [40, 41]


def fake_trainer(rank: int = 0, epoch: int = 0, completed: int = 0) -> SimpleNamespace:
    progress = SimpleNamespace(current=SimpleNamespace(completed=completed))
    loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))
    return SimpleNamespace(global_rank=rank, current_epoch=epoch, fit_loop=loop)


CPU_MODULE = SimpleNamespace(device=torch.device("cpu"))


def draws_for(rank: int, epoch: int, batch: int, seed: int = 7) -> torch.Tensor:
    """What batch `batch` of `epoch` draws in process `rank`, seeded as when it follows batch - 1."""
    torch.manual_seed(123)  # whatever came before must not matter
    SeedEachBatch(seed).on_train_batch_end(fake_trainer(rank, epoch), CPU_MODULE, None, None, batch - 1)
    return torch.rand(8)


def test_each_batch_draws_by_seed_rank_epoch_and_batch_alone():
    first = draws_for(rank=0, epoch=2, batch=5)
    assert torch.equal(first, draws_for(rank=0, epoch=2, batch=5))
    # Every process, epoch and batch its own draws: DDP processes must not augment their images alike.
    others = [
        draws_for(1, 2, 5),
        draws_for(0, 3, 5),
        draws_for(0, 2, 6),
        draws_for(0, 2, 4),
        draws_for(0, 2, 5, seed=8),
    ]
    assert all(not torch.equal(first, other) for other in others)
    # A run resumed before batch 5 draws what the unbroken run drew for it; so does an epoch's first batch.
    callback = SeedEachBatch(seed=7)
    callback.on_train_start(fake_trainer(rank=0, epoch=2, completed=5), CPU_MODULE)
    assert torch.equal(torch.rand(8), first)
    callback.on_train_epoch_start(fake_trainer(rank=0, epoch=2), CPU_MODULE)
    assert torch.equal(torch.rand(8), draws_for(rank=0, epoch=2, batch=0))
