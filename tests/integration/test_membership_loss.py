"""20 % packet loss for 30 s declares nobody dead (the talk's timing: keepalive 200ms,
deadtime 2, so a death needs ten heartbeats in a row to be lost: 0.2**10, about 1e-7).

The loss is an nftables rule on vpbx1-1's switch port, both directions, so each node loses
a fifth of what the other sends. Config as in test_membership_netns.py (talk files, initdead 5,
empty haresources).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pytest
from nodes import NonstopCluster, talk_config

from nonstop.lab import Lab

pytestmark = [pytest.mark.netns, pytest.mark.slow]

N1, N2 = "vpbx1-1", "vpbx1-2"
LOSS_PERCENT = 20
LOSS_SECONDS = 30.0


def test_twenty_percent_loss_for_thirty_seconds_kills_nobody(
        make_lab: Callable[[Sequence[str]], Lab],
        record_property: Callable[[str, object], None]) -> None:
    lab = make_lab((N1, N2))
    cluster = NonstopCluster(lab, talk_config(lab.workdir / "talk"))
    cluster.start(N1)
    cluster.start(N2)
    cluster.wait_peer_status(N1, N2, "active", 20)
    cluster.wait_peer_status(N2, N1, "active", 20)

    lab.set_loss(N1, LOSS_PERCENT, "both")
    end = time.monotonic() + LOSS_SECONDS
    worst = {N1: 0, N2: 0}  # longest silence seen in status, ms
    samples = 0
    while time.monotonic() < end:
        for me, other in ((N1, N2), (N2, N1)):
            peer = cluster.peer(me, other)
            assert peer.get("status") == "active", (me, peer)
            worst[me] = max(worst[me], int(peer.get("last_heard_ms_ago") or 0))
        samples += 1
        # Polling pace, not a wait for a state: the loop itself is the observation.
        time.sleep(min(0.1, max(0.0, end - time.monotonic())))
    lab.set_loss(N1, 0, "both")

    lost = {h: cluster.dropped(h, "lost") for h in (N1, N2)}
    late = {h: len(cluster.log_lines(h, r"Late heartbeat")) for h in (N1, N2)}
    print(f"{LOSS_PERCENT} % loss for {LOSS_SECONDS:.0f} s: {samples} samples, longest silence "
          f"seen {worst} ms, sequence gaps {lost}, late heartbeats {late}")
    record_property("loss_longest_silence_ms", worst)
    for host in (N1, N2):
        log = cluster.log(host)
        assert "is dead" not in log, log
        assert "returning after partition" not in log, log
        # The loss was real: both saw gaps in the other's sequence numbers.
        assert lost[host] > 0, (host, lost)
        assert worst[host] < 2000, worst
    cluster.wait_peer_status(N1, N2, "active", 5)
    cluster.wait_peer_status(N2, N1, "active", 5)
