"""scripts/benchmark.py: a bad flag or recipe is one line before any timing (it printed tracebacks, some
after minutes of throughput rounds)."""

import pytest

from tests.scripts import load_script

benchmark = load_script("benchmark")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--accelerator", "foo"], "error: --accelerator: unknown accelerator 'foo'; choose from auto, cpu, gpu"),
        (["--batch-sizes", "--recipes", "no/such.yaml"], "error: no/such.yaml: recipe file not found"),
        (["--rounds", "0"], "error: scripts/benchmark.py: argument --rounds: expected a whole number of at least 1"),
        (["--batch-sizes", "0"], "error: scripts/benchmark.py: argument --batch-sizes: expected a whole number"),
        (
            ["--seconds", "nan"],
            "error: scripts/benchmark.py: argument --seconds: expected a positive number, got 'nan'",
        ),
        (
            ["--targets", "99"],
            "error: scripts/benchmark.py: argument --targets: expected an accuracy in (0, 1], got '99'",
        ),
    ],
)
def test_bad_flags_are_one_line_before_any_timing(flags, message, capsys):
    assert benchmark.main(flags) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(message) and captured.err.count("\n") == 1
    assert captured.out == ""
