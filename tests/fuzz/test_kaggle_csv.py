"""Fuzzing read_kaggle_csv: every input is read exactly as written or refused with a UserError naming the file
and, for a bad header or row, the line."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from src.data.kaggle_csv import PIXELS, read_kaggle_csv
from src.errors import UserError
from tests.fuzz.conftest import record

READER = "csv"
pytestmark = pytest.mark.fuzz

# values a user's spreadsheet or script might leave in a cell; all but the padded and zero-led ones are wrong
ODD_VALUES = ["-1", "-0", "+3", "256", "1000", "1.5", "5.0", "1e2", "", " ", "abc", '"7"', "'7'", "nan", "0x1f", "5#x"]
ODD_VALUES += [
    "#",
    "９",
    "٣",
    "\xa05",
    "5\u3000",
    "0\U000deb2dW",
    "99999999999999999999",
    "9" * 5000,
    "0" * 5000 + "7",
    " 7",
    "7\t",
    "007",
    "\x00",
    "5 5",
]


@pytest.fixture(scope="module")
def path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("csv") / "train.csv"


def expected(raw: bytes) -> tuple[np.ndarray, np.ndarray | None] | int | None:
    """The format, written independently of the reader: (images, labels), or the line of the first error (an int),
    or None for an error of the whole file (empty, not UTF-8, no rows)."""
    try:
        lines = raw.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        return None
    if not "".join(lines).strip():
        return None
    header = [c.strip() for c in lines[0].split(",")]
    if header not in (["label", *PIXELS], PIXELS):
        return 1
    labelled = header[0] == "label"
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [f.strip() if f.isascii() else f for f in line.split(",")]  # ASCII spaces and tabs pad a value
        if len(fields) != len(header) or not all(f.isascii() and f.isdigit() for f in fields):
            return number
        values = [int(f.lstrip("0") or "0") if len(f.lstrip("0")) < 4 else 1000 for f in fields]
        if max(values[labelled:]) > 255 or (labelled and values[0] > 9):
            return number
        rows.append(values)
    if not rows:
        return None
    table = np.array(rows, dtype=np.int64)
    return table[:, -784:].reshape(-1, 28, 28), (table[:, 0] if labelled else None)


def check(path: Path, raw: bytes) -> None:
    path.write_bytes(raw)
    want = expected(raw)
    try:
        images, labels = read_kaggle_csv(path, cache_dir=None)
    except UserError as error:
        assert not isinstance(want, tuple), f"valid file with {len(want[0])} rows refused: {error}"
        where = f"{path}: " if want is None else f"{path}, line {want}: "
        assert str(error).startswith(where) and "\n" not in str(error)
        record(READER, "UserError")
        return
    assert isinstance(want, tuple), f"invalid file accepted (expected an error at line {want})"
    assert images.dtype == torch.uint8 and tuple(images.shape) == want[0].shape
    assert np.array_equal(images.numpy(), want[0])
    if want[1] is None:
        assert labels is None
    else:
        assert labels.dtype == torch.int64 and np.array_equal(labels.numpy(), want[1])
    record(READER, "correct result")


@st.composite
def tables(draw) -> list[list[str]]:
    """A valid small file as cells: the header, then 1..4 rows of random pixels (labels if labelled)."""
    labelled = draw(st.booleans())
    rows = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pixels = rng.integers(0, 256, size=(rows, 784)) * (rng.random((rows, 784)) < draw(st.floats(0, 1)))
    labels = rng.integers(0, 10, size=(rows, 1))
    body = np.concatenate([labels, pixels], axis=1) if labelled else pixels
    return [["label", *PIXELS] if labelled else list(PIXELS)] + [[str(v) for v in row] for row in body]


def render(draw, cells: list[list[str]]) -> bytes:
    """Cells -> file bytes, with the variations a valid file may have: BOM, CRLF, blank lines, padding, zeros."""
    lines = [",".join(row) for row in cells]
    if draw(st.booleans()):
        lines = [", ".join(row) for row in cells[:1]] + lines[1:]  # "label, pixel0, ..." from some writers
    if draw(st.booleans()) and len(lines) > 1:
        row = draw(st.integers(1, len(lines) - 1))
        lines[row] = ",".join(f" 0{v} " for v in cells[row])
    for _ in range(draw(st.integers(0, 2))):
        lines.insert(draw(st.integers(min(1, len(lines)), len(lines))), draw(st.sampled_from(["", " ", "\t", "  \t "])))
    text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + text.encode()


@given(st.data(), tables())
def test_valid_files_round_trip_exactly(path, data, cells):
    check(path, render(data.draw, cells))


def mutate(cells: list[list[str]], kind: str, draw) -> None:
    row = draw(st.integers(0, len(cells) - 1)) if cells else 0
    if not cells or not cells[row]:
        return
    column = draw(st.integers(0, len(cells[row]) - 1))
    if kind == "odd value":
        cells[row][column] = draw(st.sampled_from(ODD_VALUES))
    elif kind == "label outside 0-9" and row > 0:
        cells[row][0] = str(draw(st.integers(10, 300)))
    elif kind == "random value":
        cells[row][column] = draw(st.text(max_size=6))
    elif kind == "column missing":
        del cells[row][column]
    elif kind == "column added":
        cells[row].insert(column, draw(st.sampled_from(["0", "label", "pixel5", "pixel784", ""])))
    elif kind == "header names swapped":
        other = draw(st.integers(0, len(cells[0]) - 1))
        cells[0][column % len(cells[0])], cells[0][other] = cells[0][other], cells[0][column % len(cells[0])]
    elif kind == "header name duplicated":
        cells[0][column % len(cells[0])] = draw(st.sampled_from(cells[0]))
    elif kind == "no rows":
        del cells[1:]
    elif kind == "no header":
        del cells[0]
    elif kind == "row duplicated":
        cells.insert(row, list(cells[row]))


MUTATIONS = ["odd value", "label outside 0-9", "random value", "column missing", "column added"]
MUTATIONS += ["header names swapped", "header name duplicated", "no rows", "no header", "row duplicated"]


@given(st.data(), tables(), st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3))
def test_damaged_files_are_refused_or_read_exactly(path, data, cells, kinds):
    for kind in kinds:
        mutate(cells, kind, data.draw)
    check(path, render(data.draw, cells))


@given(st.data(), tables(), st.sampled_from(["truncated", "bytes inserted", "bytes replaced", "random bytes"]))
def test_damaged_bytes_are_refused_or_read_exactly(path, data, cells, damage):
    raw = render(data.draw, cells)
    at = data.draw(st.integers(0, len(raw)))
    if damage == "truncated":
        raw = raw[:at]
    elif damage == "bytes inserted":
        raw = raw[:at] + data.draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    elif damage == "bytes replaced":
        raw = raw[:at] + data.draw(st.binary(min_size=1, max_size=8)) + raw[at + 8 :]
    else:
        raw = data.draw(st.binary(max_size=300))
    check(path, raw)
