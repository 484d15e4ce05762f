"""Boxes without Heartbeat: the namespaces, private paths and the init that follows a daemon."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from nonstop.lab import Lab, LabError, wait_for
from nonstop.lab.box import HEARTBEAT_BINARY
from nonstop.lab.nsprocs import netns_pids

pytestmark = pytest.mark.netns

# A daemon the way Heartbeat is one: the started program forks, writes a pid file, exits.
DAEMON = (
    "sh -c 'trap \"echo daemon-term >> /var/log/d.log; exit 0\" TERM; "
    "echo daemon-up >> /var/log/d.log; while :; do sleep 0.1; done' & "
    "echo $! > /run/d.pid"
)


def test_box_is_a_machine_of_its_own(make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab(("vpbx1-1", "vpbx1-2"))
    box = lab.start_box("vpbx1-1", ["sh", "-c", DAEMON], pidfile="/run/d.pid")
    log = lab.host_path("vpbx1-1", "/var/log/d.log")
    assert lab.box("vpbx1-1") is box
    assert lab.box_run("vpbx1-1", ["uname", "-n"], check=True).stdout == "vpbx1-1\n"
    pidfile = lab.host_path("vpbx1-1", "/run/d.pid")
    wait_for(pidfile.exists, 10, what="the daemon's pid file")
    wait_for(log.exists, 10, what="the daemon's first log line")
    daemon_pid = int(pidfile.read_text())
    ps = lab.box_run("vpbx1-1", ["ps", "-e", "-o", "pid=,comm="], check=True).stdout
    assert ps.split("\n")[0].split() == ["1", "python3"]  # the box init, pid 1 of the box
    assert str(daemon_pid) in ps.split()
    # Private paths: the box writes land in the node's directory, nowhere else.
    lab.box_run("vpbx1-1", ["sh", "-c", "echo x > /var/lib/heartbeat/probe; touch /run/probe"],
                check=True)
    assert lab.host_path("vpbx1-1", "/var/lib/heartbeat/probe").read_text() == "x\n"
    assert lab.host_path("vpbx1-1", "/run/probe").exists()
    assert lab.box_run("vpbx1-1", ["ip", "-o", "-4", "addr", "show", "eth0"]).stdout.split()[3] \
        == "198.18.0.1/24"
    # Without start_heartbeat, the box's /etc/ha.d is its own empty directory, not the host's.
    assert lab.box_run("vpbx1-1", ["ls", "-A", "/etc/ha.d"], check=True).stdout == ""
    with pytest.raises(LabError, match="already runs a box"):
        lab.start_box("vpbx1-1", ["true"])
    with pytest.raises(LabError, match="no running box"):
        lab.box_run("vpbx1-2", ["true"])
    # SIGTERM reaches the daemon through the box init, which then exits with the daemon.
    assert box.stop(timeout=10) == 0
    assert log.read_text() == "daemon-up\ndaemon-term\n"
    assert netns_pids(lab.netns("vpbx1-1")) == []


def test_killing_a_box_kills_everything_in_it(make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab(("n1",))
    box = lab.start_box("n1", ["sh", "-c", DAEMON + "; sleep 300 & sleep 300 & exit 0"],
                        pidfile="/run/d.pid")
    wait_for(lambda: len(netns_pids(lab.netns("n1"))) >= 4, 10, what="the box's processes")
    assert box.kill() == -signal.SIGKILL
    assert netns_pids(lab.netns("n1")) == []


@pytest.mark.skipif(not Path(HEARTBEAT_BINARY).exists(), reason="needs the heartbeat package")
def test_a_box_that_cannot_start_is_reported(make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab(("n1",))
    bad = lab.host_dir("n1") / "bad-ha.d"
    bad.mkdir()
    (bad / "ha.cf").write_text("this_is_no_directive 1\n")
    started = time.monotonic()
    try:
        box = lab.start_heartbeat("n1", bad)
    except LabError as exc:
        assert "ended at once" in str(exc)
    else:
        assert box.wait(15) != 0
    assert time.monotonic() - started < 15
    assert netns_pids(lab.netns("n1")) == []
