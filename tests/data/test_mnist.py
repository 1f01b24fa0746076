import gzip
import io
import urllib.error

import pytest

from src.data import mnist
from src.errors import UserError


def test_damaged_file_in_a_data_dir_names_that_file(mnist_copy):
    target = mnist_copy / "train-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:1000])
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte.gz: (truncated|is not a valid gzip file)"):
        mnist.load_mnist("train", mnist_copy)


def test_missing_data_dir_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="data directory does not exist"):
        mnist.load_mnist("test", tmp_path / "absent")


def test_missing_file_without_network_writes_nothing(mnist_copy, monkeypatch):
    (mnist_copy / "t10k-labels-idx1-ubyte.gz").unlink()

    def offline(url, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(mnist.urllib.request, "urlopen", offline)
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte.gz: missing, and no mirror could provide it"):
        mnist.load_mnist("test", mnist_copy)
    assert sorted(p.name for p in mnist_copy.iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]


def test_download_verifies_content_before_writing(mnist_copy, monkeypatch, raw_labels):
    (mnist_copy / "t10k-labels-idx1-ubyte.gz").unlink()
    served = []

    def mirror(url, timeout):
        # First mirror serves altered content, the second the real file.
        served.append(url)
        payload = raw_labels[:-1] + b"\x09" if len(served) == 1 else raw_labels
        return io.BytesIO(gzip.compress(payload))

    monkeypatch.setattr(mnist.urllib.request, "urlopen", mirror)
    images, labels = mnist.load_mnist("test", mnist_copy)
    assert len(served) == 2 and len(labels) == 10000
    assert gzip.decompress((mnist_copy / "t10k-labels-idx1-ubyte.gz").read_bytes()) == raw_labels


def test_ensure_files_fetches_only_what_is_missing(mnist_copy, monkeypatch, raw_labels):
    (mnist_copy / "t10k-labels-idx1-ubyte.gz").unlink()
    fetched = []

    def mirror(url, timeout):
        fetched.append(url.rsplit("/", 1)[1])
        return io.BytesIO(gzip.compress(raw_labels))

    monkeypatch.setattr(mnist.urllib.request, "urlopen", mirror)
    mnist.ensure_files(mnist_copy)
    assert fetched == ["t10k-labels-idx1-ubyte.gz"]
    assert (mnist_copy / "t10k-labels-idx1-ubyte.gz").exists()
