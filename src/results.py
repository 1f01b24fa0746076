"""results.json: what a finished training run reports, machine-readably, beside its checkpoints."""

import platform
import time
from pathlib import Path

from src.config import checkpoint_monitor
from src.runs import write_json


def write_results(
    recipe, model, datamodule, trainer, tested: dict, throughput, plan, started: float, imported_at: float
):
    """Write RUN/results.json and return it. `started`/`imported_at` are perf_counter()/time() readings."""
    import lightning.pytorch as pl
    import torch

    from src.callbacks import RunEarlyStopping

    checkpoint = trainer.checkpoint_callback
    monitor = checkpoint_monitor(recipe)
    best = checkpoint.best_model_path or None
    best_epoch = torch.load(best, map_location="cpu", weights_only=True)["epoch"] + 1 if best else None
    run_dir = Path(trainer.logger.log_dir)
    results = {
        "model": recipe.model,
        "parameters": model.parameter_count,
        "data": recipe.data,
        "evaluated_on": datamodule.test_description if tested else None,
        "test_acc": tested.get("test/acc"),
        "test_loss": tested.get("test/loss"),
        "epochs_run": trainer.current_epoch,
        "best_epoch": best_epoch,
        "monitor": monitor,
        "best_monitor_value": float(checkpoint.best_model_score) if best and monitor else None,
        "best_checkpoint": best,
        "last_checkpoint": str(last) if (last := run_dir / "checkpoints" / "last.ckpt").is_file() else None,
        "stopped_early": any(isinstance(c, RunEarlyStopping) and c.stopped for c in trainer.callbacks),
        "train_seconds": round(throughput.seconds, 3),
        "train_images": throughput.images,
        "train_images_per_second": round(throughput.images_per_second, 1),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "startup_seconds": round(throughput.first_step_at - imported_at, 3) if throughput.first_step_at else None,
        "seed": recipe.seed,
        "hardware": plan.to_dict(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "lightning": pl.__version__},
        "run_dir": str(run_dir),
    }
    write_json(run_dir / "results.json", results)
    return results
