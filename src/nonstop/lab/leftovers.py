"""Remove what crashed lab runs left behind: only names of our pattern whose creator is dead."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from nonstop.errors import InvalidValue
from nonstop.lab.commands import run_checked
from nonstop.lab.lab import DEFAULT_WORK_ROOT
from nonstop.lab.names import PREFIX_PATTERN
from nonstop.lab.nsprocs import kill_netns_processes
from nonstop.lab.process import pid_running


def _abandoned(name: str, pattern: re.Pattern[str]) -> bool:
    match = pattern.match(name)
    if match is None:
        return False
    # A live pid means another run may be using the lab right now (or the pid was reused):
    # either way it is not certainly ours to remove.
    return not pid_running(int(match.group("pid")))


def cleanup_leftovers(pattern: re.Pattern[str] = PREFIX_PATTERN,
                      work_root: Path = DEFAULT_WORK_ROOT) -> list[str]:
    """Delete namespaces and work directories of ``pattern`` whose creating process is gone.

    ``pattern`` must have a ``pid`` group. Processes still inside such a namespace are killed
    by pid first. Returns the names removed.
    """
    if "pid" not in pattern.groupindex:
        raise InvalidValue("the leftover pattern needs a (?P<pid>...) group")
    removed: list[str] = []
    for line in run_checked(["ip", "netns", "list"]).splitlines():
        words = line.split()
        if not words or not _abandoned(words[0], pattern):
            continue
        kill_netns_processes(words[0])
        run_checked(["ip", "netns", "del", words[0]])
        removed.append(words[0])
    if work_root.is_dir():
        for entry in sorted(work_root.iterdir()):
            if entry.is_dir() and _abandoned(entry.name + "-", pattern):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(str(entry))
    return removed
