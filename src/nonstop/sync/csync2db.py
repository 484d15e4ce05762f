"""csync2's own database where nonstop's is to be: set aside, not fought over.

``-D DIR`` puts the database at ``DIR/<host>.db3``, the name csync2 gives its own. A site that
kept ``-D /var/lib/csync2`` in its scripts when it switched (or whose ``csync2`` is now a link to
nonstop) had every run fail on csync2's tables: "table dirty has no column named filename",
exit 1, from cron, with nothing replicated until an admin moved the file. csync2's database is
a cache of what csync2 saw (``csync2 -cr /`` rebuilds it), and nonstop's first run compares
content with its peers anyway (docs/SYNC.md, *Migrating from csync2*), so it is renamed aside,
kept for a way back, and the run goes on with a new database of nonstop's, saying so once.
"""

from __future__ import annotations

import errno
import os
import sqlite3

from nonstop.errors import MachineError

# Tables only csync2's schema has (nonstop's has none of these names).
_CSYNC2_TABLES = frozenset({"file", "x509_cert", "hint", "action"})
_ASIDE_TRIES = 100


def is_csync2_database(path: str) -> bool:
    """Whether ``path`` is an sqlite3 database with csync2's tables (read only, no journal
    mode or schema change made to it)."""
    if not os.path.isfile(path):
        return False
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error:  # not a database, or locked: the state database reports it
        return False
    finally:
        db.close()
    return names >= _CSYNC2_TABLES


def set_aside(path: str) -> str | None:
    """If ``path`` is csync2's database, rename it to ``PATH.csync2`` (``PATH.csync2.N`` if that
    is taken) and return the new name; None if it is not (or there is no such file).

    An OSError (a read-only directory) propagates: the caller reports it as any failure to
    open the database."""
    if not is_csync2_database(path):
        return None
    for n in range(_ASIDE_TRIES):
        aside = f"{path}.csync2" + (f".{n}" if n else "")
        if os.path.lexists(aside):
            continue
        os.rename(path, aside)
        if os.path.lexists(path + "-journal"):  # csync2 writes with a rollback journal
            os.rename(path + "-journal", aside + "-journal")
        return aside
    raise MachineError(errno.EEXIST, f"{path} is csync2's database, and the {_ASIDE_TRIES} "
                       "names to move it aside to are taken")


def notice(path: str, aside: str) -> str:
    """What a run says once when it set csync2's database aside."""
    return (f"{path} was csync2's database: moved to {aside} (nonstop keeps its own state; its "
            "first run compares content with the peers and re-sends nothing they hold)")
