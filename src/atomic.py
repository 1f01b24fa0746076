"""Write files so that a reader finds the old content or the new, never a partial file."""

import errno
import glob
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from src.errors import UserError

STALE_SECONDS = 60  # a temp file untouched this long was left by a killed writer (a live one keeps writing to it)


class WriteError(UserError):
    """An output file could not be written (a full disk, a directory in its place, no permission); whatever
    was at its path before is untouched."""

    def __init__(self, path: Path, error: OSError):
        super().__init__(path, f"could not be written ({why_not(Path(path).parent, error)})")


def why_not(folder: Path, error: OSError) -> str:
    """Why `folder` could not be made or written in: mkdir says "File exists" of a file in the way, so name it."""
    blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        return f"{blocker} is a file, not a folder"
    return str(error.strerror or error)


def make_parent_folders(path: str | os.PathLike) -> None:
    """The folders `path` goes in, or a WriteError that says what is in the way."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(Path(path), e) from None


def check_file_writable(path: str | os.PathLike) -> None:
    """Fail now, not after hours of work, when `path` could not be written: a file in the way of its folder,
    or a folder at its place."""
    make_parent_folders(path)
    if Path(path).is_dir():
        raise WriteError(Path(path), IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))


def check_not_an_input(flag: str, output: str | os.PathLike, inputs) -> None:
    """An output must not replace one of the command's own input files (a test.csv, a photo, a checkpoint)."""
    for source in inputs:
        if Path(output).exists() and Path(source).exists() and Path(output).samefile(source):  # links too
            raise UserError(flag, f"{output} is also an input of this command; give another file to write")


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside `path`; on success it is fsynced and renamed over `path`."""
    path = Path(path)
    make_parent_folders(path)
    try:
        _remove_stale_temp_files(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise WriteError(path, e) from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(path, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_stale_temp_files(path: Path) -> None:
    """A SIGKILL or power cut skips the cleanup above and leaves `.NAME.XXXXXXXX.tmp` (mkstemp's 8 random
    characters) beside the target; harmless to readers, but a checkpoint's can be large, so the next write removes it."""
    cutoff = time.time() - STALE_SECONDS
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.{'?' * 8}.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except OSError:  # another writer removed or renamed it first
            pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_save(path: str | os.PathLike, write: Callable[[IO], None]) -> None:
    """Call `write(binary_file)` on a temporary file, then rename it over `path`."""
    with atomic_open(path, "wb") as f:
        write(f)
