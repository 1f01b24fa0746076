"""Hypothesis profiles for the fuzz tests, and a tally of what each reader did with the generated inputs.

FUZZ_PROFILE=ci (the default) keeps the folder to a few seconds inside the normal suite; FUZZ_PROFILE=full gives each
reader at least 10,000 generated inputs: `FUZZ_PROFILE=full python -m pytest -m fuzz tests/fuzz`.
"""

import os
import time
from collections import Counter, defaultdict

import pytest
from hypothesis import HealthCheck, settings

TESTS_PER_READER = 3  # every reader has at least this many fuzz tests, so "full" gives it >= 10,000 inputs
COMMON = dict(
    deadline=None,  # a shared 2-core CI machine has slow moments; a hang still shows as a stuck test
    derandomize=True,  # the same inputs on every run, so a CI failure reproduces
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.register_profile("ci", max_examples=40, **COMMON)
settings.register_profile("full", max_examples=-(-10_000 // TESTS_PER_READER), **COMMON)
settings.load_profile(os.environ.get("FUZZ_PROFILE", "ci"))

OUTCOMES: defaultdict[str, Counter] = defaultdict(Counter)
SECONDS: Counter = Counter()


def record(reader: str, outcome: str) -> None:
    """Count one generated input: `outcome` is "UserError" or "correct result"."""
    OUTCOMES[reader][outcome] += 1


@pytest.fixture(autouse=True)
def _time_reader(request):
    start = time.perf_counter()
    yield
    SECONDS[request.module.READER] += time.perf_counter() - start


def pytest_terminal_summary(terminalreporter):
    if not OUTCOMES:
        return
    terminalreporter.section(f"fuzz ({settings.get_current_profile_name()} profile)")
    for reader, counts in sorted(OUTCOMES.items()):
        detail = ", ".join(f"{n} {outcome}" for outcome, n in counts.most_common())
        terminalreporter.write_line(f"{reader}: {sum(counts.values())} inputs ({detail}) in {SECONDS[reader]:.1f} s")
