"""One daemon per state directory (adapter: files).

Everything a node keeps lives in its state directory: its generation, its UUID, the record of
the groups it held, its history and its control socket. Two daemons on one directory would
each take a new generation (the peers then drop the first one's packets as replays), replace
each other's socket and files, and the second's exit would release the first's groups. Heartbeat
refuses a second start through its pid file; nonstop holds an ``flock`` on
``<state-dir>/nonstop.pid`` for the daemon's whole life. The kernel lets the lock go when the
process ends however it ends, so a daemon that was killed leaves no stale lock behind, and the
file's number is only for people (it is emptied at a clean exit).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

from nonstop.apiclient import PID_FILE as PID_FILE
from nonstop.apiclient import SOCKET_NAME
from nonstop.errors import MachineError

MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes, the last a NUL
STOP_IT = "stop it first, or give this node its own --state-dir"


class StateLock:
    """The exclusive lock of one state directory, and the pid file it lives in."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / PID_FILE
        self.socket = state_dir / SOCKET_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write our pid, or raise :class:`MachineError` naming the daemon
        that holds it (or a directory whose control socket's path would be too long)."""
        socket_path = os.fsencode(self.socket)
        if len(socket_path) > MAX_SOCKET_PATH:  # found before the node says it is up, not after
            raise MachineError(
                f"the state directory {self.path.parent} is too long a path for its control "
                f"socket ({len(socket_path)} bytes, at most {MAX_SOCKET_PATH}): choose a "
                f"shorter --state-dir")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise MachineError(
                f"a nonstop daemon ({who}) is already running with the state directory "
                f"{self.path.parent} (it holds {self.path}): {STOP_IT}") from None
        except OSError:
            os.close(fd)
            raise
        if _answers(self.socket):  # a daemon of a release before the lock
            os.close(fd)
            raise MachineError(
                f"a nonstop daemon is already running with the state directory "
                f"{self.path.parent} (it answers on {SOCKET_NAME}): {STOP_IT}")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, only the number is missing
            pass
        self._fd = fd

    def release(self) -> None:
        """Empty the pid file and let the lock go (the file stays: removing it could race with
        a daemon starting now, which would lock a file that is no longer there)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None


def _answers(path: Path) -> bool:
    """Whether a process listens on the control socket ``path`` (a connection is accepted)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(os.fspath(path))
        except OSError:  # none there, or a file left by a daemon that died (refused)
            return False
    return True


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
