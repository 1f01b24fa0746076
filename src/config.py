"""Recipes: code defaults < configs/MODEL.yaml (or --config FILE) < the flags a user typed."""

import dataclasses
import types
import typing
import warnings
from collections.abc import Hashable
from pathlib import Path

import yaml

from src.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


@dataclasses.dataclass
class Recipe:
    """Everything a run needs; keys equal flag names (with `_` for `-`)."""

    model: str = "lenet5"
    description: str = ""
    data: str = "mnist"
    data_dir: str | None = None
    val_fraction: float = 0.1
    val_split: str = "random"  # head, tail or random (seeded)
    split_seed: int | None = None  # seed of the random split (default: `seed`); an ensemble's members share one
    # optimisation
    max_epochs: int = 10
    batch_size: int = 64  # global: divided across processes
    batch_schedule: dict | None = None  # {epoch: batch size from that epoch on (epochs count from 0)}
    eval_batch_size: int = 1000
    optimizer: str = "adam"
    lr: float = 1e-3
    optimizer_args: dict = dataclasses.field(default_factory=dict)
    scheduler: str = "none"
    scheduler_args: dict = dataclasses.field(default_factory=dict)
    monitor: str = "val/loss"
    early_stopping: dict | None = None  # {patience, min_delta}
    label_smoothing: float = 0.0
    ema_decay: float | None = None  # validate, checkpoint and test an exponential moving average of the weights
    augment: dict | None = None  # rotation, zoom, shift, elastic_alpha, elastic_sigma (src/data/augment.py)
    init: str = "torch"
    compile: bool = False  # torch.compile the architecture (scripts/benchmark.py --compile measures it)
    seed: int = 0
    deterministic: bool = False
    # hardware
    accelerator: str = "auto"
    devices: int | str | None = None
    num_nodes: int = 1
    strategy: str | None = None
    precision: str | None = None
    memory_format: str | None = None  # of the weights: channels_last or contiguous (auto: the hardware plan)
    # run control
    fast_dev_run: bool = False
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    logdir: str = "lightning_logs"
    resume: str | None = None
    progress_refresh: int = 20

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(Recipe)}
EARLY_STOPPING_DEFAULTS = {"patience": 3, "min_delta": 0.0}


def early_stopping_args(recipe: Recipe) -> dict:
    """The recipe's `early_stopping` with the defaults filled in: {"patience": ..., "min_delta": ...}."""
    return {**EARLY_STOPPING_DEFAULTS, **recipe.early_stopping}


def validates(recipe: Recipe) -> bool:
    """Whether the run validates: it holds images out (val_fraction 0 trains on every labelled image,
    Kaggle's usual last step) and reads them (--limit-val-batches 0 skips validation)."""
    return recipe.val_fraction > 0 and recipe.limit_val_batches != 0


def checkpoint_monitor(recipe: Recipe) -> str | None:
    """The metric that picks the run's checkpoint; None: the final epoch's, with no validation to pick by."""
    return None if recipe.monitor.startswith("val/") and not validates(recipe) else recipe.monitor


def recipe_path(model: str) -> Path:
    """configs/MODEL.yaml, relative to the working directory when it is below it (as errors show it)."""
    path = CONFIG_DIR / f"{model}.yaml"
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


class RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice in one mapping is an error: PyYAML keeps the last value
    silently, so a recipe edited by adding `lr: 0.01` below an existing `lr:` line would hide the first."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`, which later keys may override
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):  # PyYAML's own error follows
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def recipes_for(model: str) -> list[Path]:
    """The recipe files in configs/ that train `model` under another name (configs/fast.yaml: fast_cnn)."""
    found = []
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        try:
            if load_recipe_file(path).get("model") == model:
                found.append(recipe_path(path.stem))
        except UserError:
            continue
    return found


def load_recipe_file(path: str | Path) -> dict:
    """A recipe file as a dict of known keys (one-line error for anything else)."""
    path = Path(path)
    try:
        content = yaml.load(path.read_text(), RecipeLoader)
    except FileNotFoundError:
        raise UserError(path, "recipe file not found") from None
    except OSError as e:
        raise UserError(path, f"cannot be read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(path, "is not a text file (a recipe is UTF-8 YAML)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(path, f"is not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise UserError(path, "must be a mapping of recipe keys to values")
    unknown = sorted(str(key) for key in set(content) - set(FIELDS))
    if unknown:
        raise UserError(path, f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(FIELDS)}")
    return content


def resolve_recipe(flags: dict, config_file: str | None = None) -> Recipe:
    """Merge defaults, the model's recipe file and explicit flags (None = not given), then validate."""
    explicit = {k: v for k, v in flags.items() if v is not None}
    model = explicit.get("model", Recipe.model)
    path = Path(config_file) if config_file else recipe_path(model)
    if config_file or path.exists():
        from_file = load_recipe_file(path)
    else:
        from src.models.registry import ARCHITECTURES

        if model not in ARCHITECTURES:
            raise UserError("--model", f"unknown model {model!r}; choose from {', '.join(ARCHITECTURES)}")
        from_file = {}
    values = {**from_file, **explicit}
    try:
        for key, value in values.items():
            values[key] = _check_type(key, value)
        recipe = Recipe(**values)
        validate(recipe)
    except UserError as e:
        if e.thing in from_file and e.thing not in explicit:  # a value from the file: say which file
            raise UserError(f"{path}: {e.thing}", e.problem) from None
        raise
    return recipe


def _check_type(key: str, value):
    annotation = FIELDS[key].type
    allowed = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None and type(None) in allowed:
        return value
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return value if int in allowed else float(value)
    if float in allowed and isinstance(value, str):
        # YAML 1.1 (PyYAML) reads 1e-3 as a string: it needs a dot, 1.0e-3. Accept what the user meant.
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) and bool not in allowed:
        raise UserError(key, f"expected {_type_names(allowed)}, got {value!r}")
    if any(isinstance(value, t) for t in allowed if isinstance(t, type)):
        return value
    if str in allowed and isinstance(value, int):
        return str(value)  # `precision: 32`, as the flag --precision 32 would read
    raise UserError(key, f"expected {_type_names(allowed)}, got {value!r}")


def _type_names(allowed) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in allowed)


def validate(recipe: Recipe) -> None:
    """Check values that types cannot: names, ranges and combinations."""
    from src.data.splits import SOURCES, SPLITS
    from src.metrics import MONITOR_MODES
    from src.models.optim import PLATEAU_DEFAULTS, SCHEDULERS, build_optimizer, build_scheduler
    from src.models.registry import ARCHITECTURES, INITS

    def one_of(key: str, value, valid) -> None:
        if value not in valid:
            raise UserError(key, f"unknown value {value!r}; choose from {', '.join(map(str, valid))}")

    one_of("model", recipe.model, ARCHITECTURES)
    one_of("data", recipe.data, SOURCES)
    one_of("val_split", recipe.val_split, SPLITS)
    one_of("monitor", recipe.monitor, MONITOR_MODES)
    one_of("scheduler", recipe.scheduler, SCHEDULERS)
    one_of("init", recipe.init, INITS)
    for key in ("max_epochs", "batch_size", "eval_batch_size", "num_nodes", "progress_refresh"):
        if getattr(recipe, key) < 1:
            raise UserError(key, f"must be at least 1, got {getattr(recipe, key)}")
    if not 0 <= recipe.val_fraction < 1:
        raise UserError("val_fraction", f"must be at least 0 (0: no validation) and below 1, got {recipe.val_fraction}")
    if not 0 < recipe.lr < float("inf"):
        raise UserError("lr", f"must be a positive number, got {recipe.lr}")
    for key in ("seed", "split_seed"):
        if not 0 <= (getattr(recipe, key) or 0) < 2**32:
            raise UserError(key, f"must be between 0 and 2**32 - 1, got {getattr(recipe, key)}")
    for key in ("limit_train_batches", "limit_val_batches"):
        limit = getattr(recipe, key)
        if limit is not None and not (limit >= 0 and (isinstance(limit, int) or limit <= 1)):  # (NaN too)
            flag = "--" + key.replace("_", "-")
            raise UserError(flag, f"a batch count (0 or more) or a fraction in [0, 1], got {limit}")
    if recipe.limit_train_batches == 0:  # Lightning would skip training and test the initial weights
        raise UserError("--limit-train-batches", "0 trains nothing; give 1 or more batches, or a fraction above 0")
    if not 0 <= recipe.label_smoothing < 1:
        raise UserError("label_smoothing", f"must be in [0, 1), got {recipe.label_smoothing}")
    if recipe.ema_decay is not None and not 0 < recipe.ema_decay < 1:
        raise UserError("ema_decay", f"must be between 0 and 1, got {recipe.ema_decay}")
    if recipe.monitor.startswith("val/") and not validates(recipe):
        key, why = (
            ("val_fraction", "holds no images out")
            if recipe.val_fraction == 0
            else ("--limit-val-batches", "skips validation")
        )
        for watcher, present in (
            ("early stopping", recipe.early_stopping is not None),
            ("the plateau scheduler", recipe.scheduler == "plateau"),
        ):
            if present:
                raise UserError(key, f"0 {why}, but {watcher} watches {recipe.monitor}")
    if recipe.batch_schedule is not None:
        for epoch, size in recipe.batch_schedule.items():
            if not (isinstance(epoch, int) and isinstance(size, int) and epoch >= 0 and size >= 1):
                raise UserError(
                    "batch_schedule", f"expected epoch: batch size as whole numbers, got {epoch!r}: {size!r}"
                )
    from src.data.augment import Augmentation

    Augmentation.from_recipe(recipe.augment)
    import torch

    optimizer = build_optimizer(
        recipe.optimizer, [torch.zeros(1, requires_grad=True)], recipe.lr, recipe.optimizer_args
    )
    # The scheduler too is built and stepped once on that stand-in: a bad key or value fails here, not mid-fit.
    try:
        scheduler = build_scheduler(
            recipe.scheduler,
            optimizer,
            recipe.scheduler_args,
            MONITOR_MODES[recipe.monitor],
            100,
            recipe.max_epochs,
        )
        if scheduler is not None and recipe.scheduler != "plateau":  # (a plateau's step needs a metric)
            optimizer.step()
            scheduler["scheduler"].step()
    except (TypeError, ValueError) as e:
        raise UserError("scheduler_args", f"not accepted by {recipe.scheduler}: {e}") from None
    if recipe.early_stopping is not None:
        unknown = set(recipe.early_stopping) - set(EARLY_STOPPING_DEFAULTS)
        if unknown:
            raise UserError(
                "early_stopping", f"unknown key(s) {sorted(unknown)}; valid: {sorted(EARLY_STOPPING_DEFAULTS)}"
            )
        stopping = early_stopping_args(recipe)
        patience, min_delta = stopping["patience"], stopping["min_delta"]
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise UserError("early_stopping", f"patience must be a whole number of epochs >= 0, got {patience!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, int | float) or not 0 <= min_delta < float("inf"):
            raise UserError("early_stopping", f"min_delta must be a number >= 0, got {min_delta!r}")
        if recipe.scheduler == "plateau":
            reduce = recipe.scheduler_args.get("patience", PLATEAU_DEFAULTS["patience"])
            if patience <= reduce:
                warnings.warn(
                    f"early stopping patience {patience} <= plateau patience {reduce}: the LR will never drop",
                    stacklevel=2,
                )


def to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
