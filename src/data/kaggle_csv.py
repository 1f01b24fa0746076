"""Kaggle "Digit Recognizer" CSV files: `label,pixel0..pixel783` (train) or `pixel0..pixel783` (test).

Every row is validated (784 or 785 integers, pixels 0..255, labels 0..9); an error names the line.
A parsed file is cached as a tensor file keyed by the SHA-256 of the CSV's bytes.
"""

import contextlib
import hashlib
import io
import os
import re
from pathlib import Path

import numpy as np
import torch

from src.atomic import WriteError, atomic_save
from src.errors import UserError, read_user_file
from src.torch_files import damaged_record

PIXELS = [f"pixel{i}" for i in range(784)]
DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[2] / "data" / "cache"
CACHE_NAME = re.compile(r"kaggle-[0-9a-f]{32}\.pt")
CACHES_KEPT = 4  # the most recently used: Kaggle's train.csv and test.csv and two more; each is ~33 MB


def read_kaggle_csv(
    path: str | Path, cache_dir: str | Path | None = DEFAULT_CACHE_DIR
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images uint8 [N, 28, 28] and labels int64 [N] (None for an unlabelled test.csv)."""
    path = Path(path)
    raw = read_user_file(path)
    cache = Path(cache_dir) / f"kaggle-{hashlib.sha256(raw).hexdigest()[:32]}.pt" if cache_dir else None
    if cache is not None and cache.exists():
        try:  # a damaged cache is rebuilt from the CSV, never trusted
            cached = torch.load(cache, weights_only=True)
            if damaged_record(cache) is None:
                with contextlib.suppress(OSError):
                    os.utime(cache)  # used: the last to be pruned
                return cached["images"], cached.get("labels")
        except Exception:
            pass
    images, labels = parse_kaggle_csv(path, raw)
    if cache is not None:
        payload = {"images": images} | ({"labels": labels} if labels is not None else {})
        # A cache is an optimisation: a read-only or full disk must not stop the command.
        with contextlib.suppress(WriteError, RuntimeError):
            atomic_save(cache, lambda f: torch.save(payload, f))
        prune_caches(cache.parent)
    return images, labels


def prune_caches(cache_dir: Path) -> None:
    """Delete all but the CACHES_KEPT most recently used caches: every edited CSV leaves one behind."""
    with contextlib.suppress(OSError):  # another process may be pruning too
        ours = [p for p in cache_dir.glob("kaggle-*.pt") if CACHE_NAME.fullmatch(p.name)]  # not a user's file
        caches = sorted(ours, key=lambda p: p.stat().st_mtime, reverse=True)
        for old in caches[CACHES_KEPT:]:
            old.unlink(missing_ok=True)


def parse_kaggle_csv(path: Path, raw: bytes) -> tuple[torch.Tensor, torch.Tensor | None]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(path, f"is not UTF-8 text (byte {e.start}); expected a Kaggle CSV") from None
    lines = text.splitlines()
    if not any(line.strip() for line in lines):  # after decoding: a file holding only a BOM is empty too
        raise UserError(path, "file is empty (expected a Kaggle CSV with a header line)")
    labelled = _check_header(path, lines[0])
    width = 785 if labelled else 784
    rows = lines[1:]
    if not any(row.strip() for row in rows):
        raise UserError(path, "has a header but no data rows")
    values = _parse_fast(rows)
    if values is None or values.shape[1] != width or not _in_range(values, labelled):
        _raise_first_bad_line(path, rows, width, labelled)
    pixels = values[:, -784:].astype(np.uint8)
    images = torch.from_numpy(pixels.reshape(-1, 28, 28).copy())
    labels = torch.from_numpy(values[:, 0].copy()) if labelled else None
    return images, labels


def _check_header(path: Path, header: str) -> bool:
    columns = [c.strip() for c in header.split(",")]
    if columns == ["label", *PIXELS]:
        return True
    if columns == PIXELS:
        return False
    expected = ["label", *PIXELS] if columns and columns[0] == "label" else PIXELS
    for i, (got, want) in enumerate(zip(columns, expected, strict=False)):
        if got != want:
            raise UserError(f"{path}, line 1", f"header column {i + 1} is {got[:40]!r}, expected {want!r}")
    raise UserError(
        f"{path}, line 1", f"header has {len(columns)} columns, expected {len(expected)} ({expected[0]},...)"
    )


def _parse_fast(rows: list[str]) -> np.ndarray | None:
    """numpy's C parser; None if anything is off, so the slow path can name the line."""
    text = "\n".join(row for row in rows if row.strip())  # numpy skips empty lines but not whitespace-only ones
    if "+" in text or "-" in text:  # numpy reads "+5" and "-0"; the slow path refuses signs and names the line
        return None
    if not text.isascii():  # numpy 2.4's loadtxt can crash (segfault) on some non-ASCII text; a Kaggle CSV is ASCII
        return None
    try:  # comments=None: numpy would silently drop "#" and everything after it
        return np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64, ndmin=2, comments=None)
    except ValueError:
        return None


def _in_range(values: np.ndarray, labelled: bool) -> bool:
    pixels = values[:, 1:] if labelled else values
    ok = pixels.min() >= 0 and pixels.max() <= 255
    return bool(ok and (not labelled or (values[:, 0].min() >= 0 and values[:, 0].max() <= 9)))


def _raise_first_bad_line(path: Path, rows: list[str], width: int, labelled: bool) -> None:
    for number, row in enumerate(rows, start=2):
        if not row.strip():
            continue
        fields = row.split(",")
        where = f"{path}, line {number}"
        if len(fields) != width:
            raise UserError(where, f"expected {width} values, found {len(fields)}")
        for column, field in enumerate(fields):
            name = "label" if labelled and column == 0 else f"pixel{column - labelled}"
            value = field.strip() if field.isascii() else field  # " 5" is 5; "\xa05" is shown as it is
            if not value.isascii() or not value.isdigit():
                raise UserError(where, f"{name} is {value[:20]!r}, not a whole number")
            top = 9 if name == "label" else 255
            digits = value.lstrip("0") or "0"
            if len(digits) > 3 or int(digits) > top:  # int() refuses more than 4300 digits, zeros included
                raise UserError(where, f"{name} is {value[:20]}, outside 0..{top}")
    raise UserError(path, "could not be parsed as a Kaggle CSV")
