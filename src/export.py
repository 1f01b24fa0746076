"""python -m src.export --ckpt PATH --format onnx|torchscript: a standalone model that takes raw pixels in [0, 1]."""

import os
import shutil
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from src.atomic import WriteError, check_not_an_input, make_parent_folders
from src.cli import Parser, run_command
from src.data.transforms import MNIST_MEAN, MNIST_STD, normalise
from src.errors import UserError

FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
TOLERANCE = 1e-4  # max absolute difference of logits between the exported model and PyTorch
PARITY_IMAGES = 1000  # MNIST test images run through both, in one batch
SINGLE_IMAGES = 5  # of those, run one at a time: batch 1 is where a fixed batch size would show


class ExportedDigitModel(nn.Module):
    """Pixels float32 [N, 1, 28, 28] in [0, 1] (white digit on black, like MNIST) -> logits [N, 10]."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net((pixels - MNIST_MEAN) / MNIST_STD)


def build_parser() -> Parser:
    p = Parser(prog="python -m src.export", description="Export a checkpoint for use outside this project.")
    p.add_argument("--ckpt", required=True, help="a .ckpt file or a run directory (its best checkpoint)")
    p.add_argument(
        "--format", required=True, choices=tuple(FILE_NAMES), help="onnx (needs the [export] extra) or torchscript"
    )
    p.add_argument(
        "--output", default=None, help="file to write (default: RUN/export/model.onnx or model.torchscript.pt)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: _main(build_parser().parse_args(argv)))


def _main(args) -> int:
    return export(args.ckpt, args.format, args.output)  # `format` would shadow the builtin as a parameter


def export(ckpt: str, fmt: str, output: str | None) -> int:
    from src.checkpoints import load_classifier
    from src.data.mnist import load_mnist
    from src.runs import run_dir_of

    if fmt == "onnx":
        require_onnx()
    classifier, checkpoint_path = load_classifier(ckpt)
    target = Path(output) if output else run_dir_of(checkpoint_path) / "export" / FILE_NAMES[fmt]
    if target.is_dir():
        raise UserError(target, "is a directory; --output names the file to write")
    check_not_an_input("--output", target, [checkpoint_path])
    if target.suffix.lower() == ".ckpt":  # the run's last.ckpt, say: what --resume and evaluate read
        raise UserError("--output", f"{target} names a training checkpoint; an exported model is .onnx or .pt")
    images = load_mnist("test")[0][:PARITY_IMAGES]
    with torch.inference_mode():
        expected = classifier(normalise(images))  # the project's own pipeline is the reference
    model = ExportedDigitModel(classifier.net).eval()
    pixels = images.unsqueeze(1).float() / 255.0

    make_parent_folders(target)
    # Both exporters write by path (ONNX may add side files), so each writes into a private folder beside
    # the target; only a verified file is renamed into place, and the folder goes whatever happens.
    try:
        workdir = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    except OSError as e:
        raise WriteError(target, e) from None
    try:
        exported = workdir / target.name
        EXPORTERS[fmt](model, pixels[:2], exported)
        with torch.inference_mode():
            difference = compare(RUNNERS[fmt](exported), pixels, expected)
        if not difference <= TOLERANCE:  # (NaN too)
            print(
                f"error: {target}: exported model differs from PyTorch by {difference:.1e} (> {TOLERANCE:.0e})",
                file=sys.stderr,
            )
            return 1
        try:
            with open(exported, "rb") as f:
                os.fsync(f.fileno())
            os.replace(exported, target)
        except OSError as e:
            raise WriteError(target, e) from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"wrote {target} ({target.stat().st_size:,} bytes); max |logit difference| {difference:.1e}")
    return 0


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise UserError("--format onnx", f'needs {e.name}: pip install -e ".[export]"') from None


def compare(run, pixels: torch.Tensor, expected: torch.Tensor) -> float:
    """Max |logit difference| of `run` against `expected` [N, 10], at batch 1 and batch N; prints a summary."""
    singles = torch.cat([run(pixels[i : i + 1]) for i in range(SINGLE_IMAGES)])
    batched = run(pixels)
    difference = max((singles - expected[:SINGLE_IMAGES]).abs().max(), (batched - expected).abs().max()).item()
    agree = (batched.argmax(dim=1) == expected.argmax(dim=1)).sum().item()
    print(
        f"parity on MNIST test images (batch 1 x {SINGLE_IMAGES}, batch {len(pixels)}): "
        f"max |logit difference| {difference:.1e}, top-1 agrees on {agree}/{len(pixels)}"
    )
    return difference


@contextmanager
def torchscript_allowed():
    # TorchScript is deprecated (torch >= 2.11 warns on every jit call) but is still what this format is;
    # --format onnx is the forward-looking choice. Only that deprecation notice is silenced.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with torchscript_allowed():
        torch.jit.save(torch.jit.trace(model, example), path)


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    # The example batch is 2: torch.export specialises a dimension whose example size is 0 or 1.
    torch.onnx.export(
        model,
        (example,),
        path,
        dynamo=True,
        external_data=False,  # one self-contained file
        dynamic_shapes={"pixels": {0: torch.export.Dim("batch")}},
        input_names=["pixels"],
        output_names=["logits"],
        verbose=False,
    )


def run_torchscript(path: Path):
    with torchscript_allowed():
        return torch.jit.load(path)


def run_onnx(path: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda pixels: torch.from_numpy(session.run(None, {"pixels": pixels.numpy()})[0])


EXPORTERS = {"onnx": export_onnx, "torchscript": export_torchscript}
RUNNERS = {"onnx": run_onnx, "torchscript": run_torchscript}

if __name__ == "__main__":
    sys.exit(main())
