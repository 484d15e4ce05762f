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
    # Five statuses a second for three seconds: the follower checks each and answers it, the
    # leader checks the answers. A few may be late on a busy machine, none may be refused.
    assert result["follower"].heard >= 5, result
    assert result["leader"].heard >= 5, result
    assert all(f.cpu_pct > 0.0 and f.wakeups > 0.0 for f in result.values()), result
