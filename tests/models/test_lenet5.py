import torch

from src.models import build_model, count_parameters


def test_lenet5_has_the_notebooks_parameter_count_and_shape():
    model = build_model("lenet5")
    assert count_parameters(model) == 61_706
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_keras_init_uses_zero_biases():
    model = build_model("lenet5", init="keras")
    biases = [m.bias for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert all(torch.count_nonzero(b) == 0 for b in biases)
