"""Training throughput of lenet5: this project vs a plain PyTorch loop vs a conventional Lightning pipeline.

    python scripts/benchmark.py [--batch-sizes 32 256] [--rounds 5] [--seconds 3]

All three train the same LeNet-5 with Adam on the same 54,000 MNIST images, on the same device and
thread count. Rounds are interleaved (A, B, C, A, B, C, ...) and the table shows medians, so a slow
spell of a shared machine hits every contender alike. Prints one markdown table.
"""

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision import transforms  # noqa: E402

from src.callbacks import TrainThroughput  # noqa: E402
from src.data.datamodule import DigitsDataModule  # noqa: E402
from src.data.transforms import MNIST_MEAN, MNIST_STD, normalise  # noqa: E402
from src.hardware import HardwareRequest, apply_global_settings, plan_hardware, probe_machine  # noqa: E402
from src.models import build_model  # noqa: E402
from src.models.classifier import DigitClassifier  # noqa: E402
from src.train import quiet_lightning  # noqa: E402


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


class ConventionalModule(pl.LightningModule):
    """The textbook LightningModule: loss logged per step, no extra metrics."""

    def __init__(self):
        super().__init__()
        self.net = build_model("lenet5")

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = F.cross_entropy(self.net(images), labels)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def trainer(plan, steps: int, callbacks) -> pl.Trainer:
    return pl.Trainer(
        accelerator=plan.accelerator,
        devices=1,
        precision=plan.precision,
        max_epochs=1,
        limit_train_batches=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[pl.callbacks.TQDMProgressBar(refresh_rate=20), *callbacks],
    )


def ours(plan, datamodule: DigitsDataModule, steps: int) -> float:
    throughput = TrainThroughput()
    trainer(plan, steps, [throughput]).fit(DigitClassifier(arch="lenet5", lr=1e-3), datamodule=datamodule)
    return throughput.images_per_second


def conventional(plan, images, labels, batch_size: int, steps: int) -> float:
    loader = DataLoader(PerSampleMNIST(images, labels), batch_size=batch_size, shuffle=True, num_workers=0)
    throughput = TrainThroughput()
    trainer(plan, steps, [throughput]).fit(ConventionalModule(), train_dataloaders=loader)
    return throughput.images_per_second


def plain(device: torch.device, images, labels, batch_size: int, steps: int) -> float:
    """The pytorch/examples loop over in-memory tensors, normalised per batch like ours."""
    model = build_model("lenet5").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, labels = images.to(device), labels.to(device)
    order = torch.randperm(len(labels), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    sync()
    started = time.perf_counter()
    for step in range(steps):
        index = order[step * batch_size : (step + 1) * batch_size]
        loss = F.cross_entropy(model(normalise(images[index])), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sync()
    return steps * batch_size / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per contender")
    parser.add_argument("--seconds", type=float, default=3.0, help="rough length of one round")
    parser.add_argument("--accelerator", default=None)
    args = parser.parse_args()

    quiet_lightning()
    warnings.filterwarnings("ignore")
    probe = probe_machine()
    plan = plan_hardware(HardwareRequest(accelerator=args.accelerator), probe)
    apply_global_settings(plan)
    device = torch.device(plan.accelerator)
    rows = []
    for batch_size in args.batch_sizes:
        datamodule = DigitsDataModule(batch_size=batch_size, val_fraction=0.1, val_split="tail")
        datamodule.setup()
        images, labels = datamodule.train_set.images, datamodule.train_set.labels
        # Size a round from a short plain run, then keep it within one epoch.
        rate = plain(device, images, labels, batch_size, max(10, 2000 // batch_size))
        steps = max(20, min(int(rate * args.seconds / batch_size), len(labels) // batch_size))
        results = {"ours": [], "plain": [], "conventional": []}
        for _ in range(args.rounds):
            results["ours"].append(ours(plan, datamodule, steps))
            results["plain"].append(plain(device, images, labels, batch_size, steps))
            results["conventional"].append(conventional(plan, images, labels, batch_size, steps))
        median = {name: statistics.median(values) for name, values in results.items()}
        spread = {name: (min(v), max(v)) for name, v in results.items()}
        rows.append((batch_size, steps, median, spread))
        print(f"batch {batch_size}: done", file=sys.stderr)

    cpu = platform.processor() or platform.machine()
    gpu = f"{probe.cuda_devices} x {probe.cuda_name}" if probe.cuda_devices else "no GPU"
    print(f"\nlenet5 training throughput, images/s (median of {args.rounds} interleaved rounds; min-max in brackets)")
    print(
        f"machine: {probe.cpu_cores} CPU cores ({cpu}), {gpu}; device {plan.accelerator}, {plan.precision}, {plan.threads} threads"
    )
    print(
        f"torch {torch.__version__}, lightning {pl.__version__}, python {platform.python_version()}, pid {os.getpid()}\n"
    )
    print(
        "| batch | steps/round | ours (Lightning + batched indexing) | plain PyTorch loop | conventional Lightning (per-sample Dataset) | ours / plain | ours / conventional |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for batch_size, steps, median, spread in rows:
        cells = [
            f"{median[n]:,.0f} ({spread[n][0]:,.0f}-{spread[n][1]:,.0f})" for n in ("ours", "plain", "conventional")
        ]
        print(
            f"| {batch_size} | {steps} | {' | '.join(cells)} | {median['ours'] / median['plain']:.2f}x | "
            f"{median['ours'] / median['conventional']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
