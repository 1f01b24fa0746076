import pickle
import shutil

import pytest
import torch

from src.checkpoints import load_classifier, resolve_checkpoint
from src.errors import UserError


class Payload:
    """Unpickling this object would create a file: the attack a weights_only load must refuse."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_run_directory_resolves_to_its_best_checkpoint(short_run):
    assert resolve_checkpoint(short_run).name == "best-epoch000.ckpt"
    assert resolve_checkpoint(short_run / "checkpoints") == resolve_checkpoint(short_run)  # its folder too
    model, path = load_classifier(short_run)
    assert model.hparams.arch == "lenet5" and not model.training and path.name == "best-epoch000.ckpt"


def test_a_copied_run_directory_resolves_to_its_own_checkpoint(short_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(short_run, copy)  # its results.json still names the original's file
    assert resolve_checkpoint(copy) == copy / "checkpoints" / "best-epoch000.ckpt"


@pytest.mark.filterwarnings("error")  # torch's own warnings would add lines to the one-line error
def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    target = tmp_path / "pwned"
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"arch": "lenet5"}, "extra": Payload(target)}, hostile)
    refused = r"hostile.ckpt: refused: not a plain-weights checkpoint \(it would import io.open\)$"  # __reduce__
    with pytest.raises(UserError, match=refused):
        load_classifier(hostile)
    assert not target.exists()
    raw = tmp_path / "raw_pickle.ckpt"
    raw.write_bytes(pickle.dumps(Payload(target)))
    with pytest.raises(
        UserError, match=r"raw_pickle.ckpt: is not a readable checkpoint \(not a file torch.save wrote\)$"
    ):
        load_classifier(raw)
    assert not target.exists()


def test_other_architectures_and_mismatched_tensors_are_clear_errors(short_run, tmp_path):
    checkpoint = torch.load(resolve_checkpoint(short_run), weights_only=True)
    checkpoint["hyper_parameters"]["arch"] = "resnet152"
    unknown = tmp_path / "unknown.ckpt"
    torch.save(checkpoint, unknown)
    with pytest.raises(UserError, match=r"unknown.ckpt: architecture 'resnet152' is unknown to this project"):
        load_classifier(unknown)
    checkpoint["hyper_parameters"]["arch"] = "mlp"
    mismatched = tmp_path / "mismatched.ckpt"
    torch.save(checkpoint, mismatched)
    with pytest.raises(UserError, match=r"mismatched.ckpt: weights do not match architecture mlp"):
        load_classifier(mismatched)
    checkpoint["hyper_parameters"]["arch"] = "lenet5"
    checkpoint["state_dict"]["net.features.0.weight"] = torch.zeros(3, 1, 5, 5)
    resized = tmp_path / "resized.ckpt"
    torch.save(checkpoint, resized)
    with pytest.raises(UserError) as raised:
        load_classifier(resized)
    assert str(raised.value).endswith(  # both shapes, whole
        "copying a param with shape torch.Size([3, 1, 5, 5]) from checkpoint, "
        "the shape in current model is torch.Size([6, 1, 5, 5]).)"
    )
    checkpoint["state_dict"] = {1: torch.zeros(1)}
    numbered = tmp_path / "numbered.ckpt"
    torch.save(checkpoint, numbered)
    with pytest.raises(
        UserError, match=r"numbered.ckpt: is not a Lightning checkpoint of this project \(its state_dict"
    ):
        load_classifier(numbered)


def test_diverged_weights_and_torchscript_files_are_named(short_run, tmp_path):
    checkpoint = torch.load(resolve_checkpoint(short_run), weights_only=True)
    checkpoint["state_dict"]["net.classifier.5.bias"] = torch.full((10,), float("nan"))
    diverged = tmp_path / "diverged.ckpt"
    torch.save(checkpoint, diverged)
    # evaluate said "9.80% accuracy, loss nan" and export "top-1 agrees on 1000/1000", both exiting 0
    with pytest.raises(
        UserError, match=r"diverged.ckpt: holds NaN or infinite weights \(saved from a run that diverged\?\)$"
    ):
        load_classifier(diverged)
    scripted = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), scripted)
    with pytest.raises(
        UserError, match=r"model.pt: is a TorchScript model \(src.export's output\), not a training checkpoint$"
    ):
        load_classifier(scripted)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"hyper_parameters": ["lenet5"]},
            "is not a Lightning checkpoint of this project (hyper_parameters is not a mapping)",
        ),
        ({"state_dict": [1, 2]}, "is not a Lightning checkpoint of this project (no state_dict)"),
        ({"hyper_parameters": {"arch": ["lenet5"]}}, "architecture ['lenet5'] is unknown to this project"),
        (
            {"hyper_parameters": {"arch": "lenet5", "init": "bogus"}},
            "hyperparameters do not fit this project (init: unknown initialisation 'bogus'",
        ),
        ({"datamodule_hyper_parameters": {"data": "imagenet"}}, "was trained on data 'imagenet', not mnist or kaggle"),
    ],
)
def test_checkpoints_of_the_wrong_shape_are_one_line(change, message, short_run, tmp_path):
    checkpoint = torch.load(resolve_checkpoint(short_run), weights_only=True)
    odd = tmp_path / "odd.ckpt"
    torch.save({**checkpoint, **change}, odd)
    with pytest.raises(UserError) as error:
        load_classifier(odd)
    assert str(error.value).startswith(f"{odd}: {message}")


@pytest.mark.parametrize("content", [b"[1, 2]", b'{"best_checkpoint": 5}', b"\xff\xfe"])
def test_a_damaged_results_json_falls_back_to_the_best_checkpoint_file(content, short_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(short_run / "checkpoints", run / "checkpoints")
    (run / "results.json").write_bytes(content)
    assert resolve_checkpoint(run) == run / "checkpoints" / "best-epoch000.ckpt"


def test_a_text_file_is_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("hello\n")
    with pytest.raises(UserError, match=r"notes.ckpt: is not a readable checkpoint \(not a file torch.save wrote\)$"):
        load_classifier(text)


def test_corrupt_and_missing_files(tmp_path):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(UserError, match=r"corrupt.ckpt: is not a readable checkpoint"):
        load_classifier(corrupt)
    with pytest.raises(UserError, match=r"nothing.ckpt: no such checkpoint file or run directory"):
        load_classifier(tmp_path / "nothing.ckpt")
