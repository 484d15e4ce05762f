"""nonstop daemons in a lab: a small helper shared by the namespace tests.

Usage (each lab host runs at most one daemon; by default a host's nonstop node name is the host
name, so build the lab with the talk's names)::

    lab = make_lab(("vpbx1-1", "vpbx1-2"))
    cluster = NonstopCluster(lab, talk_config(lab.workdir / "talk"))
    cluster.start("vpbx1-1"); cluster.start("vpbx1-2")
    cluster.wait_for(lambda: cluster.peer("vpbx1-1", "vpbx1-2")["status"] == "active", 30,
                     what="vpbx1-1 to see vpbx1-2 active")
    killed_at = cluster.kill("vpbx1-2")
    death = cluster.wait_for_log("vpbx1-1", r"node vpbx1-2: is dead", 10)

Where things are (all on the machine, under the lab's work directory, so they stay visible to
the daemon in its namespace: a path under ``/tmp`` would be hidden by the host's private /tmp):

* ``state_dir(host)`` = ``<lab host dir>/nonstop-state``: generation, uuid, control socket.
* ``log_path(host)``: the daemon's stderr (every log line, Heartbeat's format with ms).
* A ``logfile``/``debugfile`` in ha.cf names a path in the host's view: under ``/tmp`` it is
  ``lab.host_path(host, "/tmp/...")`` on the machine.

Status comes from the daemon itself: :meth:`status` runs ``nonstop status --json`` on the host's
state directory (the control socket is a file, reachable from any network namespace);
:meth:`query` asks the same socket in-process, cheap enough for tight polling. The document is
described in docs/STATUS.md.

The lab stops every daemon at teardown (SIGTERM, then SIGKILL), so tests need no cleanup of
their own.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from nonstop.api import ApiError, request
from nonstop.lab import Lab, LabProcess
from nonstop.lab import wait_for as lab_wait_for
from nonstop.lab.hbconfig import set_directives
from nonstop.talk import copy_talk

T = TypeVar("T")

TALK_VIP = "10.0.10.10"
LAB_VIP = "198.18.0.10"
# Heartbeat's log time stamp plus the milliseconds nonstop adds: 2026/11/25_02:41:07.123
_STAMP = re.compile(r"(\d{4}/\d\d/\d\d_\d\d:\d\d:\d\d)\.(\d{3})")


def talk_config(dest: Path, *, initdead: str | None = "5",
                directives: Mapping[str, str | None] | None = None,
                haresources: str | None = "", authkey: str | None = None) -> Path:
    """A configuration directory made from the talk's files; returns ``dest/"ha.d"``.

    Only what a test asks for changes: ``initdead`` (default 5 s instead of the talk's 120, so
    that a lone node does not wait two minutes; None keeps 120), further ha.cf ``directives``
    (value None removes one), ``haresources`` (default ``""``: no resource groups, so membership
    tests run no scripts; None keeps the talk's group with 10.0.10.10 moved to 198.18.0.10) and
    ``authkey`` (a different sha1 secret for index 1: a node that must be rejected). keepalive
    200ms, deadtime 2, warntime 1, bcast eth0 and use_logd yes stay as the talk wrote them.
    """
    ha_d = copy_talk(dest) / "ha.d"
    wanted: dict[str, str | None] = {}
    if initdead is not None:
        wanted["initdead"] = initdead
    wanted.update(directives or {})
    if wanted:
        ha_cf = ha_d / "ha.cf"
        ha_cf.write_text(set_directives(ha_cf.read_text(), wanted))
    res = ha_d / "haresources"
    res.write_text(haresources if haresources is not None
                   else res.read_text().replace(TALK_VIP, LAB_VIP))
    if authkey is not None:
        keys = ha_d / "authkeys"
        keys.write_text(f"auth 1\n1 sha1 {authkey}\n")
        keys.chmod(0o600)
    return ha_d


def log_time(line: str) -> float | None:
    """The wall-clock time (seconds since the epoch) of a log line of nonstop or Heartbeat, or
    None if it has no time stamp. Heartbeat's own lines have whole seconds only."""
    m = _STAMP.search(line)
    if m is None:
        return None
    whole = time.mktime(time.strptime(m.group(1), "%Y/%m/%d_%H:%M:%S"))
    return whole + int(m.group(2)) / 1000.0


@dataclass(frozen=True)
class LogLine:
    """A log line that matched, with its time stamp (wall clock, seconds)."""

    at: float
    text: str
    match: re.Match[str]


class NonstopCluster:
    """Starts, stops and asks nonstop daemons on the hosts of a :class:`~nonstop.lab.Lab`.

    ``config_dir`` is every host's configuration directory (see :func:`talk_config`); ``nodes``
    maps a lab host to the nonstop node name it runs (default: the same name). Both can be
    overridden per :meth:`start`.
    """

    def __init__(self, lab: Lab, config_dir: Path, nodes: Mapping[str, str] | None = None,
                 ) -> None:
        self.lab = lab
        self.config_dir = config_dir
        self.nodes: dict[str, str] = dict(nodes or {h: h for h in lab.nodes})
        self.procs: dict[str, LabProcess] = {}

    # -- paths ----------------------------------------------------------------------------------

    def state_dir(self, host: str) -> Path:
        """The host's ``--state-dir`` (kept across restarts of its daemon, like a disk)."""
        return self.lab.host_dir(host) / "nonstop-state"

    def log_path(self, host: str) -> Path:
        """The file that receives the daemon's stderr (all its log lines, appended on restart)."""
        return self.lab.host_dir(host) / "logs" / "nonstop.log"

    # -- processes ------------------------------------------------------------------------------

    def start(self, host: str, *, node: str | None = None, config_dir: Path | None = None,
              args: Sequence[str] = (), wait: float | None = 30.0,
              binds: Mapping[str, str | Path] | None = None,
              env: Mapping[str, str] | None = None) -> LabProcess:
        """Start ``nonstop run`` on ``host``; with ``wait``, return once its control socket
        answers (LabError if it exits or does not answer in time). ``args`` are added to the
        command line; ``binds`` (target path -> machine path) are mounted in its private
        mount namespace, as :meth:`Lab.spawn` does; ``env`` is added to its environment."""
        name = node or self.nodes.get(host, host)
        self.nodes[host] = name
        current = self.procs.get(host)
        if current is not None and current.running:
            raise RuntimeError(f"{host} already runs {current!r}")
        argv = [sys.executable, "-m", "nonstop", "run",
                "--config-dir", str(config_dir or self.config_dir),
                "--state-dir", str(self.state_dir(host)), "--node", name, *args]
        proc = self.lab.spawn(host, argv, log_path=self.log_path(host), name="nonstop",
                              binds=binds, env=env)
        self.procs[host] = proc
        if wait is not None:
            self.wait_for(lambda: self._answers(host), wait, what=f"nonstop on {host} to answer")
        return proc

    def _answers(self, host: str) -> bool:
        proc = self.procs[host]
        if not proc.running:
            raise RuntimeError(f"nonstop on {host} exited with {proc.returncode}:\n"
                               f"{self.log(host)}")
        try:
            return bool(request(self.state_dir(host), "status", timeout=2.0).get("ok"))
        except ApiError:
            return False

    def proc(self, host: str) -> LabProcess:
        """The host's most recently started daemon."""
        return self.procs[host]

    def kill(self, host: str) -> float:
        """SIGKILL the host's daemon (a crash: no leave notice); returns the wall-clock time
        just before the signal."""
        at = time.time()
        self.procs[host].kill()
        return at

    def stop(self, host: str, timeout: float = 20.0) -> tuple[float, int]:
        """SIGTERM (graceful leave) and wait for the exit; returns (wall-clock time just before
        the signal, exit status). LabError if it still runs after ``timeout``."""
        proc = self.procs[host]
        at = time.time()
        proc.signal(signal.SIGTERM)
        return at, proc.wait(timeout)

    # -- status ---------------------------------------------------------------------------------

    def status(self, host: str, timeout: float = 15.0) -> dict[str, Any]:
        """The document ``nonstop status --json --state-dir <state_dir(host)>`` prints."""
        out = self.cli(host, "status", "--json", timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"nonstop status on {host}: exit {out.returncode}: "
                               f"{out.stdout}{out.stderr}")
        doc: dict[str, Any] = json.loads(out.stdout)
        return doc

    def cli(self, host: str, *args: str, timeout: float = 15.0,
            ) -> subprocess.CompletedProcess[str]:
        """Run ``nonstop <args> --state-dir <state_dir(host)>`` on the machine, output captured."""
        argv = [sys.executable, "-m", "nonstop", *args, "--state-dir", str(self.state_dir(host))]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def query(self, host: str) -> dict[str, Any] | None:
        """The same document straight from the control socket (no process started); None if
        the daemon does not answer."""
        try:
            reply = request(self.state_dir(host), "status", timeout=2.0)
        except ApiError:
            return None
        st = reply.get("status") if reply.get("ok") else None
        return st if isinstance(st, dict) else None

    def dropped(self, host: str, reason: str) -> int:
        """How many packets ``host``'s daemon dropped for ``reason`` (``packets.dropped`` in
        the status, e.g. ``bad_auth``); 0 if it does not answer."""
        st = self.query(host) or {}
        value = st.get("packets", {}).get("dropped", {}).get(reason, 0)
        return value if isinstance(value, int) else 0

    def peer(self, host: str, node: str) -> dict[str, Any]:
        """The entry for ``node`` in the status of ``host``'s daemon ({} if not answering or
        ``node`` is not listed)."""
        st = self.query(host) or {}
        for entry in st.get("nodes", []):
            if entry.get("name") == node:
                return dict(entry)
        return {}

    def peer_status(self, host: str, node: str) -> str | None:
        """``node``'s status as ``host``'s daemon sees it (init, up, active, dead), or None."""
        value = self.peer(host, node).get("status")
        return value if isinstance(value, str) else None

    def wait_peer_status(self, host: str, node: str, wanted: str, timeout: float) -> None:
        """Wait until ``host`` sees ``node`` in status ``wanted``."""
        self.wait_for(lambda: self.peer_status(host, node) == wanted, timeout,
                      what=f"{host} to see {node} {wanted}")

    # -- logs -----------------------------------------------------------------------------------

    def log(self, host: str) -> str:
        """Everything the host's daemons logged to stderr so far."""
        path = self.log_path(host)
        return path.read_text(errors="replace") if path.exists() else ""

    def log_lines(self, host: str, pattern: str, text: str | None = None) -> list[LogLine]:
        """Time-stamped lines of the host's log (or of ``text``) that match ``pattern``."""
        compiled = re.compile(pattern)
        found: list[LogLine] = []
        for line in (self.log(host) if text is None else text).splitlines():
            m = compiled.search(line)
            at = log_time(line) if m else None
            if m is not None and at is not None:
                found.append(LogLine(at, line, m))
        return found

    def wait_for_log(self, host: str, pattern: str, timeout: float, *, after: float = 0.0,
                     ) -> LogLine:
        """Wait for the first line matching ``pattern`` stamped at or after ``after`` (wall
        clock; log stamps have ms resolution)."""
        def first() -> LogLine | None:
            for line in self.log_lines(host, pattern):
                if line.at >= after - 0.001:
                    return line
            return None

        return self.wait_for(first, timeout, what=f"/{pattern}/ in the log of {host}")

    # -- waiting --------------------------------------------------------------------------------

    @staticmethod
    def wait_for(check: Callable[[], T | None], timeout: float, *, what: str = "a condition",
                 interval: float = 0.05) -> T:
        """Poll ``check`` until it returns something truthy and return it (LabError at the
        deadline)."""
        return lab_wait_for(check, timeout, what=what, interval=interval)
