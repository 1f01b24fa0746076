"""Optimizers and LR schedules named by a recipe; Keras semantics are translated here, in one place."""

import torch

from src.errors import UserError

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adadelta": torch.optim.Adadelta,
    "sgd": torch.optim.SGD,
}
# torch's fused kernels, where the recipe does not choose: lenet5 at batch 32 trains ~11% faster on a
# 2-core CPU than with the default per-tensor loop (measured; torch only picks foreach/fused on CUDA).
FUSED = {"adam", "adamw"}
FUSED_DEVICES = {"cpu", "cuda"}
SCHEDULERS = ("none", "plateau", "onecycle", "cosine")
TEXT_ARGS = {"anneal_strategy"}  # OneCycleLR's "cos" or "linear"; every other argument is a number
PLATEAU_DEFAULTS = {"factor": 0.1, "patience": 10, "min_delta": 1e-4, "cooldown": 0, "min_lr": 0.0}  # Keras'
LENGTHS = {"total_steps": "steps", "T_max": "epochs"}  # what fixes the length of OneCycleLR and CosineAnnealingLR


def numbers_as_meant(args: dict) -> dict:
    """`args` with text that reads as a number made a number: PyYAML reads 5e-4 (no dot) as text."""

    def number(value):
        try:
            return float(value) if isinstance(value, str) else value
        except ValueError:
            return value

    return {key: number(value) for key, value in args.items()}


def build_optimizer(name: str, params, lr: float, args: dict) -> torch.optim.Optimizer:
    """The optimizer `name` with learning rate `lr` and the recipe's other arguments (torch names)."""
    if name not in OPTIMIZERS:
        raise UserError("optimizer", f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    params, args = list(params), numbers_as_meant(args)
    if name in FUSED and not {"fused", "foreach"} & set(args) and all(p.device.type in FUSED_DEVICES for p in params):
        args = {**args, "fused": True}
    try:
        return OPTIMIZERS[name](params, lr=lr, **args)
    except (TypeError, ValueError) as e:
        raise UserError("optimizer_args", f"not accepted by {name}: {e}") from None


def build_scheduler(name: str, optimizer, args: dict, mode: str, total_steps: int, epochs: int):
    """A Lightning lr_scheduler config for `name`, or None for "none". A plateau's is its scheduler alone:
    DigitClassifier steps it itself, with the monitored metric, whose `mode` it is built with."""
    args = numbers_as_meant(args)
    if name == "none":
        return None
    for key, value in args.items():  # torch reads some only mid-run (a plateau's when the metric stalls)
        if key not in TEXT_ARGS and not isinstance(value, int | float):  # (flags such as three_phase are bools)
            raise UserError("scheduler_args", f"{name} {key} must be a number, got {value!r}")
    if name == "plateau":
        unknown = set(args) - set(PLATEAU_DEFAULTS)
        if unknown:
            raise UserError(
                "scheduler_args", f"unknown plateau key(s) {sorted(unknown)}; valid: {sorted(PLATEAU_DEFAULTS)}"
            )
        args = {**PLATEAU_DEFAULTS, **args}
        # Keras reduces after `patience` bad epochs and compares with an absolute min_delta;
        # torch reduces when bad epochs *exceed* patience, with a relative threshold by default.
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode=mode,
            factor=args["factor"],
            patience=max(0, args["patience"] - 1),
            threshold=args["min_delta"],
            threshold_mode="abs",
            cooldown=args["cooldown"],
            min_lr=args["min_lr"],
        )
        return {"scheduler": scheduler}
    if name == "onecycle":
        max_lr = args.pop("max_lr", optimizer.param_groups[0]["lr"])
        try:
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, **args)
        except ZeroDivisionError:  # torch divides by each phase's length, which is 0 when pct_start x steps is 1
            raise UserError(
                "scheduler_args",
                f"onecycle cannot schedule {total_steps} steps with pct_start {args.get('pct_start', 0.3):g}: "
                "a phase of no length; train another number of steps or change pct_start",
            ) from None
        return {"scheduler": scheduler, "interval": "step"}
    if name == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, **args)
        return {"scheduler": scheduler, "interval": "epoch"}
    raise UserError("scheduler", f"unknown scheduler {name!r}; choose from {', '.join(SCHEDULERS)}")


def check_resumed_length(scheduler, saved_state: dict) -> None:
    """A onecycle or cosine schedule resumed from `saved_state` keeps the length it was built for, whatever
    this run's: OneCycleLR would then raise a ValueError past its last step, and the cosine climb back up."""
    for key, unit in LENGTHS.items():
        built, saved = getattr(scheduler, key, None), saved_state.get(key)
        if built is not None and saved is not None and built != saved:
            needs = (
                "--max-epochs" if key == "T_max" else "--max-epochs, --batch-size, --limit-train-batches and devices"
            )
            raise UserError(
                "--resume",
                f"the checkpoint's LR schedule spans {saved} {unit if saved != 1 else unit[:-1]}, this run {built}: "
                f"resume with the {needs} "
                "it was trained with",
            )
