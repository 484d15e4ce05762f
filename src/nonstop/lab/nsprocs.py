"""The processes of a lab's namespaces: the init of a box, every pid of a namespace.

Plain functions of namespace names, used by the lab, the demo and the benchmarks alike.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from nonstop.lab.commands import run_checked
from nonstop.lab.errors import LabError
from nonstop.lab.wait import wait_for


def box_init(unshare: subprocess.Popen[bytes], what: str) -> int:
    """The host pid of the box init: the single child of ``unshare --fork``."""
    pid = unshare.pid

    def child() -> int | None:
        if unshare.poll() is not None:
            raise LabError(f"{what}: ended at once with {unshare.returncode}")
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        return int(text[0]) if text else None

    return wait_for(child, 10.0, what=f"the init of the {what}")


def netns_pids(name: str) -> list[int]:
    """Host pids of every process whose network namespace is ``name``."""
    out = run_checked(["ip", "netns", "pids", name])
    return [int(word) for word in out.split() if word.isdigit()]


def kill_netns_processes(name: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in namespace ``name`` (by pid) and wait until none is left."""
    def gone() -> bool:
        pids = netns_pids(name)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return not pids

    wait_for(gone, timeout, what=f"processes in {name} to die", interval=0.05)
