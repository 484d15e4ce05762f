"""The least a Python heartbeat can cost on this machine (issue 15).

Two minimal heartbeat processes in the lab's two node namespaces, the same traffic as an idle
nonstop pair at keepalive 200 ms: the leading process broadcasts a signed 330-byte status on
its timer, the following one checks each status it hears and answers with its own at once
(as membership's early send does), the leader checks the answer. Both use nonstop's keyed
digest (``heartbeat.auth``: HMAC-SHA1 from cached pads) and its kernel filter for their own
broadcasts, and nothing else: no membership, failover, observation or replication. Their CPU,
measured like ``bench.footprint`` measures the daemons, is the floor of the wakeups alone: what
any Python heartbeat on asyncio pays here before it does its own work. ``--loop select``
waits in a plain blocking ``select()`` instead, no event loop at all.

    sudo python3 -m bench.wakefloor [--window 60] [--loop asyncio|select|both]

Run it holding the bench lock, and beside ``bench.footprint`` in the same minutes to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import math
import os
import re
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from nonstop.config.model import AuthMethod
from nonstop.heartbeat.auth import digest, verify
from nonstop.heartbeat.media import drop_from

PORT = 45694
KEEPALIVE_S = 0.2
KEY = b"wakefloor"
BODY = b"x" * 330  # about the talk's status with a failover ad
NODES = ("vpbx1-1", "vpbx1-2")
SO_BINDTODEVICE = 25


class _Node:
    """One heartbeat process: ``leader`` sends on its timer, ``follower`` answers."""

    def __init__(self, role: str, own: str, broadcast: str) -> None:
        self.role, self.dest, self.seq = role, (broadcast, PORT), 0
        self.heard = 0  # good statuses from the other process
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, b"eth0")
        self.sock.bind(("", PORT))
        drop_from(self.sock, own)

    def send(self) -> None:
        self.seq += 1
        data = BODY + b"%x" % self.seq
        self.sock.sendto(data + digest(AuthMethod.SHA1, KEY, data).encode(), self.dest)

    def readable(self) -> None:
        try:
            data = self.sock.recv(2048)
        except BlockingIOError:
            return
        if verify(AuthMethod.SHA1, KEY, data[:-40], data[-40:].decode()):
            self.heard += 1
            if self.role == "follower":
                self.send()

    def run_asyncio(self) -> None:
        async def main() -> None:
            loop = asyncio.get_running_loop()

            def tick() -> None:
                self.send()
                loop.call_later(KEEPALIVE_S, tick)

            loop.add_reader(self.sock.fileno(), self.readable)
            if self.role == "leader":
                loop.call_later(KEEPALIVE_S, tick)
            await asyncio.Event().wait()

        asyncio.run(main())

    def run_select(self) -> None:
        """No event loop: one blocking ``select`` with the keepalive's deadline as timeout."""
        due = time.monotonic() + KEEPALIVE_S if self.role == "leader" else math.inf
        while True:
            timeout = None if due == math.inf else max(0.0, due - time.monotonic())
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if ready:
                self.readable()
            if time.monotonic() >= due:
                self.send()
                due += KEEPALIVE_S


def _wakeups(pid: int) -> int:
    """Times put to sleep so far, over every thread of ``pid``."""
    slept = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    slept += int(line.split()[1])
    return slept


class Floor(NamedTuple):
    """One process over the window; ``heard``: good statuses it got from the other in all."""

    cpu_pct: float
    wakeups: float
    heard: int


def measure(window: float, loop: str, settle: float = 5.0) -> dict[str, Floor]:
    """Each process over ``window`` seconds, waiting with ``loop`` (``asyncio`` or
    ``select``)."""
    from bench.footprint import run_ns  # here: the node processes run a copy of this file
    from nonstop.lab import Lab
    from nonstop.lab.lab import PREFIXLEN

    with tempfile.TemporaryDirectory(prefix="nonstop-wakefloor-", dir="/var/tmp") as tmp, \
            Lab(NODES, workdir=Path(tmp) / "lab") as lab:
        # A lab host has a private /tmp, where a checkout may live: the processes run a copy of
        # this file from the work directory (nonstop itself is found as the lab arranges).
        script = Path(tmp) / "wakefloor.py"
        shutil.copyfile(__file__, script)
        procs = {}
        for node, role in zip(NODES, ("follower", "leader"), strict=True):
            own = lab.ip(node)
            bcast = str(ipaddress.IPv4Interface(f"{own}/{PREFIXLEN}").network.broadcast_address)
            argv = [sys.executable, str(script), "--loop", loop, "--node", role, own, bcast]
            procs[role] = lab.spawn(node, argv, name=f"wakefloor-{loop}-{role}")
        time.sleep(settle)
        for role, proc in procs.items():
            if not proc.running:
                raise SystemExit(f"the {role} process ended: see {proc.log_path}")
        before = {r: (run_ns([p.pid]), _wakeups(p.pid)) for r, p in procs.items()}
        started = time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - started
        after = {r: (run_ns([p.pid]), _wakeups(p.pid)) for r, p in procs.items()}
        heard = {}
        for role, proc in procs.items():
            proc.stop()
            said = re.findall(r"^heard (\d+)$", proc.log_path.read_text(), re.M)
            heard[role] = int(said[-1]) if said else 0
        return {r: Floor(100.0 * (after[r][0] - before[r][0]) / 1e9 / elapsed,
                         (after[r][1] - before[r][1]) / elapsed, heard[r]) for r in procs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured")
    parser.add_argument("--loop", choices=("asyncio", "select", "both"), default="both",
                        help="how the processes wait: an asyncio loop (as nonstop), a plain "
                             "select() loop, or both one after the other (default)")
    parser.add_argument("--node", nargs=3, metavar=("ROLE", "OWN", "BROADCAST"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.node:
        node = _Node(*args.node)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            node.run_asyncio() if args.loop == "asyncio" else node.run_select()
        finally:
            print(f"heard {node.heard}", flush=True)
        return 0
    if os.geteuid() != 0:
        print("bench.wakefloor needs root (network namespaces)", file=sys.stderr)
        return 2
    for loop in ("asyncio", "select") if args.loop == "both" else (args.loop,):
        for role, f in measure(args.window, loop).items():
            print(f"{loop} {role}: {f.cpu_pct:.3f} % of a core (schedstat), {f.wakeups:.1f} "
                  f"wakeups a second, {args.window:.0f} s ({f.heard} statuses heard)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
