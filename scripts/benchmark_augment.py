"""Cost of on-device augmentation: our affine_grid/grid_sample vs kornia, and lenet5 training with it on vs off.

    python scripts/benchmark_augment.py [--batch-size 256] [--rounds 5]

Prints two markdown tables: microseconds per batch for each implementation, and lenet5 training
images/s through the real DataModule + DigitClassifier with augmentation off and on (interleaved
rounds with the order rotated; the ratio is the median of per-round ratios, which a shared CPU's
fast and slow spells disturb least).
"""

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402

from scripts.benchmark import ours  # noqa: E402
from src.cli import quiet_lightning  # noqa: E402
from src.data.augment import Augmentation  # noqa: E402
from src.data.datamodule import DigitsDataModule  # noqa: E402
from src.data.mnist import load_mnist  # noqa: E402
from src.data.transforms import normalise  # noqa: E402
from src.hardware import HardwareRequest, apply_global_settings, plan_hardware, probe_machine  # noqa: E402

AFFINE = {"rotation": 10.0, "zoom": 0.1, "shift": 0.1}
ELASTIC = {**AFFINE, "elastic_alpha": 2.0, "elastic_sigma": 4.0}


def per_call_microseconds(function, batch: torch.Tensor, repeats: int) -> float:
    sync = torch.cuda.synchronize if batch.is_cuda else lambda: None  # a GPU runs behind the host clock
    for _ in range(5):
        function(batch)
    sync()
    started = time.perf_counter()
    for _ in range(repeats):
        function(batch)
    sync()
    return (time.perf_counter() - started) / repeats * 1e6


def kornia_contenders() -> dict:
    try:
        import kornia.augmentation as K
    except ImportError:
        return {}
    affine = K.RandomAffine(degrees=10.0, translate=(0.1, 0.1), scale=(0.9, 1.1), p=1.0)
    elastic = K.AugmentationSequential(
        K.RandomAffine(degrees=10.0, translate=(0.1, 0.1), scale=(0.9, 1.1), p=1.0),
        K.RandomElasticTransform(kernel_size=(25, 25), sigma=(4.0, 4.0), alpha=(1.0, 1.0), p=1.0),
    )
    return {"kornia affine": affine, "kornia affine + elastic": elastic}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60, help="training steps per round")
    args = parser.parse_args()
    quiet_lightning()
    warnings.filterwarnings("ignore")
    probe = probe_machine()
    plan = plan_hardware(HardwareRequest(), probe)
    apply_global_settings(plan)
    device = torch.device(plan.accelerator)

    images, _ = load_mnist("train")
    batch = normalise(images[: args.batch_size].to(device))
    contenders = {"ours affine": Augmentation(**AFFINE), "ours affine + elastic": Augmentation(**ELASTIC)}
    contenders.update(kornia_contenders())
    timings = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, function in contenders.items():
            timings[name].append(per_call_microseconds(function, batch, repeats=50))

    rates = {"off": [], "on (affine)": [], "on (affine + elastic)": []}
    datamodules = {
        "off": DigitsDataModule(batch_size=args.batch_size),
        "on (affine)": DigitsDataModule(batch_size=args.batch_size, augment=AFFINE),
        "on (affine + elastic)": DigitsDataModule(batch_size=args.batch_size, augment=ELASTIC),
    }
    for datamodule in datamodules.values():
        datamodule.setup()
    names = list(datamodules)
    for round_index in range(args.rounds):
        for name in names[round_index % 3 :] + names[: round_index % 3]:  # rotate who goes first
            rates[name].append(ours(plan, datamodules[name], args.steps))

    print(
        f"\nmachine: {probe.cpu_cores} CPU cores ({platform.machine()}), device {plan.accelerator}, {plan.threads} threads; "
    )
    print(
        f"torch {torch.__version__}, lightning {pl.__version__}; batch {args.batch_size}; medians of {args.rounds} interleaved rounds\n"
    )
    print("| augmentation | microseconds per batch | microseconds per image |")
    print("|---|---:|---:|")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"| {name} | {median:,.0f} | {median / args.batch_size:.2f} |")
    if not any(name.startswith("kornia") for name in timings):
        print("| kornia | not installed (`pip install kornia`) | |")
    print("\n| lenet5 training, augmentation | images/s (median) | vs off (median of per-round ratios) |")
    print("|---|---:|---:|")
    for name, values in rates.items():
        ratio = statistics.median(v / off for v, off in zip(values, rates["off"], strict=True))
        print(f"| {name} | {statistics.median(values):,.0f} | {ratio:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
