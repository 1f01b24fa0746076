import torch

from src.build import make_classifier, make_datamodule
from src.config import Recipe


def test_a_recipes_batch_sizes_are_divided_across_processes():
    recipe = Recipe(model="bn_cnn", batch_size=1000, batch_schedule={10: 10000}, seed=3)
    datamodule = make_datamodule(recipe, processes=4)
    assert datamodule.hparams.batch_size == 250
    assert datamodule.hparams.batch_schedule == {10: 2500}
    assert datamodule.hparams.seed == 3


def test_a_recipe_names_the_architecture_and_training_of_the_classifier():
    recipe = Recipe(model="lenet5", optimizer="sgd", lr=0.05, scheduler="cosine", label_smoothing=0.1)
    classifier = make_classifier(recipe)
    assert classifier.parameter_count == 61_706
    assert {k: classifier.hparams[k] for k in ("arch", "optimizer", "lr", "scheduler", "label_smoothing")} == {
        "arch": "lenet5",
        "optimizer": "sgd",
        "lr": 0.05,
        "scheduler": "cosine",
        "label_smoothing": 0.1,
    }


def test_channels_last_weights_compute_the_same_model_and_load_into_a_contiguous_one():
    recipe = Recipe(model="deep_bn_cnn")
    torch.manual_seed(0)
    nhwc = make_classifier(recipe, "channels_last").eval()
    assert nhwc.net.layers[3].weight.is_contiguous(memory_format=torch.channels_last)
    assert not nhwc.net.layers[3].weight.is_contiguous()
    nchw = make_classifier(recipe).eval()
    nchw.load_state_dict(nhwc.state_dict())
    assert nchw.net.layers[3].weight.is_contiguous()
    inputs = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(nhwc(inputs), nchw(inputs), rtol=1e-4, atol=1e-5)
