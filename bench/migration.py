"""Measure README's rolling migration from Heartbeat 3.0.6 to nonstop with the SIP client.

    sudo flock /tmp/nonstop-bench.lock python3 -m bench.migration [--trials N] [--json FILE]

Per trial, in a fresh lab with the talk's files (auto_failback off) and the SIP prober asking
the VIP every 20 ms: both nodes run Heartbeat, vpbx1-1 holds the group. As a reference, one
planned switchover between the two Heartbeat nodes (``hb_standby`` on vpbx1-1, then back).
Then the migration, one node at a time:

1. stop Heartbeat on the standby vpbx1-2, install nonstop there, start it;
2. move the group: ``hb_standby`` on vpbx1-1 (one planned switchover, through Heartbeat's
   standby exchange with the nonstop node);
3. stop Heartbeat on vpbx1-1 (now the standby), install nonstop there, start it.

Reported per trial: every client-visible outage of the migration (a gap of more than
``GAP_S`` between consecutive SIP answers), which step it fell in, the reference switchover's
outage, and the most holders of the VIP seen at once by a 100 ms sampler (two would be a
split brain). The expectation: exactly one outage, in step 2, about as long as the reference.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.measure import LogWatcher
from bench.mixed import HEARTBEAT, NONSTOP, MixedCluster
from bench.systems import N1, N2, NODES
from nonstop.lab import CLIENT, VIP, Lab, LabError
from nonstop.lab.sipprobe import probe_command

WORK_ROOT = Path("/var/tmp/nonstop-bench/migration")
GAP_S = 0.1  # five probe intervals without an answer: the client saw an outage
MOVE_S = 30.0
JOIN_S = 40.0


@dataclass
class Trial:
    reference_s: float  # one planned switchover between two Heartbeat nodes
    outages: list[tuple[str, float]]  # (step, seconds) during the migration
    most_holders: int


class Sampler:
    """The most VIP holders seen at once (every 100 ms; a pair is read both ways)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _holds(self, node: str) -> bool:
        try:
            return self.lab.has_address(node, VIP)
        except LabError:
            return False

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            first = [n for n in NODES if self._holds(n)]
            if len(first) > 1:
                first = [n for n in reversed(NODES) if self._holds(n)]
            self.most = max(self.most, len(first))

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)


def outages(c: MixedCluster, start: float, end: float) -> list[tuple[float, float]]:
    """(last answer before, gap) for every gap of more than GAP_S between answers."""
    answers = sorted(p.answered for p in c.probes.refresh() if p.answered is not None
                     and start <= p.answered <= end)
    return [(a, b - a) for a, b in itertools.pairwise(answers) if b - a > GAP_S]


def switch(c: MixedCluster, giver: str) -> None:
    taker = N2 if giver == N1 else N1
    c.command(giver, "standby")
    c.wait_alone_on(taker, MOVE_S)
    c.wait_settled(MOVE_S)


def replace_standby(c: MixedCluster, node: str) -> None:
    """Stop Heartbeat on the standby ``node``, put nonstop there and start it."""
    c.stop(node)
    c.replace(node, NONSTOP)
    since = time.monotonic()
    c.start(node)
    key, pattern = c.joined_pattern(node)
    c.watcher.wait(key, pattern, since, JOIN_S)
    # Joined and its resource exchange done: the other node logs its answer.
    time.sleep(3.0)


def trial(workdir: Path) -> Trial:
    watcher = LogWatcher()
    try:
        with Lab(NODES, workdir=workdir) as lab:
            c = MixedCluster(lab, watcher, {N1: HEARTBEAT, N2: HEARTBEAT})
            for node in NODES:
                c.start(node)
            c.prober = lab.spawn(CLIENT, probe_command(VIP, c.probes.path, interval=0.02,
                                                       timeout=0.5), name="probe")
            c.wait_alone_on(N1, 60)
            c.wait_settled(30)
            time.sleep(3)
            t = time.monotonic()
            switch(c, N1)
            time.sleep(3)
            switch(c, N2)
            time.sleep(3)
            ref = [gap for _, gap in outages(c, t, time.monotonic())]
            sampler = Sampler(lab)
            marks: list[tuple[str, float]] = []
            with sampler.running():
                marks.append(("1 replace the standby vpbx1-2", time.monotonic()))
                replace_standby(c, N2)
                marks.append(("2 move the group (hb_standby on vpbx1-1)", time.monotonic()))
                switch(c, N1)
                time.sleep(3)
                marks.append(("3 replace vpbx1-1", time.monotonic()))
                replace_standby(c, N1)
                time.sleep(3)
                marks.append(("end", time.monotonic()))
            c.close()
            found = []
            for before, gap in outages(c, marks[0][1], marks[-1][1]):
                step = [name for name, at in marks if at <= before][-1]
                found.append((step, round(gap, 3)))
            return Trial(round(max(ref, default=0.0), 3), found, sampler.most)
    finally:
        watcher.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the trials here as JSON")
    args = parser.parse_args(argv)
    results: list[Trial] = []
    for i in range(args.trials):
        try:
            # A fresh directory: an old probe record there would be read as this trial's.
            t = trial(WORK_ROOT / f"{os.getpid()}-{i}")
        except LabError as e:
            print(f"trial {i}: failed: {e}", file=sys.stderr)
            return 1
        results.append(t)
        print(f"trial {i}: reference switchover {t.reference_s:.3f} s; migration outages "
              f"{t.outages}; most VIP holders at once {t.most_holders}", flush=True)
    moves = [gap for t in results for step, gap in t.outages if step.startswith("2")]
    others = [o for t in results for o in t.outages if not o[0].startswith("2")]
    print(f"migration: {len(moves)} outage(s) in step 2 over {len(results)} trial(s), "
          f"median {statistics.median(moves) if moves else 0:.3f} s; reference switchover "
          f"median {statistics.median(t.reference_s for t in results):.3f} s; outages in "
          f"other steps: {others}; most holders at once: "
          f"{max(t.most_holders for t in results)}")
    if args.json:
        args.json.write_text(json.dumps([asdict(t) for t in results], indent=1) + "\n")
    ok = all(len(t.outages) <= 1 and t.most_holders <= 1 for t in results) and not others
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
