"""PID 1 of a lab box: start one program, hand it signals, reap orphans, exit when it exits.

A box is a node with its own PID namespace, so that what runs inside (the real Heartbeat, whose
ResourceManager may ``pkill -9 heartbeat``) can only ever reach processes of that box. PID 1 of a
namespace must reap orphans and gets no default signal handling, hence this small init. Programs
that daemonize (Heartbeat forks and its parent exits) are followed through their pid file: their
orphaned daemon becomes our child, so we see it exit.

Usage: ``python3 -m nonstop.lab.boxinit [--pidfile PATH] -- PROGRAM ARGS...``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from nonstop.lab.process import pid_running

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
PIDFILE_TIMEOUT = 20.0
# How long a daemon that exec'd itself may take to write its new pid (Heartbeat: ~3 s).
RESTART_TIMEOUT = 15.0


class _Init:
    def __init__(self) -> None:
        self.target: int | None = None
        self.pending: list[int] = []

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.target is None:
            self.pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.target, signum)

    def set_target(self, pid: int) -> None:
        self.target = pid
        while self.pending:
            self.on_signal(self.pending.pop(0), None)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _reap(reaped: dict[int, int], flags: int) -> bool:
    """Reap one child into ``reaped``; False when there was nothing to reap."""
    try:
        pid, status = os.waitpid(-1, flags)
    except ChildProcessError:
        return False
    if pid == 0:
        return False
    reaped[pid] = os.waitstatus_to_exitcode(status)
    return True


def _exit_code(code: int) -> int:
    return 128 - code if code < 0 else code


def run(argv: Sequence[str], pidfile: Path | None) -> int:
    """Run ``argv`` as the box's program; return the exit code for PID 1."""
    init = _Init()
    for signum in FORWARDED:
        signal.signal(signum, init.on_signal)
    child = os.posix_spawnp(argv[0], list(argv), dict(os.environ))
    init.set_target(child)
    reaped: dict[int, int] = {}
    while child not in reaped:
        if not _reap(reaped, 0):
            return 1
    if pidfile is None or reaped[child] != 0:
        return _exit_code(reaped[child])
    # The program daemonized: follow the pid it wrote.
    deadline = time.monotonic() + PIDFILE_TIMEOUT
    daemon = _read_pid(pidfile)
    while daemon is None and time.monotonic() < deadline:
        _reap(reaped, os.WNOHANG)
        time.sleep(0.05)
        daemon = _read_pid(pidfile)
    if daemon is None:
        print(f"boxinit: {pidfile} not written within {PIDFILE_TIMEOUT} s", file=sys.stderr)
        return 1
    while True:
        init.set_target(daemon)
        while daemon not in reaped:
            if not _reap(reaped, 0):
                return _exit_code(reaped.get(daemon, 0))
        if reaped[daemon] != 0:
            return _exit_code(reaped[daemon])
        successor = _successor(pidfile, daemon, reaped)
        if successor is None:
            return 0
        daemon = successor


def _others_alive() -> bool:
    """True while a process other than this init lives in the box (its own /proc)."""
    me = str(os.getpid())
    return any(name.isdigit() and name != me for name in os.listdir("/proc"))


def _successor(pidfile: Path, old: int, reaped: dict[int, int]) -> int | None:
    """The daemon that took over from ``old``, or None when the program really ended.

    Heartbeat restarts itself after a partition by exec'ing its own binary, which daemonizes
    again: the pid we follow exits with 0 while its fork lives on and writes the pid file
    seconds later. A real init keeps the machine up meanwhile, so we wait for the new pid as
    long as some process is still alive in the box.
    """
    deadline = time.monotonic() + RESTART_TIMEOUT
    while time.monotonic() < deadline:
        while _reap(reaped, os.WNOHANG):
            pass
        pid = _read_pid(pidfile)
        if pid is not None and pid != old and pid not in reaped and pid_running(pid):
            return pid
        if not _others_alive():
            return None
        time.sleep(0.05)
    return None


def main(args: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python3 -m nonstop.lab.boxinit")
    parser.add_argument("--pidfile", type=Path, default=None,
                        help="the program daemonizes and writes its pid here")
    parser.add_argument("program", nargs=argparse.REMAINDER)
    ns = parser.parse_args(args)
    program = ns.program[1:] if ns.program[:1] == ["--"] else ns.program
    if not program:
        parser.error("no program given")
    return run(program, ns.pidfile)


if __name__ == "__main__":
    sys.exit(main())
