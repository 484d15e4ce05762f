"""nonstop sync between namespace hosts: TLS on the wire, refusals, a killed receiver, and
continuous replication in a running two-node cluster."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from nonstop.lab import Lab, LabProcess, wait_for
from nonstop.talk import talk_path

pytestmark = pytest.mark.netns

TALK_CFG = talk_path("csync2.cfg").read_text()
KEY = "nonstopSyncTestKey." + "k" * 45
SYNC = [sys.executable, "-c",
        "from nonstop.sync.cli import sync_command; sync_command(prog_name='nonstop sync')"]
NAMES = {"n1": "vpbx1-1", "n2": "vpbx1-2", "n3": "vpbx1-3"}
REPLICATOR = """
import asyncio, sys
from nonstop.sync.node import open_node
from nonstop.sync.replicator import Replicator
cfg, me, root, state, active = sys.argv[1:6]
addrs = dict(a.split("=") for a in sys.argv[6:])
async def main():
    node = open_node(cfg, me, state, root=root, addresses=addrs,
                     out=lambda lvl, m: print(m, flush=True))
    rep = Replicator(node, full_scan_interval=30)
    await rep.start()
    rep.set_active(active == "active")
    print("replicator running", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


class SyncLab:
    """Per-node roots, state dirs and csync2.cfg in the lab's shared work directory."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.base = lab.workdir / "sync"
        self.base.mkdir(parents=True, exist_ok=True)

    def config(self, host: str, key: str = KEY, hosts: str = "vpbx1-1 vpbx1-2") -> Path:
        d = self.base / host
        d.mkdir(exist_ok=True)
        (d / "csync2.key_vpbx1").write_text(key + "\n")
        cfg = d / "csync2.cfg"
        text = TALK_CFG.replace("/etc/csync2.key_vpbx1", str(d / "csync2.key_vpbx1"))
        cfg.write_text(text.replace("host vpbx1-1 vpbx1-2;", f"host {hosts};"))
        return cfg

    def root(self, host: str) -> Path:
        r = self.base / host / "root"
        for sub in ("etc/asterisk", "var/log/asterisk", "var/spool/asterisk"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        return r

    def args(self, host: str) -> list[str]:
        cfg = self.base / host / "csync2.cfg"
        if not cfg.exists():
            self.config(host)
        peers = [f"--peer-address={NAMES[h]}={self.lab.ip(h)}" for h in self.lab.nodes]
        return ["--config", str(cfg), "-N", NAMES[host], "--root", str(self.root(host)),
                "--state-dir", str(self.base / host / "state"), *peers]

    def serve(self, host: str) -> LabProcess:
        proc = self.lab.spawn(host, [*SYNC, "-i", "-v", "--listen", self.lab.ip(host),
                                     *self.args(host)], name="sync-serve")
        proc.wait_for_log("listening on", timeout=30)
        return proc

    def sync(self, host: str, *flags: str, timeout: float = 60,
             env: dict[str, str] | None = None) -> tuple[int, str]:
        r = self.lab.run(host, [*SYNC, *flags, *self.args(host)], timeout=timeout, env=env)
        return r.returncode, r.stdout + r.stderr


@pytest.fixture
def slab(make_lab: Callable[[Sequence[str]], Lab]) -> SyncLab:
    return SyncLab(make_lab(("n1", "n2")))


def test_push_over_tls_and_the_key_never_crosses_the_wire(slab: SyncLab) -> None:
    lab = slab.lab
    slab.serve("n2")
    pcap = slab.base / "wire.pcap"
    dump = lab.spawn("n2", ["tcpdump", "-i", "eth0", "-U", "-w", str(pcap), "tcp port 30865"],
                     name="tcpdump")
    dump.wait_for_log("listening on", timeout=15)
    marker = b"MARKER-sip-secret-" + os.urandom(8).hex().encode()
    r1 = slab.root("n1")
    (r1 / "etc/asterisk/sip.conf").write_bytes(marker * 10)
    (r1 / "etc/asterisk/with space ü.conf").write_text("x")
    (r1 / "etc/asterisk/.hidden").write_text("excluded")
    code, out = slab.sync("n1", "-xv")
    assert code == 0, out
    r2 = slab.root("n2")
    assert (r2 / "etc/asterisk/sip.conf").read_bytes() == marker * 10
    assert (r2 / "etc/asterisk/with space ü.conf").read_text() == "x"
    assert not (r2 / "etc/asterisk/.hidden").exists()
    wait_for(lambda: (pcap.exists() and pcap.stat().st_size > 2000) or None, 10,
             what="packets captured")
    dump.stop()
    wire = pcap.read_bytes()
    assert KEY.encode() not in wire
    assert marker not in wire  # encrypted
    assert b"sip.conf" not in wire


def test_wrong_key_is_refused_with_a_clear_error_on_both_sides(slab: SyncLab) -> None:
    slab.config("n2", key="W" * 64)
    server = slab.serve("n2")
    (slab.root("n1") / "etc/asterisk/sip.conf").write_text("x")
    code, out = slab.sync("n1", "-xv")
    assert code == 1
    assert "vpbx1-2 could not prove the group key of 'vpbx1'" in out
    wait_for(lambda: "keys differ" in server.read_log() or None, 10, what="server-side error")
    assert not (slab.root("n2") / "etc/asterisk/sip.conf").exists()


def test_host_outside_the_group_is_refused(make_lab: Callable[[Sequence[str]], Lab]) -> None:
    slab = SyncLab(make_lab(("n1", "n2", "n3")))
    server = slab.serve("n2")
    # vpbx1-3 has the right key and believes it is a member; vpbx1-2's config says otherwise.
    slab.config("n3", hosts="vpbx1-1 vpbx1-2 vpbx1-3")
    (slab.root("n3") / "etc/asterisk/evil.conf").write_text("x")
    code, out = slab.sync("n3", "-xv")
    assert code == 1
    assert "host 'vpbx1-3' is not a member of group 'vpbx1'" in out
    wait_for(lambda: "vpbx1-3" in server.read_log() or None, 10, what="server-side error")
    assert "not a member" in server.read_log()
    assert not (slab.root("n2") / "etc/asterisk/evil.conf").exists()


def _push_caught_mid_file(slab: SyncLab, files: int, mib: int) -> tuple[
        LabProcess, Path, Path, LabProcess, Callable[[], Path | None]]:
    """n2 serving, ``files`` recordings of ``mib`` MiB on n1 being pushed, and the moment n2
    has a receive temp file: (server, spool1, spool2, pusher, temp_file)."""
    server = slab.serve("n2")
    spool1, spool2 = slab.root("n1") / "var/spool/asterisk", slab.root("n2") / "var/spool/asterisk"
    for i in range(files):
        with (spool1 / f"big{i}.wav").open("wb") as fh:
            for _ in range(mib):
                fh.write(os.urandom(1 << 20))
    pusher = slab.lab.spawn("n1", [*SYNC, "-xv", *slab.args("n1")], name="sync-push")

    def temp_file() -> Path | None:
        return next((p for p in spool2.iterdir() if p.name.startswith(".nonstop-tmp-")), None)

    wait_for(temp_file, 60, what="a receive temp file on n2", interval=0.005)
    return server, spool1, spool2, pusher, temp_file


def test_receiver_killed_mid_transfer_leaves_no_temp_file_after_the_next_run(
        slab: SyncLab) -> None:
    server, spool1, spool2, pusher, temp_file = _push_caught_mid_file(slab, files=4, mib=40)
    server.kill()
    assert pusher.wait(60) == 1
    # no partial file under a real name
    for p in spool2.iterdir():
        if not p.name.startswith(".nonstop-tmp-"):
            assert p.read_bytes() == (spool1 / p.name).read_bytes()
    server = slab.serve("n2")  # the next run starts by removing what the killed one left
    assert temp_file() is None
    code, out = slab.sync("n1", "-xv", timeout=120)
    assert code == 0, out
    assert temp_file() is None
    for i in range(4):
        assert (spool2 / f"big{i}.wav").read_bytes() == (spool1 / f"big{i}.wav").read_bytes()


def test_a_peer_machine_that_stops_answering_ends_the_push_in_seconds_not_minutes(
        slab: SyncLab) -> None:
    """A dead box answers nothing, not even TCP: without the kernel's dead-peer checks the
    push waited 600 s (its reply timeout), and the receiving session as long."""
    lab = slab.lab
    server, spool1, spool2, pusher, temp_file = _push_caught_mid_file(slab, files=1, mib=64)
    server.signal(signal.SIGSTOP)  # hold the transfer in flight (its kernel still ACKs)...
    time.sleep(0.5)
    lab.isolate("n1", "n2")  # ...then the machine stops answering, as a dead box does
    cut = time.monotonic()
    assert pusher.wait(60) == 1
    took = time.monotonic() - cut
    assert took < 45, took
    assert "acknowledged nothing for 30 s" in pusher.read_log()
    # The receiving side's session ends too, and undoes its temp file.
    server.signal(signal.SIGCONT)
    wait_for(lambda: temp_file() is None or None, 50, what="n2's session to end")
    assert not (spool2 / "big0.wav").exists()
    assert server.running
    lab.unisolate("n1", "n2")
    code, out = slab.sync("n1", "-xv", timeout=120)
    assert code == 0, out
    assert (spool2 / "big0.wav").read_bytes() == (spool1 / "big0.wav").read_bytes()


def test_continuous_replication_in_a_running_two_node_cluster(slab: SyncLab) -> None:
    lab = slab.lab
    procs: dict[str, LabProcess] = {}
    # The standby first: an active whose first push finds nobody listening retries in 5 s,
    # and the first write would wait for that (the daemon learns a peer is back from its
    # heartbeats; these bare replicators have none).
    for host, role in (("n2", "standby"), ("n1", "active")):
        a = slab.args(host)
        cfg, me, root, state = a[1], a[3], a[5], a[7]
        addrs = [f"{NAMES[h]}={lab.ip(h)}" for h in lab.nodes]
        procs[host] = lab.spawn(host, [sys.executable, "-c", REPLICATOR, cfg, me, root, state,
                                       role, *addrs], name="replicator")
        procs[host].wait_for_log("replicator running", timeout=30)
    r1, r2 = slab.root("n1"), slab.root("n2")
    latencies = []
    for i in range(5):
        data = os.urandom(2000 + i)
        t0 = time.monotonic()
        (r1 / f"etc/asterisk/live{i}.conf").write_bytes(data)
        target = r2 / f"etc/asterisk/live{i}.conf"

        def arrived(t: Path = target, d: bytes = data) -> bool:
            return t.exists() and t.read_bytes() == d

        wait_for(arrived, 15, what=f"live{i}.conf on the standby", interval=0.005)
        latencies.append(time.monotonic() - t0)
    assert max(latencies) < 3.0, latencies  # "within a second", with a shared-machine margin
    # the standby never pushes
    (r2 / "etc/asterisk/standby.conf").write_text("s")
    (r1 / "etc/asterisk/marker.conf").write_text("m")
    wait_for(lambda: (r2 / "etc/asterisk/marker.conf").exists() or None, 15, what="marker")
    assert not (r1 / "etc/asterisk/standby.conf").exists()


def test_conflict_then_force_with_backups_capped(slab: SyncLab) -> None:
    server = slab.serve("n2")
    r1, r2 = slab.root("n1"), slab.root("n2")
    conf = "etc/asterisk/extensions.conf"
    (r1 / conf).write_text("v0\n")
    assert slab.sync("n1", "-xv")[0] == 0
    (r1 / conf).write_text("edited on vpbx1-1\n")
    (r2 / conf).write_text("edited on vpbx1-2\n")
    code, out = slab.sync("n1", "-x")  # default verbosity
    assert code == 1
    assert "changed on both vpbx1-1 and vpbx1-2 since the last sync" in out
    assert (r2 / conf).read_text() == "edited on vpbx1-2\n"
    wait_for(lambda: "left alone (auto none)" in server.read_log() or None, 10,
             what="the conflict reported on the receiver too")
    code, out = slab.sync("n1", "-M")
    assert code == 0 and f"chary\tvpbx1-1\tvpbx1-2\t/{conf}" in out
    assert slab.sync("n1", "-f", f"/{conf}")[0] == 0
    code, out = slab.sync("n1", "-xv")
    assert code == 0, out
    assert (r2 / conf).read_text() == "edited on vpbx1-1\n"
    backup = r2 / "var/backups/csync2" / conf
    assert backup.read_text() == "edited on vpbx1-2\n"
    # eight more versions: backup-generations 5 keeps exactly five
    for i in range(8):
        (r1 / conf).write_text(f"gen {i}\n")
        assert slab.sync("n1", "-x")[0] == 0
    kept = sorted(p.name for p in backup.parent.iterdir())
    assert kept == ["extensions.conf"] + [f"extensions.conf.{i}" for i in range(1, 5)]
    assert backup.read_text() == "gen 6\n"
    assert (backup.parent / "extensions.conf.4").read_text() == "gen 2\n"


def test_receiver_refuses_a_path_outside_its_includes(slab: SyncLab) -> None:
    server = slab.serve("n2")
    # vpbx1-1's config (wrongly) includes /etc/shadow-test; vpbx1-2's does not.
    cfg = slab.config("n1")
    cfg.write_text(cfg.read_text().replace("include /etc/hosts;",
                                           "include /etc/hosts;\n    include /etc/shadow-test;"))
    (slab.root("n1") / "etc/shadow-test").write_text("root:x:0:0\n")
    code, out = slab.sync("n1", "-xv")
    assert code == 1
    assert "/etc/shadow-test is outside the group's includes (or excluded) on vpbx1-2" in out
    wait_for(lambda: "outside the group's includes" in server.read_log() or None, 10,
             what="the refusal logged on the receiver")
    assert not (slab.root("n2") / "etc/shadow-test").exists()


MASTER = talk_path("ha.d/resource.d/master").read_text()
CRON = talk_path("crontab").read_text()


def _talk_scripts(slab: SyncLab, host: str) -> tuple[Path, str, dict[str, str]]:
    """The talk's master script and cron command with only ``csync2`` -> ``nonstop sync``, a
    ``nonstop`` on PATH, and the node's identity in the environment."""
    d = slab.base / host
    bindir = d / "bin"
    bindir.mkdir(exist_ok=True)
    shim = bindir / "nonstop"
    shim.write_text(f'#!/bin/sh\n[ "$1" = sync ] && shift\nexec {sys.executable} -c '
                    f'"from nonstop.sync.cli import sync_command; '
                    f"sync_command(prog_name='nonstop sync')\" \"$@\"\n")
    shim.chmod(0o755)
    master = d / "master"
    master.write_text(MASTER.replace("csync2 ", "nonstop sync "))
    master.chmod(0o755)
    cron_cmd = CRON.split("* * * * ", 1)[1].strip()
    cron_cmd = cron_cmd.replace("/usr/local/sbin/csync2 ", "nonstop sync ")
    cron_cmd = cron_cmd.replace(">/dev/null 2>/dev/null", "")
    a = slab.args(host)
    env = {
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "NONSTOP_SYNC_CONFIG": a[1], "NONSTOP_SYNC_NODE": a[3], "NONSTOP_SYNC_ROOT": a[5],
        "NONSTOP_SYNC_STATE_DIR": a[7],
        "NONSTOP_SYNC_PEER_ADDRESS": " ".join(f"{NAMES[h]}={slab.lab.ip(h)}"
                                              for h in slab.lab.nodes),
    }
    return master, cron_cmd, env


def test_talk_master_script_and_cron_line_with_the_program_name_changed(slab: SyncLab) -> None:
    lab = slab.lab
    r1, r2 = slab.root("n1"), slab.root("n2")
    m1, cron1, env1 = _talk_scripts(slab, "n1")
    m2, cron2, env2 = _talk_scripts(slab, "n2")
    server2 = slab.serve("n2")
    # vpbx1-1 is master: its cron line pushes
    (r1 / "etc/asterisk/sip.conf").write_text("v0\n")
    (r1 / "var/log/asterisk/full").write_text("log0\n")
    assert lab.run("n1", ["sh", "-c", str(m1) + " start"], env=env1).returncode == 0
    assert lab.host_path("n1", "/tmp/.HB-master").exists()
    done = lab.run("n1", ["sh", "-c", cron1], env=env1)
    assert done.returncode == 0, done.stderr
    assert (r2 / "etc/asterisk/sip.conf").read_text() == "v0\n"
    # vpbx1-1 edits, then dies before its next cron run; vpbx1-2 takes over and edits
    (r1 / "etc/asterisk/sip.conf").write_text("unsynced edit on vpbx1-1\n")
    server2.stop()
    server1 = slab.serve("n1")
    server1.stop()  # vpbx1-1 is down: its receiver is not running
    (r2 / "var/log/asterisk/full").write_text("log0\nvpbx1-2 line\n")
    start = lab.run("n2", ["sh", "-c", str(m2) + " start"], env=env2, timeout=60)
    assert start.returncode == 0  # the script ends with exit 0, as the talk's
    assert "connection to vpbx1-1" in start.stderr
    # vpbx1-1 comes back (as a standby receiver); vpbx1-2's next cron run wins for real
    slab.serve("n1")
    done = lab.run("n2", ["sh", "-c", cron2], env=env2, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (r1 / "etc/asterisk/sip.conf").read_text() == "v0\n"
    assert (r1 / "var/log/asterisk/full").read_text() == "log0\nvpbx1-2 line\n"
    kept = r1 / "var/backups/csync2/etc/asterisk/sip.conf"
    assert kept.read_text() == "unsynced edit on vpbx1-1\n"
    assert "overwrote vpbx1-1's unsynced change" in done.stderr


def test_a_push_over_a_pulled_cable_ends_at_once_and_says_why(slab: SyncLab) -> None:
    """With this node's cable out, a push could only wait out its 3 s connect timeout: the
    talk's master script pushes at every stop, and an ipfail give-away over a pulled cable
    waited on it with the services down (a user trial). It now ends once the connection is
    not made at once and the route has no carrier."""
    lab = slab.lab
    slab.serve("n2")
    (slab.root("n1") / "etc/asterisk/cable.conf").write_text("written with the cable out\n")
    lab.link_down("n1")
    try:
        t = time.monotonic()
        code, out = slab.sync("n1", "-xv", timeout=30)
        took = time.monotonic() - t
    finally:
        lab.link_up("n1")
    assert code != 0 and "eth0, which has no carrier" in out, out
    assert took < 2.5, took  # the interpreter's start and the scan included
    wait_for(lambda: slab.sync("n1", "-xv")[0] == 0 or None, 15, what="a push with the cable in")
    assert (slab.root("n2") / "etc/asterisk/cable.conf").read_text() == \
        "written with the cable out\n"


def test_a_peer_the_daemon_found_dead_costs_its_script_half_a_second(slab: SyncLab) -> None:
    """A takeover's master script pushes to the crashed node's box, which answers nothing
    while this node's carrier is up: the push waited out its 3 s connect timeout, with the
    services running but the group not yet held. The daemon names the peers its heartbeats
    declared dead ($NONSTOP_SYNC_DEAD_PEERS); those get half a second."""
    lab = slab.lab
    slab.serve("n2")
    (slab.root("n1") / "etc/asterisk/takeover.conf").write_text("written after the crash\n")
    lab.isolate("n1", "n2")  # the box answers nothing, the carrier stays up
    try:
        t = time.monotonic()
        code, out = slab.sync("n1", "-xv", env={"NONSTOP_SYNC_DEAD_PEERS": "vpbx1-2"})
        told = time.monotonic() - t
        t = time.monotonic()
        code_untold, out_untold = slab.sync("n1", "-xv")
        untold = time.monotonic() - t
    finally:
        lab.unisolate("n1", "n2")
    assert code != 0 and "connection to vpbx1-2" in out, out
    assert code_untold != 0 and "connection to vpbx1-2" in out_untold, out_untold
    # Without the variable the push waits for the box (its ARP entry fails after 2-3 s, a
    # SYN into a known one waits out the 3 s); told, half a second.
    assert untold >= 2.0, (untold, out_untold)
    assert told < 1.6 and told < untold - 1.0, (told, untold)
    # Alive again, the same variable costs nothing: a LAN connection takes a millisecond.
    code, out = slab.sync("n1", "-xv", env={"NONSTOP_SYNC_DEAD_PEERS": "vpbx1-2"})
    assert code == 0, out
    assert (slab.root("n2") / "etc/asterisk/takeover.conf").read_text() == \
        "written after the crash\n"
