"""The real Heartbeat 3.0.6 in lab boxes, with the talk's configuration and kamailio as asterisk."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import pytest

from nonstop.lab import CLIENT, VIP, Lab, wait_for
from nonstop.lab.hbconfig import heartbeat_talk_config
from nonstop.lab.nsprocs import netns_pids
from nonstop.lab.outage import client_outage, read_probes
from nonstop.lab.sipprobe import probe_command

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not Path("/usr/libexec/heartbeat/heartbeat").exists(),
                       reason="needs the heartbeat package"),
]

NODES = ("vpbx1-1", "vpbx1-2")


def node_config(lab: Lab, node: str) -> Path:
    """The talk's ha.d for ``node``, as lab boxes run it."""
    return heartbeat_talk_config(lab.host_dir(node) / "ha.d", node=node, vip=VIP,
                                 state_dir=lab.host_dir(node) / "sip")


def ha_log(lab: Lab, node: str) -> str:
    path = lab.host_path(node, "/var/log/ha-log")
    return path.read_text() if path.exists() else ""


def sees_active(lab: Lab, node: str, peer: str) -> bool:
    """Heartbeat on ``node`` logged that ``peer`` is active."""
    return f"Status update for node {peer}: status active" in ha_log(lab, node)


def is_master(lab: Lab, node: str) -> bool:
    """The talk's master script ran on ``node`` (it touches /tmp/.HB-master), seen in the box."""
    return lab.box_run(node, ["test", "-f", "/tmp/.HB-master"]).returncode == 0


def test_heartbeat_boxes_see_each_other_and_fail_over(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab(NODES)
    boxes = {node: lab.start_heartbeat(node, node_config(lab, node)) for node in NODES}

    for node, peer in [NODES, NODES[::-1]]:
        wait_for(partial(sees_active, lab, node, peer), 30, what=f"{node} to see {peer} active",
                 interval=0.2)
        status = lab.box_run(node, ["cl_status", "nodestatus", peer], check=True)
        assert status.stdout.strip() == "active"

    # Each box is its own machine: its host name, its PID namespace with the box init as pid 1,
    # and stubs where reboot and systemctl were. (Only read, never run, here.)
    assert lab.box_run("vpbx1-1", ["uname", "-n"]).stdout.strip() == "vpbx1-1"
    ps = lab.box_run("vpbx1-1", ["ps", "-e", "-o", "pid=,comm="]).stdout.splitlines()
    assert ps[0].split() == ["1", "python3"]
    for path in ("/sbin/reboot", "/usr/sbin/reboot", "/usr/bin/systemctl"):
        assert "lab stub" in lab.box_run("vpbx1-1", ["cat", path]).stdout

    # Cold start: after its fixed 10 s, vpbx1-1 takes the talk's group, kamailio answers.
    record = lab.host_dir(CLIENT) / "probes.jsonl"
    prober = lab.spawn(CLIENT, probe_command(VIP, record, interval=0.02, timeout=0.5))
    wait_for(lambda: any(p.node == "vpbx1-1" for p in read_probes(record))
             if record.exists() else None, 40, what="vpbx1-1 to serve the VIP", interval=0.2)
    # master comes after asterisk in the group: it may still be running.
    wait_for(partial(is_master, lab, "vpbx1-1"), 20, what="master to run on vpbx1-1")
    assert "Asterisk" in lab.host_path("vpbx1-1", "/var/log/lab-mail.log").read_text()

    # Pull vpbx1-1's cable: after deadtime (2 s) vpbx1-2 takes over and answers.
    fault_at = time.monotonic()
    lab.link_down("vpbx1-1")
    wait_for(lambda: any(p.node == "vpbx1-2" for p in read_probes(record)), 30,
             what="vpbx1-2 to take over", interval=0.2)
    prober.stop(timeout=5)
    outage = client_outage(read_probes(record), fault_at, answered_by="vpbx1-2")
    assert 2.0 <= outage.seconds < 20.0, outage
    wait_for(partial(is_master, lab, "vpbx1-2"), 20, what="master to run on vpbx1-2")

    # Both stop cleanly (resources released, no stop failure, so no reboot attempt).
    for box in boxes.values():
        box.signal(signal.SIGTERM)
    for node, box in boxes.items():
        assert box.stop(timeout=30) == 0, ha_log(lab, node)
        assert "Heartbeat shutdown complete" in ha_log(lab, node)
        assert netns_pids(lab.netns(node)) == []
        assert not lab.host_path(node, "/var/log/lab-stubs.log").exists()
        assert not lab.has_address(node, VIP)
