import os

import pytest
import torch

from src.data.kaggle_csv import PIXELS, read_kaggle_csv
from src.errors import UserError
from tests.conftest import KAGGLE_DIR

HEADER = "label," + ",".join(PIXELS)


def row(label: int | str, pixel: int | str = 0) -> str:
    return f"{label}," + ",".join([str(pixel)] * 784)


def write(tmp_path, *lines: str, name: str = "train.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reads_the_kaggle_sample():
    images, labels = read_kaggle_csv(KAGGLE_DIR / "train.csv", cache_dir=None)
    assert images.shape == (2000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (2000,) and labels.dtype == torch.int64
    first = (KAGGLE_DIR / "train.csv").read_text().splitlines()[1].split(",")
    assert labels[0].item() == int(first[0])
    assert images[0].flatten().tolist() == [int(v) for v in first[1:]]
    test_images, test_labels = read_kaggle_csv(KAGGLE_DIR / "test.csv", cache_dir=None)
    assert test_images.shape == (1000, 28, 28) and test_labels is None


def test_cache_returns_the_same_tensors(tmp_path):
    first = read_kaggle_csv(KAGGLE_DIR / "train.csv", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("kaggle-*.pt"))) == 1
    second = read_kaggle_csv(KAGGLE_DIR / "train.csv", cache_dir=tmp_path)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_the_cache_keeps_the_four_most_recently_used_files(tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "kaggle-mine.pt").write_bytes(b"a user's file, older than every cache")
    os.utime(cache_dir / "kaggle-mine.pt", (1, 1))
    caches = []
    for digit in range(5):
        csv = write(tmp_path, HEADER, row(digit), name=f"edit{digit}.csv")
        before = set(cache_dir.glob("*.pt"))
        read_kaggle_csv(csv, cache_dir=cache_dir)
        (made,) = set(cache_dir.glob("*.pt")) - before
        caches.append(made)
        if digit == 3:  # four files, used in this order; then the oldest is used again
            for age, cache in enumerate(caches):
                os.utime(cache, (1000 + age, 1000 + age))
            read_kaggle_csv(tmp_path / "edit0.csv", cache_dir=cache_dir)
    assert sorted(cache_dir.glob("*.pt")) == sorted(
        [caches[0], *caches[2:], cache_dir / "kaggle-mine.pt"]
    )  # edit1's, least recently used, went


def test_a_damaged_cache_is_rebuilt_not_trusted(tmp_path):
    images, labels = read_kaggle_csv(KAGGLE_DIR / "train.csv", cache_dir=tmp_path)
    (cache,) = tmp_path.glob("kaggle-*.pt")
    data = cache.read_bytes()
    middle = len(data) // 2  # inside the images' record: torch.load alone would return zeroed pixels
    cache.write_bytes(data[:middle] + bytes(4096) + data[middle + 4096 :])
    again, labels_again = read_kaggle_csv(KAGGLE_DIR / "train.csv", cache_dir=tmp_path)
    assert torch.equal(again, images) and torch.equal(labels_again, labels)


def test_missing_column_names_the_line(tmp_path):
    path = write(tmp_path, HEADER, row(1), row(2)[:-2])
    with pytest.raises(UserError) as error:
        read_kaggle_csv(path, cache_dir=None)
    assert str(error.value) == f"{path}, line 3: expected 785 values, found 784"


def test_non_integer_names_the_line_and_column(tmp_path):
    path = write(tmp_path, HEADER, row(1), row(2), row(3, "x"))
    with pytest.raises(UserError) as error:
        read_kaggle_csv(path, cache_dir=None)
    assert str(error.value) == f"{path}, line 4: pixel0 is 'x', not a whole number"


def test_value_256_names_the_line(tmp_path):
    path = write(tmp_path, HEADER, row(4, 256))
    with pytest.raises(UserError) as error:
        read_kaggle_csv(path, cache_dir=None)
    assert str(error.value) == f"{path}, line 2: pixel0 is 256, outside 0..255"


def test_label_outside_0_to_9(tmp_path):
    path = write(tmp_path, HEADER, row(1), row(10))
    with pytest.raises(UserError, match=r"line 3: label is 10, outside 0..9"):
        read_kaggle_csv(path, cache_dir=None)


def test_negative_and_float_values(tmp_path):
    with pytest.raises(UserError, match=r"line 2: pixel0 is '-1', not a whole number"):
        read_kaggle_csv(write(tmp_path, HEADER, row(1, -1)), cache_dir=None)
    with pytest.raises(UserError, match=r"line 2: pixel0 is '1.5', not a whole number"):
        read_kaggle_csv(write(tmp_path, HEADER, row(1, 1.5)), cache_dir=None)


def test_empty_and_header_only_files(tmp_path):
    empty = write(tmp_path, "", name="empty.csv")
    with pytest.raises(UserError) as error:
        read_kaggle_csv(empty, cache_dir=None)
    assert str(error.value) == f"{empty}: file is empty (expected a Kaggle CSV with a header line)"
    with pytest.raises(UserError, match="has a header but no data rows"):
        read_kaggle_csv(write(tmp_path, HEADER), cache_dir=None)


def test_wrong_header_names_the_column(tmp_path):
    swapped = HEADER.replace("pixel1,pixel2", "pixel2,pixel1")
    with pytest.raises(UserError) as error:
        read_kaggle_csv(write(tmp_path, swapped, row(1)), cache_dir=None)
    assert str(error.value).endswith("line 1: header column 3 is 'pixel2', expected 'pixel1'")


def test_windows_line_endings_and_bom_are_accepted(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(("\ufeff" + HEADER + "\r\n" + row(7, 3) + "\r\n").encode("utf-8"))
    images, labels = read_kaggle_csv(path, cache_dir=None)
    assert labels.tolist() == [7] and images.unique().tolist() == [3]


# found by tests/fuzz: each of these was a crash, a valid file refused, or a wrong value accepted


def test_a_file_holding_only_a_bom_is_empty(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"\xef\xbb\xbf")
    with pytest.raises(UserError) as error:
        read_kaggle_csv(path, cache_dir=None)
    assert str(error.value) == f"{path}: file is empty (expected a Kaggle CSV with a header line)"


def test_lines_holding_only_spaces_or_tabs_are_skipped_like_blank_ones(tmp_path):
    path = write(tmp_path, HEADER, row(4, 9), " ", "\t", row(5, 200), "  ")
    images, labels = read_kaggle_csv(path, cache_dir=None)
    assert labels.tolist() == [4, 5] and images[1].unique().tolist() == [200]


def test_signs_and_comments_are_not_whole_numbers(tmp_path):
    with pytest.raises(UserError, match=r"line 2: label is '\+1', not a whole number"):
        read_kaggle_csv(write(tmp_path, HEADER, row("+1")), cache_dir=None)
    with pytest.raises(UserError, match=r"line 3: pixel0 is '-0', not a whole number"):
        read_kaggle_csv(write(tmp_path, HEADER, row(1), row(1, "-0")), cache_dir=None)
    with pytest.raises(UserError, match=r"line 2: pixel783 is '0#', not a whole number"):
        read_kaggle_csv(write(tmp_path, HEADER, row(1) + "#"), cache_dir=None)
    with pytest.raises(UserError, match=r"line 2: expected 785 values, found 1"):
        read_kaggle_csv(write(tmp_path, HEADER, "# a comment", row(1)), cache_dir=None)


def test_a_number_too_long_for_int_is_outside_the_range(tmp_path):
    path = write(tmp_path, HEADER, row(1, "9" * 5000))
    with pytest.raises(UserError) as error:
        read_kaggle_csv(path, cache_dir=None)
    assert str(error.value) == f"{path}, line 2: pixel0 is {'9' * 20}, outside 0..255"
    with pytest.raises(UserError, match="line 3: expected 785 values, found 784"):  # not int()'s ValueError
        read_kaggle_csv(write(tmp_path, HEADER, row(1, "0" * 5000 + "7"), row(1)[2:]), cache_dir=None)


def test_non_ascii_characters_in_a_row_are_named_not_given_to_numpy(tmp_path):
    # found by tests/fuzz: numpy's loadtxt crashed the process (segfault) on some non-ASCII rows
    with pytest.raises(UserError, match=r"line 3: pixel0 is '0\\U000deb2dW', not a whole number"):
        read_kaggle_csv(write(tmp_path, HEADER, row(1), row(1, "0\U000deb2dW")), cache_dir=None)
    with pytest.raises(UserError, match=r"line 2: pixel0 is '\\xa05', not a whole number"):
        read_kaggle_csv(write(tmp_path, HEADER, row(1, "\xa05")), cache_dir=None)
