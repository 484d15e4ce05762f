"""A damaged state database is set aside and replaced, not failed on for ever.

The state database is a cache of what this node saw and synced (as csync2's is: ``csync2db``);
a new one costs a full scan, whose pushes compare content with the peers. A database that
sqlite calls damaged ("database disk image is malformed", "file is not a database": a disk
error, a page overwritten) failed every run: on the active node replication stopped with
`last_error` set and `dirty 0`, and at the next start the daemon ran with replication
disabled, until an admin found and removed the file (a user trial). Now it is renamed to
``PATH.broken`` (``PATH.broken.N`` if taken; its ``-wal`` and ``-shm`` beside it) and kept for
a post-mortem, a new one is opened, and the node says so once.
"""

from __future__ import annotations

import errno
import os
import sqlite3

from nonstop.errors import MachineError
from nonstop.sync.statedb import StateDB

# sqlite's primary result codes for a damaged file
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26
_ASIDE_TRIES = 100


def is_broken(e: BaseException) -> bool:
    """Whether ``e`` is sqlite saying the database file itself is damaged (not locked, not
    full, not read-only: those pass, and a new file would not help)."""
    code = getattr(e, "sqlite_errorcode", None)
    return isinstance(e, sqlite3.DatabaseError) and code is not None and (
        code & 0xFF) in (SQLITE_CORRUPT, SQLITE_NOTADB)


def set_aside(path: str) -> str:
    """Rename the database at ``path`` (and its -wal and -shm) aside; the new name."""
    for n in range(_ASIDE_TRIES):
        aside = f"{path}.broken" + (f".{n}" if n else "")
        if os.path.lexists(aside):
            continue
        os.rename(path, aside)
        for suffix in ("-wal", "-shm", "-journal"):
            if os.path.lexists(path + suffix):
                os.rename(path + suffix, aside + suffix)
        return aside
    raise MachineError(errno.EEXIST, f"{path} is damaged, and the {_ASIDE_TRIES} names to move "
                       "it aside to are taken")


def notice(path: str, aside: str, e: BaseException) -> str:
    """What a node says once when it replaced a damaged database."""
    return (f"state database {path} is damaged ({e}): moved to {aside}, replication goes on "
            "with a new one (a full scan, whose pushes compare content with the peers)")


def open_state(path: str, timeout: float, cache_kib: int = 2000,
               ) -> tuple[StateDB, str | None]:
    """The state database at ``path`` (see StateDB), and the notice to give if a damaged one
    was replaced (None if not)."""
    try:
        return StateDB(path, timeout=timeout, cache_kib=cache_kib), None
    except sqlite3.DatabaseError as e:
        if not is_broken(e) or not os.path.lexists(path):
            raise
        said = notice(path, set_aside(path), e)
    return StateDB(path, timeout=timeout, cache_kib=cache_kib), said
