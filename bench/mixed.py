"""One real Heartbeat 3.0.6 node and one nonstop node sharing the talk's group (issue 13).

:class:`MixedCluster` runs, per node, the program its ``kinds`` entry names, with the same
files as bench/systems.py gives each system (talk's ha.d, lab VIP, kamailio as asterisk, a
stand-in for the replication program), both in lab boxes. :meth:`MixedCluster.replace` swaps
a stopped node's program: the rolling migration of README's guide is a sequence of those.
Used by tests/integration/test_interop_heartbeat_resources.py and bench/migration.py.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from bench.measure import LogWatcher
from bench.systems import (
    HA_DIRECTIVES,
    NODES,
    QUICK_HEARTBEAT_STEADY_S,
    Cluster,
    _cmdline,
    _comm,
    _talk_config,
    _write_standin,
    other,
)
from nonstop.lab import BoxProcess, Lab, LabError, LabProcess
from nonstop.lab.box import box_bin
from nonstop.lab.nsprocs import netns_pids

HEARTBEAT, NONSTOP = "heartbeat", "nonstop"
HA_LOG = "/var/log/ha-log"  # Heartbeat's log file, inside its box


class MixedCluster(Cluster):
    """Each node runs Heartbeat 3.0.6 or nonstop, as ``kinds`` says."""

    name = "Heartbeat 3.0.6 + nonstop"
    quick_steady_s = QUICK_HEARTBEAT_STEADY_S

    def __init__(self, lab: Lab, watcher: LogWatcher, kinds: Mapping[str, str], *,
                 directives: Mapping[str, str | None] | None = None) -> None:
        super().__init__(lab, watcher)
        self.kinds = dict(kinds)
        self.directives = dict(directives or {})
        self.daemons: dict[str, BoxProcess] = {}
        self.smtp: dict[str, LabProcess] = {}
        for node in NODES:
            self._configure(node)

    # -- files -------------------------------------------------------------------------------

    def _configure(self, node: str) -> None:
        base = self.lab.host_dir(node)
        if self.kinds[node] == HEARTBEAT:
            _talk_config(base / "etc-hb", node, self.lab, replication="csync2",
                         directives={**HA_DIRECTIVES, "logfile": HA_LOG, **self.directives})
            _write_standin(box_bin(base / "box"), "csync2", Path("/var/log/replication.log"))
        else:
            _talk_config(base / "etc-ns", node, self.lab, replication="nonstop sync",
                         directives={**HA_DIRECTIVES, "logfile": str(self.log_file(node)),
                                     **self.directives})
            _write_standin(box_bin(base / "box"), "nonstop", Path("/var/log/replication.log"))

    def config_dir(self, node: str) -> Path:
        sub = "etc-hb" if self.kinds[node] == HEARTBEAT else "etc-ns"
        return self.lab.host_dir(node) / sub / "ha.d"

    def log_file(self, node: str) -> Path:
        """The node's log on the host (Heartbeat's is inside its box)."""
        if self.kinds[node] == HEARTBEAT:
            return self.lab.host_path(node, HA_LOG)
        return self.lab.host_dir(node) / "nonstop-log"

    def state_dir(self, node: str) -> Path:
        return self.lab.host_dir(node) / "state"

    def log(self, node: str) -> str:
        path = self.log_file(node)
        return path.read_text(errors="replace") if path.exists() else ""

    # -- running -----------------------------------------------------------------------------

    def start(self, node: str) -> None:
        self.watcher.watch(node, self.log_file(node))
        if self.kinds[node] == HEARTBEAT:
            self.daemons[node] = self.lab.start_heartbeat(node, self.config_dir(node))
            return
        self.smtp[node] = self.lab.spawn(
            node, [sys.executable, "-m", "aiosmtpd", "-n", "-l", "127.0.0.1:25", "-c",
                   "aiosmtpd.handlers.Mailbox", str(self.lab.host_dir(node) / "mail")],
            name="smtp")
        self.daemons[node] = self.lab.start_box(
            node, [sys.executable, "-m", "nonstop", "run", "--config-dir",
                   str(self.config_dir(node)), "--state-dir", str(self.state_dir(node)),
                   "--node", node])

    def stop(self, node: str) -> None:
        """A clean stop (Heartbeat's init script, or SIGTERM to nonstop): it releases."""
        proc = self.daemons.pop(node, None)
        if proc is not None:
            with contextlib.suppress(LabError):
                proc.stop(timeout=60.0)
        smtp = self.smtp.pop(node, None)
        if smtp is not None:
            smtp.stop(timeout=5.0)

    def crash(self, node: str) -> float:
        """The box dies (every process in it, and its VIP)."""
        self.daemons.pop(node, None)
        self.smtp.pop(node, None)
        return super().crash(node)

    def replace(self, node: str, kind: str) -> None:
        """The stopped ``node`` gets the other program (the rolling migration's step)."""
        if node in self.daemons:
            raise LabError(f"stop {node} before replacing its program")
        self.kinds[node] = kind
        self._configure(node)

    def reconfigure(self, directives: Mapping[str, str | None]) -> None:
        """New ha.cf directives for both (stopped) nodes, e.g. ``auto_failback on``."""
        if self.daemons:
            raise LabError(f"stop {', '.join(self.daemons)} before changing ha.cf")
        self.directives = dict(directives)
        for node in NODES:
            self._configure(node)

    def planned(self, node: str) -> None:
        """``hb_standby`` or ``nonstop standby`` on ``node``."""
        self.command(node, "standby")

    def command(self, node: str, what: str, arg: str | None = None) -> None:
        """``standby`` or ``takeover`` (with hb_standby/hb_takeover's argument) on ``node``."""
        if self.kinds[node] == HEARTBEAT:
            argv = [f"/usr/share/heartbeat/hb_{what}", *([arg] if arg else [])]
        else:
            argv = [sys.executable, "-m", "nonstop", what, *([arg] if arg else []),
                    "--state-dir", str(self.state_dir(node))]
        done = self.lab.box_run(node, argv, timeout=20.0)
        if done.returncode != 0:
            raise LabError(f"{what} on {node}: {done.stdout.strip()} {done.stderr.strip()}")

    def daemon_pids(self, node: str) -> list[int]:
        pids = netns_pids(self.lab.netns(node))
        if self.kinds[node] == HEARTBEAT:
            return [pid for pid in pids if _comm(pid) == "heartbeat"]
        return [pid for pid in pids if _cmdline(pid)[1:4] == ["-m", "nonstop", "run"]]

    def joined_pattern(self, node: str) -> tuple[str, str]:
        return other(node), rf"Status update for node {node}: status active"

    def wait_alone_on(self, node: str, timeout: float) -> float:
        """Wait until ``node`` holds the VIP and the other node does not; when (monotonic)."""
        deadline = time.monotonic() + timeout
        while self.holders() != [node]:
            if time.monotonic() > deadline:
                raise LabError(f"VIP not on {node} alone within {timeout} s "
                               f"(on {self.holders()})\n{self.log_tails(40)}")
            time.sleep(0.05)
        return time.monotonic()
