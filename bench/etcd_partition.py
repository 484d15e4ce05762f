"""nonstop with etcd leases (ha.cf nonstop_etcd) beside heartbeat-only nonstop, on the same
faults, three nodes: client-visible outage and the longest moment with two VIP holders.

    sudo flock /tmp/nonstop-bench.lock python3 -m bench.etcd_partition [--trials N]
                                                                      [--out docs/ETCD.md]

Each mode gets its own lab: three nonstop nodes with the talk's files (node list extended to
vpbx1-3), kamailio on the VIP, the client's SIP prober (OPTIONS every 20 ms); in etcd mode a
three-member etcd (Debian's etcd-server), one member in each node's namespace. Faults:

* holder cut off: the holder's switch port goes down for CUT_S, then comes back; the outage
  is the longest gap between SIP answers from the fault until one node alone has served for
  STABLE_S after the heal (the heal's own outage is reported apart);
* minority cut: a node that does not hold the VIP is cut off for CUT_S;
* etcd leader killed / all etcd killed (etcd mode only), for CUT_S, then restarted.

A thread samples every node's addresses all along (``HolderWatch``): "two holders" is the
longest run of samples with the VIP on two nodes, the last sample of a run included.
With --out, the results replace the section between the BEGIN/END markers of that file.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from nonstop.lab import Lab, LabError, cleanup_leftovers, wait_for
from nonstop.lab.etcd import EtcdCluster
from nonstop.lab.holders import HolderWatch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from talkcluster import N1, N2, TalkCluster

N3 = "vpbx1-3"
NODES = (N1, N2, N3)
CUT_S = 8.0
STABLE_S = 3.0
BEGIN = "<!-- BEGIN bench/etcd_partition.py results -->"
END = "<!-- END bench/etcd_partition.py results -->"
FAULTS = {
    "holder": "holder cut off from the others (8 s)",
    "minority": "a non-holder cut off (8 s)",
    "leader": "etcd leader killed (8 s)",
    "alletcd": "every etcd member killed (8 s)",
}


@dataclass
class Result:
    outage: list[float] = field(default_factory=list)
    heal: list[float] = field(default_factory=list)
    dual: list[float] = field(default_factory=list)
    moved: int = 0
    failures: list[str] = field(default_factory=list)


def log(msg: str) -> None:
    print(f"[etcd bench] {msg}", file=sys.stderr, flush=True)


def silence(c: TalkCluster, start: float, end: float) -> float:
    """The longest gap between SIP answers from the last one at or before ``start`` to
    ``end``."""
    answers = sorted(p.answered for p in c.probes() if p.answered is not None)
    before = [a for a in answers if a <= start]
    span = [*before[-1:], *(a for a in answers if start < a <= end)]
    if len(span) < 2:
        return end - start
    return max(b - a for a, b in itertools.pairwise(span))


@contextmanager
def cluster(mode: str, workdir: Path) -> Iterator[tuple[Lab, TalkCluster, EtcdCluster | None]]:
    lab = Lab(NODES, workdir=workdir / f"{mode}-lab").start()
    try:
        etcd = EtcdCluster(lab, NODES).start() if mode == "etcd" else None
        directives = ({"nonstop_etcd": ",".join(etcd.endpoints) + " prefix=/nonstop/bench"}
                      if etcd is not None else {})
        c = TalkCluster(lab, nodes=NODES, directives=directives)
        for n in NODES:
            c.start(n)
        c.wait_vip_on(N1, 30)
        c.start_prober()
        since = time.monotonic()
        wait_for(lambda: c.answered_by(N1, since), 10, what="SIP answers from vpbx1-1")
        yield lab, c, etcd
    finally:
        lab.close()


def one_holder(c: TalkCluster, timeout: float) -> str:
    """Wait until a single node has held the VIP for STABLE_S; that node."""
    end = time.monotonic() + timeout
    stable_since, last = time.monotonic(), tuple(c.vip_holders())
    while time.monotonic() < end:
        now_holders = tuple(c.vip_holders())
        if now_holders != last:
            stable_since, last = time.monotonic(), now_holders
        if len(last) == 1 and time.monotonic() - stable_since >= STABLE_S:
            return last[0]
        time.sleep(0.05)
    raise LabError(f"no single holder within {timeout} s (holders {last})")


def trial(fault: str, lab: Lab, c: TalkCluster, etcd: EtcdCluster | None,
          res: Result) -> None:
    holder = one_holder(c, 30)
    victim = holder if fault == "holder" else next(n for n in NODES if n != holder)
    undo: Callable[[], None]
    with HolderWatch(lab, NODES) as watch:
        t0 = time.monotonic()
        if fault in ("holder", "minority"):
            lab.link_down(victim)

            def undo() -> None:
                lab.link_up(victim)
        elif fault == "leader":
            assert etcd is not None
            leader = etcd.leader() or N1
            etcd.kill_member(leader)

            def undo() -> None:
                etcd.start_member(leader)
        else:
            assert etcd is not None
            for n in NODES:
                etcd.kill_member(n)

            def undo() -> None:
                for n in NODES:
                    etcd.start_member(n)
        time.sleep(CUT_S)
        heal = time.monotonic()
        undo()
        after = one_holder(c, 60)
        done = time.monotonic()
        if etcd is not None:
            etcd.wait_healthy(30)
    res.outage.append(silence(c, t0, heal))
    res.heal.append(silence(c, heal, done))
    res.dual.append(watch.dual_s if watch.most > 1 else 0.0)
    res.moved += after != holder
    log(f"{fault}: outage {res.outage[-1]:.3f} s, heal {res.heal[-1]:.3f} s, two holders "
        f"{res.dual[-1]:.3f} s, {holder} -> {after}")
    # every node up and hearing the others before the next trial
    wait_for(lambda: all(c.status(n).get("status") == "active" for n in NODES), 30,
             what="every node active again")
    time.sleep(2.0)


def run(trials: int, workdir: Path) -> dict[tuple[str, str], Result]:
    results: dict[tuple[str, str], Result] = {}
    for mode in ("heartbeat", "etcd"):
        faults = ["holder", "minority"] + (["leader", "alletcd"] if mode == "etcd" else [])
        with cluster(mode, workdir) as (lab, c, etcd):
            for fault, _ in itertools.product(faults, range(trials)):
                res = results.setdefault((mode, fault), Result())
                try:
                    trial(fault, lab, c, etcd, res)
                except LabError as e:
                    res.failures.append(str(e))
                    log(f"{mode} {fault}: trial failed: {e}")
                    lab.clear_faults()
    return results


def _cell(values: list[float]) -> str:
    if not values:
        return "n/a"
    med = statistics.median(values)
    return f"{med:.2f} s ({min(values):.2f}-{max(values):.2f})"


def render(results: dict[tuple[str, str], Result], trials: int) -> str:
    lines = [
        BEGIN,
        f"Measured by `bench/etcd_partition.py` ({trials} trial(s) per cell; median, then "
        "min-max), talk timings (keepalive 200 ms, deadtime 2 s: lease TTL 2 s).",
        "",
        "| fault | mode | client outage | outage at the heal | longest two-holder moment "
        "| VIP moved | failed trials |",
        "|---|---|---|---|---|---|---|",
    ]
    for fault, title in FAULTS.items():
        for mode in ("heartbeat", "etcd"):
            r = results.get((mode, fault))
            if r is None:
                continue
            n = len(r.outage)
            lines.append(f"| {title} | {'heartbeats only' if mode == 'heartbeat' else 'etcd'} "
                         f"| {_cell(r.outage)} | {_cell(r.heal)} | {_cell(r.dual)} "
                         f"| {r.moved}/{n} | {len(r.failures)} |")
    lines += ["", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp/nonstop-bench-etcd"))
    args = ap.parse_args(argv)
    if args.trials < 1:
        ap.error("--trials must be at least 1")
    cleanup_leftovers()
    args.workdir.mkdir(parents=True, exist_ok=True)
    table = render(run(args.trials, args.workdir), args.trials)
    if args.out is None:
        print(table)
        return 0
    text = args.out.read_text()
    if BEGIN not in text or END not in text:
        print(f"{args.out} has no {BEGIN} ... {END} section", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    args.out.write_text(head + table + tail)
    log(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
