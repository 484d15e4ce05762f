"""A blip of the heartbeat link just past deadtime leaves the service where it was.

A user trial of the sub-second profile: a 0.2 s blip of the whole link (just past its 200 ms
deadtime) made the standby declare the active node dead and start a takeover, whose first
step is an ARP probe of the address (the lost node may still hold it). The blip ended while
it probed: the active node heard the standby again, saw it claim the group with a newer
epoch and released it at once, address first; the standby's probe had heard the address
answered, so its start failed. Nobody served for 1.5-2.8 s (10 of 15 blips), then the old
node took the group again. A claim still starting is not a holder yet: the holder keeps the
group and announces its address, which fails the takeover's probe.

Here the talk's timing with a long probe makes the race certain: the two nodes no longer
hear each other (the client still reaches both) for a little over deadtime, and hear each
other again while the standby's probe listens.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from talkcluster import N1, N2, TalkCluster

from nonstop.lab import Lab, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow]

DEADTIME_S = 2.0  # the talk's
PROBE = "4"  # how long the takeover's address probe listens


def _first_time(log: str, text: str) -> str:
    """The timestamp (the daemons' wall clock, one machine) of the first line with ``text``."""
    line = next(line for line in log.splitlines() if text in line)
    found = re.search(r"\d{4}/\d\d/\d\d_\d\d:\d\d:\d\d\.\d{3}", line)
    assert found is not None, line
    return found.group()


@pytest.fixture
def lab(make_lab: object) -> Iterator[Lab]:
    yield make_lab((N1, N2))  # type: ignore[operator]


def test_a_holder_keeps_the_group_while_a_takeover_is_still_probing(lab: Lab) -> None:
    c = TalkCluster(lab, directives={"nonstop_address_probe": PROBE})
    c.running()
    lab.isolate(N1, N2)
    fault = time.monotonic()
    wait_for(lambda: "probing its addresses first" in c.log(N2), DEADTIME_S + 8,
             what="vpbx1-2 to start a takeover with a probe")
    # Its three ARP probes go in the first 40 ms and are lost; it listens on for 4 s.
    time.sleep(0.5)
    lab.unisolate(N1, N2)
    healed = time.monotonic()
    # The probe listens 4 s from its start: the outcome is settled by then, with margin.
    end = healed + 8.0
    gone: list[float] = []
    while time.monotonic() < end:
        if N1 not in c.vip_holders():
            gone.append(time.monotonic())
        time.sleep(0.05)
    assert not gone, (f"vpbx1-1 let the address go {gone[0] - healed:.2f} s after the heal\n"
                      f"{c.log(N1)[-3000:]}")
    assert c.vip_holders() == [N1]
    assert "address conflict" in c.log(N2), c.log(N2)[-3000:]
    if "still starting it: keeping it" not in c.log(N1):
        # Once in CI the probe heard the address answered 3 ms before vpbx1-1 heard vpbx1-2's
        # next status: the takeover had failed before it could reach vpbx1-1 as a claim, and
        # the rule had nothing to see. Only that order excuses the missing line.
        failed = _first_time(c.log(N2), "start failed: address conflict")
        heard = _first_time(c.log(N1), "returning after partition")
        assert failed < heard, c.log(N1)[-3000:] + c.log(N2)[-3000:]
    wait_for(lambda: c.holder(N2) == N1, 10, what="vpbx1-2 to see vpbx1-1 holding again")
    # The client lost nothing but the isolation (which it was not part of).
    assert c.longest_silence(fault) < 1.0, c.longest_silence(fault)
