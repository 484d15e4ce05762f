"""Where an idle nonstop node's memory and CPU go (issue 15): the bench's talk cluster with
replication on, keepalive 200 ms, both daemons idle; per node CPU % and PSS as the membership
suite measures them, the mappings by kind (smaps), VmLck and the number of modules loaded.

    sudo python3 -m bench.footprint [--window 60] [--settle 5] [--observe]
    python3 -m bench.footprint --imports

``--observe`` adds issue 14's features as the membership suite's "nonstop + notify +
metrics" runs them: ``nonstop_notify /bin/true``, ``nonstop_metrics 9464`` scraped every 15 s.

``--imports`` needs no cluster: what importing each part costs a fresh interpreter (anonymous
resident memory, modules), and tracemalloc's largest allocations of the daemon's imports.

Run it alone, holding the bench lock (``flock /tmp/nonstop-bench.lock ...``): PSS divides a
shared library's pages among every process mapping it, and CPU % is a share of one core.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.measure import LogWatcher, sample_usage
from bench.sync_latency import ReplicatingCluster
from bench.sync_systems import NODES, PrivateFilesystems, SyncLab
from bench.systems import SCRAPE, ObservedNonstopCluster, other
from nonstop.lab import Lab, wait_for
from nonstop.lab.hbconfig import set_directives

_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
_KINDS = (
    ("python heap (anonymous, brk)", ("[anon]", "[heap]")),
    ("libpython3.11", ("libpython",)),
    ("OpenSSL (libcrypto, libssl, _ssl, _hashlib)", ("libcrypto", "libssl", "_ssl", "_hashlib")),
    ("SQLite", ("libsqlite", "_sqlite")),
    ("thread and main stacks", ("[stack",)),
)


def _kind(name: str) -> str:
    for kind, prefixes in _KINDS:
        if name.startswith(prefixes):
            return kind
    return "other shared objects and files"


def mappings(pid: int) -> dict[str, tuple[int, int]]:
    """PSS and RSS in kB of a process's mappings, summed by kind."""
    out: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    kind = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if _MAPPING.match(line):
            kind = _kind(os.path.basename(fields[5]) if len(fields) > 5 else "[anon]")
        elif fields[0] == "Pss:":
            out[kind][0] += int(fields[1])
        elif fields[0] == "Rss:":
            out[kind][1] += int(fields[1])
    return {k: (v[0], v[1]) for k, v in out.items()}


def status_fields(pid: int, keys: tuple[str, ...]) -> dict[str, str]:
    wanted = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            wanted[key] = value.strip()
    return wanted


def run_ns(pids: list[int]) -> int:
    """Nanoseconds on a CPU so far, every thread of ``pids`` (the scheduler's own count,
    /proc/PID/task/TID/schedstat, exact where /proc/PID/stat samples in 10 ms ticks)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                total += int((task / "schedstat").read_text().split()[0])
    return total


def report(cluster: ReplicatingCluster, window: float) -> None:
    active = cluster.wait_settled(60.0)
    roles = {active: "active", other(active): "standby"}
    pids = {node: cluster.daemon_pids(node) for node in NODES}
    before = {node: run_ns(pids[node]) for node in NODES}
    t0 = time.monotonic()
    usage = sample_usage(pids, window)
    elapsed = time.monotonic() - t0
    ran = {node: run_ns(pids[node]) - before[node] for node in NODES}
    for node in NODES:
        u = usage[node]
        exact = 100.0 * ran[node] / 1e9 / elapsed
        print(f"{node} ({roles[node]}): {u.cpu_percent:.2f} % CPU over {window:.0f} s "
              f"(schedstat: {exact:.3f} %), PSS {u.pss_mb:.1f} MB, RSS {u.rss_mb:.1f} MB")
        for pid in pids[node]:
            print("   ", status_fields(pid, ("VmSize", "VmLck", "VmRSS", "RssAnon", "RssFile",
                                              "Threads")))
            for kind, (pss, rss) in sorted(mappings(pid).items(), key=lambda kv: -kv[1][0]):
                print(f"    {kind:44s} PSS {pss / 1024:6.1f} MB   RSS {rss / 1024:6.1f} MB")


# Fresh interpreters without site (no .pth files: a sandbox's certifi hook would be counted),
# site-packages reachable through sys.path.
_IMPORT_COST = """
import sys
sys.path.extend(p for p in {paths!r} if p not in sys.path)
def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
before, mods = anon(), len(sys.modules)
{statement}
print(anon() - before, len(sys.modules) - mods)
"""
_IMPORTS = ("import asyncio", "import ssl", "import sqlite3", "import click",
            "import email.message, email.policy, smtplib", "import pyroute2",
            "import nonstop.config.loader", "import nonstop.heartbeat.membership",
            "import nonstop.failover.engine", "import nonstop.sync.replicator",
            "import nonstop.daemon", "import nonstop.cli, nonstop.daemon",
            "import nonstop.runcommand, nonstop.daemon", "import prometheus_client")
_TRACED = """
import tracemalloc
tracemalloc.start()
import nonstop.runcommand, nonstop.daemon  # what `nonstop run` loads before it starts
current, _peak = tracemalloc.get_traced_memory()
print(f"traced after importing nonstop.runcommand and nonstop.daemon: {{current / 2**20:.1f}} MB")
for stat in tracemalloc.take_snapshot().statistics("filename")[:12]:
    print(f"    {{stat.size / 2**20:5.2f}} MB  {{stat.traceback[0].filename}}")
"""


def import_costs() -> None:
    paths = [p for p in sys.path if p]
    for statement in _IMPORTS:
        done = subprocess.run([sys.executable, "-S", "-c",
                               _IMPORT_COST.format(paths=paths, statement=statement)],
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            print(f"{statement}: not importable here")
            continue
        kb, mods = done.stdout.split()
        print(f"{statement:48s} {int(kb) / 1024:5.1f} MB anonymous, {mods:>4s} modules")
    done = subprocess.run([sys.executable, "-S", "-c",
                           f"import sys; sys.path.extend({paths!r})\n" + _TRACED.format()],
                          capture_output=True, text=True, timeout=60, check=False)
    print(done.stdout or done.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.footprint",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--window", type=float, default=60.0, help="idle window, seconds")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds after the first sync before measuring")
    parser.add_argument("--observe", action="store_true",
                        help="with nonstop_notify and nonstop_metrics (scraped every 15 s)")
    parser.add_argument("--imports", action="store_true",
                        help="only what importing each part costs (no cluster, no root)")
    args = parser.parse_args(argv)
    if args.imports:
        import_costs()
        return 0
    if os.geteuid() != 0:
        print("bench.footprint needs root (network namespaces)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="nonstop-footprint-", dir="/var/tmp") as tmp, \
            PrivateFilesystems(Path(tmp), NODES, 256) as fs, \
            Lab(NODES, workdir=Path(tmp) / "lab") as lab:
        watcher = LogWatcher()
        cluster = ReplicatingCluster(SyncLab(lab, fs), watcher)
        if args.observe:
            for node in NODES:
                ha_cf = cluster.config_dir(node) / "ha.cf"
                ha_cf.write_text(set_directives(ha_cf.read_text(), {
                    "nonstop_metrics": "9464", "nonstop_notify": "/bin/true"}))
        try:
            cluster.start_all()
            if args.observe:
                for node in NODES:
                    lab.spawn(node, [sys.executable, "-c", SCRAPE, "http://127.0.0.1:9464/metrics",
                                     str(ObservedNonstopCluster.scrape_interval_s)],
                              name="scraper")
            active = cluster.wait_settled(60.0)
            wait_for(lambda: cluster.sync_status(active).get("active") is True, 30.0,
                     what=f"replication active on {active}", interval=0.2)
            settle = time.monotonic() + args.settle
            while time.monotonic() < settle:
                time.sleep(0.2)
            report(cluster, args.window)
        finally:
            cluster.close()
            for node in NODES:
                cluster.stop(node)
            watcher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
