"""Replication under a live PBX, with real daemons in namespaces: a log that grows all the time
never holds other files back and its replica is always a prefix of it; an in-place change costs
about what changed on the link; a transfer killed midway on either side leaves the old content or
the new one, never a mix; a logrotate of the Asterisk logs moves no log over the link again."""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from talkcluster import N1, N2, TalkCluster, replicating
from talkcluster import write_file as write

from nonstop.lab import Lab, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow]

LOG = "var/log/asterisk/full"
INBOX = "var/spool/asterisk/voicemail/default/1000/INBOX"


@pytest.fixture
def cluster(make_lab: Callable[[Sequence[str]], Lab]) -> TalkCluster:
    return replicating(make_lab((N1, N2)))


def read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def link_bytes(lab: Lab, host: str) -> int:
    """Bytes through a node's cable (both directions), from its switch port's counters."""
    out = subprocess.run(["ip", "-n", lab.switch_netns, "-s", "-j", "link", "show",
                          lab.port(host)], capture_output=True, text=True, check=True, timeout=10)
    stats = json.loads(out.stdout)[0]["stats64"]
    return int(stats["rx"]["bytes"]) + int(stats["tx"]["bytes"])


def log_line(i: int) -> bytes:
    return (f"[Dec  4 19:{i // 3000 % 60:02}:{i // 50 % 60:02}] VERBOSE[{4000 + i}][C-{i:08x}] "
            f"pbx.c: Executing [1000@from-internal:{i % 9}] Dial(\"SIP/200-{i:08x}\", "
            f"\"SIP/1000,30,tT\") in new stack\n").encode()


class Appender:
    """Appends one Asterisk-like line every ``interval`` seconds, for at most ``limit`` s."""

    def __init__(self, path: Path, interval: float, limit: float) -> None:
        self.path, self.interval, self.limit = path, interval, limit
        self.stop = threading.Event()
        self.lines = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # On a schedule, not a sleep after each line: a thread starved for a moment (CI, the
        # other worker running a benchmark) catches up, as a busy Asterisk's log would; with
        # sleeps it wrote 977 lines in 30 s instead of 1,500 and failed the test's check.
        start = time.monotonic()
        end = start + self.limit
        with open(self.path, "ab", buffering=0) as fh:
            while not self.stop.is_set() and time.monotonic() < end:
                fh.write(log_line(self.lines))
                self.lines += 1
                self.stop.wait(max(0.0, start + self.lines * self.interval - time.monotonic()))

    def __enter__(self) -> Appender:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_a_log_appended_every_20_ms_never_holds_other_files_back(cluster: TalkCluster) -> None:
    c = cluster
    src = write(c.sync_root(N1), LOG, b"".join(log_line(i) for i in range(200_000)))  # ~30 MB
    replica = c.sync_root(N2) / LOG
    wait_for(lambda: read(replica) == src.read_bytes(), 60, what="the log on vpbx1-2")
    lags: list[float] = []
    not_prefix = 0
    polls = 0
    with Appender(src, 0.02, 45) as app:
        t_end = time.monotonic() + 30
        i = 0
        while time.monotonic() < t_end:
            rel = f"{INBOX}/msg{i:04d}.txt" if i % 2 else "etc/asterisk/sip.conf"
            data = f"[change {i}]\n".encode() * random.randint(1, 400)
            t0 = time.monotonic()
            write(c.sync_root(N1), rel, data)
            target = c.sync_root(N2) / rel
            while read(target) != data:
                # every poll: the replica is a prefix of the source log (read the replica first)
                got = read(replica) or b""
                polls += 1
                if not src.read_bytes().startswith(got):
                    not_prefix += 1
                assert time.monotonic() - t0 < 10, f"{rel} did not arrive"
                time.sleep(0.01)
            lags.append(time.monotonic() - t0)
            i += 1
        assert app.lines > 1000  # the log really kept growing meanwhile
    wait_for(lambda: read(replica) == src.read_bytes(), 20, what="the whole log on vpbx1-2")
    print(f"{len(lags)} changes during the appends; arrival max {max(lags):.3f} s, "
          f"median {sorted(lags)[len(lags) // 2]:.3f} s; {polls} polls of the log replica")
    assert not_prefix == 0
    assert len(lags) >= 10
    # within a second each (the machine is shared: one late arrival of up to 2 s is tolerated)
    assert sorted(lags)[-2] < 1.0 and max(lags) < 2.0, lags


def test_an_in_place_change_to_a_large_file_costs_about_the_change_on_the_link(
    cluster: TalkCluster,
) -> None:
    c = cluster
    body = bytearray(os.urandom(50 << 20))
    rel = f"{INBOX}/../recording.wav"
    src = write(c.sync_root(N1), rel, bytes(body))
    replica = c.sync_root(N2) / rel
    wait_for(lambda: read(replica) == bytes(body), 60, what="the recording on vpbx1-2")
    time.sleep(1.0)  # let the first sync's last replies pass
    before = link_bytes(c.lab, N2)
    t0 = time.monotonic()
    body[25_000_000:25_001_000] = os.urandom(1000)
    with open(src, "r+b") as fh:
        fh.seek(25_000_000)
        fh.write(body[25_000_000:25_001_000])
    wait_for(lambda: read(replica) == bytes(body), 30, what="the change on vpbx1-2")
    on_link = link_bytes(c.lab, N2) - before
    took = time.monotonic() - t0
    print(f"1,000 bytes changed in 50 MB: {on_link} bytes on vpbx1-2's cable in {took:.2f} s")
    # the rsync signature (~80 KB for 50 MB) plus one block of delta, TLS and heartbeats:
    # far below the 50 MB a whole-file copy costs (rsync itself: ~ the same 100-200 KB)
    assert on_link < 400_000


# Debian's asterisk package rotates its logs so (less often, and with a reload of its logger).
LOGROTATE_CONF = """\
{logs}/full {logs}/messages {{
    weekly
    missingok
    rotate 52
    compress
    delaycompress
    notifempty
    create 640 root root
}}
"""


def test_a_logrotate_moves_no_log_over_the_link_again(
    cluster: TalkCluster, tmp_path: Path,
) -> None:
    c = cluster
    root1, root2 = c.sync_root(N1), c.sync_root(N2)
    logs = root1 / "var/log/asterisk"
    write(root1, LOG, b"".join(log_line(i) for i in range(150_000)))  # ~22 MB
    write(root1, LOG.replace("full", "messages"), b"".join(log_line(i) for i in range(9_000)))
    for n in (2, 3):
        write(root1, f"{LOG}.{n}.gz", os.urandom(3 << 20))
    wait_for(lambda: all(read(root2 / f"var/log/asterisk/{n}") == read(logs / n)
                         for n in ("full", "messages", "full.2.gz", "full.3.gz")),
             60, what="the logs on vpbx1-2")
    time.sleep(1.0)  # let the first sync's last replies pass
    conf = tmp_path / "asterisk.logrotate"
    conf.write_text(LOGROTATE_CONF.format(logs=logs))
    before = link_bytes(c.lab, N2)
    t0 = time.monotonic()
    # Asterisk writes on to the renamed log until its logger reloads (the appender's file
    # stays open across the rename): full.1 is the old full plus its last lines.
    with Appender(logs / "full", 0.02, 30):
        time.sleep(0.5)
        subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "state"), str(conf)],
                       check=True, timeout=60)
        time.sleep(0.3)
    after = sorted(p.name for p in logs.iterdir())
    assert after == ["full", "full.1", "full.3.gz", "full.4.gz", "messages", "messages.1"]

    def equal() -> bool:
        names = sorted(p.name for p in (root2 / "var/log/asterisk").iterdir()
                       if not p.name.startswith("."))
        return names == after and all(read(root2 / f"var/log/asterisk/{n}") == read(logs / n)
                                      for n in after)

    wait_for(equal, 30, what="the rotated logs on vpbx1-2")
    on_link = link_bytes(c.lab, N2) - before
    moved = sum((logs / n).stat().st_size for n in after)
    print(f"logrotate of {moved} bytes of logs: {on_link} bytes on vpbx1-2's cable "
          f"in {time.monotonic() - t0:.2f} s")
    # renames and copies on the standby; the link carries the last lines, frames and
    # heartbeats only
    assert on_link < 300_000, on_link


def _kill_daemon(c: TalkCluster, node: str) -> None:
    proc = c.daemons.pop(node)
    proc.kill()


def test_a_transfer_killed_midway_leaves_the_old_or_the_new_content(
    cluster: TalkCluster,
) -> None:
    c = cluster
    old = os.urandom(40 << 20)
    rel = f"{INBOX}/../big.wav"
    src = write(c.sync_root(N1), rel, old)
    replica = c.sync_root(N2) / rel
    wait_for(lambda: read(replica) == old, 60, what="the first version on vpbx1-2")
    # 1. the sender (active node's daemon) killed while it sends a whole new version
    new = os.urandom(120 << 20)
    write(c.sync_root(N1), rel, new)
    wait_for(lambda: any(p.name.startswith(".nonstop-tmp-") for p in replica.parent.iterdir()),
             20, what="a transfer under way", interval=0.005)
    _kill_daemon(c, N1)
    assert read(replica) == old
    # 2. an append to the replica cut off by killing the receiver (standby's daemon)
    c.start(N1)
    wait_for(lambda: read(replica) == new, 90, what="the new version after the restart")
    grown = new + os.urandom(60 << 20)
    with open(src, "ab") as fh:
        fh.write(grown[len(new):])
    wait_for(lambda: replica.stat().st_size > len(new), 30, what="the append under way",
             interval=0.002)
    _kill_daemon(c, N2)
    partial = read(replica)
    assert partial is not None and grown.startswith(partial)
    c.start(N2)  # the restart cuts the half-done append back, then the next push completes it
    seen: set[int] = set()

    def settled() -> bool:
        data = read(replica)
        if data is not None:
            seen.add(len(data))
            assert data in (new, grown) or grown.startswith(data)
        return data == grown

    wait_for(settled, 90, what="the grown version after the restart", interval=0.05)
