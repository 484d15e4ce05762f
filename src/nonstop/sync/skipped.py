"""What a scan leaves out of replication, said once per path, and listed for the status.

A name that is not UTF-8 can be neither stored nor sent as text: it is skipped with a
directory's subtree and the rest replicates (csync2 keeps such names; a rename brings it in).
A path the kernel refuses to look at (a name longer than it takes, a loop of symbolic links
above it, an I/O error) is skipped the same way, where it once ended the whole scan with a
traceback and nothing replicated. The command line refuses such a name given as an argument
(command.scopes_for); the replicator makes no hint of one.
"""

from __future__ import annotations

import time

from nonstop.sync.patterns import shown

# Paths not_replicated has seen, with when it last saw each (time.monotonic()); each is logged
# the first time only. Bounded: a tree full of them is not kept whole.
_REPORTED: dict[str, float] = {}
_REPORTED_MAX = 1000


def not_replicated(path: str, why: str, rename: bool = True) -> None:
    """Say once per process that ``path``, which a group includes, is left out, and why (with
    ``rename``: that renaming it brings it in)."""
    new = path not in _REPORTED
    if new and len(_REPORTED) >= _REPORTED_MAX:
        _REPORTED.clear()
    _REPORTED[path] = time.monotonic()
    if not new:
        return
    import logging  # only here: the start of a quick `nonstop sync` does not need it

    logging.getLogger("nonstop.sync").warning("not replicated: %s: %s%s", shown(path), why,
                                              " (rename it to replicate it)" if rename else "")


def not_replicated_since(since: float) -> list[str]:
    """The paths skipped by a scan that ran at ``since`` (time.monotonic()) or later, as a log
    line shows them, in order."""
    return sorted(shown(p) for p, seen in _REPORTED.items() if seen >= since)
