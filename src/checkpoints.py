"""Load a trained DigitClassifier from a .ckpt file or a run directory, safely (weights_only)."""

import json
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch

from src.data.splits import SOURCES
from src.errors import UserError
from src.torch_files import damaged_record


def resolve_checkpoint(path: str | Path) -> Path:
    """A .ckpt file as given, or a run directory's best checkpoint (results.json, else best-*.ckpt, else last.ckpt)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise UserError(path, "no such checkpoint file or run directory")
    if path.resolve().name == "checkpoints" and not (path / "checkpoints").is_dir():  # RUN/checkpoints: RUN is meant
        path = path.resolve().parent
    results = path / "results.json"
    if results.is_file():
        try:
            best = json.loads(results.read_text()).get("best_checkpoint")
        except (ValueError, OSError, AttributeError):  # not JSON, not UTF-8, not an object: fall back
            best = None
        # This run's own file of that name: results.json keeps the path it had when the run was trained,
        # which in a copied or moved run directory is the original's (or nothing).
        if isinstance(best, str) and (path / "checkpoints" / Path(best).name).is_file():
            return path / "checkpoints" / Path(best).name
    candidates = sorted((path / "checkpoints").glob("best-*.ckpt")) or sorted((path / "checkpoints").glob("last.ckpt"))
    if not candidates:
        raise UserError(path, "run directory has no checkpoints/best-*.ckpt or last.ckpt")
    return candidates[-1]


def read_checkpoint(path: Path) -> dict:
    """torch.load with weights_only=True: tensors and plain values only, so a file cannot run code."""
    if path.is_file() and path.stat().st_size == 0:
        raise UserError(path, "is an empty file, not a checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about some pickle protocols before refusing them
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    # The others: text or a raw pickle, read as a pickle by torch's legacy loader.
    except (pickle.UnpicklingError, KeyError, IndexError, TypeError, AttributeError) as e:
        if found := re.search(r"Unsupported global: GLOBAL (\S+)", str(e)):
            raise UserError(path, f"refused: not a plain-weights checkpoint (it would import {found[1]})") from None
        raise UserError(path, "is not a readable checkpoint (not a file torch.save wrote)") from None
    except RuntimeError as e:
        if "PytorchStreamReader failed reading zip archive" in str(e):  # its directory is at the end
            raise UserError(path, "is not a readable checkpoint (truncated, or not a file torch.save wrote)") from None
        if "TorchScript archives" in str(e):
            raise UserError(path, "is a TorchScript model (src.export's output), not a training checkpoint") from None
        raise UserError(path, f"is not a readable checkpoint (RuntimeError: {_first_line(e)})") from None
    except (EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        if _starts_as_a_zip(path):  # cut short near its start, torch's reader fails with EINVAL
            raise UserError(path, "is not a readable checkpoint (truncated, or not a file torch.save wrote)") from None
        raise UserError(path, f"is not a readable checkpoint ({type(e).__name__}: {_first_line(e)})") from None
    if record := damaged_record(path):
        raise UserError(path, f"is damaged: its record {record} fails its CRC-32 (the file changed after it was saved)")
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(path, "is not a Lightning checkpoint of this project (no state_dict)")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in checkpoint["state_dict"].items()):
        raise UserError(path, "is not a Lightning checkpoint of this project (its state_dict is not names to tensors)")
    for key in ("hyper_parameters", "datamodule_hyper_parameters"):
        if not isinstance(checkpoint.get(key) or {}, dict):
            raise UserError(path, f"is not a Lightning checkpoint of this project ({key} is not a mapping)")
    return checkpoint


def _starts_as_a_zip(path: Path) -> bool:
    """Whether the file begins as torch.save's zip archives do."""
    try:
        with path.open("rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def trained_on(model) -> str:
    """ "mnist" or "kaggle": the data the run of a `load_classifier` model trained on."""
    return model.data_hparams.get("data", "mnist")


def _first_line(error: Exception | str, limit: int = 120) -> str:
    """The error's first sentence, cut at a word if it is longer than `limit` characters."""
    text = str(error).strip()
    if not text:
        return "no detail"
    sentence = re.split(r"(?<=[.!?])\s", text.splitlines()[0])[0]
    return sentence if len(sentence) <= limit else sentence[:limit].rsplit(" ", 1)[0] + " ..."


def load_classifier(path: str | Path):
    """(DigitClassifier in eval mode on the CPU, the checkpoint file used). `model.data_hparams` holds the
    DataModule's hyperparameters of its run (data, data_dir, split)."""
    from src.models.classifier import DigitClassifier
    from src.models.registry import ARCHITECTURES

    checkpoint_path = resolve_checkpoint(path)
    checkpoint = read_checkpoint(checkpoint_path)
    hyperparameters = checkpoint.get("hyper_parameters") or {}
    arch = hyperparameters.get("arch")
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise UserError(
            checkpoint_path, f"architecture {arch!r} is unknown to this project ({', '.join(ARCHITECTURES)})"
        )
    try:
        model = DigitClassifier(**hyperparameters)
    except TypeError as e:
        raise UserError(checkpoint_path, f"hyperparameters do not fit DigitClassifier ({e})") from None
    except UserError as e:  # a value this project does not know (an init, an optimizer): name the file
        raise UserError(checkpoint_path, f"hyperparameters do not fit this project ({e})") from None
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as e:
        lines = str(e).splitlines()  # "Error(s) in loading state_dict ...", then one line per problem
        first = _first_line(lines[1] if len(lines) > 1 else e, limit=240)
        raise UserError(checkpoint_path, f"weights do not match architecture {arch} ({first})") from None
    if not all(t.isfinite().all() for t in checkpoint["state_dict"].values() if t.is_floating_point()):
        raise UserError(checkpoint_path, "holds NaN or infinite weights (saved from a run that diverged?)")
    model.data_hparams = checkpoint.get("datamodule_hyper_parameters") or {}  # its split, for evaluate
    if trained_on(model) not in SOURCES:
        raise UserError(
            checkpoint_path, f"was trained on data {model.data_hparams['data']!r}, not {' or '.join(SOURCES)}"
        )
    return model.eval(), checkpoint_path
