"""Fuzzing read_idx: every input is either read exactly as encoded or refused with a UserError naming the file."""

import gzip
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from src.data.idx import read_idx
from src.errors import UserError
from tests.fuzz.conftest import record

READER = "idx"
pytestmark = pytest.mark.fuzz


@pytest.fixture(scope="module")
def path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("idx") / "images-idx3-ubyte"


def encode(shape: tuple[int, ...], data: bytes, dtype: int = 0x08) -> bytes:
    return bytes([0, 0, dtype, len(shape)]) + b"".join(size.to_bytes(4, "big") for size in shape) + data


def expected(content: bytes) -> np.ndarray | None:
    """The IDX spec for unsigned bytes, written independently of the reader: the array, or None if invalid."""
    if len(content) < 4 or content[:3] != b"\0\0\x08" or not 1 <= content[3] <= 3:
        return None
    ndim = content[3]
    if len(content) < 4 + 4 * ndim:
        return None
    shape = [int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = content[4 + 4 * ndim :]
    if len(data) != np.prod(shape, dtype=object):
        return None
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def check(path: Path, raw: bytes) -> None:
    """Write `raw`, read it, and hold the reader to the spec; gzip is recognised by its magic, as the reader does."""
    path.write_bytes(raw)
    content = raw
    if raw[:2] == b"\x1f\x8b":
        try:
            content = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            content = None
    want = expected(content) if content is not None else None
    try:
        got = read_idx(path)
    except UserError as error:
        assert want is None, f"valid {list(want.shape)} file refused: {error}"
        assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
        record(READER, "UserError")
        return
    assert want is not None, f"invalid file accepted as {list(got.shape)}"
    assert got.dtype == torch.uint8 and tuple(got.shape) == want.shape
    assert np.array_equal(got.numpy(), want)
    record(READER, "correct result")


shapes = st.lists(st.integers(0, 6), min_size=1, max_size=3).map(tuple)


@st.composite
def valid_files(draw) -> tuple[tuple[int, ...], bytes]:
    shape = draw(shapes)
    data = draw(st.binary(min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    return shape, encode(shape, data)


@given(valid_files(), st.booleans())
@example(file=((), b""), compress=False)  # an empty file
def test_valid_files_round_trip_exactly(path, file, compress):
    shape, raw = file
    check(path, gzip.compress(raw) if compress else raw)


def mutate(raw: bytes, kind: str, draw) -> bytes:
    ndim_end = 4 + 4 * raw[3]
    if kind == "bad magic":
        return draw(st.binary(min_size=2, max_size=2).filter(lambda b: b != b"\0\0")) + raw[2:]
    if kind == "dtype byte":
        return raw[:2] + bytes([draw(st.integers(0, 255))]) + raw[3:]
    if kind == "dimension count":
        return raw[:3] + bytes([draw(st.integers(0, 255))]) + raw[4:]
    if kind == "header sizes":  # one size replaced: small, huge, or 2**32 - 1
        i = draw(st.integers(0, raw[3] - 1))
        size = draw(st.one_of(st.integers(0, 300), st.integers(0, 2**32 - 1), st.just(2**32 - 1)))
        return raw[: 4 + 4 * i] + size.to_bytes(4, "big") + raw[8 + 4 * i :]
    if kind == "truncated in magic":
        return raw[: draw(st.integers(0, 3))]
    if kind == "truncated in dims":
        return raw[: draw(st.integers(4, ndim_end - 1))]
    if kind == "truncated in data":
        return raw[: draw(st.integers(ndim_end, max(ndim_end, len(raw) - 1)))]
    assert kind == "trailing bytes"
    return raw + draw(st.binary(min_size=1, max_size=40))


KINDS = [
    "bad magic",
    "dtype byte",
    "dimension count",
    "header sizes",
    "truncated in magic",
    "truncated in dims",
    "truncated in data",
    "trailing bytes",
]


@given(st.data(), valid_files(), st.lists(st.sampled_from(KINDS), min_size=1, max_size=3), st.booleans())
def test_damaged_files_are_refused_or_read_exactly(path, data, file, kinds, compress):
    _, raw = file
    for kind in kinds:
        if len(raw) >= 4 and 1 <= raw[3] <= 3 and len(raw) >= 4 + 4 * raw[3]:
            raw = mutate(raw, kind, data.draw)
    check(path, gzip.compress(raw) if compress else raw)


@given(st.data(), valid_files(), st.sampled_from(["truncated", "byte changed", "garbage after", "garbage"]))
def test_damaged_gzip_streams_are_refused_or_read_exactly(path, data, file, damage):
    packed = gzip.compress(file[1])
    if damage == "truncated":
        packed = packed[: data.draw(st.integers(0, len(packed) - 1))]
    elif damage == "byte changed":
        i = data.draw(st.integers(2, len(packed) - 1))
        packed = packed[:i] + bytes([packed[i] ^ data.draw(st.integers(1, 255))]) + packed[i + 1 :]
    elif damage == "garbage after":
        packed += data.draw(st.binary(min_size=1, max_size=40))
    else:
        packed = b"\x1f\x8b" + data.draw(st.binary(max_size=100))
    check(path, packed)


@given(st.binary(max_size=200))
def test_random_bytes_are_refused_or_read_exactly(path, raw):
    check(path, raw)
