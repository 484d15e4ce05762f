"""A planned hand-off loses nothing the old node's service wrote while it stopped: Asterisk's
last log line and a voicemail finished during its stop are on the new holder, not only in the
old node's backup directory (the last push comes after the stop, before the release)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

import pytest
from talkcluster import N1, N2, replicating

from nonstop.lab import Lab, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow]

LOG = "var/log/asterisk/messages"
VM = "var/spool/asterisk/voicemail/default/1000/INBOX"


def test_what_the_service_writes_while_it_stops_reaches_the_new_holder(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    c = replicating(make_lab((N1, N2)))
    r1 = c.sync_root(N1)
    (r1 / VM).mkdir(parents=True, exist_ok=True)
    (r1 / LOG).write_text("a line before the hand-off\n")
    wait_for(lambda: (c.sync_root(N2) / LOG).exists(), 20, what="the log on vpbx1-2")
    rd = c.config_dir(N1) / "resource.d"
    (rd / "asterisk").rename(rd / "asterisk.real")
    (rd / "asterisk").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = stop ]; then\n'
        f'  echo "shutting down" >> {r1 / LOG}\n'
        f'  echo "recorded during the stop" > {r1 / VM / "msg-at-stop.txt"}\n'
        "fi\n"
        f'exec {rd / "asterisk.real"} "$@"\n')
    (rd / "asterisk").chmod(0o755)
    c.start_prober()
    wait_for(lambda: c.answered_by(N1, 0.0), 20, what="a SIP answer from vpbx1-1")
    t = time.monotonic()
    r = c.lab.run(N1, [sys.executable, "-m", "nonstop", "standby", "--state-dir",
                       str(c.state_dir(N1))], timeout=60)
    assert r.returncode == 0, r.stderr
    c.wait_vip_on(N2, 30)
    wait_for(lambda: c.answered_by(N2, t), 30, what="a SIP answer from vpbx1-2")
    print(f"hand-off gap seen by the SIP client: {c.longest_silence(t):.3f} s")
    wait_for(lambda: (c.status(N2).get("sync") or {}).get("active"), 20,
             what="replication active on vpbx1-2")
    time.sleep(2)  # the new holder's takeover force-sync has run (it would revert the line)
    for node in (N1, N2):
        root = c.sync_root(node)
        assert "shutting down" in (root / LOG).read_text(), node
        assert (root / VM / "msg-at-stop.txt").exists(), node
    st = c.status(N1)["sync"]
    assert st["active"] is False and st["dirty"] == 0
