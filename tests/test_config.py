from pathlib import Path

import pytest
import torch

from src.config import CONFIG_DIR, Recipe, checkpoint_monitor, recipe_path, resolve_recipe
from src.errors import UserError
from src.models.optim import build_optimizer, build_scheduler


def test_precedence_defaults_then_recipe_then_flags():
    recipe = resolve_recipe({"model": "lenet5", "lr": 0.01, "batch_size": None})
    assert recipe.lr == 0.01  # flag
    assert recipe.batch_size == 32  # configs/lenet5.yaml
    assert recipe.eval_batch_size == Recipe().eval_batch_size  # code default


def test_lenet5_recipe_is_the_notebooks():
    r = resolve_recipe({"model": "lenet5"})
    assert (r.optimizer, r.lr, r.batch_size, r.max_epochs) == ("adam", 0.001, 32, 30)
    assert r.optimizer_args == {"eps": 1e-7}
    assert (r.monitor, r.scheduler, r.scheduler_args["patience"]) == ("train/loss", "plateau", 2)
    assert r.early_stopping == {"patience": 5, "min_delta": 0.0}
    assert (r.val_split, r.val_fraction) == ("tail", 0.1)


OTHER_NAMES = {"fast": "fast_cnn", "fast_995": "fast_cnn", "deep_cnn_fixed": "deep_cnn"}  # recipe file -> model


@pytest.mark.filterwarnings("error")  # a shipped recipe must not trip its own sanity warnings
def test_every_recipe_file_loads_and_names_its_model():
    paths = sorted(CONFIG_DIR.glob("*.yaml"))
    assert len(paths) >= 9
    for path in paths:
        recipe = resolve_recipe({}, str(path))
        assert recipe.description and recipe.model == OTHER_NAMES.get(path.stem, path.stem), path.name


def test_early_stopping_that_would_outrun_the_plateau_is_warned_about(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: lenet5\nscheduler: plateau\nscheduler_args: {patience: 2}\nearly_stopping: {patience: 2}\n")
    with pytest.warns(UserWarning, match="early stopping patience 2 <= plateau patience 2: the LR will never drop"):
        resolve_recipe({}, str(path))


def test_unknown_key_lists_the_valid_ones(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: lenet5\nlearning_rate: 0.1\n")
    with pytest.raises(UserError, match=r"r.yaml: unknown key\(s\) learning_rate; valid keys: model, description"):
        resolve_recipe({}, str(path))


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            {"model": "resnet999"},
            "--model: unknown model 'resnet999'; choose from bn_cnn, keras_cnn, deep_cnn, mlp, simple_cnn, lenet5, fast_cnn, deep_bn_cnn, m3_cnn",
        ),
        ({"lr": -1.0}, "lr: must be a positive number, got -1.0"),
        ({"lr": float("inf")}, "lr: must be a positive number, got inf"),
        ({"seed": -1}, "seed: must be between 0 and 2**32 - 1, got -1"),
        (
            {"limit_train_batches": 1.5},
            "--limit-train-batches: a batch count (0 or more) or a fraction in [0, 1], got 1.5",
        ),
        (
            {"limit_train_batches": 0},
            "--limit-train-batches: 0 trains nothing; give 1 or more batches, or a fraction above 0",
        ),
        (
            {"limit_train_batches": 0.0},
            "--limit-train-batches: 0 trains nothing; give 1 or more batches, or a fraction above 0",
        ),
        (  # (YAML's .nan; Lightning raised "cannot convert float NaN to integer")
            {"limit_val_batches": float("nan")},
            "--limit-val-batches: a batch count (0 or more) or a fraction in [0, 1], got nan",
        ),
        ({"split_seed": 2**32}, "split_seed: must be between 0 and 2**32 - 1, got 4294967296"),
        ({"max_epochs": 0}, "max_epochs: must be at least 1, got 0"),
        ({"ema_decay": 1.0}, "ema_decay: must be between 0 and 1, got 1.0"),
        ({"val_fraction": 1.0}, "val_fraction: must be at least 0 (0: no validation) and below 1, got 1.0"),
        ({"val_fraction": -0.1}, "val_fraction: must be at least 0 (0: no validation) and below 1, got -0.1"),
    ],
)
def test_bad_values_are_one_line_errors(flags, message):
    with pytest.raises(UserError) as error:
        resolve_recipe(flags)
    assert str(error.value) == message


def test_yaml_1_1_numbers_and_precision_are_read_as_meant(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: lenet5\nlr: 1e-3\nprecision: 32\n")  # PyYAML reads 1e-3 as a string, 32 as an int
    recipe = resolve_recipe({}, str(path))
    assert (recipe.lr, recipe.precision) == (0.001, "32")
    # also inside optimizer_args and scheduler_args, which torch would otherwise get as text
    weight = [torch.zeros(1, requires_grad=True)]
    assert build_optimizer("adamw", weight, 1e-3, {"weight_decay": "5e-4"}).param_groups[0]["weight_decay"] == 5e-4
    optimizer = build_optimizer("adam", weight, 1e-3, {})
    plateau = build_scheduler("plateau", optimizer, {"min_delta": "1e-4"}, "min", 100, 10)["scheduler"]
    assert plateau.threshold == 1e-4


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("scheduler: cosine\nscheduler_args: {foo: 1}", "scheduler_args: not accepted by cosine: "),
        # Torch reads these only mid-run: when the plateau's metric stalls, or at the first epoch's end.
        ("scheduler: plateau\nscheduler_args: {min_delta: abc}", "scheduler_args: plateau min_delta must be a number"),
        ("scheduler: cosine\nscheduler_args: {eta_min: abc}", "scheduler_args: cosine eta_min must be a number"),
        (
            "scheduler: onecycle\nscheduler_args: {pct_start: abc}",
            "scheduler_args: onecycle pct_start must be a number",
        ),
        ("scheduler: onecycle\nscheduler_args: {anneal_strategy: cubic}", "scheduler_args: not accepted by onecycle"),
        (
            "early_stopping: {patience: abc}",
            "early_stopping: patience must be a whole number of epochs >= 0, got 'abc'",
        ),
        ("early_stopping: {min_delta: .nan}", "early_stopping: min_delta must be a number >= 0, got nan"),
        ("augment: {rotation: abc}", "augment: rotation must be a number, got 'abc'"),
        ("augment: {rotation: .nan}", "augment: rotation must be a number, got nan"),
    ],
)
def test_bad_values_inside_recipe_mappings_fail_before_training(yaml_text, message, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(f"model: lenet5\n{yaml_text}\n")
    with pytest.raises(UserError) as error:
        resolve_recipe({}, str(path))
    assert str(error.value).startswith(f"{path}: {message}")


def test_wrong_types_and_bad_yaml(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: lenet5\nbatch_size: many\n")
    with pytest.raises(UserError, match="r.yaml: batch_size: expected int, got 'many'$"):
        resolve_recipe({}, str(path))
    with pytest.raises(UserError, match="^batch_size: must be at least 1, got 0$"):  # the flag, not the file
        resolve_recipe({"batch_size": 0}, str(path))
    path.write_text("model: [lenet5\n")
    with pytest.raises(UserError, match="is not valid YAML at line"):
        resolve_recipe({}, str(path))
    path.write_text("model: lenet5\nmonitor: val/accuracy\n")
    with pytest.raises(UserError, match="r.yaml: monitor: unknown value 'val/accuracy'; choose from train/loss"):
        resolve_recipe({}, str(path))
    path.write_bytes(b"model: lenet5\n\xff\xfe\n")
    with pytest.raises(UserError, match=r"r.yaml: is not a text file \(a recipe is UTF-8 YAML\)$"):
        resolve_recipe({}, str(path))
    path.write_text("model: lenet5\n1: 2\nfoo: 3\n")
    with pytest.raises(UserError, match=r"r.yaml: unknown key\(s\) 1, foo; valid keys: model"):
        resolve_recipe({}, str(path))
    path.write_text("model: lenet5\noptimizer_args: {betas: 3}\n")
    with pytest.raises(UserError, match="optimizer_args: not accepted by adam"):
        resolve_recipe({}, str(path))


@pytest.mark.parametrize(
    "yaml_text, line, key",
    [  # PyYAML keeps the last of two values silently
        ("model: lenet5\nlr: 0.001\nbatch_size: 64\nlr: 0.01\n", 4, "lr"),
        ("model: lenet5\naugment:\n  rotation: 10\n  rotation: 15\n", 4, "rotation"),
    ],
)
def test_a_key_given_twice_is_refused_with_its_line(yaml_text, line, key, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml_text)
    with pytest.raises(UserError, match=f"r.yaml: is not valid YAML at line {line}: key '{key}' is given twice in one"):
        resolve_recipe({}, str(path))


def test_a_yaml_merge_key_may_be_overridden(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "model: lenet5\noptimizer_args: &adam {weight_decay: 0.1}\nscheduler_args: {<<: *adam, weight_decay: 2}\n"
    )
    assert resolve_recipe({}, str(path)).scheduler_args == {"weight_decay": 2}


def test_seed_recipes_carry_the_notebooks_values():
    keras_cnn = resolve_recipe({"model": "keras_cnn"})
    assert (keras_cnn.optimizer, keras_cnn.lr, keras_cnn.optimizer_args) == (
        "adadelta",
        1.0,
        {"rho": 0.95, "eps": 1e-7},
    )
    assert (keras_cnn.batch_size, keras_cnn.max_epochs) == (128, 10)
    bn_cnn = resolve_recipe({"model": "bn_cnn"})
    assert (bn_cnn.batch_size, bn_cnn.batch_schedule, bn_cnn.max_epochs) == (1000, {10: 10000}, 13)
    assert (bn_cnn.optimizer, bn_cnn.optimizer_args) == ("rmsprop", {"alpha": 0.9, "eps": 1e-7})
    assert round(60000 * bn_cnn.val_fraction) == 10000 and bn_cnn.val_split == "head"
    deep_cnn = resolve_recipe({"model": "deep_cnn"})
    assert deep_cnn.augment == {"rotation": 15, "zoom": 1.0} and deep_cnn.val_fraction == 0.2
    for name in ("mlp", "simple_cnn"):
        recipe = resolve_recipe({"model": name})
        assert (recipe.optimizer, recipe.batch_size, recipe.max_epochs, recipe.val_fraction, recipe.val_split) == (
            "rmsprop",
            128,
            3,
            0.3,
            "tail",
        )


def test_a_models_recipe_is_named_as_the_user_sees_it(tmp_path, monkeypatch):
    monkeypatch.chdir(CONFIG_DIR.parent)
    assert recipe_path("lenet5") == Path("configs/lenet5.yaml")
    monkeypatch.chdir(tmp_path)
    assert recipe_path("lenet5") == CONFIG_DIR / "lenet5.yaml" and recipe_path("lenet5").is_file()


@pytest.mark.parametrize(
    "watcher, recipe", [("early stopping", "early_stopping: {}"), ("the plateau scheduler", "scheduler: plateau")]
)
@pytest.mark.parametrize(
    "flags, problem",
    [
        ({"val_fraction": 0.0}, "val_fraction: 0 holds no images out"),
        ({"limit_val_batches": 0}, "--limit-val-batches: 0 skips validation"),
    ],
)
def test_without_validation_nothing_may_watch_a_validation_metric(watcher, recipe, flags, problem, tmp_path):
    config = tmp_path / "r.yaml"
    config.write_text(f"model: lenet5\nmonitor: val/acc\n{recipe}\n")
    assert resolve_recipe({}, str(config)).val_fraction == 0.1
    with pytest.raises(UserError) as error:
        resolve_recipe(flags, str(config))
    assert str(error.value) == f"{problem}, but {watcher} watches val/acc"


def test_without_validation_data_the_final_epoch_is_kept_unless_a_training_metric_is_monitored():
    assert checkpoint_monitor(resolve_recipe({"model": "deep_bn_cnn"})) == "val/acc"
    assert checkpoint_monitor(resolve_recipe({"model": "deep_bn_cnn", "val_fraction": 0.0})) is None
    assert checkpoint_monitor(resolve_recipe({"model": "deep_bn_cnn", "limit_val_batches": 0})) is None
    lenet5 = resolve_recipe({"model": "lenet5", "val_fraction": 0.0})  # plateau and early stopping on train/loss
    assert (lenet5.scheduler, checkpoint_monitor(lenet5)) == ("plateau", "train/loss")
