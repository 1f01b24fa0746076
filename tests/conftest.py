import gzip
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = ROOT / "data" / "MNIST" / "raw"
KAGGLE_DIR = ROOT / "data" / "kaggle-sample"


@pytest.fixture
def mnist_copy(tmp_path: Path) -> Path:
    """A private copy of the four MNIST files that a test may damage."""
    target = tmp_path / "mnist"
    shutil.copytree(MNIST_DIR, target)
    return target


@pytest.fixture
def raw_labels(tmp_path: Path) -> bytes:
    """The decompressed bytes of MNIST's test labels (10,008 bytes: header + 10,000 labels)."""
    return gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())


@pytest.fixture(scope="session")
def short_run(tmp_path_factory) -> Path:
    """A lenet5 run trained for 100 batches: a real checkpoint, results.json and TensorBoard events."""
    from src.train import main as train

    logdir = tmp_path_factory.mktemp("short_run")
    argv = ["--model", "lenet5", "--max-epochs", "1", "--limit-train-batches", "100", "--logdir", str(logdir)]
    assert train(argv) == 0
    return logdir / "lenet5" / "version_0"


@pytest.fixture(scope="session")
def kaggle_run(tmp_path_factory) -> Path:
    """A lenet5 run on the Kaggle-format sample (its 200-image validation split is the run's test)."""
    from src.train import main as train

    logdir = tmp_path_factory.mktemp("kaggle_run")
    argv = ["--model", "lenet5", "--data", "kaggle", "--data-dir", str(KAGGLE_DIR), "--max-epochs", "1"]
    assert train([*argv, "--logdir", str(logdir)]) == 0
    return logdir / "lenet5" / "version_0"


def logged(run, tag: str) -> list[tuple[int, float]]:
    """(step, value) of every `tag` scalar in a run directory's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # Sorted by step: TensorBoard reads a run's event files in name order, and the names of files that one
    # process writes within the same second differ only by a counter, where ".10" sorts before ".2".
    events = EventAccumulator(str(run), purge_orphaned_data=False)
    events.Reload()
    return sorted((e.step, e.value) for e in events.Scalars(tag))


def add_callback(monkeypatch, callback, first: bool = False) -> None:
    """Training runs from here on (in this test, or this `monkeypatch.context()`) also use `callback`,
    after the project's own callbacks (before them if `first`)."""
    import src.callbacks

    build_callbacks = src.callbacks.build_callbacks
    if first:
        monkeypatch.setattr(src.callbacks, "build_callbacks", lambda *a: [callback, *build_callbacks(*a)])
    else:
        monkeypatch.setattr(src.callbacks, "build_callbacks", lambda *a: [*build_callbacks(*a), callback])
