"""Reload without a restart, with real daemons in namespaces (issue 10, points 3 and 4).

Two nodes run the talk's ha.cf (initdead 5) with one group, the lab's virtual IP, held by
vpbx1-1. Each node has its own configuration directory, as two machines do, so a change can be
made on one node and then on the other.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from nodes import LAB_VIP, NonstopCluster, talk_config

from nonstop.lab import CLIENT, Lab
from nonstop.lab.hbconfig import set_directives

pytestmark = pytest.mark.netns

N1, N2 = "vpbx1-1", "vpbx1-2"
GROUP = f"{LAB_VIP}/24/eth0"
OLD_KEY = "talk-key-that-everybody-has-seen"
NEW_KEY = "a-new-secret-made-for-this-cluster"
# Log lines that would mean a heartbeat was lost or a node given up during the test.
TROUBLE = re.compile(r"is dead|Late heartbeat|lost packet|No heartbeat from|dropped packet|"
                     r"Acquiring resource group|Releasing resource group|Traceback")


# Run on the lab's client, which hears the nodes' broadcasts: which key signs each node's
# packets, checked with the secret itself (the codec authenticates or raises BadPacket).
LISTENER = """
import socket, sys, time
from nonstop.config.model import AuthKey, AuthKeys, AuthMethod
from nonstop.heartbeat.codec import BadPacket, decode
index, secret = int(sys.argv[1]), sys.argv[2].encode()
keys = AuthKeys(active=index, keys={index: AuthKey(index, AuthMethod.SHA1, secret)})
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 694))
s.settimeout(0.5)
seen = {}
deadline = time.monotonic() + 3
while time.monotonic() < deadline and len(seen) < 2:
    try:
        data, _ = s.recvfrom(65536)
    except TimeoutError:
        continue
    try:
        d = decode(data, keys)
    except BadPacket as e:
        seen.setdefault("bad", e.reason)
        continue
    seen[d.message.get("src")] = d.key_index
print(sorted((k, v) for k, v in seen.items() if k != "bad"))
"""


def _signers(lab: Lab, index: int, secret: str) -> str:
    """The nodes heard signing with key ``index`` = ``secret``, as the client printed them."""
    done = lab.run(CLIENT, [sys.executable, "-c", LISTENER, str(index), secret], timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _authkeys(path: Path, active: int, keys: dict[int, str]) -> None:
    lines = [f"auth {active}", *(f"{i} sha1 {secret}" for i, secret in sorted(keys.items()))]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def _holder(cluster: NonstopCluster, host: str) -> str | None:
    st = cluster.query(host) or {}
    groups = st.get("groups") or [{}]
    holder = groups[0].get("holder")
    return holder if isinstance(holder, str) else None


def _cluster(make_lab: Callable[[Sequence[str]], Lab],
             directives: dict[str, str | None] | None = None,
             ) -> tuple[Lab, NonstopCluster, dict[str, Path]]:
    lab = make_lab((N1, N2))
    dirs = {host: talk_config(lab.workdir / f"config-{host}", haresources=f"{N1} {GROUP}\n",
                              authkey=OLD_KEY, directives=directives)
            for host in (N1, N2)}
    cluster = NonstopCluster(lab, dirs[N1])
    for host in (N1, N2):
        cluster.start(host, config_dir=dirs[host])
    cluster.wait_peer_status(N1, N2, "active", 30)
    cluster.wait_peer_status(N2, N1, "active", 30)
    cluster.wait_for(lambda: _holder(cluster, N2) == N1 and lab.has_address(N1, LAB_VIP), 30,
                     what=f"{N1} to hold the group")
    return lab, cluster, dirs


def _reload(cluster: NonstopCluster, host: str, how: str) -> None:
    """Reload ``host`` with ``nonstop reload`` or SIGHUP; return once it is done."""
    if how == "signal":
        before = cluster.log(host).count("reload: done")
        cluster.proc(host).signal(signal.SIGHUP)
        cluster.wait_for(lambda: cluster.log(host).count("reload: done") > before, 15,
                         what=f"{host} to finish its reload")
        return
    done = cluster.cli(host, "reload")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_key_rotation_on_both_nodes_one_after_the_other_loses_nothing(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab, cluster, dirs = _cluster(make_lab)
    pids = {h: cluster.proc(h).pid for h in (N1, N2)}
    sent_before = {h: (cluster.query(h) or {})["packets"]["sent"] for h in (N1, N2)}
    log_before = {h: len(cluster.log(h)) for h in (N1, N2)}
    # Heartbeat's procedure: add the new key everywhere, then sign with it everywhere, then
    # drop the old one everywhere; each step node by node.
    both = str([(N1, 1), (N2, 1)])
    assert _signers(lab, 1, OLD_KEY) == both
    assert _signers(lab, 2, NEW_KEY) == "[]"
    steps: list[tuple[int, dict[int, str]]] = [
        (1, {1: OLD_KEY, 2: NEW_KEY}),
        (2, {1: OLD_KEY, 2: NEW_KEY}),
        (2, {2: NEW_KEY}),
    ]
    for n, (active, keys) in enumerate(steps):
        for host in (N1, N2):
            _authkeys(dirs[host] / "authkeys", active, keys)
            _reload(cluster, host, "signal" if (n + (host == N2)) % 2 else "cli")
            assert cluster.peer_status(N1, N2) == "active"
            assert cluster.peer_status(N2, N1) == "active"
    assert "authkeys: signing with key 2, accepting 2 sha1" in cluster.log(N1)
    # Every packet now carries the new key, checked with its secret; none the old one.
    assert _signers(lab, 2, NEW_KEY) == str([(N1, 2), (N2, 2)])
    assert _signers(lab, 1, OLD_KEY) == "[]"
    for host in (N1, N2):
        st = cluster.query(host)
        assert st is not None and st["pid"] == pids[host]  # never restarted
        assert st["packets"]["dropped"] == {}, st["packets"]
        assert st["packets"]["sent"] > sent_before[host]
        during = cluster.log(host)[log_before[host]:]
        trouble = [line for line in during.splitlines() if TROUBLE.search(line)]
        assert trouble == [], trouble
    assert _holder(cluster, N1) == N1 and _holder(cluster, N2) == N1
    assert lab.has_address(N1, LAB_VIP) and not lab.has_address(N2, LAB_VIP)
    # Both still hear each other, signing with the new key only.
    for host, peer in ((N1, N2), (N2, N1)):
        heard = cluster.peer(host, peer)["last_heard_ms_ago"]
        assert heard is not None and heard < 1500, heard


def test_an_invalid_configuration_is_refused_whole_and_the_node_keeps_running(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    _lab, cluster, dirs = _cluster(make_lab)
    ha_cf = dirs[N1] / "ha.cf"
    good = ha_cf.read_text()
    # A valid live change and two errors in one edit: nothing of it may be applied.
    ha_cf.write_text(set_directives(good, {"keepalive": "100ms", "deadtime": "1",
                                           "warntime": "5"}) + "bogus_directive 1\n")
    _authkeys(dirs[N1] / "authkeys", 3, {1: OLD_KEY})
    done = cluster.cli(N1, "reload")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "reload refused" in done.stderr
    assert f"{ha_cf}:" in done.stderr and "bogus_directive" in done.stderr
    assert "authkeys" in done.stderr and "Auth Key [3] not found" in done.stderr
    # The daemon's log is written by a thread of its own: the lines may follow the reply.
    cluster.wait_for(lambda: "still running on the previous configuration" in cluster.log(N1),
                     10, what="the refusal in vpbx1-1's log")
    log = cluster.log(N1)
    assert "reload refused: " in log and "still running on the previous configuration" in log
    assert "bogus_directive" in log
    st = cluster.query(N1)
    assert st is not None and st["timing"]["keepalive_ms"] == 200
    assert cluster.peer_status(N2, N1) == "active"
    # Fixed, it applies; what cannot change live is named and left for the next start.
    ha_cf.write_text(set_directives(good, {"keepalive": "100ms", "deadtime": "3",
                                           "initdead": "9", "nonstop_monitor": "1"}))
    _authkeys(dirs[N1] / "authkeys", 1, {1: OLD_KEY})
    done = cluster.cli(N1, "reload")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "applied: keepalive: 200 ms -> 100 ms" in done.stdout
    assert "applied: deadtime: 2000 ms -> 3000 ms" in done.stdout
    assert "at the next start: initdead: 5000 ms -> 9000 ms" in done.stdout
    assert "applied: nonstop_monitor: off -> 1000 ms" in done.stdout
    st = cluster.query(N1)
    assert st is not None and st["timing"]["keepalive_ms"] == 100
    assert st["timing"]["deadtime_ms"] == 3000 and st["timing"]["initdead_ms"] == 5000
    # The peer times vpbx1-1 out with the deadtime it now sends.
    cluster.wait_for(lambda: cluster.peer(N2, N1).get("deadtime_ms") == 3000, 10,
                     what=f"{N2} to use {N1}'s new deadtime")
    assert cluster.proc(N1).running and cluster.peer_status(N2, N1) == "active"


def test_a_live_daemon_reopens_its_log_file_after_logrotate_moved_it(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab, cluster, dirs = _cluster(make_lab, directives={"logfile": "/tmp/ha-log"})
    logfile = lab.host_path(N1, "/tmp/ha-log")
    cluster.wait_for(lambda: logfile.exists() and "Comm_now_up" in logfile.read_text(), 15,
                     what="the daemon's log file")
    rotated = logfile.with_name("ha-log.1")
    os.rename(logfile, rotated)  # what logrotate does (no copytruncate, no signal)
    cluster.cli(N1, "reload")  # something to log
    cluster.wait_for(lambda: logfile.exists() and "reload: done" in logfile.read_text(), 20,
                     what="new lines in the new log file")
    assert "reload: done" not in rotated.read_text()
    assert "Comm_now_up" in rotated.read_text()
    # A reload that names another log file switches to it at once.
    ha_cf = dirs[N1] / "ha.cf"
    ha_cf.write_text(set_directives(ha_cf.read_text(), {"logfile": "/tmp/ha-log-new"}))
    done = cluster.cli(N1, "reload")
    assert done.returncode == 0 and "applied: logfile: /tmp/ha-log -> /tmp/ha-log-new" \
        in done.stdout, done.stdout + done.stderr
    newfile = lab.host_path(N1, "/tmp/ha-log-new")
    cluster.wait_for(lambda: newfile.exists() and "reload: done" in newfile.read_text(), 20,
                     what="the reload's own lines in the new log file")


def test_replication_switched_on_by_a_reload(make_lab: Callable[[Sequence[str]], Lab]) -> None:
    """nonstop_sync added to ha.cf and reloaded on both nodes (the standby first, so its
    receiver listens when the active node starts pushing): no restart, and a write on the
    active node reaches the standby."""
    from talkcluster import TalkCluster

    from nonstop.lab import wait_for

    c = TalkCluster(make_lab((N1, N2)), sync=True)
    lines = {}
    for node in (N1, N2):
        ha_cf = c.config_dir(node) / "ha.cf"
        text = ha_cf.read_text()
        lines[node] = next(line for line in text.splitlines() if line.startswith("nonstop_sync"))
        ha_cf.write_text(set_directives(text, {"nonstop_sync": None}))
    c.start(N1)
    c.start(N2)
    c.wait_vip_on(N1, 30)
    assert c.status(N1).get("sync") is None
    pids = {n: c.daemons[n].pid for n in (N1, N2)}
    for node in (N2, N1):
        ha_cf = c.config_dir(node) / "ha.cf"
        ha_cf.write_text(ha_cf.read_text() + lines[node] + "\n")
        done = subprocess.run([sys.executable, "-m", "nonstop", "reload", "--state-dir",
                               str(c.state_dir(node))], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "applied: nonstop_sync: unset -> " in done.stdout
    wait_for(lambda: (c.status(N1).get("sync") or {}).get("active"), 20,
             what="replication active on vpbx1-1 after the reload")
    target = c.sync_root(N2) / "etc/asterisk/after-reload.conf"
    (c.sync_root(N1) / "etc/asterisk/after-reload.conf").write_text("[general]\n")
    wait_for(lambda: target.exists() and target.read_text() == "[general]\n", 20,
             what="the file on vpbx1-2")
    assert {n: c.daemons[n].pid for n in (N1, N2)} == pids
    assert (c.status(N2).get("sync") or {}).get("active") is False


def _reload_talk(state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nonstop", "reload", "--state-dir",
                           str(state_dir)], capture_output=True, text=True, timeout=60)


def test_a_csync2_cfg_changed_by_a_reload(make_lab: Callable[[Sequence[str]], Lab]) -> None:
    """csync2.cfg is part of the configuration a reload reads: a broken one is refused with
    its file:line, an include and an exclude added on both nodes (the standby first) and
    reloaded restart replication, and the new directory replicates while the excluded file
    stays home; heartbeats and the group go on untouched."""
    from talkcluster import replicating, write_file

    from nonstop.lab import wait_for

    c = replicating(make_lab((N1, N2)))
    pids = {n: c.daemons[n].pid for n in (N1, N2)}
    logged = {n: len(c.log(n)) for n in (N1, N2)}
    cfgs = {n: c.config_dir(n).parent / "csync2.cfg" for n in (N1, N2)}
    good = cfgs[N2].read_text()
    cfgs[N2].write_text(good.replace("auto none;", "auto nonee;"))
    done = _reload_talk(c.state_dir(N2))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "reload refused" in done.stderr and f"{cfgs[N2]}:8: " in done.stderr, done.stderr
    for node in (N2, N1):
        (c.sync_root(node) / "srv/recordings").mkdir(parents=True)
        cfgs[node].write_text(cfgs[node].read_text().replace("auto nonee;", "auto none;")
                              .replace("include /var/log/asterisk;", "include /var/log/asterisk;"
                                       "\n    include /srv/recordings;\n    exclude *.tmp;"))
        done = _reload_talk(c.state_dir(node))
        assert done.returncode == 0, done.stdout + done.stderr
        assert (f"applied: replication: {cfgs[node]} changed (group vpbx1: include "
                "/srv/recordings added, exclude *.tmp added): restarted") in done.stdout
    wait_for(lambda: (c.status(N1).get("sync") or {}).get("active"), 20,
             what="replication active again on vpbx1-1")
    write_file(c.sync_root(N1), "etc/asterisk/scratch.tmp", b"tmp\n")
    write_file(c.sync_root(N1), "srv/recordings/call1.wav", b"recording\n")
    write_file(c.sync_root(N1), "etc/asterisk/after.conf", b"[general]\n")
    for rel in ("srv/recordings/call1.wav", "etc/asterisk/after.conf"):
        target = c.sync_root(N2) / rel
        wait_for(target.exists, 20, what=f"{rel} on vpbx1-2")
    assert not (c.sync_root(N2) / "etc/asterisk/scratch.tmp").exists()
    done = _reload_talk(c.state_dir(N1))
    assert done.stdout.strip() == "reloaded: no change", done.stdout + done.stderr
    assert {n: c.daemons[n].pid for n in (N1, N2)} == pids
    assert c.holder(N2) == N1 and c.vip_holders() == [N1]
    for node in (N1, N2):
        trouble = [line for line in c.log(node)[logged[node]:].splitlines()
                   if TROUBLE.search(line)]
        assert trouble == [], trouble
