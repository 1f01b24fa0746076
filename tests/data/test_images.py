import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import src.data.images as images_module
from src.data.images import NoInkError, load_image, preprocess_digit, read_digit_images
from src.data.mnist import load_mnist
from src.errors import UserError


def photo_of_a_seven(paper=(225, 225, 220), ink=(30, 30, 40), noise=6.0, size=(400, 300)) -> Image.Image:
    """A thick 7 in the upper left of a noisy RGB 'photo', far larger than 28x28."""
    image = Image.new("RGB", size, paper)
    ImageDraw.Draw(image).line([(60, 40), (160, 40), (100, 200)], fill=ink, width=14, joint="curve")
    pixels = np.asarray(image, dtype=np.float32) + np.random.default_rng(0).normal(0, noise, (size[1], size[0], 1))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def centre_of_mass(digit: torch.Tensor) -> tuple[float, float]:
    """(row, column) of the intensity-weighted mean, 0-based pixel centres: MNIST's mean is (14.0, 14.0)."""
    weights = digit.double()
    index = torch.arange(28, dtype=torch.float64)
    return float(weights.sum(1) @ index / weights.sum()), float(weights.sum(0) @ index / weights.sum())


def save(image: Image.Image, path, **options):
    image.save(path, **options)
    return path


@pytest.fixture(scope="module")
def mnist_test():
    return load_mnist("test")[0]


def test_a_photographed_digit_becomes_a_centred_20_pixel_mnist_digit(tmp_path):
    digit = preprocess_digit(load_image(save(photo_of_a_seven(), tmp_path / "seven.jpg")))
    assert digit.shape == (28, 28) and digit.dtype == torch.uint8
    assert digit.max() == 255
    rows, cols = torch.nonzero(digit, as_tuple=True)
    height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    assert abs(max(height, width) - 20) <= 1
    assert 0.4 < width / height < 0.8  # the 7 is 114x174 px: its aspect ratio is kept
    assert (digit[:, :3] == 0).all() and (digit[:, -3:] == 0).all()  # the paper and its noise are gone ...
    assert (digit[12:16, 7:12] == 0).all() and (digit > 0).sum() < 200  # ... inside the 7's bounding box too
    row, col = centre_of_mass(digit)
    assert abs(row - 14) <= 1 and abs(col - 14) <= 1


def test_light_ink_on_dark_paper_gives_the_same_digit():
    dark_on_light = preprocess_digit(np.asarray(photo_of_a_seven(), dtype=np.float32).mean(axis=2) / 255)
    light_on_dark = photo_of_a_seven(paper=(30, 30, 35), ink=(225, 225, 220))
    digit = preprocess_digit(np.asarray(light_on_dark, dtype=np.float32).mean(axis=2) / 255)
    assert (digit.float() - dark_on_light.float()).abs().mean() < 3


def test_a_dim_photo_with_grey_paper_is_still_dark_ink_on_paper():
    bright = preprocess_digit(np.asarray(photo_of_a_seven().convert("L"), dtype=np.float32) / 255)
    dim = photo_of_a_seven(paper=(105, 105, 100), ink=(25, 25, 30), noise=3).convert("L")
    digit = preprocess_digit(np.asarray(dim, dtype=np.float32) / 255)  # paper at 0.41: darker than mid-grey
    assert (digit.float() - bright.float()).abs().mean() < 5


@pytest.mark.parametrize("noise", [6.0, 0.0])  # the noise floor, then the faint-ink floor, must remove the shadow
def test_shading_across_a_photo_is_neither_noise_nor_ink(noise):
    photo = np.asarray(photo_of_a_seven(noise=noise).convert("L"), dtype=np.float32) / 255
    shade = np.linspace(0.75, 1.0, 400, dtype=np.float32)  # the left edge of the page is in a shadow
    assert (preprocess_digit(photo * shade).float() - preprocess_digit(photo).float()).abs().mean() < 5


def test_a_speck_of_dust_far_from_the_digit_does_not_shrink_it():
    clean = photo_of_a_seven().convert("L")
    dusty = clean.copy()
    ImageDraw.Draw(dusty).rectangle((340, 250, 341, 251), fill=0)
    expected = preprocess_digit(np.asarray(clean, dtype=np.float32) / 255)
    digit = preprocess_digit(np.asarray(dusty, dtype=np.float32) / 255)
    assert (digit.float() - expected.float()).abs().mean() < 3


def test_a_top_heavy_digit_is_moved_down_less_than_its_centre_asks_but_never_cut():
    image = Image.new("L", (200, 200), 255)
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 20, 160, 70), fill=0)  # a heavy bar: the centre of mass sits near the top
    draw.line([(100, 70), (100, 180)], fill=0, width=4)
    digit = preprocess_digit(np.asarray(image, dtype=np.float32) / 255)
    rows = torch.nonzero(digit.sum(dim=1)).flatten()
    assert (int(rows.min()), int(rows.max())) == (8, 27)  # the stem reaches the bottom row, uncut


def test_an_mnist_digit_enlarged_to_280_pixels_comes_back_close_to_itself(mnist_test, tmp_path):
    for index in range(6):
        original = mnist_test[index]
        big = Image.fromarray(original.numpy()).resize((280, 280), Image.Resampling.BILINEAR)
        digit = preprocess_digit(load_image(save(big, tmp_path / f"{index}.png"))).float()
        assert (digit - original.float()).abs().mean() < 15, index  # out of 255
        assert np.corrcoef(digit.flatten(), original.float().flatten())[0, 1] > 0.85, index


def paper_with_a_ring() -> Image.Image:
    """L [90, 120]: a dark ring on light paper, the reference every other pixel format must match."""
    image = Image.new("L", (120, 90), 230)
    ImageDraw.Draw(image).ellipse((30, 15, 80, 75), outline=20, width=10)
    return image


def transparent_ring(mode: str) -> Image.Image:
    """The ring, opaque black on a fully transparent *black* background: naive greyscale sees black on black."""
    alpha = Image.eval(paper_with_a_ring(), lambda v: 255 if v < 128 else 0)
    black = Image.new("L", alpha.size, 0)
    return Image.merge("LA", (black, alpha)) if mode == "LA" else Image.merge("RGBA", (black, black, black, alpha))


def palette_ring_with_transparency() -> Image.Image:
    image = paper_with_a_ring().point(lambda v: 1 if v < 128 else 0).convert("P")
    image.putpalette([0, 0, 0, 0, 0, 0] + [0] * 762)  # both entries black; index 0 (the paper) is transparent
    image.info["transparency"] = 0
    return image


def ring_as(dtype) -> np.ndarray:
    return np.asarray(paper_with_a_ring()).astype(dtype)


FORMATS = {
    "RGBA, transparent paper": ("png", lambda: transparent_ring("RGBA"), {}),
    "LA, transparent paper": ("png", lambda: transparent_ring("LA"), {}),
    "16-bit greyscale": ("png", lambda: Image.fromarray(np.asarray(paper_with_a_ring()).astype(np.uint16) * 257), {}),
    "16-bit values in a 32-bit TIFF": ("tif", lambda: Image.fromarray(ring_as(np.int32) * 257), {}),
    "8-bit values in a 32-bit TIFF": ("tif", lambda: Image.fromarray(ring_as(np.int32)), {}),
    "8-bit values in a 16-bit PNG": ("png", lambda: Image.fromarray(ring_as(np.uint16)), {}),
    "32-bit integer TIFF": ("tif", lambda: Image.fromarray(ring_as(np.int32) * 2**23), {}),
    "float TIFF in 0-1": ("tif", lambda: Image.fromarray(ring_as(np.float32) / 255), {}),
    "float TIFF in 0-255": ("tif", lambda: Image.fromarray(ring_as(np.float32)), {}),
    "CMYK JPEG": ("jpg", lambda: paper_with_a_ring().convert("CMYK"), {"quality": 95}),
    "palette": ("png", lambda: paper_with_a_ring().convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE), {}),
    "palette, transparent paper": ("gif", palette_ring_with_transparency, {"transparency": 0}),
    "1-bit": ("png", lambda: paper_with_a_ring().convert("1", dither=Image.Dither.NONE), {}),
}


@pytest.mark.parametrize("name", FORMATS)
def test_every_pixel_format_reads_as_the_same_digit(name, tmp_path):
    suffix, make, options = FORMATS[name]
    grey = load_image(save(make(), tmp_path / f"ring.{suffix}", **options))
    assert grey.dtype == np.float32 and grey.shape == (90, 120)
    assert grey[0, 0] > 0.85 and grey[45, 32] < 0.15  # paper (even transparent paper) is white, the ring dark
    expected = preprocess_digit(np.asarray(paper_with_a_ring(), dtype=np.float32) / 255).float()
    assert (preprocess_digit(grey).float() - expected).abs().mean() < 6


def test_white_ink_on_transparent_paper_is_the_same_digit(tmp_path):
    """As a drawing app in dark mode exports it: on white paper the ink would vanish."""
    alpha = Image.eval(paper_with_a_ring(), lambda v: 255 if v < 128 else 0)
    white = Image.new("L", alpha.size, 255)
    grey = load_image(save(Image.merge("LA", (white, alpha)), tmp_path / "white_ring.png"))
    expected = preprocess_digit(np.asarray(paper_with_a_ring(), dtype=np.float32) / 255).float()
    assert (preprocess_digit(grey).float() - expected).abs().mean() < 6


def test_a_photo_stored_sideways_with_an_exif_turn_is_read_upright(tmp_path):
    upright = photo_of_a_seven()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": what phones write
    path = save(upright.transpose(Image.Transpose.ROTATE_90), tmp_path / "phone.jpg", exif=exif)
    assert load_image(path).shape == (300, 400)


ERRORS = {
    "text.png": (b"this is not an image\n", "is not an image Pillow can read"),
    "empty.png": (b"", "file is empty"),
}


@pytest.mark.parametrize("name", ERRORS)
def test_files_that_are_not_images_are_one_line_errors(name, tmp_path):
    content, message = ERRORS[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError) as error:
        load_image(path)
    assert str(error.value) == f"{path}: {message}" and error.value.thing == str(path)


def test_a_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match=r"missing\.png: file not found$"):
        load_image(tmp_path / "missing.png")


def cut_in_half(png: bytes) -> bytes:
    return png[: len(png) // 2]


def flip_a_bit_in_the_pixels(png: bytes) -> bytes:
    damaged = bytearray(png)
    damaged[png.index(b"IDAT") + 40] ^= 1  # zlib may still inflate this; only the chunk's CRC tells
    return bytes(damaged)


@pytest.mark.parametrize("damage", [cut_in_half, flip_a_bit_in_the_pixels])
def test_a_truncated_or_damaged_png_is_detected(damage, tmp_path):
    whole = save(paper_with_a_ring(), tmp_path / "whole.png").read_bytes()
    path = tmp_path / "damaged.png"
    path.write_bytes(damage(whole))
    with pytest.raises(UserError) as error:
        load_image(path)
    assert str(error.value).startswith(f"{path}: is truncated or damaged (")


def test_an_image_over_max_pixels_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(images_module, "MAX_PIXELS", 100)
    path = save(Image.new("L", (20, 10), 255), tmp_path / "big.png")
    with pytest.raises(UserError) as error:
        load_image(path)
    assert str(error.value) == f"{path}: is 20x10 = 200 pixels, more than the 100 this tool accepts"


@pytest.mark.parametrize("side", [40, 50])  # over Pillow's warning limit, then over its error limit (2x)
def test_pillow_decompression_bomb_checks_become_one_line_errors(side, tmp_path, monkeypatch):
    path = save(Image.new("L", (side, side), 255), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(UserError) as error:
        load_image(path)
    assert str(error.value) == (
        f"{path}: has more pixels than Pillow's decompression-bomb limit, more than the 40,000,000 this tool accepts"
    )


@pytest.mark.parametrize("noise", [0.0, 6.0])
def test_a_blank_page_has_no_ink(noise, tmp_path):
    page = photo_of_a_seven(ink=(225, 225, 220), noise=noise)  # the 7 drawn in the paper's colour
    with pytest.raises(NoInkError, match="no ink found"):
        preprocess_digit(np.asarray(page, dtype=np.float32).mean(axis=2) / 255)
    path = save(page, tmp_path / "blank.png")
    [(_, error)] = read_digit_images([path])
    assert str(error) == f"{path}: no ink found: the image is blank after removing the background"


def test_one_bad_file_does_not_stop_the_others_and_order_is_kept(tmp_path):
    good = save(photo_of_a_seven(), tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    folder = tmp_path / "folder"
    folder.mkdir()
    save(paper_with_a_ring(), folder / "b.png")
    save(photo_of_a_seven(), folder / "a.JPG")
    (folder / "notes.txt").write_text("skipped: not an image suffix")
    (folder / "._a.png").write_bytes(b"macOS metadata, skipped")
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing.png"
    results = read_digit_images([str(good), bad, folder, missing, empty])
    assert [path for path, _ in results] == [good, bad, folder / "a.JPG", folder / "b.png", missing, empty]
    outcomes = [result for _, result in results]
    assert [isinstance(result, UserError) for result in outcomes] == [False, True, False, False, True, True]
    for digit in outcomes[0], outcomes[2], outcomes[3]:
        assert digit.shape == (28, 28) and digit.dtype == torch.uint8 and digit.max() == 255
    assert str(outcomes[1]) == f"{bad}: is not an image Pillow can read"
    assert str(outcomes[4]) == f"{missing}: file not found"
    assert str(outcomes[5]) == f"{empty}: folder has no image files (.png .jpg .jpeg .bmp .gif .tif .tiff .webp)"
