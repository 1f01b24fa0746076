"""Training and inference speed of every CNN in each memory layout and precision the hardware plan chooses between.

    python scripts/benchmark_plan.py [--models lenet5 deep_bn_cnn] [--rounds 5] [--precision 32-true bf16-mixed]

Each model trains at its recipe's batch size with its recipe's optimizer, on the hardware plan's device and
threads, on random inputs (speed does not depend on the data), with its weights in NCHW (contiguous) or NHWC
(channels_last) and in each precision asked for. Rounds are interleaved and the table shows medians, and
each contender's speed relative to NCHW in full precision as the median of per-round ratios: the evidence
for the plan's `memory_format` and `precision` rules (src/hardware.py). A second table does the same for
inference as evaluate and predict run it (eval mode, full precision, batches of 1,000).
"""

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from src.build import lay_out  # noqa: E402
from src.config import resolve_recipe  # noqa: E402
from src.hardware import HardwareRequest, apply_global_settings, plan_hardware, probe_machine  # noqa: E402
from src.models import build_model  # noqa: E402
from src.models.optim import build_optimizer  # noqa: E402
from src.models.registry import ARCHITECTURES  # noqa: E402

CNNS = tuple(name for name in ARCHITECTURES if any(isinstance(m, torch.nn.Conv2d) for m in build_model(name).modules()))
RECIPE_OF = {"fast_cnn": "configs/fast.yaml"}  # the architectures whose recipe file has another name
LAYOUTS = ("contiguous", "channels_last")
BASELINE = ("contiguous", "32-true")
INFERENCE_BATCH = 1000  # src.evaluate's default --batch-size


class Contender:
    """One model in one layout and precision, trained a few steps at a time on a fixed random batch."""

    def __init__(self, arch: str, batch_size: int, layout: str, precision: str, device: torch.device):
        recipe = resolve_recipe({"model": arch}, RECIPE_OF.get(arch))
        torch.manual_seed(0)
        self.model = lay_out(build_model(arch, recipe.init), layout).to(device)
        self.optimizer = build_optimizer(recipe.optimizer, self.model.parameters(), recipe.lr, recipe.optimizer_args)
        self.inputs = torch.randn(batch_size, 1, 28, 28, device=device)
        self.eval_inputs = torch.randn(INFERENCE_BATCH, 1, 28, 28, device=device)
        self.labels = torch.randint(0, 10, (batch_size,), device=device)
        self.device, self.bf16 = device, precision == "bf16-mixed"
        self.sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None  # a GPU runs behind the clock

    def images_per_second(self, steps: int) -> float:
        self.sync()
        started = time.perf_counter()
        for _ in range(steps):
            autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
            with autocast:
                loss = F.cross_entropy(self.model(self.inputs), self.labels)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.sync()
        return steps * len(self.labels) / (time.perf_counter() - started)

    def inference_images_per_second(self, batches: int) -> float:
        self.model.eval()
        self.sync()
        started = time.perf_counter()
        with torch.inference_mode():
            for _ in range(batches):
                self.model(self.eval_inputs).softmax(dim=1).cpu()  # .cpu() waits for a GPU, as evaluate does
        self.model.train()
        return batches * INFERENCE_BATCH / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(CNNS), choices=CNNS)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per contender")
    parser.add_argument("--images", type=int, default=2000, help="training images per contender per round")
    parser.add_argument("--precision", nargs="+", default=["32-true", "bf16-mixed"], choices=["32-true", "bf16-mixed"])
    parser.add_argument("--accelerator", default=None)
    args = parser.parse_args()

    probe = probe_machine()
    plan = plan_hardware(HardwareRequest(accelerator=args.accelerator), probe)
    apply_global_settings(plan)
    device = torch.device(plan.accelerator)
    kinds = [(layout, precision) for precision in dict.fromkeys(["32-true", *args.precision]) for layout in LAYOUTS]
    rows, inference_rows = [], []
    for arch in args.models:
        batch_size = resolve_recipe({"model": arch}, RECIPE_OF.get(arch)).batch_size
        steps = max(2, args.images // batch_size)
        contenders = {kind: Contender(arch, batch_size, *kind, device) for kind in kinds}
        for contender in contenders.values():
            contender.images_per_second(1)  # warm-up: oneDNN builds its kernels for these shapes
            contender.inference_images_per_second(1)
        rates = {kind: [] for kind in kinds}
        inference = {layout: [] for layout in LAYOUTS}
        for _ in range(args.rounds):
            for kind, contender in contenders.items():
                rates[kind].append(contender.images_per_second(steps))
            for layout in LAYOUTS:
                batches = max(1, 2 * args.images // INFERENCE_BATCH)
                inference[layout].append(contenders[layout, "32-true"].inference_images_per_second(batches))
        for kind in kinds:
            ratio = statistics.median(a / b for a, b in zip(rates[kind], rates[BASELINE], strict=True))
            rows.append((arch, batch_size, *kind, statistics.median(rates[kind]), ratio))
        nchw, nhwc = inference["contiguous"], inference["channels_last"]
        ratio = statistics.median(a / b for a, b in zip(nhwc, nchw, strict=True))
        inference_rows.append((arch, statistics.median(nchw), statistics.median(nhwc), ratio))
        print(f"{arch}: done", file=sys.stderr)

    amx = "AMX" if probe.cpu_amx else "no AMX"
    print(
        f"\nmachine: {probe.machine}, {amx}; device {plan.accelerator}, {plan.threads} threads; torch {torch.__version__}"
    )
    print(f"plan on this machine: {plan.memory_format} weights, {plan.precision}")
    print(f"training images/s, median of {args.rounds} interleaved rounds\n")
    print("| model | batch | layout | precision | images/s | vs NCHW 32-true |\n|---|---:|---|---|---:|---:|")
    for arch, batch_size, layout, precision, rate, ratio in rows:
        print(f"| {arch} | {batch_size} | {layout} | {precision} | {rate:,.0f} | {ratio:.2f}x |")
    print(f"\ninference images/s (evaluate, predict): eval mode, 32-true, batch {INFERENCE_BATCH:,}\n")
    print("| model | NCHW | NHWC | NHWC vs NCHW |\n|---|---:|---:|---:|")
    for arch, nchw, nhwc, ratio in inference_rows:
        print(f"| {arch} | {nchw:,.0f} | {nhwc:,.0f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
