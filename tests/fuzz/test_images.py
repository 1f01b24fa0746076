"""Fuzzing read_digit_images: every file gives exactly one result, a uint8 [28, 28] digit or a UserError naming it."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from src.data.images import read_digit_images
from src.errors import UserError
from tests.fuzz.conftest import record

READER = "images"
# Pillow warns (UserWarning) about some damaged TIFF/EXIF data before the reader refuses the file; not a failure here
pytestmark = [pytest.mark.fuzz, pytest.mark.filterwarnings("ignore::UserWarning")]

MODES = ["L", "RGB", "RGBA", "LA", "P", "I;16", "CMYK", "1"]
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif"}
MAGICS = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF"]


def encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def _savable(mode: str, fmt: str) -> bool:
    try:
        encode(Image.new(mode, (2, 2)), fmt)
        return True
    except (OSError, ValueError, KeyError):
        return False


COMBINATIONS = [(mode, fmt) for mode in MODES for fmt in FORMATS if _savable(mode, fmt)]  # what Pillow allows


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("images")


def check(path: Path, raw: bytes, inked: bool = False) -> torch.Tensor | UserError:
    """Write `raw`, read it; `inked`: a clear dark shape on plain paper, which must come back as a digit."""
    path.write_bytes(raw)
    results = read_digit_images([path])
    assert len(results) == 1 and results[0][0] == path
    result = results[0][1]
    if isinstance(result, UserError):
        assert not inked, f"a clearly inked image was refused: {result}"
        assert str(result).startswith(f"{path}: ") and "\n" not in str(result)
        record(READER, "UserError")
    else:
        assert isinstance(result, torch.Tensor), f"{type(result).__name__} returned"
        assert result.dtype == torch.uint8 and tuple(result.shape) == (28, 28)
        assert result.max() == 255  # the strongest ink is scaled to full brightness, as in MNIST
        record(READER, "correct result")
    return result


@given(st.sampled_from(MAGICS), st.binary(max_size=300), st.sampled_from(list(FORMATS.values())))
def test_random_bytes_give_one_result(folder, magic, raw, suffix):
    check(folder / f"random{suffix}", magic + raw)


@st.composite
def images(draw) -> tuple[Image.Image, str, bool]:
    """A random image in any mode and format Pillow saves: blank, noise, or a dark box on light paper."""
    mode, fmt = draw(st.sampled_from(COMBINATIONS))
    width, height = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    kind = draw(st.sampled_from(["blank", "noise", "box"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "noise":
        rgba = rng.integers(0, 256, size=(height, width, 4), dtype=np.uint8)
    else:
        rgba = np.full((height, width, 4), draw(st.integers(0, 255)) if kind == "blank" else 255, dtype=np.uint8)
    inked = kind == "box" and width >= 5 and height >= 5
    if inked:  # a box of dark ink strictly inside the paper, so that the border is paper
        top, left = draw(st.integers(1, height - 3)), draw(st.integers(1, width - 3))
        bottom, right = draw(st.integers(top + 1, height - 1)), draw(st.integers(left + 1, width - 1))
        rgba[top:bottom, left:right, :3] = 0
    rgba[..., 3] = 255 if kind != "noise" else rgba[..., 3]
    image = Image.fromarray(rgba, "RGBA")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257)
    elif mode == "P":
        image = image.convert("RGB").convert("P")
    elif mode != "RGBA":
        image = image.convert(mode)
    return image, fmt, inked


@given(images())
def test_valid_images_of_any_mode_size_and_format_give_a_digit_or_a_named_error(folder, drawn):
    image, fmt, inked = drawn
    check(folder / f"image{FORMATS[fmt]}", encode(image, fmt), inked)


def _png() -> bytes:
    digit = np.full((24, 20), 255, dtype=np.uint8)
    digit[4:20, 8:12] = 0
    return encode(Image.fromarray(digit), "PNG")


PNG = _png()


@given(st.integers(0, len(PNG) - 1), st.sampled_from(["truncated", "byte changed"]), st.integers(1, 255))
def test_a_damaged_png_gives_one_result(folder, offset, damage, xor):
    changed = bytes([PNG[offset] ^ xor]) if damage == "byte changed" else b""
    raw = PNG[:offset] + (changed + PNG[offset + 1 :] if changed else b"")
    check(folder / "damaged.png", raw)
