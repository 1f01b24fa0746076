import sys

import pytest
import torch

from src import export
from src.checkpoints import load_classifier
from src.data.mnist import load_mnist
from src.data.transforms import normalise

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A deep_bn_cnn run trained for 30 batches: real weights, with batch norm and dropout, so that an export
    left in training mode would give other logits (and different ones at batch 1 and batch 64)."""
    from src.train import main as train

    logdir = tmp_path_factory.mktemp("export_run")
    argv = ["--model", "deep_bn_cnn", "--max-epochs", "1", "--limit-train-batches", "30", "--limit-val-batches", "2"]
    assert train([*argv, "--logdir", str(logdir)]) == 0
    return logdir / "deep_bn_cnn" / "version_0"


@pytest.fixture(scope="module")
def reference(run_dir):
    """1,000 MNIST test images as a user would feed them (float [N, 1, 28, 28] in [0, 1]) and the classifier's logits."""
    images = load_mnist("test")[0][:1000]
    classifier, _ = load_classifier(run_dir)
    with torch.inference_mode():
        expected = classifier(normalise(images))
    return images.unsqueeze(1).float() / 255.0, expected


def assert_matches(run, reference):
    """`run` (float [N, 1, 28, 28] -> logits) gives the classifier's logits at batch 1 and at batch 64."""
    pixels, expected = reference
    singles = torch.cat([run(pixels[i : i + 1]) for i in range(8)])
    batched = torch.cat([run(pixels[i : i + 64]) for i in range(0, len(pixels), 64)])
    assert singles.shape == (8, 10) and batched.shape == (1000, 10)
    assert (singles - expected[:8]).abs().max().item() <= TOLERANCE
    assert (batched - expected).abs().max().item() <= TOLERANCE
    assert torch.equal(batched.argmax(dim=1), expected.argmax(dim=1))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_runs_on_raw_pixels_like_the_classifier(run_dir, reference, capsys):
    assert export.main(["--ckpt", str(run_dir), "--format", "torchscript"]) == 0
    output = run_dir / "export" / "model.torchscript.pt"
    assert f"wrote {output} (" in capsys.readouterr().out
    loaded = torch.jit.load(str(output))
    with torch.inference_mode():
        assert_matches(loaded, reference)
    assert [p.name for p in output.parent.iterdir()] == [output.name]


def test_onnx_export_runs_on_raw_pixels_like_the_classifier(run_dir, reference, tmp_path, capsys):
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module, reason=f'ONNX export needs {module}: pip install -e ".[export]"')
    import onnxruntime

    output = tmp_path / "new" / "digits.onnx"
    assert export.main(["--ckpt", str(run_dir), "--format", "onnx", "--output", str(output)]) == 0
    assert f"wrote {output} (" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    (pixels_input,), (logits_output,) = session.get_inputs(), session.get_outputs()
    assert (pixels_input.name, logits_output.name) == ("pixels", "logits")
    assert isinstance(pixels_input.shape[0], str) and pixels_input.shape[1:] == [1, 28, 28]  # dynamic batch
    assert_matches(lambda x: torch.from_numpy(session.run(None, {"pixels": x.numpy()})[0]), reference)
    assert [p.name for p in output.parent.iterdir()] == [output.name]


def test_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    missing = tmp_path / "nowhere.ckpt"
    assert export.main(["--ckpt", str(missing), "--format", "torchscript"]) == 2
    assert capsys.readouterr().err == f"error: {missing}: no such checkpoint file or run directory\n"


def test_an_output_under_a_file_is_a_one_line_error(run_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep")
    output = blocker / "model.pt"
    assert export.main(["--ckpt", str(run_dir), "--format", "torchscript", "--output", str(output)]) == 2
    assert capsys.readouterr().err == f"error: {output}: could not be written ({blocker} is a file, not a folder)\n"
    assert blocker.read_text() == "keep"


def test_unknown_format_is_a_one_line_error(run_dir, capsys):
    assert export.main(["--ckpt", str(run_dir), "--format", "tflite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: python -m src.export: argument --format: invalid choice: 'tflite'")
    assert err.count("\n") == 1 and "onnx" in err and "torchscript" in err


def test_onnx_without_the_extra_says_what_to_install(run_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    assert export.main(["--ckpt", str(run_dir), "--format", "onnx"]) == 2
    assert capsys.readouterr().err == 'error: --format onnx: needs onnx: pip install -e ".[export]"\n'


def test_export_that_differs_from_pytorch_writes_nothing(run_dir, tmp_path, monkeypatch, capsys):
    exact = export.RUNNERS["torchscript"]

    def altered(path):
        run = exact(path)
        return lambda pixels: run(pixels) + 0.01

    monkeypatch.setitem(export.RUNNERS, "torchscript", altered)
    output = tmp_path / "model.pt"
    output.write_bytes(b"previous export")
    assert export.main(["--ckpt", str(run_dir), "--format", "torchscript", "--output", str(output)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {output}: exported model differs from PyTorch by 1.0e-02 (> 1e-04)\n"
    assert output.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == [output.name]


def test_an_output_that_is_the_checkpoint_itself_or_another_checkpoint_is_refused(run_dir, tmp_path, capsys):
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes((run_dir / "checkpoints" / "last.ckpt").read_bytes())
    last = run_dir / "checkpoints" / "last.ckpt"  # another checkpoint of the run
    for victim, problem in (
        (checkpoint, "is also an input of this command; give another file to write"),
        (last, "names a training checkpoint; an exported model is .onnx or .pt"),
    ):
        before = victim.read_bytes()
        assert export.main(["--ckpt", str(checkpoint), "--format", "torchscript", "--output", str(victim)]) == 2
        assert capsys.readouterr().err == f"error: --output: {victim} {problem}\n"
        assert victim.read_bytes() == before
