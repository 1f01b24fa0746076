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
