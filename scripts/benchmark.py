"""Speed of this project on the machine at hand, in one run: throughput, time-to-accuracy, start-up, memory.

    python scripts/benchmark.py [--batch-sizes 32 256] [--rounds 5] [--seconds 3] [--recipes configs/fast.yaml ...]

1. Throughput: lenet5 trained by this project (the default command's classifier, callbacks and
   TensorBoard logger) vs a plain PyTorch loop vs a conventional Lightning pipeline (per-sample Dataset
   + DataLoader, Lightning's default logger and checkpointing), same model, optimizer, device, threads,
   precision and memory format (the hardware plan's). Rounds are interleaved (A, B, C, A, B, C, ...) and the table
   shows medians and the median of per-round ratios, so a slow spell of a shared machine hits every
   contender alike.
2. Time-to-accuracy: each recipe (default configs/fast.yaml for 99.0%, configs/fast_995.yaml for 99.5%)
   trained in-process; every --probe-steps steps the model is evaluated on the MNIST test set (probe
   time excluded from training seconds).
3. Start-up: seconds from `python -m src.train` (the first recipe) to its first training step, and that
   process's peak host memory (and GPU memory of the in-process runs when there is a GPU).
"""

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision import transforms  # noqa: E402

from src.build import lay_out, make_classifier, make_datamodule  # noqa: E402
from src.callbacks import TrainThroughput, build_callbacks  # noqa: E402
from src.cli import Parser, positive_float, positive_int, quiet_lightning, run_command  # noqa: E402
from src.config import resolve_recipe  # noqa: E402
from src.data.datamodule import DigitsDataModule  # noqa: E402
from src.data.mnist import load_mnist  # noqa: E402
from src.data.transforms import MNIST_MEAN, MNIST_STD, normalise  # noqa: E402
from src.hardware import HardwareRequest, apply_global_settings, plan_hardware, probe_machine  # noqa: E402
from src.models import build_model  # noqa: E402
from src.models.optim import build_optimizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LENET5 = resolve_recipe({"model": "lenet5"})  # the default command's recipe


class PerSampleMNIST(Dataset):
    """What torchvision.datasets.MNIST does per item: a PIL image, ToTensor, Normalize."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index].numpy(), mode="L")
        return self.transform(image), int(self.labels[index])


class BareModule(pl.LightningModule):
    """The least a LightningModule can do: return the loss, log nothing. Trained on our loader, it
    measures what Lightning's loop itself costs per step, the floor under "ours"."""

    def __init__(self):
        super().__init__()
        self.net = build_model("lenet5")

    def training_step(self, batch, batch_idx):
        images, labels = batch
        return F.cross_entropy(self.net(images), labels)

    def configure_optimizers(self):
        return build_optimizer("adam", self.parameters(), 1e-3, {})


class ConventionalModule(BareModule):
    """The textbook LightningModule: loss logged per step, no extra metrics."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("train_loss", loss)
        return loss


def trainer(plan, steps: int, callbacks, run_dir: str | None = None) -> pl.Trainer:
    """One epoch cut at `steps` batches, no validation. With `run_dir`, a TensorBoard logger and
    checkpoints there (written after the last timed step), as a real run has."""
    return pl.Trainer(
        accelerator=plan.accelerator,
        devices=1,
        precision=plan.precision,
        max_epochs=1,
        limit_train_batches=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=TensorBoardLogger(run_dir) if run_dir else False,
        enable_checkpointing=run_dir is not None,
        enable_model_summary=False,
        callbacks=callbacks,
    )


def timed(callbacks=()) -> list:
    """A progress bar, a TrainThroughput and `callbacks`."""
    return [pl.callbacks.TQDMProgressBar(refresh_rate=20), TrainThroughput(), *callbacks]


def images_per_second(callbacks: list) -> float:
    return next(c for c in callbacks if isinstance(c, TrainThroughput)).images_per_second


def ours(plan, datamodule: DigitsDataModule, steps: int, compiled: bool = False) -> float:
    """What `python -m src.train --model lenet5` trains: its DigitClassifier, callbacks and logger."""
    model = make_classifier(LENET5, plan.memory_format)
    if compiled:
        model.net.compile()  # as --compile does; the graphs compiled by the warm-up round are reused
    with tempfile.TemporaryDirectory() as run_dir:
        callbacks = build_callbacks(LENET5, Path(run_dir))
        trainer(plan, steps, callbacks, run_dir).fit(model, datamodule=datamodule)
    return images_per_second(callbacks)


def bare(plan, datamodule: DigitsDataModule, steps: int) -> float:
    callbacks = timed()
    trainer(plan, steps, callbacks).fit(lay_out(BareModule(), plan.memory_format), datamodule=datamodule)
    return images_per_second(callbacks)


def conventional(plan, images, labels, batch_size: int, steps: int) -> float:
    """With Lightning's default logger and checkpointing, as a textbook run has them."""
    loader = DataLoader(PerSampleMNIST(images, labels), batch_size=batch_size, shuffle=True, num_workers=0)
    callbacks = timed()
    with tempfile.TemporaryDirectory() as run_dir:
        model = lay_out(ConventionalModule(), plan.memory_format)
        trainer(plan, steps, callbacks, run_dir).fit(model, train_dataloaders=loader)
    return images_per_second(callbacks)


def plain(plan, images, labels, batch_size: int, steps: int) -> float:
    """The pytorch/examples loop over in-memory tensors, normalised per batch like ours, in the plan's
    precision as Lightning runs it (autocast; a gradient scaler for fp16)."""
    device = torch.device(plan.accelerator)
    model = lay_out(build_model("lenet5"), plan.memory_format).to(device)
    optimizer = build_optimizer("adam", model.parameters(), 1e-3, {})  # as ours: fused where torch has it
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(plan.precision, torch.float32)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    images, labels = images.to(device), labels.to(device)
    order = torch.randperm(len(labels), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    sync()
    started = time.perf_counter()
    for step in range(steps):
        index = order[step * batch_size : (step + 1) * batch_size]
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not torch.float32):
            loss = F.cross_entropy(model(normalise(images[index])), labels[index])
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    sync()
    return steps * batch_size / (time.perf_counter() - started)


class TestAccuracyProbe(TrainThroughput):
    """Training seconds at which MNIST test accuracy first reaches each target (probe time excluded)."""

    def __init__(self, every_n_steps: int, targets: tuple[float, ...], device: torch.device):
        super().__init__()
        self.every_n_steps, self.targets = every_n_steps, targets
        images, self.labels = load_mnist("test")
        self.inputs, self.labels = normalise(images.to(device)), self.labels.to(device)
        self.reached: dict[float, tuple[float, int]] = {}
        self.last_accuracy = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        last_batch = batch_idx + 1 == trainer.num_training_batches
        probing = last_batch or trainer.global_step % self.every_n_steps == 0
        if probing:
            self._sync(trainer)  # the training time ends when the GPU has done the steps queued so far
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not probing:
            return
        pl_module.eval()
        with torch.inference_mode():
            predictions = torch.cat([pl_module(chunk).argmax(1) for chunk in self.inputs.split(2000)])
        pl_module.train()
        self.last_accuracy = (predictions == self.labels).float().mean().item()
        for target in self.targets:
            if self.last_accuracy >= target and target not in self.reached:
                self.reached[target] = (self.seconds, trainer.global_step)
        if len(self.reached) == len(self.targets):
            trainer.should_stop = True
        self._last = time.perf_counter()  # the probe itself is not training time


def time_to_accuracy(plan, recipe_file: str, every_n_steps: int, targets: tuple[float, ...]) -> TestAccuracyProbe:
    recipe = resolve_recipe({}, recipe_file)
    pl.seed_everything(recipe.seed, verbose=False)
    datamodule = make_datamodule(recipe)
    probe = TestAccuracyProbe(every_n_steps, targets, torch.device(plan.accelerator))
    trainer = pl.Trainer(
        accelerator=plan.accelerator,
        devices=1,
        precision=plan.precision,
        max_epochs=recipe.max_epochs,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        callbacks=[probe],
    )
    trainer.fit(make_classifier(recipe, plan.memory_format), datamodule=datamodule)
    return probe


def reached_cells(run: TestAccuracyProbe, targets: list[float]) -> str:
    return " | ".join(
        f"{run.reached[target][0]:.2f} s ({run.reached[target][1]} steps)"
        if target in run.reached
        else f"not reached (final {run.last_accuracy:.2%})"
        for target in targets
    )


def startup(recipe_file: str) -> tuple[float, float]:
    """(seconds from the command to the first training step, that process's peak RSS in MiB)."""
    with tempfile.TemporaryDirectory() as logdir:
        command = [sys.executable, "-m", "src.train", "--config", recipe_file, "--max-epochs", "1"]
        command += ["--limit-train-batches", "5", "--limit-val-batches", "1", "--logdir", logdir]
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        results = json.loads(next(Path(logdir).glob("*/version_0/results.json")).read_text())
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kilobytes on Linux
    return results["startup_seconds"], peak_mib


def paired_ratio(ones: list[float], others: list[float]) -> float:
    """The median over rounds of one / other, each pair measured in the same round."""
    return statistics.median(a / b for a, b in zip(ones, others, strict=True))


def print_throughput(rows: list, rounds: int) -> None:
    print(f"lenet5 training images/s: median of {rounds} interleaved rounds (min-max)\n")
    header = ["batch", "steps/round", "ours (as src.train trains)", "bare Lightning (loss only)"]
    header += ["plain PyTorch loop", "conventional Lightning (per-sample Dataset)", "ours / plain", "bare / plain"]
    header += ["ours / conventional"]
    print("| " + " | ".join(header) + " |\n|" + "---:|" * len(header))
    for batch_size, steps, median, spread, paired in rows:
        cells = [
            f"{median[n]:,.0f} ({spread[n][0]:,.0f}-{spread[n][1]:,.0f})"
            for n in ("ours", "bare", "plain", "conventional")
        ]
        cells += [f"{paired[n]:.2f}x" for n in ("plain", "bare / plain", "conventional")]
        print(f"| {batch_size} | {steps} | {' | '.join(cells)} |")
    print("\n(ratios: the median over rounds of one / the other within the same round)\n")


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: benchmark(argv))


def fraction(text: str) -> float:
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected an accuracy in (0, 1], got {text!r}")
    return value


def benchmark(argv: list[str] | None) -> int:
    parser = Parser(prog="scripts/benchmark.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--batch-sizes",
        type=positive_int,
        nargs="*",
        default=[32, 256],
        help="lenet5 throughput; none: time-to-accuracy only",
    )
    parser.add_argument("--rounds", type=positive_int, default=5, help="interleaved rounds per contender")
    parser.add_argument("--seconds", type=positive_float, default=3.0, help="rough length of one round")
    parser.add_argument("--accelerator", default=None)
    parser.add_argument(
        "--recipes", nargs="+", default=["configs/fast.yaml", "configs/fast_995.yaml"], help="for time-to-accuracy"
    )
    parser.add_argument("--probe-steps", type=positive_int, default=20, help="evaluate the test set every N steps")
    parser.add_argument("--targets", type=fraction, nargs="+", default=[0.99, 0.995])
    parser.add_argument("--compile", action="store_true", help="add ours with torch.compile (--compile) as a contender")
    args = parser.parse_args(argv)
    for recipe in args.recipes:  # a bad one fails now, not after the throughput rounds
        resolve_recipe({}, recipe)

    quiet_lightning()
    warnings.filterwarnings("ignore")
    probe = probe_machine()
    plan = plan_hardware(HardwareRequest(accelerator=args.accelerator), probe)
    apply_global_settings(plan)
    device = torch.device(plan.accelerator)
    rows = []
    compile_seconds = {}
    for batch_size in args.batch_sizes:
        datamodule = DigitsDataModule(batch_size=batch_size, val_fraction=0.1, val_split="tail")
        datamodule.setup()
        images, labels = datamodule.train_set.images, datamodule.train_set.labels
        # Size a round from a short plain run, then keep it within one epoch.
        rate = plain(plan, images, labels, batch_size, max(10, 2000 // batch_size))
        steps = max(20, min(int(rate * args.seconds / batch_size), len(labels) // batch_size))
        results = {"ours": [], "bare": [], "plain": [], "conventional": []}
        if args.compile:
            started = time.perf_counter()
            ours(plan, datamodule, 2, compiled=True)
            compile_seconds[batch_size] = time.perf_counter() - started
            results["compiled"] = []
        for _ in range(args.rounds):
            results["ours"].append(ours(plan, datamodule, steps))
            if args.compile:
                results["compiled"].append(ours(plan, datamodule, steps, compiled=True))
            results["bare"].append(bare(plan, datamodule, steps))
            results["plain"].append(plain(plan, images, labels, batch_size, steps))
            results["conventional"].append(conventional(plan, images, labels, batch_size, steps))
        median = {name: statistics.median(values) for name, values in results.items()}
        spread = {name: (min(v), max(v)) for name, v in results.items()}
        paired = {other: paired_ratio(results["ours"], results[other]) for other in results if other != "ours"}
        paired["bare / plain"] = paired_ratio(results["bare"], results["plain"])
        rows.append((batch_size, steps, median, spread, paired))
        print(f"batch {batch_size}: done", file=sys.stderr)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    accuracy_runs = {}
    for recipe in args.recipes:
        accuracy_runs[recipe] = run = time_to_accuracy(plan, recipe, args.probe_steps, tuple(args.targets))
        print(f"{recipe}: {reached_cells(run, args.targets)}", file=sys.stderr)  # kept if a later one is cut
    gpu_peak = f"{torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB" if device.type == "cuda" else "no GPU"
    startup_seconds, host_peak = startup(args.recipes[0])

    cpu = platform.processor() or platform.machine()
    gpu = f"{probe.cuda_devices} x {probe.cuda_name}" if probe.cuda_devices else "no GPU"
    print(
        f"\nmachine: {probe.cpu_cores} CPU cores ({cpu}), {gpu}; device {plan.accelerator}, {plan.precision}, "
        f"{plan.threads} threads, {plan.memory_format} weights"
    )
    print(f"torch {torch.__version__}, lightning {pl.__version__}, python {platform.python_version()}\n")
    if rows:
        print_throughput(rows, args.rounds)
    if rows and args.compile:
        print(
            "| batch | ours + torch.compile (images/s) | ours + compile / ours | compile warm-up s |\n|---:|---:|---:|---:|"
        )
        for batch_size, _, median, spread, paired in rows:
            print(
                f"| {batch_size} | {median['compiled']:,.0f} ({spread['compiled'][0]:,.0f}-{spread['compiled'][1]:,.0f}) "
                f"| {1 / paired['compiled']:.2f}x | {compile_seconds[batch_size]:.1f} |"
            )
        print()
    print(
        f"time-to-accuracy: training seconds (steps) until the MNIST test accuracy, read every {args.probe_steps} steps,"
    )
    print("first reaches the target\n")
    print(
        "| recipe | "
        + " | ".join(f"{target:.1%}" for target in args.targets)
        + " |\n|---|"
        + "---:|" * len(args.targets)
    )
    for recipe, run in accuracy_runs.items():
        print(f"| {recipe} | {reached_cells(run, args.targets)} |")
    print("\n| start-up and memory | |\n|---|---:|")
    print(f"| `python -m src.train --config {args.recipes[0]}` to its first training step | {startup_seconds:.1f} s |")
    print(f"| peak host memory of that training process | {host_peak:,.0f} MiB |")
    print(f"| peak GPU memory of the time-to-accuracy runs | {gpu_peak} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
