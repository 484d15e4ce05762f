"""Processes the lab starts: stopped by PID (and their process group), never by name."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from nonstop.lab.errors import LabError
from nonstop.lab.wait import wait_for, wait_for_async


def pid_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(") ", 1)[-1][:1] != "Z"


class LabProcess:
    """A process running inside a lab host, with its output in a log file.

    ``pid`` is the host pid of the process the lab started; for a plain node process that is the
    program itself (``ip netns exec`` and ``unshare`` exec into it). It leads its own process group,
    so helpers it forks are stopped with it.
    """

    def __init__(self, popen: subprocess.Popen[bytes], *, host: str, argv: Sequence[str],
                 log_path: Path) -> None:
        self._popen = popen
        self.host = host
        self.argv: tuple[str, ...] = tuple(argv)
        self.log_path = log_path

    def __repr__(self) -> str:
        command = " ".join(self.argv)
        return f"<LabProcess {self.host} pid={self.pid} {command!r} rc={self.returncode}>"

    @property
    def pid(self) -> int:
        """Host pid of the started process (leader of its process group)."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """Exit status (negative: killed by that signal), or None while it runs."""
        return self._popen.poll()

    @property
    def running(self) -> bool:
        """True until the process has exited."""
        return self.returncode is None

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit on its own; LabError if it still runs at the deadline."""
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{self!r} still running after {timeout} s") from exc

    async def wait_async(self, timeout: float) -> int:
        """Like :meth:`wait`, without blocking the event loop."""
        await wait_for_async(lambda: self.returncode is not None, timeout, what=f"{self!r} to exit")
        rc = self.returncode
        assert rc is not None
        return rc

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process that should handle it (no-op once it has exited)."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._signal_target(), signum)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; also kills what is left of its group."""
        if self.running:
            self.signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_all()
        self._kill_group()
        return self._popen.wait(timeout)

    def kill(self) -> int:
        """SIGKILL the process and its group at once: the lab's way to crash a program."""
        self._kill_all()
        return self._popen.wait(10.0)

    def read_log(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until the log matches the regular expression ``pattern``; return the match."""
        compiled = re.compile(pattern, re.MULTILINE)
        return wait_for(lambda: compiled.search(self.read_log()), timeout,
                        what=f"/{pattern}/ in {self.log_path}", interval=0.1)

    async def wait_for_log_async(self, pattern: str, timeout: float) -> re.Match[str]:
        """Like :meth:`wait_for_log`, without blocking the event loop."""
        compiled = re.compile(pattern, re.MULTILINE)
        return await wait_for_async(lambda: compiled.search(self.read_log()), timeout,
                                    what=f"/{pattern}/ in {self.log_path}", interval=0.1)

    def _signal_target(self) -> int:
        return self.pid

    def _kill_all(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self._kill_group()

    def _kill_group(self) -> None:
        # The group id is our pid: start_new_session made the process a group leader. Members
        # outlive their leader, so this also finds helpers left behind after a clean exit.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


class BoxProcess(LabProcess):
    """A program running as the child of a box's init, in the box's own PID namespace.

    ``pid`` is ``unshare``, which waits for the box and ignores SIGTERM; signals go to
    ``init_pid``, the host pid of the box init, which hands them to the program.
    """

    def __init__(self, popen: subprocess.Popen[bytes], *, host: str, argv: Sequence[str],
                 log_path: Path, init_pid: int) -> None:
        super().__init__(popen, host=host, argv=argv, log_path=log_path)
        self.init_pid = init_pid

    def _signal_target(self) -> int:
        return self.init_pid

    def stop(self, timeout: float = 10.0) -> int:
        """Like :meth:`LabProcess.stop`; returns once nothing of the box runs any more."""
        rc = super().stop(timeout)
        self._wait_box_gone()
        return rc

    def kill(self) -> int:
        """Crash the whole box: every process in it dies; returns once they all have."""
        rc = super().kill()
        self._wait_box_gone()
        return rc

    def _wait_box_gone(self) -> None:
        # The kernel kills a PID namespace's processes asynchronously; its init only becomes a
        # zombie (or disappears) after all of them have exited.
        wait_for(lambda: not pid_running(self.init_pid), 10.0,
                 what=f"the box of {self.host} to end", interval=0.02)

    def _kill_all(self) -> None:
        # Killing the box init ends its PID namespace: the kernel kills everything inside.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.init_pid, signal.SIGKILL)
        super()._kill_all()
