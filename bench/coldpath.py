"""What a heartbeat costs when it is the first thing a process does after sleeping (issue 15).

An idle daemon sleeps between keepalives, and whatever ran meanwhile (the peer, the kernel,
the host) has taken the caches: the same Python code costs several times what a tight loop
says. This runs the heartbeat core of two nodes in one process, the talk's ha.cf with a
failover ad in every status, and times each step of one keepalive exchange in thread CPU:
back to back, then after a sleep of each length before every exchange.

    python3 -m bench.coldpath [--exchanges 200] [--sleeps 0.001,0.02,0.2]

Steps: the leading node's keepalive (``tick``: the status built, numbered, signed), the
following node's receive and answer (``receive``: authenticated, parsed, membership, its own
status out), the leading node's receive of that answer. ``floor`` is a ten-step Python loop,
what any wakeup pays before doing anything. Run it holding the bench lock, nothing else busy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from nonstop.config.loader import load_config_dir
from nonstop.heartbeat.envelope import Identity
from nonstop.heartbeat.events import Output, Transmit
from nonstop.heartbeat.protocol import HeartbeatProtocol
from nonstop.talk import copy_talk

STEPS = ("leader tick", "follower receive + answer", "leader receive", "floor")
#: A failover ad as a holding node sends it (the group, its epoch, the haresources digest).
AD = (("NS_ad", "g0=held:3;d=5f0c2e7a91b3"), ("NS_ep", "3"))


def _floor() -> int:
    total = 0
    for i in range(10):
        total += i
    return total


class Exchange:
    """Two nodes' heartbeat cores and a simulated clock, one keepalive exchange a call."""

    def __init__(self, config_dir: Path) -> None:
        cfg = load_config_dir(str(config_dir), "vpbx1-1")
        self.now = 0.0

        def node(name: str, uuid: bytes, gen: int) -> HeartbeatProtocol:
            proto = HeartbeatProtocol(cfg.ha, Identity(name, uuid, gen), cfg.authkeys,
                                      self.now, wall_clock=lambda: 0x6B062E8E,
                                      loadavg=lambda now: "0.04 0.03 0.00 1/112 4242")
            proto.set_status_fields(AD)
            return proto

        self.leader = node("vpbx1-1", b"\x01" * 16, 5)
        self.follower = node("vpbx1-2", b"\x02" * 16, 6)
        self.keepalive = cfg.ha.keepalive_ms / 1000.0
        self._to_follower: list[Output] = []  # what the leader's receive sent (acks)

    def run(self, pause: Callable[[], None]) -> tuple[int, int, int, int]:
        """One exchange, ``pause()`` before each step: thread CPU (ns) of each, in STEPS
        order."""
        self.now += self.keepalive
        pause()
        t0 = time.thread_time_ns()
        sent = self.leader.tick(self.now)
        t1 = time.thread_time_ns()
        sent, self._to_follower = self._to_follower + sent, []
        answers: list[Output] = []
        pause()
        t2 = time.thread_time_ns()
        for out in sent:
            if isinstance(out, Transmit):
                answers += self.follower.receive(out.payload, "eth0", self.now)
        t3 = time.thread_time_ns()
        pause()
        t4 = time.thread_time_ns()
        for out in answers:
            if isinstance(out, Transmit):
                self._to_follower += self.leader.receive(out.payload, "eth0", self.now)
        t5 = time.thread_time_ns()
        pause()
        t6 = time.thread_time_ns()
        _floor()
        t7 = time.thread_time_ns()
        return t1 - t0, t3 - t2, t5 - t4, t7 - t6


def measure(exchanges: int, sleeps: list[float]) -> dict[float, list[float]]:
    """Mean µs of each step with no sleep (0.0) and after each sleep, in STEPS order."""
    with tempfile.TemporaryDirectory(prefix="nonstop-coldpath-") as tmp:
        ex = Exchange(copy_talk(Path(tmp) / "talk") / "ha.d")
        for _ in range(50):  # comm up, both sides numbering, caches and specializations warm
            ex.run(lambda: None)
        out: dict[float, list[float]] = {}
        for sleep in [0.0, *sleeps]:
            def pause(sleep: float = sleep) -> None:
                if sleep:
                    time.sleep(sleep)
            n = exchanges if sleep else exchanges * 20
            sums = [0, 0, 0, 0]
            for _ in range(n):
                for i, ns in enumerate(ex.run(pause)):
                    sums[i] += ns
            out[sleep] = [s / n / 1000.0 for s in sums]
        return out


def report(results: dict[float, list[float]]) -> str:
    hot = results[0.0]
    lines = ["| step | back to back | " + " | ".join(
        f"after {s * 1000:g} ms asleep" for s in results if s) + " |",
        "|---" * (len(results) + 1) + "|"]
    for i, step in enumerate(STEPS):
        cells = [f"{hot[i]:.1f} µs"] + [
            f"{r[i]:.1f} µs ({r[i] / hot[i]:.1f}x)" for s, r in results.items() if s]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exchanges", type=int, default=200,
                    help="exchanges timed after each sleep (20 times more back to back)")
    ap.add_argument("--sleeps", default="0.001,0.02,0.2",
                    help="sleeps before each step, seconds, comma-separated")
    args = ap.parse_args(argv)
    sleeps = [float(s) for s in args.sleeps.split(",") if s]
    print(report(measure(args.exchanges, sleeps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
