"""bench.coldpath runs a real keepalive exchange between two heartbeat cores (no timing is
asserted: the figures are the bench's output, not a test's)."""

from __future__ import annotations

import pytest
from bench.coldpath import STEPS, main, measure


def test_every_step_is_timed_back_to_back_and_after_each_sleep() -> None:
    results = measure(3, [0.001, 0.002])
    assert sorted(results) == [0.0, 0.001, 0.002]
    for row in results.values():
        assert len(row) == len(STEPS) and all(us > 0 for us in row)


def test_the_table_names_each_step_and_sleep(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--exchanges", "2", "--sleeps", "0.001"]) == 0
    table = capsys.readouterr().out
    assert "after 1 ms asleep" in table
    for step in STEPS:
        assert f"| {step} |" in table
