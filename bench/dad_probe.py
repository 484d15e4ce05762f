"""What ARP duplicate address detection adds to a takeover: ``python3 -m bench.dad_probe``.

Run as root, holding the bench lock (``flock /tmp/nonstop-bench.lock python3 -m bench.dad_probe``).
In a two-node lab, node n1 probes (a) the free virtual IP, which is what a crash takeover pays
before adding it, and (b) n2's address, a conflict, which ends the probe at the first answer.
Each case runs ``--trials`` times in one process (no interpreter start-up in the figures).

``--failover N``: also N box crashes of the active node of the talk's cluster (the failover
suite's trial: SIP client outage, and when the new node starts acquiring and first answers),
with the default ``nonstop_address_probe`` (100 ms) and with ``nonstop_address_probe 0``, one
lab each, alternating nothing: the two runs follow each other under the same lock.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import ClassVar

from bench.framework import median
from bench.suite_failover import _trial
from bench.systems import HA_DIRECTIVES, NonstopCluster, running_cluster
from nonstop.lab import VIP, Lab

_PROBE_LOOP = """
import asyncio, ipaddress, json, sys, time
from nonstop.resources import arp, netlink
from nonstop.resources.dad import probe_address
trials = int(sys.argv[1])
mac = arp.parse_mac(netlink.link_mac("eth0"))
out = {}
async def main():
    for name, ip in (("free", sys.argv[2]), ("conflict", sys.argv[3])):
        times, conflicts = [], 0
        for _ in range(trials):
            t0 = time.monotonic()
            r = await probe_address("eth0", ipaddress.IPv4Address(ip), mac=mac)
            times.append(time.monotonic() - t0)
            conflicts += r.conflict
        out[name] = {"times": times, "conflicts": conflicts}
asyncio.run(main())
print(json.dumps(out))
"""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class _ProbeOff(NonstopCluster):
    name = "nonstop, nonstop_address_probe 0"
    ha_directives: ClassVar[Mapping[str, str | None]] = dict(HA_DIRECTIVES,
                                                              nonstop_address_probe="0")


def _failover(trials: int, workdir: str) -> None:
    from pathlib import Path

    rows = []
    for label, system in (("probe 100 ms (default)", NonstopCluster),
                          ("probe off", _ProbeOff)):
        outages, acquiring, answered = [], [], []
        with running_cluster("nonstop", Path(workdir) / label.split()[1], system=system) as c:
            for i in range(trials):
                t = _trial(c, "crash")
                outages.append(t.outage)
                answered.append(t.milestones["first answer from the new node"])
                acquiring.append(t.milestones.get("new node starts acquiring", float("nan")))
                print(f"  {label} crash {i + 1}/{trials}: outage {t.outage:.3f} s", flush=True)
        rows.append((label, outages, acquiring, answered))
    print(f"Crash of the active node, {trials} trials each (s, median / max):")
    print("  config                  client outage     starts acquiring   first answer")
    for label, outages, acquiring, answered in rows:
        print(f"  {label:22s}  {median(outages):6.3f} / {max(outages):6.3f}  "
              f"{median(acquiring):6.3f} / {max(acquiring):6.3f}  "
              f"{median(answered):6.3f} / {max(answered):6.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--failover", type=int, default=0, metavar="N",
                        help="also N crash failovers with the probe on and off")
    parser.add_argument("--workdir", default="/var/tmp/nonstop-bench-dad")
    args = parser.parse_args()
    if args.trials < 1 or args.failover < 0:
        parser.error("--trials must be >= 1 and --failover >= 0")
    with Lab(("n1", "n2")) as lab:
        done = lab.run("n1", [sys.executable, "-c", _PROBE_LOOP, str(args.trials), VIP,
                              lab.ip("n2")], timeout=60 + args.trials, check=True)
    found = json.loads(done.stdout)
    print(f"ARP probe cost, {args.trials} trials each (ms): median / p95 / max, conflicts seen")
    for name in ("free", "conflict"):
        times = [t * 1000 for t in found[name]["times"]]
        print(f"  {name:9s} {median(times):7.1f} / {_pct(times, 0.95):7.1f} / {max(times):7.1f}"
              f"   {found[name]['conflicts']}/{args.trials}")
    if args.failover:
        _failover(args.failover, args.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
