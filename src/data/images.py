"""Users' own digit images (photos, scans, drawings of any size) made into MNIST-like inputs.

MNIST's recipe: greyscale, ink bright on black, paper level and noise removed, cropped to the ink, the longer
side scaled to 20 px, pasted into 28x28 with the ink's centre of mass at the centre. Knows nothing of Lightning.
"""

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from src.errors import UserError, read_user_file

MAX_PIXELS = 40_000_000  # a few bytes of PNG can claim billions of pixels (a decompression bomb)
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# white in the modes convert("L") would clip rather than scale; "I" (32-bit) mostly holds 16-bit data
WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1}
SIZE, DIGIT_SIZE, CENTRE = 28, 20, 14.0  # MNIST's mean centre of mass is (14.0, 14.0) in 0-based pixel centres
NOISE_SIGMAS = 8  # paper noise stays below this many robust standard deviations, even over millions of pixels
FAINT = 0.25  # ink fainter than this fraction of the strongest stroke is paper texture, shadow or blur
MIN_CONTRAST = 0.08  # ink less than this (in [0, 1]) above the paper is no ink at all
TRIM = 0.002  # share of the ink mass ignored at each side of the crop, so that a speck of dust does not widen it


class NoInkError(ValueError):
    """The image is blank once the paper and its noise are removed."""


def load_image(path: str | Path) -> np.ndarray:
    """Any image Pillow reads -> float32 greyscale [H, W] in [0, 1], 1 = white; transparency counts as paper
    (white, or black behind white ink)."""
    path = Path(path)
    return decode_image(read_user_file(path), path)


def decode_image(raw: bytes, path: str | Path) -> np.ndarray:
    """An image file's bytes -> float32 greyscale [H, W] in [0, 1]; `path` names the image in errors."""
    if not raw:
        raise UserError(path, "file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))  # reads the header only
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise UserError(
                    path,
                    f"is {width}x{height} = {width * height:,} pixels, more than the {MAX_PIXELS:,} this tool accepts",
                )
            image.load()  # with ImageFile.LOAD_TRUNCATED_IMAGES False (Pillow's default) it raises on missing data
            return _to_grey(ImageOps.exif_transpose(image))  # phones store photos sideways plus an EXIF "turn me" tag
    except UserError:
        raise
    except UnidentifiedImageError:
        raise UserError(path, "is not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(
            path,
            f"has more pixels than Pillow's decompression-bomb limit, more than the {MAX_PIXELS:,} this tool accepts",
        ) from None
    except Exception as e:  # Pillow's decoders report damaged data as OSError, SyntaxError, struct.error, ...
        raise UserError(path, f"is truncated or damaged ({e or type(e).__name__})") from None


def _to_grey(image: Image.Image) -> np.ndarray:
    if image.mode in WIDE_MODES:
        return _wide_to_grey(np.asarray(image, dtype=np.float64), WIDE_MODES[image.mode])
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        grey = _grey(Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba))
        if grey.max() - grey.min() >= MIN_CONTRAST:
            return grey
        return _grey(Image.alpha_composite(Image.new("RGBA", rgba.size, "black"), rgba))  # white ink
    return _grey(image)


def _grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB").convert("L"), dtype=np.float32) / 255


def _wide_to_grey(x: np.ndarray, white: float) -> np.ndarray:
    """16-bit, 32-bit and float greyscale -> [0, 1]: by the mode's white level when the pixels lie within it; else
    (an int32 image, a float image in 0-255) no white level is known, so the image's own range is [0, 1].
    Integers no higher than 255 are 8-bit values in a wider file, as Pillow's own conversion reads them."""
    x = np.nan_to_num(x, nan=0.0, posinf=white, neginf=0.0)
    low, high = float(x.min()), float(x.max())
    if white == 65535 and high <= 255:
        white = 255
    if low >= 0 and high <= white:
        return (x / white).astype(np.float32)
    return ((x - low) / (high - low or 1)).astype(np.float32)


def preprocess_digit(grey: np.ndarray) -> torch.Tensor:
    """Greyscale [H, W] in [0, 1] (either polarity) -> uint8 [28, 28], ink bright (max 255) on black, as in MNIST."""
    x = np.asarray(grey, dtype=np.float32)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"expected a greyscale image [H, W], got shape {list(x.shape)}")
    border = np.concatenate([x[0], x[-1], x[1:-1, 0], x[1:-1, -1]])
    # the paper's noise, from steps between neighbours along the edges: a photo's shading gradient is not noise
    steps = np.abs(np.concatenate([np.diff(x[0]), np.diff(x[-1]), np.diff(x[:, 0]), np.diff(x[:, -1])]))
    noise = 1.4826 / np.sqrt(2) * float(np.median(steps)) if steps.size else 0.0  # robust standard deviation
    paper = float(np.median(border))
    if paper > (x.min() + x.max()) / 2:  # relative, not > 0.5: a dim photo's white paper can be darker than grey
        x, paper = 1 - x, 1 - paper
    ink = np.clip(x - paper, 0, None)
    peak = float(ink.max())
    if peak < max(MIN_CONTRAST, NOISE_SIGMAS * noise):
        raise NoInkError("no ink found")
    ink[ink < max(FAINT * peak, NOISE_SIGMAS * noise)] = 0
    rows, cols = _mass_span(ink.sum(axis=1)), _mass_span(ink.sum(axis=0))
    patch = _resize(ink[rows, cols])
    ys, xs = np.arange(patch.shape[0]), np.arange(patch.shape[1])
    mass = float(patch.sum(dtype=np.float64))
    cy, cx = float(patch.sum(axis=1) @ ys) / mass, float(patch.sum(axis=0) @ xs) / mass
    top, left = _offset(CENTRE - cy, patch.shape[0]), _offset(CENTRE - cx, patch.shape[1])
    canvas = np.zeros((SIZE, SIZE), dtype=np.float32)
    canvas[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
    return torch.from_numpy(np.round(canvas * (255 / canvas.max())).astype(np.uint8))


def _offset(shift: float, length: int) -> int:
    """Whole-pixel shift (keeps strokes sharp), clamped so that a lopsided digit is moved, never cut."""
    # to 1/1000 px first: a symmetric digit's centre lies exactly on a half pixel; float noise must not pick the side
    return int(np.clip(np.floor(round(shift, 3) + 0.5), 0, SIZE - length))


def _mass_span(profile: np.ndarray) -> slice:
    """The index range [first, last] holding all but TRIM of the mass at each end of a 1-D profile."""
    cumulative = np.cumsum(profile, dtype=np.float64) / profile.sum(dtype=np.float64)
    first = int(np.searchsorted(cumulative, TRIM, side="right"))
    last = int(np.searchsorted(cumulative, 1 - TRIM, side="left"))
    return slice(first, max(last, first) + 1)


def _resize(ink: np.ndarray) -> np.ndarray:
    """Ink [h, w] -> float32 with the longer side DIGIT_SIZE px, aspect kept; Pillow's resize antialiases."""
    h, w = ink.shape
    scale = DIGIT_SIZE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.clip(np.asarray(Image.fromarray(ink).resize(size, Image.Resampling.BILINEAR)), 0, None)


def read_digit_images(paths: list[str | Path]) -> list[tuple[Path, torch.Tensor | UserError]]:
    """Files and folders (their images, sorted) -> per file a uint8 [28, 28] digit or the UserError saying why not."""
    results: list[tuple[Path, torch.Tensor | UserError]] = []
    for path in map(Path, paths):
        files = _images_in(path) if path.is_dir() else [path]  # a missing path is reported by load_image
        if not files:
            results.append((path, UserError(path, f"folder has no image files ({' '.join(SUFFIXES)})")))
        results.extend((file, _read_digit(file)) for file in files)
    return results


def _images_in(folder: Path) -> list[Path]:
    # hidden files are skipped: macOS leaves "._name.png" metadata files beside the real ones
    found = [f for f in folder.iterdir() if f.suffix.lower() in SUFFIXES and not f.name.startswith(".")]
    return sorted(f for f in found if f.is_file())


def _read_digit(path: Path) -> torch.Tensor | UserError:
    try:
        return preprocess_digit(load_image(path))
    except UserError as e:
        return e
    except NoInkError:
        return UserError(path, "no ink found: the image is blank after removing the background")
