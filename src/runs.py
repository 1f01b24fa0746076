"""Run directories on disk: LOGDIR/MODEL/version_N/{events, hparams.yaml, config.yaml, checkpoints/, results.json}."""

import json
from pathlib import Path

from src.atomic import atomic_write_text
from src.errors import UserError


def version_dirs(logdir: str | Path, model: str) -> list[Path]:
    """Existing run directories of `model`, oldest first."""
    root = Path(logdir) / model
    runs = [p for p in root.glob("version_*") if p.is_dir() and p.name.removeprefix("version_").isdigit()]
    return sorted(runs, key=lambda p: int(p.name.removeprefix("version_")))


def resume_checkpoint(resume: str, logdir: str | Path, model: str) -> Path:
    """`last` (the newest run's last.ckpt), a run directory, or a .ckpt file -> the checkpoint to resume."""
    if resume == "last":
        candidates = [run / "checkpoints" / "last.ckpt" for run in version_dirs(logdir, model)]
        candidates = [c for c in candidates if c.exists()]
        if not candidates:
            raise UserError("--resume last", f"no run of {model} under {logdir} has checkpoints/last.ckpt")
        return candidates[-1]
    path = Path(resume)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise UserError("--resume", f"{path} does not exist")
    return path


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory that holds `checkpoint` (…/version_N/checkpoints/x.ckpt -> …/version_N)."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def write_json(path: str | Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def best_run(logdir: str | Path) -> Path:
    """The finished run under `logdir` (at any depth) with the highest MNIST test accuracy."""
    scored = []
    for results in Path(logdir).rglob("results.json"):
        try:
            content = json.loads(results.read_text())
        except (json.JSONDecodeError, OSError, UnicodeDecodeError):
            continue
        if isinstance(content, dict) and content.get("data") == "mnist" and isinstance(content.get("test_acc"), float):
            scored.append((content["test_acc"], str(results.parent)))
    if not scored:
        raise UserError(logdir, "holds no finished MNIST run (results.json); train one with python -m src.train")
    return Path(max(scored)[1])
