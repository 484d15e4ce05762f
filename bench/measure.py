"""Instruments: log lines timed as they appear, the SIP prober's record, process CPU and memory.

Every time here is ``time.monotonic()`` (CLOCK_MONOTONIC, shared by all processes on the
machine, also by the SIP prober), so a fault injected by the benchmark, a log line seen by the
watcher and an answer seen by the client are on one clock.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nonstop.lab.errors import LabError
from nonstop.lab.outage import Probe

POLL_S = 0.01


class LogWatcher:
    """Tails log files in a thread and stamps every new line with the moment it was seen.

    Heartbeat's log has whole-second timestamps; stamping lines on appearance (10 ms polling)
    gives both systems the same sub-second resolution, measured the same way.
    """

    def __init__(self) -> None:
        self._files: dict[str, Path] = {}
        self._offsets: dict[str, int] = {}
        self._partial: dict[str, bytes] = {}
        self._lines: dict[str, list[tuple[float, str]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-logwatch", daemon=True)
        self._thread.start()

    def watch(self, key: str, path: Path) -> None:
        """Follow ``path`` under ``key`` from its current end (earlier lines are not wanted)."""
        with self._lock:
            self._files[key] = path
            self._offsets[key] = path.stat().st_size if path.exists() else 0
            self._partial[key] = b""
            self._lines.setdefault(key, [])

    def close(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._thread.join(5.0)

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            self.poll()

    def poll(self) -> None:
        """Read what was appended to every file since the last poll."""
        now = time.monotonic()
        with self._lock:
            for key, path in self._files.items():
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    continue
                offset = self._offsets[key]
                if size < offset:  # truncated or replaced: start over
                    offset = 0
                if size == offset:
                    continue
                with path.open("rb") as fh:
                    fh.seek(offset)
                    data = self._partial[key] + fh.read(size - offset)
                self._offsets[key] = size
                *whole, rest = data.split(b"\n")
                self._partial[key] = rest
                self._lines[key].extend((now, line.decode(errors="replace")) for line in whole)

    def first(self, key: str, pattern: str, since: float) -> float | None:
        """When the first line matching ``pattern`` seen at or after ``since`` appeared."""
        compiled = re.compile(pattern)
        with self._lock:
            lines = self._lines.get(key, [])
            # Lines are stamped in the order they were read: skip the older ones by bisection.
            start = bisect.bisect_left(lines, since, key=lambda item: item[0])
            for at, line in lines[start:]:
                if compiled.search(line):
                    return at
        return None

    def wait(self, key: str, pattern: str, since: float, timeout: float) -> float:
        """Wait for :meth:`first`; LabError at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.first(key, pattern, since)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise LabError(f"no /{pattern}/ in log {key} within {timeout} s")
            time.sleep(0.02)

    def stamped(self, key: str) -> list[tuple[float, str]]:
        """Every line of ``key`` seen so far with the moment it appeared."""
        with self._lock:
            return list(self._lines.get(key, []))

    def lines(self, key: str, since: float = 0.0) -> list[str]:
        """Lines of ``key`` seen at or after ``since`` (for error reports)."""
        with self._lock:
            return [line for at, line in self._lines.get(key, []) if at >= since]


class ProbeLog:
    """Incremental reader of a SIP prober's JSON-lines record (the file only grows)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""
        self.probes: list[Probe] = []
        # Answered probes in the order their answers arrived (the prober writes an answered
        # probe at once), with their answer times: searched by bisection, because waits poll
        # this many times a second and must not eat the CPU they are measuring.
        self._answered: list[Probe] = []
        self._answer_times: list[float] = []

    def refresh(self) -> list[Probe]:
        """Read the lines appended since the last call; return every probe so far."""
        if not self.path.exists():
            return self.probes
        with self.path.open() as fh:
            fh.seek(self._offset)
            data = self._partial + fh.read()
            self._offset = fh.tell()
        *whole, self._partial = data.split("\n")
        for line in whole:
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                continue
            probe = Probe(
                seq=int(raw["seq"]), sent=float(raw["sent"]),
                answered=None if raw["answered"] is None else float(raw["answered"]),
                node=raw["node"], status=raw["status"])
            self.probes.append(probe)
            if probe.answered is not None:
                self._answered.append(probe)
                self._answer_times.append(probe.answered)
        return self.probes

    def first_answer(self, node: str | None, since: float) -> Probe | None:
        """The first probe sent at or after ``since`` that ``node`` (None: anybody) answered."""
        self.refresh()
        # An answer comes after its request, so no probe answered before ``since`` qualifies.
        start = bisect.bisect_left(self._answer_times, since)
        found = [p for p in self._answered[start:]
                 if p.sent >= since and (node is None or p.node == node)]
        return min(found, key=lambda p: p.seq) if found else None

    def wait_answer(self, node: str | None, since: float, timeout: float) -> Probe:
        """Wait until :meth:`first_answer` finds one; LabError at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.first_answer(node, since)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                who = node or "anybody"
                raise LabError(f"no SIP answer from {who} within {timeout} s")
            time.sleep(0.05)


def longest_silence(probes: Iterable[Probe], start: float, end: float) -> float:
    """The client-visible outage around a fault at ``start``, ending by ``end``.

    From the last answer the client received at or before ``start`` to the next answer, for the
    longest such gap between consecutive answers up to ``end`` (the first answer from the
    node that took over): the downtime a phone saw, whatever the cause of each gap.
    """
    answers = sorted(p.answered for p in probes if p.answered is not None)
    before = [a for a in answers if a <= start]
    if not before:
        raise LabError("no SIP answer before the fault")
    span = [before[-1], *[a for a in answers if start < a <= end]]
    if len(span) < 2:
        raise LabError("no SIP answer after the fault")
    return max(b - a for a, b in itertools.pairwise(span))


@dataclass(frozen=True)
class Usage:
    """CPU and memory of a set of processes over a window."""

    cpu_percent: float
    rss_mb: float
    pss_mb: float
    processes: int


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def sample_usage(groups: Mapping[str, Sequence[int]], window: float) -> dict[str, Usage]:
    """CPU % (of one core) used by each group of pids during the same ``window`` seconds;
    RSS and PSS (summed over the group) at the end.

    The window is a measurement, not a wait for a state: its length is part of the result.
    """
    if not groups or not all(groups.values()):
        raise LabError(f"no processes to measure in {dict(groups)}")
    hz = os.sysconf("SC_CLK_TCK")
    start = {key: sum(_cpu_ticks(pid) for pid in pids) for key, pids in groups.items()}
    t0 = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - t0
    result: dict[str, Usage] = {}
    try:
        for key, pids in groups.items():
            ticks = sum(_cpu_ticks(pid) for pid in pids) - start[key]
            rss = sum(_status_kb(pid, "VmRSS") for pid in pids)
            pss = sum(_pss_kb(pid) for pid in pids)
            result[key] = Usage(cpu_percent=100.0 * ticks / hz / elapsed, rss_mb=rss / 1024.0,
                                pss_mb=pss / 1024.0, processes=len(pids))
    except FileNotFoundError as exc:
        raise LabError(f"a measured process exited during the window: {exc}") from exc
    return result
