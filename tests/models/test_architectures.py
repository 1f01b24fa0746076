import pytest
import torch

from src.models import ARCHITECTURES, build_model, count_parameters
from src.models.__main__ import main as list_models

SEEDS_PARAMETERS = {
    "bn_cnn": 316_602,
    "keras_cnn": 1_199_882,
    "deep_cnn": 594_922,
    "mlp": 570_602,
    "simple_cnn": 693_962,
    "lenet5": 61_706,
}


@pytest.mark.parametrize("name", sorted(SEEDS_PARAMETERS))
def test_parameter_count_and_output_shape_match_seeds(name):
    model = build_model(name).eval()
    assert count_parameters(model) == SEEDS_PARAMETERS[name]
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_registry_holds_the_seed_models_and_ours():
    assert set(ARCHITECTURES) == set(SEEDS_PARAMETERS) | {"fast_cnn", "deep_bn_cnn", "m3_cnn"}
    assert count_parameters(build_model("fast_cnn")) == 29_402


def test_deep_bn_cnn_has_the_kaggle_members_shape():
    model = build_model("deep_bn_cnn").eval()
    assert count_parameters(model) == 327_242  # Keras' summary of the Kaggle kernel's model
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_m3_cnn_has_the_papers_shape():
    model = build_model("m3_cnn").eval()
    # The paper's ModelM3: ten bias-free 3x3 convolutions, 32 to 176 channels, one bias-free linear layer
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convolutions] == list(range(32, 177, 16))
    assert all(c.kernel_size == (3, 3) and c.padding == (0, 0) and c.bias is None for c in convolutions)
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.Dropout)) for m in model.modules())
    assert sum(p.numel() for p in model.parameters()) == 1_124_180
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_bn_cnn_uses_keras_batch_norm_semantics():
    norm = next(m for m in build_model("bn_cnn").modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert (norm.momentum, norm.eps) == (0.01, 1e-3)


def test_keras_init_is_glorot_uniform_with_zero_biases():
    layers = [
        m for m in build_model("lenet5", init="keras").modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    assert all(torch.count_nonzero(layer.bias) == 0 for layer in layers)
    for layer in layers:
        receptive = layer.weight[0, 0].numel() if layer.weight.dim() > 2 else 1
        fan_in, fan_out = layer.weight.shape[1] * receptive, layer.weight.shape[0] * receptive
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.8 * bound, layer
    torch_default = [m for m in build_model("lenet5").modules() if isinstance(m, torch.nn.Linear)]
    assert all(torch.count_nonzero(layer.bias) > 0 for layer in torch_default)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_returns_logits_not_probabilities(name):
    # F.cross_entropy applies log-softmax itself: a softmax inside the model would be applied twice.
    model = build_model(name).eval()
    assert not any(isinstance(m, (torch.nn.Softmax, torch.nn.LogSoftmax)) for m in model.modules())
    torch.manual_seed(0)
    outputs = model(torch.randn(8, 1, 28, 28) * 3)
    assert not torch.allclose(outputs.exp().sum(dim=1), torch.ones(8), atol=1e-3)  # not log-probabilities
    assert not torch.allclose(outputs.sum(dim=1), torch.ones(8), atol=1e-3)  # not probabilities


def test_model_table_lists_every_model(capsys):
    assert list_models([]) == 0
    out = capsys.readouterr().out
    assert "| bn_cnn | 1: small CNN with batch norm (MNIST) | 316,602 | 98.89% |" in out
    assert out.count("\n") == 2 + len(ARCHITECTURES)
    assert "| fast_cnn | ours: fastest to 99% (configs/fast.yaml) | 29,402 | - |" in out
