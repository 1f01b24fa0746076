import os
import signal
import subprocess
import sys
import time

import pytest

from src.atomic import STALE_SECONDS, atomic_save, atomic_write_text
from tests.conftest import ROOT

# writes 64 KiB chunks slowly, so that the parent can kill it with a partial temp file on disk
SLOW_WRITER = """
import sys, time
from src.atomic import atomic_save

def write(f):
    print("started", flush=True)
    for _ in range(2000):
        f.write(b"partial " * 8192)
        f.flush()
        time.sleep(0.01)

atomic_save(sys.argv[1], write)
"""


def temp_files(target):
    return sorted(target.parent.glob(f".{target.name}.*.tmp"))


@pytest.mark.parametrize("old", ["previous results\n", None], ids=["replacing", "new"])
def test_a_writer_killed_midway_leaves_the_old_file_or_none_never_a_partial_one(tmp_path, old):
    target = tmp_path / "results.json"
    if old is not None:
        target.write_text(old)
    child = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target)], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"started\n"
        deadline = time.monotonic() + 30
        while not (temp_files(target) and temp_files(target)[0].stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    if old is None:
        assert not target.exists()
    else:
        assert target.read_text() == old
    # the killed writer's temp file stays (a SIGKILL runs no cleanup); readers never look at hidden .tmp files
    [leftover] = temp_files(target)
    assert leftover.read_bytes().startswith(b"partial ")

    atomic_write_text(target, "new results\n")
    assert target.read_text() == "new results\n"
    assert temp_files(target) == [leftover]  # younger than STALE_SECONDS: it could be a live writer's

    old_time = time.time() - STALE_SECONDS - 5
    os.utime(leftover, (old_time, old_time))
    atomic_save(target, lambda f: f.write(b"newer results\n"))
    assert target.read_bytes() == b"newer results\n"
    assert temp_files(target) == []  # a stale temp file of this target is removed by the next write


def test_stale_temp_files_of_other_targets_are_kept(tmp_path):
    other = tmp_path / ".results.json.bak.abcdefgh.tmp"  # the temp file of "results.json.bak", not of "results.json"
    other.write_text("x")
    old_time = time.time() - STALE_SECONDS - 5
    os.utime(other, (old_time, old_time))
    atomic_write_text(tmp_path / "results.json", "{}\n")
    assert other.exists() and (tmp_path / "results.json").read_text() == "{}\n"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save(target, fail)
    assert target.read_bytes() == b"old" and temp_files(target) == []


def test_an_unwritable_target_is_one_user_error_and_leaves_nothing(tmp_path):
    from src.errors import UserError

    blocker = tmp_path / "a-file"
    blocker.write_text("keep")
    (tmp_path / "a-dir").mkdir()
    for target, reason in (
        (blocker / "out.csv", f"{blocker} is a file, not a folder"),
        (blocker / "sub" / "out.csv", f"{blocker} is a file, not a folder"),
        (tmp_path / "a-dir", "Is a directory"),
    ):
        with pytest.raises(UserError, match=rf"^{target}: could not be written \(({reason})\)$"):
            atomic_write_text(target, "x")
    assert blocker.read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["a-dir", "a-file"]
    assert list((tmp_path / "a-dir").iterdir()) == []
