"""How script output and exit codes become resource states."""

from __future__ import annotations

import pytest

from nonstop.resources.base import ResourceState
from nonstop.resources.scripts import (
    classify_lsb_status,
    classify_ocf_monitor,
    classify_status_output,
)

R, S, F, U = (
    ResourceState.RUNNING,
    ResourceState.STOPPED,
    ResourceState.FAILED,
    ResourceState.UNKNOWN,
)


@pytest.mark.parametrize(
    ("output", "state"),
    [
        ("", S),
        ("\n", S),
        ("running\n", R),
        ("Running\n", R),
        ("INFO:  Running OK\n", R),
        ("OK\n", R),
        ("ok\n", S),  # only upper-case OK counts
        ("RUNNING\n", S),  # only the R may vary in case
        ("asterisk is running.\n", R),
        ("asterisk is not running\n", S),
        ("asterisk is NOT running\n", S),
        ("Not running\n", S),
        ("not yet fully Running\n", S),
        ("notrunning\n", R),  # the "not" rule needs a blank after "not"
        ("INFO:  Resource is stopped\n", S),
        ("stopped\n", S),
        ("is not \nrunning\n", S),  # the glob spans lines
        ("status: not\nrunning\n", R),  # ...but wants a blank right after "not"
        ("process 1234 running\nOK\n", R),
    ],
)
def test_heartbeat_stdout_rule(output: str, state: ResourceState) -> None:
    assert classify_status_output(output) is state


@pytest.mark.parametrize(
    ("rc", "state"), [(0, R), (1, S), (2, S), (3, S), (4, U), (5, U), (150, U), (255, U)]
)
def test_lsb_status_exit_codes(rc: int, state: ResourceState) -> None:
    assert classify_lsb_status(rc) is state


@pytest.mark.parametrize(("rc", "state"), [(0, R), (7, S), (1, F), (2, F), (5, F), (8, F)])
def test_ocf_monitor_exit_codes(rc: int, state: ResourceState) -> None:
    assert classify_ocf_monitor(rc) is state
