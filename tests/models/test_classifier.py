import pytest
import torch
from torchmetrics import Metric

from src.build import make_classifier
from src.config import CONFIG_DIR, resolve_recipe
from src.errors import UserError
from src.models.epoch_metrics import LossAndAccuracy
from src.models.optim import build_optimizer, build_scheduler


def test_optimizer_carries_the_recipes_keras_values():
    params = [torch.zeros(1, requires_grad=True)]
    adam = build_optimizer("adam", params, 1e-3, {"eps": 1e-7})
    assert adam.defaults["eps"] == 1e-7 and adam.defaults["lr"] == 1e-3
    rmsprop = build_optimizer("rmsprop", params, 1e-3, {"alpha": 0.9, "eps": 1e-7})
    assert (rmsprop.defaults["alpha"], rmsprop.defaults["eps"]) == (0.9, 1e-7)
    with pytest.raises(UserError, match="unknown optimizer 'lamb'"):
        build_optimizer("lamb", params, 1e-3, {})


def test_adam_runs_fused_unless_the_recipe_chooses_its_kernels():
    params = [torch.zeros(1, requires_grad=True)]
    assert build_optimizer("adam", params, 1e-3, {}).defaults["fused"] is True
    assert build_optimizer("adamw", params, 1e-3, {}).defaults["fused"] is True
    assert build_optimizer("adam", params, 1e-3, {"foreach": True}).defaults["fused"] is None
    assert build_optimizer("adam", params, 1e-3, {"fused": False}).defaults["fused"] is False
    assert "fused" not in build_optimizer("adadelta", params, 1.0, {}).defaults


def test_plateau_translates_keras_patience_and_min_delta():
    optimizer = build_optimizer("adam", [torch.zeros(1, requires_grad=True)], 1e-3, {})
    config = build_scheduler("plateau", optimizer, {"patience": 2, "min_delta": 1e-4}, "min", 100, 10)
    scheduler = config["scheduler"]
    assert (scheduler.patience, scheduler.threshold, scheduler.threshold_mode) == (1, 1e-4, "abs")
    # Keras semantics: the LR drops after exactly 2 epochs without improvement.
    for loss in (1.0, 1.0, 1.0):
        scheduler.step(loss)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_a_one_cycle_too_short_for_its_warm_up_is_one_clear_error():
    # fast.yaml's pct_start 0.25 over 4 steps (--limit-train-batches 4): torch divided by zero.
    optimizer = build_optimizer("adamw", [torch.zeros(1, requires_grad=True)], 0.02, {})
    with pytest.raises(UserError, match=r"^scheduler_args: onecycle cannot schedule 4 steps with pct_start 0.25: "):
        build_scheduler("onecycle", optimizer, {"pct_start": 0.25}, "max", total_steps=4, epochs=1)
    assert build_scheduler("onecycle", optimizer, {"pct_start": 0.25}, "max", total_steps=5, epochs=1)


def test_epoch_accuracy_is_correct_over_n_not_a_mean_of_batches():
    metric = LossAndAccuracy()
    logits = torch.eye(10)[[1, 1, 1]]
    metric.update(logits, torch.tensor([1, 1, 1]), torch.tensor(0.5))  # 3 of 3 right
    metric.update(torch.eye(10)[[2]], torch.tensor([3]), torch.tensor(1.5))  # 0 of 1 right
    loss, accuracy = metric.compute()
    assert accuracy.item() == pytest.approx(0.75)  # a mean of batch accuracies would say 0.5
    assert loss.item() == pytest.approx((0.5 * 3 + 1.5) / 4)


@pytest.mark.parametrize("recipe", sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
def test_no_tensor_of_the_module_is_float64_which_apple_mps_cannot_hold(recipe):
    classifier = make_classifier(resolve_recipe({}, str(CONFIG_DIR / recipe)))
    tensors = dict(classifier.state_dict(keep_vars=True))
    for name, module in classifier.named_modules():
        if isinstance(module, Metric):
            tensors.update({f"{name}.{state}": getattr(module, state) for state in module._defaults})
    assert any(".loss_sum" in name for name in tensors)  # the metric states are among them
    assert not [name for name, tensor in tensors.items() if tensor.dtype == torch.float64]
