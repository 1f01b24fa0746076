import pytest
import torch

from src.callbacks import warmed_up_ema


@pytest.mark.parametrize(("updates_so_far", "decay"), [(1, 2 / 11), (90, 91 / 100), (100_000, 0.999)])
def test_ema_decay_warms_up_to_the_recipes_value(updates_so_far, decay):
    averaged = [torch.zeros(3)]
    warmed_up_ema(0.999)(averaged, [torch.ones(3)], torch.tensor(updates_so_far))
    assert torch.allclose(averaged[0], torch.full((3,), 1 - decay))


def test_ema_integer_buffers_follow_the_model():
    averaged = [torch.tensor(3), torch.tensor(5)]
    warmed_up_ema(0.999)(averaged, [torch.tensor(40), torch.tensor(41)], torch.tensor(7))
    assert [int(t) for t in averaged] == [40, 41]
