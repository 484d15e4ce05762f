"""csync2 ``action`` blocks: which commands changed files trigger (pure), and running them.

Each (command, logfile) runs once per batch of received changes, through ``/bin/sh -c`` with
``%%`` replaced by the changed files that matched, output appended to the logfile.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Iterable

from nonstop.config.csync2 import Action
from nonstop.records import record
from nonstop.sync.patterns import path_pattern_matches


@record
class Due:
    """A command to run once, for these files."""

    command: str
    logfile: str
    files: tuple[str, ...]


def due(actions: Iterable[Action], changed: Iterable[str], *, receiving: bool) -> list[Due]:
    """The commands to run for ``changed`` names, on the receiving or on the sending node."""
    names = sorted(set(changed))
    out: dict[tuple[str, str], list[str]] = {}
    for act in actions:
        if receiving and act.do_local_only:
            continue
        if not receiving and not (act.do_local or act.do_local_only):
            continue
        hits = [
            n for n in names
            if not act.patterns or any(path_pattern_matches(p, n) for p in act.patterns)
        ]
        if not hits:
            continue
        for cmd in act.execs:
            out.setdefault((cmd, act.logfile), []).extend(hits)
    return [Due(cmd, log, tuple(dict.fromkeys(files))) for (cmd, log), files in out.items()]


def expand(command: str, files: Iterable[str]) -> str:
    """``%%`` becomes the space-separated, shell-quoted list of files."""
    return command.replace("%%", " ".join(shlex.quote(f) for f in files))


async def run(item: Due, timeout: float = 300.0) -> int:
    """Run one due action; returns its exit status (-1 on timeout)."""
    with open(item.logfile, "ab") as log:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", expand(item.command, item.files),
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
        )
        # Not wait_for, which in Python 3.11 drops a cancellation that arrives as the command
        # exits (gh-86296): a closed server's session went on with the next action.
        try:
            async with asyncio.timeout(timeout):
                return await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return -1
