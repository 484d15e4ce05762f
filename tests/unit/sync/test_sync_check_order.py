"""A full check walks the tree in name order and compares it with the recorded rows read in
the same order (checkorder), holding one directory at a time: it must find and record exactly
what the check that loads every row finds and records."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from nonstop.config.csync2 import Pattern
from nonstop.config.errors import Location
from nonstop.sync.checkorder import OrderedScan, walk_in_order
from nonstop.sync.patterns import Matcher, PathMap
from nonstop.sync.scan import Brief, Seen, scan, scan_changes, walk
from nonstop.sync.state import FileState
from nonstop.sync.statedb import StateDB

OLD_NS = int((time.time() - 3 * 86400) * 1e9)
ALL = [("/", True)]


def _matcher(*includes: str, excludes: tuple[str, ...] = ()) -> Matcher:
    return Matcher([Pattern(t, True, Location("c", 1)) for t in includes]
                   + [Pattern(t, False, Location("c", 2)) for t in excludes])


def _sqlite_order(names: list[str]) -> list[str]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t(name TEXT PRIMARY KEY) WITHOUT ROWID")
    db.executemany("INSERT INTO t VALUES(?)", ((n,) for n in names))
    return [r[0] for r in db.execute("SELECT name FROM t ORDER BY name")]


# Names whose order by character differs from a walk's directory by directory: "." and "-"
# sort before "/", "0" and letters after it, and "é" is two bytes in UTF-8.
PARTS = st.text(alphabet="ad.-0é ", min_size=1, max_size=3).filter(
    lambda s: s not in (".", ".."))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(PARTS, min_size=1, max_size=4), min_size=1, max_size=25))
def test_the_walk_finds_what_the_scan_finds_in_sqlites_order(paths: list[list[str]]) -> None:
    """Each generated path is a file, its leading parts directories (a name taken as both is
    left a directory)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        top = root / "data"
        top.mkdir()
        for parts in paths:
            d = top
            for part in parts[:-1]:
                d = d / part
                if d.is_file():
                    break
                d.mkdir(exist_ok=True)
            else:
                f = d / parts[-1]
                if not f.exists():
                    f.write_bytes(b"x")
        m, pm = _matcher("/data"), PathMap(str(root), {}, "n")
        got: list[str] = []
        walk_in_order(m, pm, "/", True, lambda f: got.append(f[0]))
        assert got == _sqlite_order(got)
        assert sorted(got) == sorted(f[0] for f in walk(m, pm, ALL))


def _tree(tmp: Path) -> Path:
    ast = tmp / "etc/asterisk"
    for d in ("", "d", "d/sub", "d-1", "e"):
        (ast / d).mkdir(parents=True, exist_ok=True)
    for rel in ("a.conf", "d.conf", "d/x.conf", "d/sub/y.conf", "d/sub/z.conf", "d-1/w.conf",
                "e/v.conf", "f.conf", "g.conf"):
        (ast / rel).write_text(f"{rel}\n")
        os.utime(ast / rel, ns=(OLD_NS, OLD_NS))
    return ast


def test_a_check_in_name_order_records_what_the_check_of_every_row_records(
        tmp_path: Path) -> None:
    """Edits, a chmod, a deleted file, a deleted directory with its files, a new directory,
    a grown file: the same dirty names and the same recorded states both ways, and whole rows
    loaded only for what is not as recorded."""
    ast = _tree(tmp_path)
    m, pm = _matcher("/etc/asterisk"), PathMap(str(tmp_path), {}, "n")
    dbs = [StateDB(str(tmp_path / "db" / f"{k}.db3")) for k in ("ordered", "every-row")]
    for db in dbs:
        seen = scan(m, pm, ALL, db.local_all(), time.time_ns())
        db.record_check(ALL, seen, ["p"])
        db.record_sent("p", [(n, s.state) for n, s in seen.items()])
    (ast / "a.conf").write_text("edited\n")
    (ast / "d.conf").chmod(0o600)
    (ast / "f.conf").unlink()
    for rel in ("d/sub/y.conf", "d/sub/z.conf"):
        (ast / rel).unlink()
    (ast / "d/sub").rmdir()
    (ast / "d/new").mkdir()
    (ast / "d/new/n.conf").write_text("new\n")
    with open(ast / "g.conf", "a") as fh:
        fh.write("more\n")
    loaded: list[str] = []

    def rows(names: list[str]) -> dict[str, Seen]:
        loaded.extend(names)
        return dbs[0].local_many(names)

    now = time.time_ns()
    got = OrderedScan(m, pm, ALL[0], rows, now).check(dbs[0].briefs_in_order("/", True))
    assert got is not None
    seen_o, unfound, old = got
    dirty_o = dbs[0].record_check(ALL, seen_o, ["p"], old=old, unfound=unfound)
    seen_e, same, cache = scan_changes(m, pm, ALL, lambda: dbs[1].local_briefs_in(ALL),
                                       dbs[1].local_many, now)
    dirty_e = dbs[1].record_check(ALL, seen_e, ["p"], old=cache, unchanged=same)
    gone = ["/etc/asterisk/d/sub", "/etc/asterisk/d/sub/y.conf", "/etc/asterisk/d/sub/z.conf",
            "/etc/asterisk/f.conf"]
    assert sorted(unfound) == gone
    assert dirty_o == dirty_e
    assert set(dirty_o["p"]) >= {*gone, "/etc/asterisk/a.conf", "/etc/asterisk/d.conf",
                                 "/etc/asterisk/g.conf", "/etc/asterisk/d/new/n.conf"}
    assert ({n: s.state for n, s in dbs[0].local_all().items()}
            == {n: s.state for n, s in dbs[1].local_all().items()})
    assert sorted(loaded) == sorted(n for n in seen_o if n in cache)
    assert "/etc/asterisk/e/v.conf" not in loaded  # as recorded: its row read only briefly
    for db in dbs:
        db.close()


def test_include_roots_a_walk_cannot_take_in_name_order_go_the_old_way(tmp_path: Path) -> None:
    """/a's own entry sorts before /a.d, the files below it after: no single pass in name
    order, so the caller is told to check the old way."""
    for d in ("a", "a.d"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "f").write_text("x\n")
    m, pm = _matcher("/a", "/a.d"), PathMap(str(tmp_path), {}, "n")
    db = StateDB(str(tmp_path / "db" / "n.db3"))
    assert OrderedScan(m, pm, ALL[0], db.local_many, time.time_ns()).check(
        db.briefs_in_order("/", True)) is None
    db.close()


def test_a_file_and_its_row_written_after_the_walk_listed_its_directory_are_not_a_deletion(
        tmp_path: Path) -> None:
    """A receiving session (a ``sync -x`` on the standby) can write a file and its row between
    the walk's listing of the directory and the merge reaching that row. Taken for a deletion,
    it would be pushed back to the node that sent it."""
    ast = _tree(tmp_path)
    m, pm = _matcher("/etc/asterisk"), PathMap(str(tmp_path), {}, "n")
    db = StateDB(str(tmp_path / "db" / "n.db3"))
    seen = scan(m, pm, ALL, db.local_all(), time.time_ns())
    db.record_check(ALL, seen, ["p"])
    late = ast / "d/sub/yy.conf"  # between y.conf and z.conf
    rows = {r[0]: r for r in db.briefs_in_order("/", True)}
    rows["/etc/asterisk/d/sub/yy.conf"] = ("/etc/asterisk/d/sub/yy.conf",
                                           *rows["/etc/asterisk/d/sub/y.conf"][1:])

    def arriving() -> Iterator[tuple[str, Brief, FileState | None]]:
        for name in sorted(rows):
            if name == "/etc/asterisk/d/sub/yy.conf":
                late.write_text("received\n")  # d/sub was listed when y.conf was found
            yield rows[name]

    got = OrderedScan(m, pm, ALL[0], db.local_many, time.time_ns()).check(arriving())
    assert got is not None
    seen_o, unfound, _old = got
    assert unfound == []
    assert "/etc/asterisk/d/sub/yy.conf" in seen_o
    db.close()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(PARTS, min_size=1, max_size=3), min_size=1, max_size=20),
       st.lists(st.tuples(st.lists(PARTS, min_size=0, max_size=2), st.booleans()),
                min_size=1, max_size=3))
def test_a_scope_read_as_a_range_of_names_is_what_in_scope_says(
        names: list[list[str]], scopes: list[tuple[list[str], bool]]) -> None:
    """The peer's recorded states under some scopes (a forced push) are read as ranges of the
    primary key; they must be exactly the rows patterns.in_scope puts under those scopes
    ("/d" holds "/d/x" but not "/d.x" nor "/d0"), and the dirty count every row."""
    import tempfile

    from nonstop.sync.patterns import in_scope
    from nonstop.sync.state import FileState

    rows = sorted({"/" + "/".join(n) for n in names})
    sc = [("/" + "/".join(p), rec) for p, rec in scopes]
    state = FileState("reg", 0o644, 0, 0, 1, 0, "d", "", 0)
    with tempfile.TemporaryDirectory() as tmp:
        db = StateDB(str(Path(tmp) / "n.db3"))
        db.record_sent("p", [(n, state) for n in rows])
        db.mark_dirty("p", rows)
        assert set(db.synced_in("p", sc)) == {
            n for n in rows if any(in_scope(n, p, r) for p, r in sc)}
        assert db.dirty_count() == len(db.dirty()) == len(rows)
        db.close()
