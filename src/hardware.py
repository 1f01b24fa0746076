"""What hardware is here, and which Trainer arguments use it well (DESIGN.md, "The hardware plan")."""

import os
import platform
from dataclasses import asdict, dataclass, field

from src.errors import UserError

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
STRATEGIES = ("auto", "ddp")
PRECISIONS = ("auto", "32-true", "16-mixed", "bf16-mixed")
PRECISION_ALIASES = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
# What torchrun, SLURM or a hand-started node (Lightning's default environment) sets on each machine.
LAUNCHER_VARIABLES = ("TORCHELASTIC_RUN_ID", "SLURM_JOB_ID", "NODE_RANK")


@dataclass(frozen=True)
class Probe:
    """Facts about the machine; tests build fake ones."""

    cuda_devices: int = 0
    cuda_name: str = ""
    cuda_capability: tuple[int, int] = (0, 0)
    mps: bool = False
    cpu_cores: int = 1
    cpu_arch: str = "x86_64"
    cpu_amx: bool = False  # Intel AMX: bf16 matrix units in the CPU
    launched: bool = False  # a multi-node launcher's variables are set (torchrun, SLURM, or NODE_RANK)

    @property
    def machine(self) -> str:
        """A short name for result tables: the GPU's, else the CPU's core count."""
        if self.cuda_devices:
            return f"{self.cuda_devices}x {self.cuda_name}" if self.cuda_devices > 1 else self.cuda_name
        return f"{self.cpu_cores}-core CPU ({self.cpu_arch})"


@dataclass(frozen=True)
class HardwareRequest:
    """What the user asked for; None means "not asked", so the plan decides and says why."""

    accelerator: str | None = None
    devices: int | str | None = None
    strategy: str | None = None
    precision: str | None = None
    num_nodes: int = 1
    memory_format: str | None = None


@dataclass(frozen=True)
class HardwarePlan:
    accelerator: str  # "cpu", "cuda" or "mps"
    devices: int  # per node
    strategy: str  # "auto" (one process) or "ddp"
    precision: str
    threads: int  # torch intra-op threads per process
    num_nodes: int = 1
    memory_format: str = "contiguous"  # of the model's weights: "channels_last" or "contiguous" (NCHW)
    tf32: bool = False
    cudnn_benchmark: bool = False
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def processes(self) -> int:
        return self.devices * self.num_nodes

    def trainer_kwargs(self) -> dict:
        return {
            "accelerator": self.accelerator,
            "devices": self.devices,
            "num_nodes": self.num_nodes,
            "strategy": self.strategy,
            "precision": self.precision,
        }

    def to_dict(self) -> dict:
        return {**asdict(self), "processes": self.processes}


def probe_machine() -> Probe:
    """Detect CUDA devices, MPS and CPU cores (no side effects beyond initialising CUDA)."""
    import torch

    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return Probe(
        cuda_devices=cuda,
        cuda_name=torch.cuda.get_device_name(0) if cuda else "",
        cuda_capability=torch.cuda.get_device_capability(0) if cuda else (0, 0),
        mps=mps,
        cpu_cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
        cpu_arch=platform.machine(),
        cpu_amx=_cpu_has_amx(torch),
        launched=any(name in os.environ for name in LAUNCHER_VARIABLES),
    )


def _cpu_has_amx(torch) -> bool:
    # torch's own check is private: without it, assume no AMX (full precision, the safe choice).
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check and check())


def plan_hardware(requested: HardwareRequest, probe: Probe) -> HardwarePlan:
    """Decide accelerator, devices, strategy, precision, threads and memory format; explicit requests win."""
    reasons: dict[str, str] = {}
    accelerator = _plan_accelerator(requested.accelerator, probe, reasons)
    devices = _plan_devices(requested.devices, accelerator, probe, reasons)
    num_nodes = requested.num_nodes
    if num_nodes < 1:
        raise UserError("--num-nodes", f"must be at least 1, got {num_nodes}")
    if num_nodes > 1 and not probe.launched:  # Lightning would wait for the other nodes forever
        raise UserError(
            "--num-nodes",
            f"{num_nodes} nodes need a launcher on each machine: torchrun, srun, or MASTER_ADDR, MASTER_PORT "
            "and NODE_RANK set (README: Several GPUs and several machines)",
        )
    processes = devices * num_nodes

    strategy = requested.strategy or "auto"
    if strategy not in STRATEGIES:
        raise UserError("--strategy", f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if requested.strategy:
        reasons["strategy"] = f"you asked for {strategy}"
    if strategy == "auto":
        strategy = "ddp" if processes > 1 else "auto"
        reasons["strategy"] = "DDP: more than one process" if processes > 1 else "one process"
    backend = "nccl" if accelerator == "cuda" else "gloo"
    if strategy == "ddp":
        reasons["strategy"] += f" ({backend})"

    precision = _plan_precision(requested.precision, accelerator, probe, reasons)
    memory_format = _plan_memory_format(requested.memory_format, accelerator, probe, reasons)
    threads = max(1, probe.cpu_cores // devices)
    reasons["threads"] = f"{probe.cpu_cores} cores / {devices} process(es) on this node"
    ampere = accelerator == "cuda" and probe.cuda_capability >= (8, 0)
    return HardwarePlan(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        precision=precision,
        threads=threads,
        num_nodes=num_nodes,
        memory_format=memory_format,
        tf32=ampere,
        cudnn_benchmark=accelerator == "cuda",
        reasons=reasons,
    )


def _plan_accelerator(asked: str | None, probe: Probe, reasons: dict[str, str]) -> str:
    asked = asked or "auto"
    if asked not in ACCELERATORS:
        raise UserError("--accelerator", f"unknown accelerator {asked!r}; choose from {', '.join(ACCELERATORS)}")
    if asked == "auto":
        if probe.cuda_devices:
            reasons["accelerator"] = "auto: CUDA is available"
            return "cuda"
        if probe.mps:
            reasons["accelerator"] = "auto: MPS is available (for tiny models `--accelerator cpu` may be faster)"
            return "mps"
        reasons["accelerator"] = "auto: no GPU found"
        return "cpu"
    if asked in ("gpu", "cuda"):
        if not probe.cuda_devices:
            raise UserError("--accelerator", f"{asked} was asked for but no CUDA GPU is available here")
        asked = "cuda"
    if asked == "mps" and not probe.mps:
        raise UserError("--accelerator", "mps was asked for but MPS is not available here")
    reasons["accelerator"] = f"you asked for {asked}"
    return asked


def _plan_devices(asked: int | str | None, accelerator: str, probe: Probe, reasons: dict[str, str]) -> int:
    available = probe.cuda_devices if accelerator == "cuda" else 1
    if asked is None:
        reasons["devices"] = "default: one device (DDP only when asked for)"
        return 1
    if asked == "auto":
        if accelerator == "cpu":
            reasons["devices"] = "auto on CPU: one process (DDP on one CPU is no faster)"
            return 1
        reasons["devices"] = f"auto: all {available} {accelerator} device(s)"
        return available
    count = int(asked)
    if count < 1:
        raise UserError("--devices", f"must be a positive number or 'auto', got {asked}")
    if accelerator != "cpu" and count > available:
        raise UserError("--devices", f"asked for {count} {accelerator} devices but this machine has {available}")
    if accelerator == "cpu" and count > probe.cpu_cores:
        raise UserError("--devices", f"asked for {count} CPU processes but this machine has {probe.cpu_cores} cores")
    reasons["devices"] = f"you asked for {count}"
    return count


def _plan_precision(asked: str | None, accelerator: str, probe: Probe, reasons: dict[str, str]) -> str:
    asked = PRECISION_ALIASES.get(asked, asked) if asked else "auto"
    if asked not in PRECISIONS:
        raise UserError("--precision", f"unknown precision {asked!r}; choose from {', '.join(PRECISIONS)}")
    capability = probe.cuda_capability if accelerator == "cuda" else (0, 0)
    if asked == "auto":
        if capability >= (8, 0):
            reasons["precision"] = f"auto: bf16 on CUDA capability {capability[0]}.{capability[1]}"
            return "bf16-mixed"
        if capability >= (7, 0):
            reasons["precision"] = f"auto: fp16 on CUDA capability {capability[0]}.{capability[1]} (no bf16)"
            return "16-mixed"
        # AMX runs bf16 convolutions and matrix multiplies natively: the CNNs here trained 1.3-2.8x faster
        # with bf16 autocast than in fp32 (NHWC, scripts/benchmark_plan.py); only lenet5 at batch 32 was
        # slower (0.9x). Without AMX, bf16 on a CPU is emulated: 0.07-0.35x of fp32 on an AVX2 AMD EPYC.
        if accelerator == "cpu" and probe.cpu_amx:
            reasons["precision"] = "auto: bf16 on a CPU with AMX (bf16 matrix units)"
            return "bf16-mixed"
        reasons["precision"] = f"auto: full precision on {accelerator}"
        return "32-true"
    this_gpu = f"this GPU has {capability[0]}.{capability[1]}"
    # Lightning silently turns 16-mixed on CPU into bf16-mixed; refuse instead of surprising the user.
    if asked == "16-mixed" and capability < (7, 0):
        has = this_gpu if accelerator == "cuda" else f"not {accelerator}"
        raise UserError("--precision", f"16-mixed needs a CUDA GPU of capability 7.0 or newer, {has}")
    if asked == "bf16-mixed" and accelerator == "cuda" and capability < (8, 0):
        raise UserError("--precision", f"bf16-mixed needs CUDA capability 8.0 or newer, {this_gpu}")
    if asked == "bf16-mixed" and accelerator == "mps":
        raise UserError("--precision", "bf16-mixed is not supported on MPS")
    reasons["precision"] = f"you asked for {asked}"
    return asked


def plan_memory_format(accelerator: str, probe: Probe) -> str:
    """What --memory-format auto picks for `accelerator` on this machine."""
    return _plan_memory_format(None, accelerator, probe, {})


def _plan_memory_format(asked: str | None, accelerator: str, probe: Probe, reasons: dict[str, str]) -> str:
    asked = asked or "auto"
    if asked not in MEMORY_FORMATS:
        raise UserError("--memory-format", f"unknown memory format {asked!r}; choose from {', '.join(MEMORY_FORMATS)}")
    if asked != "auto":
        reasons["memory_format"] = f"you asked for {asked}"
        return asked
    # oneDNN's convolutions and max pooling are faster on NHWC: every CNN here trained 1.06-1.69x faster
    # in fp32 on a 2-core Intel CPU with AMX, and 0.99x (keras_cnn) to 1.64x on a 2-core AMD EPYC with AVX2
    # (scripts/benchmark_plan.py). Not measured on other architectures.
    if accelerator == "cpu" and probe.cpu_arch in ("x86_64", "AMD64"):
        reasons["memory_format"] = "auto: NHWC convolutions are faster on x86-64 CPUs (measured)"
        return "channels_last"
    where = f"{probe.cpu_arch} CPUs" if accelerator == "cpu" else accelerator
    reasons["memory_format"] = f"auto: NCHW (channels_last not measured on {where})"
    return "contiguous"


def apply_global_settings(plan: HardwarePlan) -> None:
    """Thread count, TF32 and cuDNN's autotuning, before the first matrix multiply and convolution. Set here, not
    as Trainer(benchmark=...), so that the benchmark scripts' own loops run as training does; a Trainer with
    deterministic=True still turns autotuning off (it picks algorithms by timing, so it is not deterministic)."""
    import torch

    torch.set_num_threads(plan.threads)
    if plan.accelerator != "cuda":
        # Lightning sets this at import to keep forked workers usable with CUDA. With CUDA never
        # initialised, it makes every Adam step dlopen NVML (~0.3 ms each on a CUDA build, measured).
        os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    if plan.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    if plan.tf32:
        # The legacy setters, not `torch.backends.cuda.matmul.fp32_precision = "tf32"`: Lightning reads
        # torch.get_float32_matmul_precision() as every CUDA Trainer starts, and torch (2.14) raises there
        # ("mix of the legacy and new APIs") once only the new one was written.
        torch.set_float32_matmul_precision("high")  # (cuDNN's convolutions use TF32 by default)


def describe(plan: HardwarePlan, probe: Probe, global_batch: int) -> str:
    """The short table printed at start: what is here, what was chosen and why."""
    gpu = f"{probe.cuda_devices} x {probe.cuda_name}" if probe.cuda_devices else "none"
    per_process = global_batch // plan.processes
    rows = [
        ("machine", f"CUDA GPUs: {gpu}; MPS: {'yes' if probe.mps else 'no'}; CPU cores: {probe.cpu_cores}"),
        ("accelerator", f"{plan.accelerator:<13} {plan.reasons.get('accelerator', '')}"),
        ("devices", f"{plan.devices:<13} {plan.reasons.get('devices', '')}"),
        ("strategy", f"{plan.strategy:<13} {plan.reasons.get('strategy', '')}"),
        ("precision", f"{plan.precision:<13} {plan.reasons.get('precision', '')}"),
        ("threads", f"{plan.threads:<13} {plan.reasons.get('threads', '')}"),
        ("memory", f"{plan.memory_format:<13} {plan.reasons.get('memory_format', '')}"),
        ("batch", f"{global_batch:<13} global; {per_process} per process x {plan.processes} process(es)"),
    ]
    return "\n".join(f"  {name:<12} {value}" for name, value in rows)
