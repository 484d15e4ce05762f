"""A full check that holds one directory at a time, not the whole tree (issue 15).

The daemon checks the whole tree every minute. Loading every recorded row first (a dict of
0.53 KB a file) and keeping the name of every file found made a no-change check of 5,000 files
in 50 mailboxes peak at 4.0 MB of Python objects (0.5 MB here); the daemon locks its memory,
and the arenas such peaks fragmented stayed resident: with 20,000 files, the active's grew
about 1 MB a minute after a restart. Here the tree is walked in name order, the order in which
sqlite keeps the ``local`` table (WITHOUT ROWID, keyed by name), and each file found is compared
with the next recorded row read in pages: what is held is the walk's open directories, one page
of rows, and the names not as recorded.

Name order, the order of Python's ``str`` and of sqlite's BINARY collation on UTF-8 alike: in
one directory, a subdirectory ``d`` sorts as ``d`` for its own entry and as ``d/`` for what is
below it, so ``d.txt`` comes between ``d`` and ``d/x``. A walk that cannot keep that order (two
include roots where one name is the other's prefix, ``/a`` and ``/a.d``) says so, and the
caller checks the old way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping

from nonstop.errors import NonstopError
from nonstop.records import record
from nonstop.sync import sqlitefile
from nonstop.sync.patterns import Matcher, PathMap, in_scope
from nonstop.sync.scan import Brief, Seen, describe_found, unchanged, walk_scope
from nonstop.sync.state import FileState
from nonstop.sync.walk import dir_listing, local_prefixes, lstat_or_none

_Found = tuple[str, str, os.stat_result]


class OutOfOrder(NonstopError):
    """The walk found a name before one it already passed (caught: the check goes the old
    way)."""


def walk_in_order(matcher: Matcher, paths: PathMap, scope: str, recursive: bool,
                  found: Callable[[_Found], None]) -> None:
    """Every included name under the scope, as scan.walk finds them, in name order (the
    starts in name order; OutOfOrder is raised by ``found``'s caller, see :class:`Merge`)."""
    walk_scope(matcher, paths, scope, recursive, found, ordered=True,
               tree=_walk_tree_in_order)


def _walk_tree_in_order(matcher: Matcher, local_top: str, name_top: str,
                        found: Callable[[_Found], None]) -> None:
    """Depth first, without recursion; each directory's entries sorted by name, a
    subdirectory's own entry at ``d`` and its contents at ``d/``."""
    stack = [(_sorted_dir(matcher, local_top, name_top), *local_prefixes(local_top, name_top))]
    while stack:
        entries, lpre, cut = stack[-1]
        key = next(entries, None)
        if key is None:
            stack.pop()
            continue
        below = key.endswith("/")  # "d/": what is below directory d
        name = key[:-1] if below else key
        path = lpre + name[cut:]
        if below:
            stack.append((_sorted_dir(matcher, path, name), *local_prefixes(path, name)))
        elif (st := lstat_or_none(path)) is not None:
            found((name, path, st))


def _sorted_dir(matcher: Matcher, local_dir: str, name_dir: str) -> Iterator[str]:
    """The sort keys of one directory's entries, in name order: a file's name, and a
    directory's name for its own entry and with "/" for what is below it (no name ends
    with "/")."""
    keys: list[str] = []
    for name, include, descend in dir_listing(matcher, local_dir, name_dir):
        if include:
            keys.append(name)
        if descend:
            keys.append(name + "/")
    keys.sort()
    return iter(keys)


class Merge:
    """Compares the names a walk finds, in order, with the recorded rows, in the same order.

    ``rows`` yields (name, Brief, FileState or None) in name order. After :meth:`finish`:
    ``changed`` holds what was found but is new or not as recorded (``recorded``: those of
    them with a row), ``unfound`` the recorded names the walk did not find, ``same`` the
    count of names found as recorded, and ``states`` (if given) the recorded state of each
    of the latter."""

    def __init__(self, rows: Iterator[tuple[str, Brief, FileState | None]], now_ns: int,
                 states: dict[str, FileState] | None = None) -> None:
        self._rows = rows
        self.states = states  # given: the recorded state of each name found as recorded
        self._row = next(rows, None)
        self._last = ""
        self.now_ns = now_ns
        self.changed: list[_Found] = []
        self.unfound: list[str] = []
        self.recorded: list[str] = []  # the names of ``changed`` that have a row
        self.same = 0

    def found(self, f: _Found) -> None:
        name = f[0]
        if name <= self._last:
            raise OutOfOrder(name)
        self._last = name
        row = self._row
        while row is not None and row[0] < name:
            self.unfound.append(row[0])
            row = next(self._rows, None)
        if row is not None and row[0] == name:
            self._row = next(self._rows, None)
            if sqlitefile.is_journal_entry(*f):  # left out as if absent, as walk() does
                self.unfound.append(name)
            elif unchanged(row[1], f[2], self.now_ns):
                self.same += 1
                if self.states is not None and row[2] is not None:
                    self.states[name] = row[2]
            else:
                self.changed.append(f)
                self.recorded.append(name)
            return
        self._row = row
        if not sqlitefile.is_journal_entry(*f):
            self.changed.append(f)

    def finish(self) -> None:
        """The rows after the last name found are not found either."""
        while self._row is not None:
            self.unfound.append(self._row[0])
            self._row = next(self._rows, None)


@record
class OrderedScan:
    """One scope of one group walked in name order beside its recorded rows (``rows`` of
    StateDB.briefs_in_order); ``load`` reads whole rows by name."""

    matcher: Matcher
    paths: PathMap
    scope: tuple[str, bool]
    load: Callable[[list[str]], Mapping[str, Seen]]
    now_ns: int

    def check(self, rows: Iterator[tuple[str, Brief, FileState | None]],
              ) -> tuple[dict[str, Seen], list[str], Mapping[str, Seen]] | None:
        """A check's scan: the names new or not as recorded (described), the recorded names
        not found, and the whole recorded rows of the former. None when the walk cannot keep
        name order.

        A recorded name not found is looked at once more before it counts as gone: a file and
        its row written by a receiving session after the walk listed its directory (a
        ``sync -x`` on the standby) would otherwise be taken for a deletion to push back to
        its sender."""
        merge = Merge(rows, self.now_ns)
        if not self._merged(merge):
            return None
        unfound: list[str] = []
        for name in merge.unfound:
            again = _found_again(self.matcher, self.paths, name)
            if again is None:
                unfound.append(name)
            else:
                merge.changed.append(again)
                merge.recorded.append(name)
        old = self.load(merge.recorded) if merge.recorded else {}
        return describe_found(merge.changed, old.get, self.now_ns), unfound, old

    def states(self, rows: Iterator[tuple[str, Brief, FileState | None]],
               ) -> dict[str, FileState] | None:
        """What the disk holds in the scope (a listing for a peer, ``-T``), nothing recorded:
        a file found as recorded has its row's state (``rows`` must carry them), the others
        are described. None when the walk cannot keep name order."""
        merge = Merge(rows, self.now_ns, {})
        if not self._merged(merge):
            return None
        out = merge.states
        assert out is not None
        old = self.load(merge.recorded) if merge.recorded else {}
        for name, seen in describe_found(merge.changed, old.get, self.now_ns).items():
            out[name] = seen.state
        return out

    def _merged(self, merge: Merge) -> bool:
        """Walk the scope into ``merge`` to its end; False if the walk cannot keep name
        order."""
        try:
            walk_in_order(self.matcher, self.paths, self.scope[0], self.scope[1], merge.found)
        except OutOfOrder:
            return False
        merge.finish()
        return True


def _found_again(matcher: Matcher, paths: PathMap, name: str) -> _Found | None:
    """``name`` as the walk would find it now (included, below an include root through
    directories the walk enters), or None."""
    if not matcher.included(name):
        return None
    root = next((r for r in matcher.roots()
                 if name == r or r == "/" or name.startswith(r + "/")), None)
    if root is None:
        return None
    d = name
    while d != root and len(d) > len(root):
        d = d.rsplit("/", 1)[0] or "/"
        if not matcher.descend(d):
            return None
    try:
        local = paths.local(name)
    except KeyError:
        return None
    st = lstat_or_none(local)
    if st is None or sqlitefile.is_journal_entry(name, local, st):
        return None
    return name, local, st


class FoundAfter:
    """The names a check in name order found (``in`` only), once record_check wrote its rows:
    those under the scopes that ``local`` holds (``has``), but for the ``absent`` it did not
    find and kept (another group's). A point query a name: a no-change check asks about
    none."""

    def __init__(self, has: Callable[[str], bool], scopes: list[tuple[str, bool]],
                 absent: set[str]) -> None:
        self.has, self.scopes, self.absent = has, scopes, absent

    def __contains__(self, name: object) -> bool:
        return (isinstance(name, str) and name not in self.absent
                and any(in_scope(name, p, r) for p, r in self.scopes) and self.has(name))
