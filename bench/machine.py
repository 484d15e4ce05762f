"""What machine and which program versions a benchmark ran on, and how busy the machine was."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nonstop

PACKAGES = ("heartbeat", "keepalived", "csync2", "rsync", "kamailio")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _package_version(name: str) -> str:
    try:
        done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "not installed"


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def describe() -> list[tuple[str, str]]:
    """(item, value) rows: CPU, cores, memory, kernel, OS, versions of every program used."""
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    mem_kb = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines()
                   if line.startswith("MemTotal:")), 0)
    os_name = next((line.split("=", 1)[1].strip().strip('"')
                    for line in _read("/etc/os-release").splitlines()
                    if line.startswith("PRETTY_NAME=")), "unknown")
    rows = [
        ("CPU", cpu),
        ("cores", str(os.cpu_count())),
        ("memory", f"{mem_kb / 1024 / 1024:.1f} GiB"),
        ("kernel", platform.release()),
        ("OS", os_name),
        ("Python", sys.version.split()[0]),
        ("nonstop", f"{nonstop.__version__} (git {_git_commit()})"),
    ]
    rows.extend((name, _package_version(name)) for name in PACKAGES)
    return rows


@dataclass(frozen=True)
class CpuTimes:
    """Machine-wide CPU jiffies from /proc/stat: busy and total."""

    busy: int
    total: int


def cpu_times() -> CpuTimes:
    """Current machine-wide CPU counters."""
    fields = [int(x) for x in _read("/proc/stat").splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return CpuTimes(busy=sum(fields) - idle, total=sum(fields))


def busy_percent(start: CpuTimes, end: CpuTimes) -> float:
    """How busy all cores were between two samples, in % of the whole machine."""
    total = end.total - start.total
    return 100.0 * (end.busy - start.busy) / total if total > 0 else 0.0


def loadavg() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(_read("/proc/loadavg").split()[:3]) or "unknown"
