from dataclasses import replace

import pytest

from src.errors import UserError
from src.hardware import HardwareRequest, Probe, apply_global_settings, describe, plan_hardware

CPU = Probe(cpu_cores=8)
H100 = Probe(cuda_devices=1, cuda_name="H100", cuda_capability=(9, 0), cpu_cores=16)
V100 = Probe(cuda_devices=1, cuda_name="V100", cuda_capability=(7, 0), cpu_cores=8)
K80 = Probe(cuda_devices=1, cuda_name="K80", cuda_capability=(3, 7), cpu_cores=4)
FOUR_A100 = Probe(cuda_devices=4, cuda_name="A100", cuda_capability=(8, 0), cpu_cores=32)
MAC = Probe(mps=True, cpu_cores=10, cpu_arch="arm64")
ARM_SERVER = Probe(cpu_cores=64, cpu_arch="aarch64")
SAPPHIRE_RAPIDS = Probe(cpu_cores=2, cpu_amx=True)


def plan(probe, **asked):
    return plan_hardware(HardwareRequest(**asked), probe)


def test_cpu_only_machine():
    p = plan(CPU)
    assert (p.accelerator, p.devices, p.strategy, p.precision, p.threads) == ("cpu", 1, "auto", "32-true", 8)
    assert not p.cudnn_benchmark and not p.tf32


def test_one_gpu_with_bf16():
    p = plan(H100)
    assert (p.accelerator, p.devices, p.strategy, p.precision) == ("cuda", 1, "auto", "bf16-mixed")
    assert p.tf32 and p.cudnn_benchmark


def test_one_gpu_without_bf16_uses_fp16_and_older_gpus_full_precision():
    assert plan(V100).precision == "16-mixed" and not plan(V100).tf32
    assert plan(K80).precision == "32-true"


@pytest.mark.parametrize(
    "capability, precision", [((6, 1), "32-true"), ((7, 0), "16-mixed"), ((7, 5), "16-mixed"), ((8, 0), "bf16-mixed")]
)
def test_precision_changes_exactly_at_capability_7_0_and_8_0(capability, precision):
    assert plan(replace(H100, cuda_capability=capability)).precision == precision


def test_four_gpus_use_one_by_default_and_ddp_only_when_asked():
    assert plan(FOUR_A100).devices == 1
    p = plan(FOUR_A100, devices="auto")
    assert (p.devices, p.strategy, p.processes, p.threads) == (4, "ddp", 4, 8)
    assert "nccl" in p.reasons["strategy"]
    assert plan(replace(FOUR_A100, launched=True), devices=2, num_nodes=3).processes == 6


def test_mps_is_chosen_in_full_precision():
    p = plan(MAC)
    assert (p.accelerator, p.precision) == ("mps", "32-true")
    assert "--accelerator cpu" in p.reasons["accelerator"]


def test_explicit_requests_win_and_are_reported():
    p = plan(H100, accelerator="cpu", precision="bf16-mixed")
    assert (p.accelerator, p.precision) == ("cpu", "bf16-mixed")
    assert p.reasons["accelerator"] == "you asked for cpu" and p.reasons["precision"] == "you asked for bf16-mixed"
    assert plan(FOUR_A100, precision="32").precision == "32-true"


def test_cpu_ddp_only_when_asked_and_threads_are_shared():
    assert plan(CPU, devices="auto").devices == 1
    p = plan(CPU, devices=2)
    assert (p.strategy, p.threads) == ("ddp", 4) and "gloo" in p.reasons["strategy"]


def test_cpus_with_amx_train_in_bf16_unless_asked_otherwise():
    p = plan(SAPPHIRE_RAPIDS)
    assert (p.accelerator, p.precision) == ("cpu", "bf16-mixed") and "AMX" in p.reasons["precision"]
    assert plan(SAPPHIRE_RAPIDS, precision="32").precision == "32-true"
    assert plan(CPU).precision == "32-true"  # emulated bf16 is slow
    assert plan(MAC, accelerator="cpu").precision == "32-true"


def test_weights_are_channels_last_only_where_measured_faster_unless_asked():
    p = plan(CPU)
    assert p.memory_format == "channels_last" and "x86-64" in p.reasons["memory_format"]
    assert "memory       channels_last" in describe(p, CPU, 64)
    assert plan(H100).memory_format == "contiguous" and "not measured on cuda" in plan(H100).reasons["memory_format"]
    assert plan(MAC).memory_format == "contiguous"
    assert plan(ARM_SERVER).memory_format == "contiguous"
    assert "aarch64 CPUs" in plan(ARM_SERVER).reasons["memory_format"]
    asked = plan(CPU, memory_format="contiguous")
    assert asked.memory_format == "contiguous" and asked.reasons["memory_format"] == "you asked for contiguous"
    assert plan(H100, memory_format="channels_last").memory_format == "channels_last"


@pytest.mark.parametrize(
    "probe, asked, message",
    [
        (CPU, {"accelerator": "gpu"}, "gpu was asked for but no CUDA GPU is available here"),
        (H100, {"devices": 4}, "asked for 4 cuda devices but this machine has 1"),
        (CPU, {"precision": "16-mixed"}, "16-mixed needs a CUDA GPU of capability 7.0 or newer, not cpu"),
        (V100, {"precision": "bf16-mixed"}, r"bf16-mixed needs CUDA capability 8.0 or newer, this GPU has 7\.0$"),
        (K80, {"precision": "16-mixed"}, r"16-mixed needs a CUDA GPU of capability 7.0 or newer, this GPU has 3\.7$"),
        (CPU, {"accelerator": "tpu"}, "unknown accelerator 'tpu'"),
        (CPU, {"devices": 0}, "must be a positive number or 'auto'"),
        (CPU, {"devices": 64}, "asked for 64 CPU processes but this machine has 8 cores"),
        (CPU, {"memory_format": "nhwc"}, "unknown memory format 'nhwc'; choose from auto, channels_last, contiguous"),
    ],
)
def test_impossible_requests_are_one_line_errors(probe, asked, message):
    with pytest.raises(UserError, match=message):
        plan(probe, **asked)


def test_several_nodes_without_a_launcher_is_an_error_not_a_hang():
    with pytest.raises(UserError, match=r"^--num-nodes: 2 nodes need a launcher on each machine: torchrun, srun"):
        plan(FOUR_A100, devices=4, num_nodes=2)


def test_global_settings_turn_tf32_and_cudnn_autotuning_on_in_a_way_lightnings_cuda_trainer_accepts(monkeypatch):
    import torch
    from lightning.fabric.accelerators.cuda import _check_cuda_matmul_precision
    from lightning.pytorch.trainer.connectors.accelerator_connector import _set_torch_flags

    matmul, conv, autotune = (
        torch.get_float32_matmul_precision(),
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
    )
    threads = torch.get_num_threads()
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # restored after the test; Lightning sets it below
    try:
        apply_global_settings(plan(H100))
        assert (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) == ("tf32",) * 2
        assert torch.get_num_threads() == plan(H100).threads and torch.backends.cudnn.benchmark
        # What every Trainer on a CUDA device runs first: it raised after the new fp32_precision API alone.
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
        _check_cuda_matmul_precision.__wrapped__(torch.device("cuda", 0))
        # A Trainer keeps the plan's autotuning, except with --deterministic (autotuning picks by timing).
        _set_torch_flags(deterministic=None, benchmark=plan(H100).trainer_kwargs().get("benchmark"))
        assert torch.backends.cudnn.benchmark
        _set_torch_flags(deterministic=True, benchmark=plan(H100).trainer_kwargs().get("benchmark"))
        assert not torch.backends.cudnn.benchmark
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = conv, autotune
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)
