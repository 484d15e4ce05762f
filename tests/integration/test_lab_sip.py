"""kamailio as the "asterisk" service and the SIP prober: who answers, what a client misses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nonstop.lab import CLIENT, VIP, Lab, wait_for
from nonstop.lab.kamailio import AsteriskService, write_asterisk_service
from nonstop.lab.outage import Probe, client_outage, read_probes
from nonstop.lab.process import pid_running
from nonstop.lab.sipprobe import probe_command

pytestmark = pytest.mark.netns


def service(lab: Lab, node: str) -> AsteriskService:
    return write_asterisk_service(lab.host_dir(node) / "resource.d", lab.host_dir(node) / "sip",
                                  node=node, listen_ip=VIP)


def lsb(lab: Lab, node: str, svc: AsteriskService, action: str) -> tuple[int, str]:
    done = lab.run(node, [str(svc.script), action], timeout=30)
    return done.returncode, done.stdout


def answered(path: Path) -> list[Probe]:
    return [p for p in read_probes(path) if p.answered is not None] if path.exists() else []


def test_asterisk_script_has_lsb_semantics(lab: Lab) -> None:
    svc = service(lab, "n1")
    assert lsb(lab, "n1", svc, "status") == (3, "asterisk (kamailio on n1) is not running\n")
    # Without the VIP on the node, kamailio cannot bind it: start fails, nothing runs.
    assert lsb(lab, "n1", svc, "start")[0] == 1
    assert lsb(lab, "n1", svc, "status")[0] == 3
    lab.add_address("n1", VIP)
    assert lsb(lab, "n1", svc, "start")[0] == 0
    assert lsb(lab, "n1", svc, "start")[0] == 0  # already running: still success
    assert lsb(lab, "n1", svc, "status") == (0, "asterisk (kamailio on n1) is running\n")
    pid = int(svc.pidfile.read_text())
    assert lsb(lab, "n1", svc, "stop")[0] == 0
    assert not svc.pidfile.exists()
    assert wait_for(lambda: not pid_running(pid), 5, what="kamailio to exit")
    assert lsb(lab, "n1", svc, "stop")[0] == 0  # already stopped: still success
    assert lsb(lab, "n1", svc, "status")[0] == 3


def test_prober_sees_who_answers_and_the_outage_of_a_move(lab: Lab) -> None:
    svc1, svc2 = service(lab, "n1"), service(lab, "n2")
    lab.add_address("n1", VIP)
    assert lsb(lab, "n1", svc1, "start")[0] == 0
    record = lab.host_dir(CLIENT) / "probes.jsonl"
    prober = lab.spawn(CLIENT, probe_command(VIP, record, interval=0.02, timeout=0.5))
    wait_for(lambda: len(answered(record)) >= 10, 10, what="ten answers from n1")

    # Move the service by hand, the way a failover would: stop, move the address, announce it
    # with a gratuitous ARP (as IPaddr does), start on the other node.
    fault_at = time.monotonic()
    assert lsb(lab, "n1", svc1, "stop")[0] == 0
    lab.del_address("n1", VIP)
    lab.add_address("n2", VIP)
    lab.run("n2", ["arping", "-q", "-U", "-c", "1", "-I", "eth0", VIP], check=True)
    assert lsb(lab, "n2", svc2, "start")[0] == 0
    moved_at = time.monotonic()
    wait_for(lambda: any(p.node == "n2" for p in answered(record)), 10, what="answers from n2")
    prober.stop(timeout=5)

    probes = read_probes(record)
    assert {p.node for p in probes if p.answered is not None} == {"n1", "n2"}
    assert all(p.status == 200 for p in probes if p.answered is not None)
    outage = client_outage(probes, fault_at, answered_by="n2")
    assert outage.last_before.node == "n1"
    assert outage.first_after.node == "n2"
    # The client saw no answer while nobody served, and service came back soon after the move.
    assert 0 < outage.seconds < (moved_at - fault_at) + 3.0
    assert all(p.node != "n1" for p in probes if p.sent > moved_at and p.answered is not None)
