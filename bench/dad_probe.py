"""What ARP duplicate address detection adds to a takeover: ``python3 -m bench.dad_probe``.

Run as root, holding the bench lock (``flock /tmp/nonstop-bench.lock python3 -m bench.dad_probe``).
In a two-node lab, node n1 probes (a) the free virtual IP, which is what a crash takeover pays
before adding it, and (b) n2's address, a conflict, which ends the probe at the first answer.
Each case runs ``--trials`` times in one process (no interpreter start-up in the figures).
"""

from __future__ import annotations

import argparse
import json
import sys

from bench.framework import median
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args()
    if args.trials < 1:
        parser.error("--trials must be >= 1")
    with Lab(("n1", "n2")) as lab:
        done = lab.run("n1", [sys.executable, "-c", _PROBE_LOOP, str(args.trials), VIP,
                              lab.ip("n2")], timeout=60 + args.trials, check=True)
    found = json.loads(done.stdout)
    print(f"ARP probe cost, {args.trials} trials each (ms): median / p95 / max, conflicts seen")
    for name in ("free", "conflict"):
        times = [t * 1000 for t in found[name]["times"]]
        print(f"  {name:9s} {median(times):7.1f} / {_pct(times, 0.95):7.1f} / {max(times):7.1f}"
              f"   {found[name]['conflicts']}/{args.trials}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
