"""The four MNIST files: where they are, what their content must hash to, and fetching missing ones."""

import gzip
import hashlib
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import torch

from src.atomic import atomic_save
from src.data.idx import read_idx
from src.errors import UserError

PROJECT_DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "MNIST" / "raw"

# SHA-256 of each file's decompressed content (a recompressed .gz still verifies).
FILES = {
    "train": (
        ("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        ("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    ),
    "test": (
        ("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        ("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    ),
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


def load_mnist(split: str, data_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 [N, 28, 28] and labels int64 [N] of MNIST's "train" (60,000) or "test" (10,000)."""
    data_dir = Path(data_dir) if data_dir else PROJECT_DATA_DIR
    (images_name, images_sha), (labels_name, labels_sha) = FILES[split]
    images = read_idx(find_file(data_dir, images_name), images_sha)
    labels_path = find_file(data_dir, labels_name)
    labels = read_idx(labels_path, labels_sha).long()
    if images.dim() != 3 or images.shape[1:] != (28, 28) or labels.dim() != 1 or len(images) != len(labels):
        raise UserError(data_dir, f"{split} images {list(images.shape)} and labels {list(labels.shape)} do not match")
    return images, labels


def ensure_files(data_dir: str | Path | None = None) -> None:
    """Download whichever of the four files is missing, without reading the ones that are there."""
    data_dir = Path(data_dir) if data_dir else PROJECT_DATA_DIR
    for pairs in FILES.values():
        for name, _ in pairs:
            find_file(data_dir, name)


def find_file(data_dir: Path, name: str) -> Path:
    """The file `name` or `name.gz` in `data_dir`, downloaded there first if neither exists."""
    for candidate in (data_dir / f"{name}.gz", data_dir / name):
        if candidate.exists():
            return candidate
    if not data_dir.is_dir():
        raise UserError(data_dir, "data directory does not exist")
    return download(data_dir, name)


def download(data_dir: Path, name: str) -> Path:
    """Fetch `name.gz` from the public mirrors, verify its content, and write it atomically."""
    expected = dict(pair for pairs in FILES.values() for pair in pairs)[name]
    target = data_dir / f"{name}.gz"
    failures = []
    for mirror in MIRRORS:
        try:
            with urllib.request.urlopen(mirror + target.name, timeout=30) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError) as e:
            failures.append(f"{mirror}: {getattr(e, 'reason', e)}")
            continue
        try:
            digest = hashlib.sha256(gzip.decompress(payload)).hexdigest()
        except (OSError, EOFError, zlib.error):
            digest = None
        if digest != expected:
            failures.append(f"{mirror}: content does not match its SHA-256")
            continue
        print(f"downloaded {target.name} from {mirror}")
        atomic_save(target, lambda f, data=payload: f.write(data))
        return target
    raise UserError(target, f"missing, and no mirror could provide it ({'; '.join(failures)})")
