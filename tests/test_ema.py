from types import SimpleNamespace

import pytest
import torch

from src.ema import EmaWeightAveraging, WarmedUpEma


def zero_weights() -> torch.nn.Module:
    return torch.nn.Linear(3, 1, bias=False).requires_grad_(False).apply(lambda m: torch.nn.init.zeros_(m.weight))


@pytest.mark.parametrize(("updates_so_far", "decay"), [(1, 2 / 11), (90, 91 / 100), (100_000, 0.999)])
def test_ema_decay_warms_up_to_the_recipes_value(updates_so_far, decay):
    model = zero_weights()
    average = WarmedUpEma(model, 0.999, torch.device("cpu"))
    # The count a checkpoint holds, as --resume loads it: the host's copy must follow it.
    average.load_state_dict({**average.state_dict(), "n_averaged": torch.tensor(updates_so_far)})
    model.weight.fill_(1.0)
    average.update_parameters(model)
    assert torch.allclose(average.module.weight, torch.full((1, 3), 1 - decay))
    assert int(average.n_averaged) == updates_so_far + 1


def test_ema_starts_from_the_models_weights_and_integer_buffers_follow_the_model():
    model = torch.nn.BatchNorm1d(3)
    average = WarmedUpEma(model, 0.999, torch.device("cpu"))
    model.running_mean.fill_(4.0)
    average.update_parameters(model)  # the first update copies
    assert torch.equal(average.module.running_mean, torch.full((3,), 4.0))
    model.num_batches_tracked.fill_(41)
    average.update_parameters(model)
    assert int(average.module.num_batches_tracked) == 41


def test_the_weight_average_lives_on_the_training_device():
    # Lightning builds the average before the model moves to the GPU; "meta" stands in for a GPU here.
    from src.models.classifier import DigitClassifier

    averaging = EmaWeightAveraging(0.999)
    trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("meta")))
    averaging.setup(trainer, DigitClassifier("lenet5"), "fit")
    assert {p.device.type for p in averaging._average_model.parameters()} == {"meta"}
