"""Resource agents in real network namespaces: the native IPaddr with gratuitous ARP seen by a
peer, the OCF IPaddr2 of Debian's resource-agents, and the talk's ``master`` script.

Each test builds two namespaces, ``ns<pid>r<n>-a`` (the node, with ``eth0`` 198.18.0.1/24) and
``ns<pid>r<n>-b`` (a peer on the other end of the veth, 198.18.0.2/24), and runs the agent code
inside the node namespace as a small Python program that prints JSON.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import nonstop
from nonstop.lab.process import pid_running
from nonstop.talk import talk_path

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
    ),
]

PREFIX = f"ns{os.getpid()}r"
LEFTOVER = re.compile(r"^ns(?P<pid>\d+)r\d+-[ab]$")
NODE_IP, PEER_IP, VIP = "198.18.0.1", "198.18.0.2", "198.18.0.10"
_serial = itertools.count(1)

# Runs inside the node namespace: builds agents, performs the steps, prints one JSON list.
DRIVER = r"""
import asyncio, json, sys, time
from pathlib import Path
from nonstop.config.model import ResourceSpec
from nonstop.resources import AgentContext, ActionTimeouts, ResourceError, make_agent

req = json.loads(sys.argv[1])

async def main():
    ctx = AgentContext(
        node=req["node"],
        config_dir=Path(req["config_dir"]),
        init_dir=Path(req.get("init_dir", "/etc/init.d")),
        state_dir=Path(req["state_dir"]) if req.get("state_dir") else None,
        environment=req.get("environment", {}),
        timeouts=ActionTimeouts(start=30, stop=30, status=20),
        smtp_host=req.get("smtp_host", "127.0.0.1"),
        smtp_port=req.get("smtp_port", 25),
    )
    agents = [make_agent(ResourceSpec(n, tuple(a), r), ctx) for n, a, r in req["resources"]]
    out = []
    for op, arg in req["steps"]:
        t0 = time.monotonic()
        try:
            if op == "start":
                await agents[arg].start(); res = "ok"
            elif op == "stop":
                await agents[arg].stop(); res = "ok"
            elif op == "status":
                res = (await agents[arg].status()).value
            elif op == "wait_arp":
                res = await agents[arg].announcement
            elif op == "wait_mail":
                await asyncio.wait_for(agents[arg].drain(), 60)
                res = [agents[arg].delivered, agents[arg].given_up]
            elif op == "sleep":
                await asyncio.sleep(arg); res = "ok"
            else:
                res = "bad step"
        except ResourceError as exc:
            res = "error: " + str(exc)
        t1 = time.monotonic()
        out.append({"op": op, "arg": arg, "result": res, "elapsed": t1 - t0, "end": t1})
    print(json.dumps(out), flush=True)

asyncio.run(main())
"""

# Runs inside the peer namespace: records ARP frames about one address until it has enough.
CAPTURE = r"""
import json, select, socket, sys, time
iface, vip = sys.argv[1], socket.inet_aton(sys.argv[2])
want, limit = int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((iface, 0x0806))
print("ready", flush=True)
frames = []
end = time.monotonic() + limit
while len(frames) < want:
    left = end - time.monotonic()
    if left <= 0 or not select.select([s], [], [], left)[0]:
        break
    data = s.recv(2048)
    if data[28:32] != vip:
        continue
    frames.append({"t": time.monotonic(), "op": int.from_bytes(data[20:22], "big"),
                   "eth_dst": data[0:6].hex(), "eth_src": data[6:12].hex(),
                   "sha": data[22:28].hex(), "tha": data[32:38].hex(),
                   "tpa": socket.inet_ntoa(data[38:42])})
print(json.dumps(frames), flush=True)
"""


# Runs inside the peer namespace: a real SMTP server that reports the mails it received.
SMTP_SINK = r"""
import email, email.policy, json, sys, time
from aiosmtpd.controller import Controller
host, port, want, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
got = []
class Sink:
    async def handle_DATA(self, server, session, envelope):
        m = email.message_from_bytes(envelope.content, policy=email.policy.default)
        got.append({"to": list(envelope.rcpt_tos), "subject": str(m["Subject"]),
                    "body": m.get_content()})
        return "250 OK"
controller = Controller(Sink(), hostname=host, port=port)
controller.start()
print("ready", flush=True)
end = time.monotonic() + limit
while len(got) < want and time.monotonic() < end:
    time.sleep(0.05)
controller.stop()
print(json.dumps(got), flush=True)
"""

# The `asterisk` of the group line: an LSB init script whose daemon is a detached sleep.
ASTERISK_INIT = """#!/bin/sh
P=/tmp/asterisk.pid
alive() { [ -f $P ] && kill -0 "$(cat $P)" 2>/dev/null; }
case "$1" in
start) alive && exit 0
       setsid sleep 1000 </dev/null >/dev/null 2>&1 &
       echo $! > $P; exit 0;;
stop) alive && kill "$(cat $P)"; rm -f $P; exit 0;;
status) if alive; then echo "asterisk is running"; exit 0; fi
        echo "asterisk is not running"; exit 3;;
*) echo "Usage: $0 start|stop|status"; exit 2;;
esac
"""


def sh(*argv: str, check: bool = True) -> str:
    """Run a command (no shell) and return its stdout."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


# Where the master-script tests see nonstop's code (its own place may be under the hidden /tmp).
CODE = Path(nonstop.__file__).resolve().parents[1]
CODE_MOUNT = Path(f"/var/tmp/nonstop-test-code-{os.getpid()}")


@pytest.fixture(scope="module", autouse=True)
def _code_mount() -> Iterator[None]:
    CODE_MOUNT.mkdir(exist_ok=True)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            CODE_MOUNT.rmdir()


@pytest.fixture(scope="module", autouse=True)
def _remove_leftovers() -> None:
    """Delete namespaces of this pattern whose creating test process is dead."""
    for line in sh("ip", "netns", "list").splitlines():
        name = line.split()[0] if line.split() else ""
        m = LEFTOVER.match(name)
        if m and not pid_running(int(m.group("pid"))):
            sh("ip", "netns", "del", name, check=False)


@dataclass
class Pair:
    node: str
    peer: str
    peer_if: str
    procs: list[subprocess.Popen[str]]

    def node_addrs(self) -> list[tuple[str, str]]:
        """(address/prefix, label) of every IPv4 address on the node's eth0."""
        out = json.loads(sh("ip", "-n", self.node, "-j", "-4", "addr", "show", "dev", "eth0"))
        return [
            (f"{a['local']}/{a['prefixlen']}", a.get("label", "eth0"))
            for link in out
            for a in link.get("addr_info", [])
        ]

    def node_mac(self) -> str:
        out = json.loads(sh("ip", "-n", self.node, "-j", "link", "show", "dev", "eth0"))
        return str(out[0]["address"]).replace(":", "")

    def spawn(self, ns: str, argv: list[str], **kw: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kw,
        )
        self.procs.append(proc)
        return proc

    def drive(
        self,
        resources: list[tuple[str, list[str], str]],
        steps: list[tuple[str, Any]],
        *,
        wrap: list[str] | None = None,
        timeout: float = 90,
        **req: Any,
    ) -> list[dict[str, Any]]:
        """Run agents inside the node namespace; returns one result per step."""
        req = {"node": "vpbx1-1", "config_dir": "/nonexistent", **req}
        req.update(resources=resources, steps=steps)
        argv = [*(wrap or []), sys.executable, "-c", DRIVER, json.dumps(req)]
        proc = self.spawn(self.node, argv)
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err
        results: list[dict[str, Any]] = json.loads(out.strip().splitlines()[-1])
        return results

    def serve(self, snippet: str, *args: str) -> subprocess.Popen[str]:
        """Start a helper program in the peer and wait until it prints ``ready``."""
        proc = self.spawn(self.peer, [sys.executable, "-c", snippet, *args])
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready and proc.stdout.readline().strip() == "ready", "helper did not start"
        return proc

    def capture(self, want: int, limit_s: float) -> subprocess.Popen[str]:
        """Start an ARP capture in the peer and wait until its socket is bound."""
        return self.serve(CAPTURE, self.peer_if, VIP, str(want), str(limit_s))


@pytest.fixture
def pair() -> Iterator[Pair]:
    n = next(_serial)
    node, peer, peer_if = f"{PREFIX}{n}-a", f"{PREFIX}{n}-b", f"{PREFIX}{n}p"
    assert len(node) <= 15 and len(peer_if) <= 15
    p = Pair(node, peer, peer_if, [])
    try:
        sh("ip", "netns", "add", node)
        sh("ip", "netns", "add", peer)
        # Both ends are created inside the namespaces: the host's links are never touched.
        sh("ip", "-n", node, "link", "add", "eth0", "type", "veth", "peer", "name", peer_if,
           "netns", peer)
        for ns, ifname, addr in ((node, "eth0", NODE_IP), (peer, peer_if, PEER_IP)):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
            sh("ip", "-n", ns, "link", "set", ifname, "up")
        yield p
    finally:
        for proc in p.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)
        sh("ip", "netns", "del", node, check=False)
        sh("ip", "netns", "del", peer, check=False)


def test_ipaddr_adds_alias_and_peer_sees_gratuitous_arp(pair: Pair) -> None:
    cap = pair.capture(want=20, limit_s=30)
    res = pair.drive(
        [("IPaddr", [f"{VIP}/24/eth0"], f"{VIP}/24/eth0")],
        [("status", 0), ("start", 0), ("status", 0), ("wait_arp", 0)],
    )
    assert [r["result"] for r in res] == ["stopped", "ok", "running", 20]
    # start returned long before the 4.75 s of announcements were over.
    assert res[1]["elapsed"] < 2.0
    assert (f"{VIP}/24", "eth0:0") in pair.node_addrs()
    out, _ = cap.communicate(timeout=40)
    frames = json.loads(out.strip().splitlines()[-1])
    mac = pair.node_mac()
    assert [f["op"] for f in frames] == [1, 2] * 10
    for f in frames:
        assert f["eth_dst"] == "ffffffffffff" and f["eth_src"] == mac and f["sha"] == mac
        assert f["tpa"] == VIP
        assert f["tha"] == ("000000000000" if f["op"] == 1 else mac)
    # The first request leaves at once (both namespaces share CLOCK_MONOTONIC).
    assert -0.5 < frames[0]["t"] - res[1]["end"] < 0.5
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(frames)]
    # 250 ms apart; the margins allow for a busy two-core machine.
    assert 0.2 <= statistics.median(gaps) <= 0.35, gaps
    assert all(0.1 <= g <= 0.75 for g in gaps), gaps
    assert 4.0 <= frames[-1]["t"] - frames[0]["t"] <= 7.0


def test_ipaddr_start_is_idempotent_and_stop_removes(pair: Pair) -> None:
    res = pair.drive(
        [("IPaddr", [f"{VIP}/24/eth0"], f"{VIP}/24/eth0")],
        [("start", 0), ("start", 0), ("status", 0), ("stop", 0), ("status", 0), ("stop", 0)],
    )
    assert [r["result"] for r in res] == ["ok", "ok", "running", "ok", "stopped", "ok"]
    assert all(not a.startswith(VIP) for a, _ in pair.node_addrs())


def test_ipaddr_fields_from_route_and_next_free_label(pair: Pair) -> None:
    sh("ip", "-n", pair.node, "addr", "add", "198.18.0.20/24", "dev", "eth0", "label", "eth0:0")
    res = pair.drive([("IPaddr", [VIP], VIP)], [("start", 0), ("status", 0)])
    assert [r["result"] for r in res] == ["ok", "running"]
    addrs = pair.node_addrs()
    assert (f"{VIP}/24", "eth0:1") in addrs
    brd = json.loads(sh("ip", "-n", pair.node, "-j", "-4", "addr", "show", "dev", "eth0"))
    (info,) = [a for a in brd[0]["addr_info"] if a["local"] == VIP]
    assert info["broadcast"] == "198.18.0.255"


def test_ipaddr_on_other_interface_is_failed(pair: Pair) -> None:
    sh("ip", "-n", pair.node, "addr", "add", f"{VIP}/32", "dev", "lo")
    res = pair.drive(
        [("IPaddr", [f"{VIP}/24/eth0"], f"{VIP}/24/eth0")], [("status", 0), ("start", 0)]
    )
    assert res[0]["result"] == "failed"
    assert res[1]["result"].startswith("error:") and "instead of the configured eth0" in (
        res[1]["result"]
    )


def test_ipaddr2_native_has_no_label_and_stop_cancels_arp(pair: Pair) -> None:
    cap = pair.capture(want=20, limit_s=6)
    res = pair.drive(
        [("IPaddr2", [f"{VIP}/24/eth0"], f"IPaddr2::{VIP}/24/eth0")],
        [("start", 0), ("sleep", 0.6), ("stop", 0), ("status", 0), ("sleep", 1.0)],
    )
    assert [r["result"] for r in res] == ["ok", "ok", "ok", "stopped", "ok"]
    out, _ = cap.communicate(timeout=20)
    frames = json.loads(out.strip().splitlines()[-1])
    # About 0.6 s of announcements (3 frames) went out before stop cancelled the rest.
    assert 1 <= len(frames) <= 8, frames


def test_ocf_ipaddr2_from_resource_agents(pair: Pair, tmp_path: Path) -> None:
    agent = Path("/usr/lib/ocf/resource.d/heartbeat/IPaddr2")
    if not os.access(agent, os.X_OK):
        pytest.skip("resource-agents' IPaddr2 is not installed")
    rsctmp = tmp_path / "rsctmp"
    rsctmp.mkdir()
    cap = pair.capture(want=1, limit_s=30)
    params = [f"ip={VIP}", "cidr_netmask=24", "nic=eth0"]
    raw = "ocf:heartbeat:IPaddr2::" + "::".join(params)
    res = pair.drive(
        [("ocf:heartbeat:IPaddr2", params, raw)],
        [("status", 0), ("start", 0), ("status", 0)],
        # The agent keeps send_arp's pid file in HA_RSCTMP: keep it out of the host's /run.
        environment={"HA_RSCTMP": str(rsctmp)},
    )
    assert [r["result"] for r in res] == ["stopped", "ok", "running"], res
    assert any(a == f"{VIP}/24" for a, _ in pair.node_addrs())
    out, _ = cap.communicate(timeout=40)
    assert json.loads(out.strip().splitlines()[-1]), "the peer saw no ARP for the VIP"
    res = pair.drive(
        [("ocf:heartbeat:IPaddr2", params, raw)],
        [("stop", 0), ("status", 0)],
        environment={"HA_RSCTMP": str(rsctmp)},
    )
    assert [r["result"] for r in res] == ["ok", "stopped"], res
    assert all(not a.startswith(VIP) for a, _ in pair.node_addrs())


MASTER = talk_path("ha.d/resource.d/master")


def _master_box(tmp_path: Path, csync2_body: str) -> tuple[Path, Path, list[str]]:
    """A private /tmp (config, stand-in csync2) and /etc/logrotate.d for the talk's master,
    which writes both global paths. Returns (private tmp, logrotate dir, command prefix)."""
    if not MASTER.exists():
        pytest.skip("the talk's master script is not available")
    priv = tmp_path / "tmp"
    (priv / "ha.d" / "resource.d").mkdir(parents=True)
    shutil.copy(MASTER, priv / "ha.d" / "resource.d" / "master")
    (priv / "bin").mkdir()
    standin = priv / "bin" / "csync2"
    standin.write_text("#!/bin/sh\n" + csync2_body)
    standin.chmod(0o755)
    logrotate = tmp_path / "logrotate.d"
    logrotate.mkdir()
    # Bind logrotate.d and nonstop's code first: their sources may lie under the /tmp that the
    # last mount hides (a checkout under /tmp); the code then comes from CODE_MOUNT.
    wrap = [
        "unshare", "--mount", "--propagation", "private", "sh", "-c",
        f"mount --bind {logrotate} /etc/logrotate.d && mount --bind {CODE} {CODE_MOUNT} && "
        f'mount --bind {priv} /tmp && PYTHONPATH={CODE_MOUNT} exec "$@"',
        "sh",
    ]
    return priv, logrotate, wrap


STANDIN_PATH = f"/tmp/bin:{os.environ.get('PATH', '/usr/bin:/bin')}"


def test_talk_master_script_runs_via_script_agent(pair: Pair, tmp_path: Path) -> None:
    """A test of the script runner (arguments, environment, global paths), not of csync2."""
    priv, logrotate, wrap = _master_box(
        tmp_path, 'echo "$HA_CURHOST $*" >> /tmp/csync2.calls\n'
    )
    steps: list[tuple[str, Any]] = [("status", 0), ("start", 0), ("stop", 0), ("stop", 0)]
    res = pair.drive(
        [("master", [], "master")],
        steps,
        wrap=wrap,
        config_dir="/tmp/ha.d",
        environment={"PATH": STANDIN_PATH, "HA_CURHOST": "vpbx1-1"},
    )
    # master has no status action: it prints nothing, which Heartbeat's rule reads as stopped.
    assert [r["result"] for r in res] == ["stopped", "ok", "ok", "ok"], res
    calls = (priv / "csync2.calls").read_text().splitlines()
    one_run = ["vpbx1-1 -fr /var/log/asterisk/", "vpbx1-1 -fr /etc/asterisk/", "vpbx1-1 -xv"]
    # start syncs; the first stop syncs and clears the flag; the second stop does nothing.
    assert calls == one_run * 2
    assert not (priv / ".HB-master").exists()
    assert list(logrotate.iterdir()) == []


def test_talk_master_start_leaves_flag_and_logrotate_link(pair: Pair, tmp_path: Path) -> None:
    priv, logrotate, wrap = _master_box(tmp_path, "exit 0\n")
    res = pair.drive(
        [("master", [], "master")],
        [("start", 0)],
        wrap=wrap,
        config_dir="/tmp/ha.d",
        environment={"PATH": STANDIN_PATH},
    )
    assert res[0]["result"] == "ok"
    assert (priv / ".HB-master").exists()
    link = logrotate / "asterisk"
    assert link.is_symlink() and os.readlink(link) == "/etc/asterisk/asterisk.logrotate"


def test_talk_resource_group_line(pair: Pair, tmp_path: Path) -> None:
    """The talk's group, with the test VIP: started left to right, stopped right to left."""
    from nonstop.config.haresources import parse_haresources

    haresources = tmp_path / "haresources"
    haresources.write_text(
        f"vpbx1-1 MailTo::tech@webinmotion.ca::Asterisk {VIP}/24/eth0 asterisk master\n"
    )
    (group,) = parse_haresources(str(haresources), ["vpbx1-1", "vpbx1-2"])
    resources = [(r.name, list(r.args), r.raw) for r in group.resources]
    assert [r[0] for r in resources] == ["MailTo", "IPaddr", "asterisk", "master"]
    priv, _, wrap = _master_box(tmp_path, "exit 0\n")
    init = priv / "init.d"
    init.mkdir()
    (init / "asterisk").write_text(ASTERISK_INIT)
    (init / "asterisk").chmod(0o755)
    sink = pair.serve(SMTP_SINK, PEER_IP, "2525", "2", "60")
    n = len(resources)
    steps: list[tuple[str, Any]] = [
        *(("start", i) for i in range(n)),
        *(("status", i) for i in range(n)),
        *(("stop", i) for i in reversed(range(n))),
        *(("status", i) for i in range(n)),
        ("wait_mail", 0),
    ]
    try:
        res = pair.drive(
            resources,
            steps,
            wrap=wrap,
            config_dir="/tmp/ha.d",
            init_dir="/tmp/init.d",
            environment={"PATH": STANDIN_PATH, "HA_CURHOST": "vpbx1-1"},
            smtp_host=PEER_IP,
            smtp_port=2525,
        )
    finally:
        pid_file = priv / "asterisk.pid"
        if pid_file.exists():  # the stand-in daemon, if stop did not get to it
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), 9)
    results = [r["result"] for r in res]
    assert results[:n] == ["ok"] * n, res
    # master has no status action, so Heartbeat's rule says "stopped" even while it holds.
    assert results[n : 2 * n] == ["running", "running", "running", "stopped"], res
    assert results[2 * n : 3 * n] == ["ok"] * n, res
    assert results[3 * n : 4 * n] == ["stopped"] * n, res
    assert results[-1] == [2, 0]
    out, _ = sink.communicate(timeout=70)
    mails = json.loads(out.strip().splitlines()[-1])
    assert [m["to"] for m in mails] == [["tech@webinmotion.ca"]] * 2
    assert mails[0]["subject"].startswith("Asterisk Takeover in progress at ")
    assert mails[0]["subject"].endswith(" on vpbx1-1")
    assert mails[1]["subject"].startswith("Asterisk Migrating resource away at ")
    assert mails[1]["subject"].endswith(" from vpbx1-1")
    assert "        Command line was:" in mails[0]["body"]
