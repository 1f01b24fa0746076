"""python -m src.train --model lenet5: recipe + flags -> fit -> test the best checkpoint -> results.json."""

import math
import os
import sys
import time
from pathlib import Path

from src.cli import Parser, devices_value, limit_value, quiet_lightning, run_command
from src.config import Recipe, recipe_path, recipes_for, resolve_recipe, to_yaml, validates
from src.errors import UserError

IMPORTED_AT = time.time()  # start-up is measured from here: the interpreter and these imports take ~0.1 s
DEFAULTS = Recipe()


def build_parser() -> Parser:
    p = Parser(
        prog="python -m src.train",
        description="Train a digit classifier. Values come from configs/MODEL.yaml; flags override them.",
    )
    d = DEFAULTS

    def add(flag: str, help_text: str, default, **kwargs):
        p.add_argument(flag, default=None, help=f"{help_text} (default: recipe, else {default})", **kwargs)

    add("--model", "architecture and recipe name", d.model)
    p.add_argument("--config", default=None, help="recipe file to use instead of configs/MODEL.yaml")
    add("--data", "training data", d.data, choices=("mnist", "kaggle"))
    add("--data-dir", "folder with the MNIST files, or Kaggle's train.csv", "data/MNIST/raw")
    add("--accelerator", "cpu, gpu/cuda, mps or auto", d.accelerator)
    add("--devices", "processes per node: a number or 'auto' (all GPUs); >1 means DDP", 1, type=devices_value)
    add("--num-nodes", "machines in a multi-node DDP run", d.num_nodes, type=int)
    add("--strategy", "auto or ddp", "auto")
    add("--precision", "auto, 32-true, 16-mixed or bf16-mixed", "auto")
    add("--memory-format", "layout of the weights: auto, channels_last or contiguous", "auto")
    add("--max-epochs", "maximum epochs", d.max_epochs, type=int)
    add("--batch-size", "global batch size (divided across processes)", d.batch_size, type=int)
    add("--lr", "learning rate", d.lr, type=float)
    add("--seed", "random seed (split, init, shuffling)", d.seed, type=int)
    add("--split-seed", "seed of the random validation split alone", "--seed", type=int)
    add(
        "--val-fraction",
        "share of the labelled images held out; 0: train on all, keep the last epoch",
        d.val_fraction,
        type=float,
    )
    add("--limit-train-batches", "batches (int) or fraction (float) of training per epoch", "all", type=limit_value)
    add("--limit-val-batches", "batches (int) or fraction (float) of validation", "all", type=limit_value)
    add("--resume", "'last' (newest run of this model), a run directory or a .ckpt", "none")
    add("--logdir", "where run directories are created", d.logdir)
    p.add_argument("--fast-dev-run", action="store_true", default=None, help="one batch of each stage; writes nothing")
    p.add_argument("--deterministic", action="store_true", default=None, help="deterministic algorithms (slower)")
    p.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the model; off by default: 0.6-0.8x on a 2-core CPU (scripts/benchmark.py --compile)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: resolve_and_train(vars(build_parser().parse_args(argv))))


def resolve_and_train(args: dict) -> int:
    config_file = args.pop("config")
    print_config = args.pop("print_config")
    recipe = resolve_recipe(args, config_file)
    own_recipe = recipe_path(recipe.model)
    first_process = os.environ.get("LOCAL_RANK", "0") == "0"  # DDP re-runs this command in every process
    if config_file is None and not own_recipe.exists() and first_process:
        others = ", ".join(map(str, recipes_for(recipe.model)))
        print(
            f"note: there is no {own_recipe}: {recipe.model} trains with the code defaults"
            + (f"; its recipes: {others} (give one with --config)" if others else ""),
            file=sys.stderr,
        )
    if print_config:
        print(to_yaml(recipe), end="")
        return 0
    return train(recipe)


def train(recipe: Recipe) -> int:
    # Imported here so that `--help` answers at once, and `--print-config` and recipe errors without Lightning.
    import lightning.pytorch as pl

    from src.atomic import atomic_write_text
    from src.build import make_classifier, make_datamodule
    from src.callbacks import AtomicCheckpointIO, TrainThroughput, build_callbacks
    from src.hardware import HardwareRequest, apply_global_settings, describe, plan_hardware, probe_machine
    from src.interruption import SaveOnInterrupt
    from src.results import write_results
    from src.runs import check_writable, make_logger, remove_if_unsaved, resume_checkpoint, run_dir_to_continue

    started = time.perf_counter()
    probe = probe_machine()
    plan = plan_hardware(
        HardwareRequest(
            recipe.accelerator,
            recipe.devices,
            recipe.strategy,
            recipe.precision,
            recipe.num_nodes,
            recipe.memory_format,
        ),
        probe,
    )
    for size in [recipe.batch_size, *(recipe.batch_schedule or {}).values()]:
        if size % plan.processes:
            raise UserError("--batch-size", f"{size} does not divide across {plan.processes} processes")
    resume_from = resume_checkpoint(recipe) if recipe.resume else None
    quiet_lightning()
    apply_global_settings(plan)
    pl.seed_everything(recipe.seed, workers=True, verbose=False)

    datamodule = make_datamodule(recipe, plan.processes)
    datamodule.prepare_data()
    datamodule.setup("fit")  # every data error surfaces here, before anything is written
    check_batch_limits(recipe, datamodule, plan.processes)
    model = make_classifier(recipe, plan.memory_format)
    writes_files = not recipe.fast_dev_run
    continued = run_dir_to_continue(resume_from)
    if writes_files:  # a file in the way of LOGDIR/MODEL, say
        if continued:
            check_writable(continued / "checkpoints", "--resume")
        else:
            check_writable(Path(recipe.logdir) / recipe.model, "--logdir")
    logger = make_logger(recipe.logdir, recipe.model, plan.processes, continued)
    run_dir = Path(logger.log_dir)
    callbacks = build_callbacks(recipe, run_dir if writes_files else None)
    saver = next((c for c in callbacks if isinstance(c, SaveOnInterrupt)), None)  # None in a fast-dev-run
    trainer = pl.Trainer(
        **plan.trainer_kwargs(),
        max_epochs=recipe.max_epochs,
        logger=logger if writes_files else False,
        enable_checkpointing=writes_files,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        fast_dev_run=recipe.fast_dev_run,
        limit_train_batches=recipe.limit_train_batches,
        limit_val_batches=recipe.limit_val_batches if validates(recipe) else 0,
        deterministic=recipe.deterministic,
        reload_dataloaders_every_n_epochs=1 if recipe.batch_schedule else 0,
        log_every_n_steps=min(50, datamodule.train_batches_per_epoch(recipe.limit_train_batches, plan.processes)),
        enable_model_summary=False,
    )
    if trainer.is_global_zero:
        print(f"{recipe.model}: {model.parameter_count:,} parameters; seed {recipe.seed}")
        print(describe(plan, probe, recipe.batch_size))
        if writes_files:
            print(f"run directory: {run_dir}" + (f" (resuming {resume_from.name})" if resume_from else ""))
            atomic_write_text(run_dir / "config.yaml", to_yaml(recipe))

    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    except Exception:  # a run that fails once training starts: a NaN loss, a onecycle of too few steps, OOM
        if writes_files and continued is None and trainer.is_global_zero:
            remove_if_unsaved(run_dir)
        raise
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C and SIGTERM into these
        if not trainer.interrupted:
            raise
        if not writes_files:
            print("interrupted; a fast-dev-run writes nothing", file=sys.stderr)
        elif trainer.is_global_zero:
            if not saver.saved and continued is None:
                remove_if_unsaved(run_dir)
            print(saver.outcome(trainer, run_dir), file=sys.stderr)
        return 130
    complete = f"training is complete: test it with python -m src.evaluate --ckpt {run_dir}"
    if saver and saver.stop_requested:  # a stop asked for after the last epoch's check
        if trainer.is_global_zero:
            print(f"interrupted after the last epoch; {complete}", file=sys.stderr)
        return 130
    try:
        tested = test_best(trainer, model, datamodule, recipe, plan)
    except (KeyboardInterrupt, SystemExit):  # Lightning turns a Ctrl-C in testing into SystemExit(1)
        if not writes_files:
            raise
        print(f"interrupted in the final test; {complete}", file=sys.stderr)
        return 130
    if tested is None:  # a DDP process other than rank 0: its work ended with fit
        return 0
    if tested:
        tested_on = ("one batch of the " if recipe.fast_dev_run else "the ") + datamodule.test_description
        print(f"test accuracy {tested['test/acc']:.2%} (loss {tested['test/loss']:.4f}) on {tested_on}")
    else:
        print("not tested: every labelled image of train.csv was trained on (val_fraction 0)")
    if not writes_files:
        print("fast-dev-run: nothing was written")
        return 0
    if tested:
        logger.log_metrics({"hp_metric": tested["test/acc"]}, step=trainer.global_step)
    throughput = next(c for c in callbacks if isinstance(c, TrainThroughput))
    results = write_results(recipe, model, datamodule, trainer, tested, throughput, plan, started, IMPORTED_AT)
    epochs = f"{results['epochs_run']} epoch" + ("s" if results["epochs_run"] != 1 else "")
    print(f"{epochs}, {throughput.images_per_second:,.0f} training images/s; results: {run_dir}")
    return 0


def check_batch_limits(recipe: Recipe, datamodule, processes: int) -> None:
    """A fraction of an epoch's batches that rounds down to none (0.1 of MNIST's 6 validation batches):
    Lightning raises it mid-start, with a traceback, after the run directory is made."""
    limits = {
        "--limit-train-batches": (recipe.limit_train_batches, datamodule.train_batches_per_epoch(None, processes))
    }
    if validates(recipe):
        limits["--limit-val-batches"] = (recipe.limit_val_batches, datamodule.val_batches_per_epoch(processes))
    for flag, (limit, batches) in limits.items():
        if isinstance(limit, float) and int(batches * limit) == 0:
            raise UserError(
                flag,
                f"{limit:g} of {batches} batch(es) per epoch is none; give at least {math.ceil(1e4 / batches) / 1e4:g} "
                "or a number of batches",
            )


def test_best(trainer, model, datamodule, recipe: Recipe, plan) -> dict | None:
    """Test the best checkpoint (the final weights without one) in one process; None on other DDP ranks,
    {} when no labelled image is left to test on (a Kaggle run with val_fraction 0)."""
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import TQDMProgressBar

    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint and checkpoint.best_model_path else None
    tester = trainer
    # A fresh one-process Trainer after DDP (a DistributedSampler pads the test set with duplicates,
    # and synced metrics would wait for processes that have finished), with EMA (its callback would
    # load the raw weights from the checkpoint instead of the average it holds), and after mixed
    # precision: the test runs in full precision, as evaluate, predict and export read the checkpoint,
    # so that the run's test accuracy is the one they give.
    if trainer.world_size > 1:
        torch.distributed.destroy_process_group()
        if not trainer.is_global_zero:
            return None
    if not len(datamodule.test_set):
        return {}
    if trainer.world_size > 1 or recipe.ema_decay is not None or plan.precision != "32-true":
        tester = pl.Trainer(
            accelerator=plan.accelerator,
            devices=1,
            precision="32-true",
            logger=trainer.logger or False,  # None would be Lightning's default: ./lightning_logs
            enable_checkpointing=False,
            enable_model_summary=False,
            callbacks=[TQDMProgressBar(refresh_rate=recipe.progress_refresh)],
        )
    # Matrix multiplies without the plan's TF32, which was for training; convolutions keep cuDNN's default,
    # as in evaluate, predict and export.
    torch.set_float32_matmul_precision("highest")
    return tester.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False)[0]


if __name__ == "__main__":
    sys.exit(main())
