"""Write-to-replica latency of the running daemon: the talk's cluster of two ``nonstop run``
daemons with ``nonstop_sync`` in ha.cf; a file written under the active node's sync root is
timed until the standby holds the same bytes.

The cluster is bench.systems' nonstop cluster (the talk's ha.d, kamailio as asterisk, the SIP
prober), plus replication: ha.cf gets ``nonstop_sync <csync2.cfg>`` and each daemon a
``--sync-root`` in the node's work directory. Nothing but the daemons replicates: the master
script's ``nonstop sync`` is the bench stand-in that only records its arguments.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from bench.measure import LogWatcher
from bench.sync_systems import INCLUDES, NODES, SRV, SyncLab
from bench.systems import NonstopCluster, other
from nonstop.lab import LabError, wait_for
from nonstop.lab.hbconfig import set_directives

POLL_S = 0.002
KINDS = {
    "config": ("2 KB config file", f"{SRV}/etc/asterisk/live", ".conf", 2048),
    "recording": ("1 MB recording", f"{SRV}/var/spool/asterisk/monitor/live", ".wav", 1 << 20),
}


@dataclass
class Latencies:
    """Seconds from the start of a write on the active node until the standby has the bytes."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


class ReplicatingCluster(NonstopCluster):
    """The bench's nonstop cluster with continuous replication switched on."""

    name = "nonstop (daemon)"

    def __init__(self, s: SyncLab, watcher: LogWatcher) -> None:
        super().__init__(s.lab, watcher)
        self.s = s
        for node in NODES:
            ha_cf = self.config_dir(node) / "ha.cf"
            ha_cf.write_text(set_directives(ha_cf.read_text(), {
                "nonstop_sync": str(s.cfg_dir[node] / "csync2.cfg")}))
            for inc in INCLUDES:
                (self.sync_root(node) / SRV.lstrip("/") / inc).mkdir(parents=True, exist_ok=True)

    def sync_root(self, node: str) -> Path:
        # On the work file system: a box has its own /proc, so the bench's ext4 (reached
        # through /proc/<holder>/root) is out of its sight; a few files do not age a disk.
        return self.lab.host_dir(node) / "live"

    def extra_run_args(self, node: str) -> list[str]:
        return ["--sync-root", str(self.sync_root(node))]

    def sync_status(self, node: str) -> dict[str, object]:
        """The ``sync`` part of ``nonstop status --json`` (empty when unavailable)."""
        done = subprocess.run([sys.executable, "-m", "nonstop", "status", "--json",
                               "--state-dir", str(self.state_dir(node))],
                              capture_output=True, text=True, timeout=15, check=False)
        if done.returncode != 0:
            return {}
        doc = json.loads(done.stdout)
        sync = doc.get("sync") if isinstance(doc, dict) else None
        return sync if isinstance(sync, dict) else {}


def _syncs(status: dict[str, object]) -> int:
    value = status.get("syncs")
    return value if isinstance(value, int) else 0


def _arrived(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except OSError:
        return False


def measure(s: SyncLab, samples: int, progress: Callable[[str], None]) -> Latencies:
    """Start the cluster, wait until the holder replicates, time ``samples`` writes of each
    kind; the lab's teardown stops the daemons."""
    out = Latencies()
    watcher = LogWatcher()
    cluster = ReplicatingCluster(s, watcher)
    try:
        cluster.start_all()
        active = cluster.wait_settled(60.0)
        standby = other(active)
        wait_for(lambda: cluster.sync_status(active).get("active") is True, 30.0,
                 what=f"replication active on {active}", interval=0.2)
        # The takeover's force-sync runs first; a write during it would measure that instead.
        wait_for(lambda: _syncs(cluster.sync_status(active)) >= 1, 60.0,
                 what=f"the first sync of {active}", interval=0.2)
        rng = random.Random(7)
        for kind, (title, directory, suffix, size) in KINDS.items():
            src_dir = cluster.sync_root(active) / directory.lstrip("/")
            dst_dir = cluster.sync_root(standby) / directory.lstrip("/")
            src_dir.mkdir(parents=True, exist_ok=True)
            for i in range(samples):
                data = rng.randbytes(size)
                name = f"{kind}-{i:03d}{suffix}"
                t0 = time.monotonic()
                with open(src_dir / name, "wb") as fh:
                    fh.write(data)
                target = dst_dir / name
                try:
                    wait_for(partial(_arrived, target, data), 30.0,
                             what=f"{name} on {standby}", interval=POLL_S)
                except LabError as exc:
                    out.failures.append(f"daemon latency, {title} {i + 1}: {exc}\n"
                                        + cluster.log_tails(15))
                    break
                value = time.monotonic() - t0
                out.samples.setdefault(kind, []).append(value)
                progress(f"daemon write-to-replica {title} {i + 1}/{samples}: "
                         f"{value * 1000:.0f} ms")
    except LabError as exc:
        out.failures.append(f"daemon latency: {exc}\n{cluster.log_tails(15)}")
    finally:
        cluster.close()
        for node in NODES:
            cluster.stop(node)
        watcher.close()
    return out
