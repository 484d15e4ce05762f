"""bench.wakefloor's two minimal heartbeat processes really exchange signed statuses in the
lab, with either way of waiting (no CPU figure is asserted: those are the bench's output)."""

from __future__ import annotations

import os

import pytest
from bench.wakefloor import measure

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="the bench builds network namespaces"),
]

WINDOW_S = 2.0


@pytest.mark.parametrize("loop", ["asyncio", "select"])
def test_the_follower_answers_and_the_leader_hears_it(loop: str) -> None:
    result = measure(WINDOW_S, loop, settle=1.0)
    assert sorted(result) == ["follower", "leader"]
    (_, follower_wakes), (_, leader_wakes) = result["follower"], result["leader"]
    # The follower wakes only for a status it heard (five a second are sent); the leader for
    # its own keepalive and, besides, for the answers it does not catch in that wakeup.
    assert follower_wakes >= 2.0, result
    assert leader_wakes > follower_wakes, result
    assert all(pct > 0.0 for pct, _ in result.values()), result
