import gzip

import pytest
import torch

from src.data.idx import read_idx
from src.data.mnist import FILES, load_mnist
from src.errors import UserError
from tests.conftest import MNIST_DIR

TEST_LABELS_SHA = dict(FILES["test"])["t10k-labels-idx1-ubyte"]


def test_reads_the_shipped_mnist_files():
    images, labels = load_mnist("train", MNIST_DIR)
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (60000,) and labels.dtype == torch.int64
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    test_images, test_labels = load_mnist("test", MNIST_DIR)
    assert test_images.shape == (10000, 28, 28)
    assert test_labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_uncompressed_file_reads_the_same(tmp_path, raw_labels):
    plain = tmp_path / "t10k-labels-idx1-ubyte"
    plain.write_bytes(raw_labels)
    assert torch.equal(read_idx(plain, TEST_LABELS_SHA), read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz"))


def test_wrong_magic_is_named(tmp_path, raw_labels):
    bad = tmp_path / "labels"
    bad.write_bytes(b"\x12\x34" + raw_labels[2:])
    with pytest.raises(UserError) as error:
        read_idx(bad)
    assert str(error.value) == f"{bad}: not an IDX file (starts with 12 34 08 01, expected 00 00 08 0N)"


def test_truncated_file_is_named(tmp_path, raw_labels):
    bad = tmp_path / "labels.gz"
    bad.write_bytes(gzip.compress(raw_labels[:-100]))
    with pytest.raises(UserError) as error:
        read_idx(bad)
    assert str(error.value) == f"{bad}: truncated: header [10000] needs 10000 bytes of data, found 9900"


def test_trailing_bytes_are_an_error(tmp_path, raw_labels):
    bad = tmp_path / "labels"
    bad.write_bytes(raw_labels + b"\0\0")
    with pytest.raises(UserError, match="has 2 bytes after the 10000 bytes its header"):
        read_idx(bad)


def test_altered_content_fails_the_checksum(tmp_path, raw_labels):
    altered = bytearray(raw_labels)
    altered[500] = (altered[500] + 1) % 10
    bad = tmp_path / "labels.gz"
    bad.write_bytes(gzip.compress(bytes(altered)))
    with pytest.raises(UserError) as error:
        read_idx(bad, TEST_LABELS_SHA)
    message = str(error.value)
    assert message.startswith(f"{bad}: SHA-256 of its content is ")
    assert message.endswith(
        f"expected {TEST_LABELS_SHA[:16]}... (the file is corrupt or altered; replace it, or delete it to download it again)"
    )


def test_gzip_garbage_and_empty_files(tmp_path):
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    with pytest.raises(UserError, match="is not a valid gzip file"):
        read_idx(garbage)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match=r"not an IDX file \(starts with nothing"):
        read_idx(empty)


def test_missing_file():
    with pytest.raises(UserError, match="nowhere.gz: file not found"):
        read_idx("nowhere.gz")


def test_a_header_with_a_zero_size_reads_as_an_empty_tensor(tmp_path):
    # found by tests/fuzz: torch.frombuffer refuses an empty buffer, which escaped as a ValueError
    empty = tmp_path / "empty-idx3-ubyte"
    empty.write_bytes(b"\0\0\x08\x03" + (0).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
    images = read_idx(empty)
    assert images.shape == (0, 28, 28) and images.dtype == torch.uint8
