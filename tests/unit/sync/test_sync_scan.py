"""Scanning and the state database: what changed is found, excluded files are never read."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nonstop.config.csync2 import Pattern, load_csync2
from nonstop.config.errors import Location
from nonstop.sync import protocol
from nonstop.sync.digest import Hasher
from nonstop.sync.patterns import Matcher, PathMap
from nonstop.sync.plan import Op
from nonstop.sync.protocol import Decoder, Kind, ProtocolError
from nonstop.sync.scan import (
    RACY_NS,
    Brief,
    Seen,
    _classify,
    describe,
    scan,
    scan_changes,
    unchanged,
)
from nonstop.sync.state import FileState
from nonstop.sync.statedb import StateDB
from nonstop.talk import talk_path

TALK = load_csync2(str(talk_path("csync2.cfg"))).groups[0]
OLD = time.time() - 3 * 86400


def _matcher() -> Matcher:
    return Matcher(TALK.patterns)


def _read_since(p: Path) -> bool:
    """Whether ``p`` was read after it was given an old atime (relatime updates it then)."""
    return p.stat().st_atime > OLD + 1


def _age(p: Path) -> None:
    os.utime(p, ns=(int(OLD * 1e9), p.stat().st_mtime_ns))


def test_excluded_files_are_never_read(tmp_path: Path) -> None:
    ast = tmp_path / "etc/asterisk"
    (ast / ".git").mkdir(parents=True)
    secret = [ast / "x~", ast / ".hidden", ast / ".git/config", ast / "lock", tmp_path / "etc/pw"]
    for p in [*secret, ast / "sip.conf"]:
        p.write_text("data")
        _age(p)
    pm = PathMap(str(tmp_path), {}, "vpbx1-1")
    seen = scan(_matcher(), pm, [("/", True)], {}, time.time_ns())
    assert set(seen) == {"/etc/asterisk", "/etc/asterisk/sip.conf"}
    assert _read_since(ast / "sip.conf")  # the probe works on this filesystem
    assert not any(_read_since(p) for p in secret)


def test_unchanged_file_is_not_rehashed_but_racy_one_is(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_text("aaaa")
    now = time.time_ns()
    first = describe(str(p), None, now)
    assert first is not None
    _age(p)
    st0 = p.stat()
    # recorded long after its last change: trusted without reading
    trusted = Seen(first.state, st0.st_ino, st0.st_ctime_ns, now + 2 * RACY_NS, first.blocks,
                   now + 2 * RACY_NS)
    again = describe(str(p), trusted, now + 3 * RACY_NS)
    assert again is not None and again.state == first.state and not _read_since(p)
    # recorded within the racy window: re-hashed, so a same-size same-tick edit is seen
    st = p.stat()
    p.write_text("bbbb")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    racy = describe(str(p), first, now)
    assert racy is not None and racy.state.digest != first.state.digest
    assert racy.state.size == first.state.size and racy.state.mtime_ns == first.state.mtime_ns


def test_mtime_restored_edit_is_found_through_ctime(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_text("aaaa")
    first = describe(str(p), None, time.time_ns())
    assert first is not None
    trusted = first.__class__(first.state, first.ino, first.ctime_ns, time.time_ns() + RACY_NS * 3)
    time.sleep(0.01)  # a ctime tick; the filesystem clock is coarse
    st = p.stat()
    p.write_text("bbbb")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # touch -r
    seen = describe(str(p), trusted, time.time_ns())
    assert seen is not None and seen.state.digest != first.state.digest


def test_statedb_dirty_per_peer_and_temp_list(tmp_path: Path) -> None:
    db = StateDB(str(tmp_path / "db" / "n.db3"))
    (tmp_path / "etc/asterisk").mkdir(parents=True)
    (tmp_path / "etc/asterisk/a.conf").write_text("a")
    pm = PathMap(str(tmp_path), {}, "n")
    scopes = [("/", True)]
    seen = scan(_matcher(), pm, scopes, db.local_all(), time.time_ns())
    assert db.record_check(scopes, seen, ["p1", "p2"]) == {
        "p1": ["/etc/asterisk", "/etc/asterisk/a.conf"],
        "p2": ["/etc/asterisk", "/etc/asterisk/a.conf"],
    }
    db.record_sent("p1", [(n, s.state) for n, s in seen.items()])
    assert {r.peer for r in db.dirty()} == {"p2"}
    # a change and back again: clean for p1 again after the second check
    (tmp_path / "etc/asterisk/a.conf").unlink()
    seen2 = scan(_matcher(), pm, scopes, db.local_all(), time.time_ns())
    assert db.record_check(scopes, seen2, ["p1"])["p1"] == ["/etc/asterisk/a.conf"]
    db.add_tmp(["/x/.nonstop-tmp-1"])
    assert db.tmp_paths() == ["/x/.nonstop-tmp-1"]
    db.close()


def _brief(s: Seen) -> Brief:
    return Brief(s.kind, s.mode, s.uid, s.gid, s.size, s.mtime_ns, s.ino, s.ctime_ns,
                 s.checked_ns, s.verified_ns)


_FIELDS = ("kind", "mode", "uid", "gid", "size", "mtime_ns", "ino", "ctime_ns", "checked_ns",
           "verified_ns")


@settings(max_examples=300, deadline=None)
@given(is_dir=st.booleans(), field=st.sampled_from(_FIELDS), delta=st.sampled_from([0, 1, -1]),
       checked_back=st.sampled_from([0, 10_000_000, 60_000_000, 3_000_000_000]))
def test_a_brief_entry_says_unchanged_exactly_when_the_scan_keeps_the_whole_one(
    tmp_path_factory: pytest.TempPathFactory, is_dir: bool, field: str, delta: int,
    checked_back: int,
) -> None:
    """A check compares only a Brief of each cached row; whatever one recorded field differs
    from the file, and however racy the record, it must decide as the scan does on the whole
    row: unchanged exactly when _classify keeps the cached Seen itself."""
    d = tmp_path_factory.mktemp("b")
    p = d / "x"
    if is_dir:
        p.mkdir()
    else:
        p.write_bytes(b"abc")
    st_ = os.lstat(p)
    now = time.time_ns()
    kind = "dir" if is_dir else "reg"
    state = FileState.from_stat(st_, "" if is_dir else "d" * 40)
    assert state.kind == kind
    fields = {"ino": st_.st_ino, "ctime_ns": st_.st_ctime_ns,
              "checked_ns": st_.st_mtime_ns + RACY_NS + 1 - checked_back, "verified_ns": now}
    base = Seen(state, fields["ino"], fields["ctime_ns"], fields["checked_ns"], b"", now)
    row: list[Any] = list(base)
    i = Seen._fields.index(field)
    if field == "kind":
        row[i] = "reg" if delta and is_dir else ("dir" if delta else kind)
    else:
        row[i] = row[i] + delta
    cached = Seen.from_row(tuple(row))
    kept = _classify(str(p), st_, cached, now) is cached
    assert unchanged(_brief(cached), st_, now) == kept


def test_a_check_loads_whole_rows_only_of_what_changed_and_marks_the_same_as_a_full_scan(
    tmp_path: Path,
) -> None:
    """scan_changes + record_check(unchanged=...) (what `-c` runs) against scan + record_check
    on whole rows, on the same changes: an edit, a chmod, a deletion, a new file, a grown
    file, and files left alone."""
    ast = tmp_path / "etc/asterisk"
    ast.mkdir(parents=True)
    for i in range(6):
        (ast / f"f{i}.conf").write_text(f"content {i}\n")
        _age(ast / f"f{i}.conf")
        os.utime(ast / f"f{i}.conf", ns=(int(OLD * 1e9), int(OLD * 1e9) + i))
    pm = PathMap(str(tmp_path), {}, "n")
    scopes = [("/", True)]
    dbs = [StateDB(str(tmp_path / "db" / f"{k}.db3")) for k in ("brief", "whole")]
    for db in dbs:
        seen = scan(_matcher(), pm, scopes, db.local_all(), time.time_ns())
        db.record_check(scopes, seen, ["p"])
        db.record_sent("p", [(n, s.state) for n, s in seen.items()])
        assert db.dirty("p") == []
    (ast / "f0.conf").write_text("edited\n")
    (ast / "f1.conf").chmod(0o600)
    (ast / "f2.conf").unlink()
    (ast / "new.conf").write_text("new\n")
    with open(ast / "f3.conf", "a") as fh:
        fh.write("more\n")
    loaded: list[list[str]] = []
    before = dbs[0].local_all()

    def rows(names: list[str]) -> dict[str, Seen]:
        loaded.append(sorted(names))
        return dbs[0].local_many(names)

    now = time.time_ns()
    seen_b, same, cache = scan_changes(_matcher(), pm, scopes,
                                       lambda: dbs[0].local_briefs_in(scopes), rows, now)
    dirty_b = dbs[0].record_check(scopes, seen_b, ["p"], old=cache, unchanged=same)
    seen_w = scan(_matcher(), pm, scopes, dbs[1].local_all(), now)
    dirty_w = dbs[1].record_check(scopes, seen_w, ["p"])
    changed = ["/etc/asterisk/f0.conf", "/etc/asterisk/f1.conf", "/etc/asterisk/f3.conf"]
    assert loaded == [["/etc/asterisk", *changed]]  # the directory: its mtime moved
    assert same == {"/etc/asterisk/f4.conf", "/etc/asterisk/f5.conf"}
    assert dirty_b == dirty_w == {"p": sorted([*changed, "/etc/asterisk/f2.conf",
                                               "/etc/asterisk/new.conf"])}
    assert ({n: s.state for n, s in dbs[0].local_all().items()}
            == {n: s.state for n, s in dbs[1].local_all().items()})
    assert {n: dbs[0].local_get(n) for n in same} == {n: before[n] for n in same}
    for db in dbs:
        db.close()


@pytest.mark.parametrize("many", [0, 10_000])
def test_states_of_many_names_read_in_one_pass_equal_those_read_name_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, many: int,
) -> None:
    """synced_for and local_states read a whole table above MANY_NAMES names and query by
    name below it: both give exactly the names asked for that have a row."""
    from nonstop.sync import statedb

    monkeypatch.setattr(statedb, "MANY_NAMES", many)
    db = StateDB(str(tmp_path / "n.db3"))
    states = {f"/srv/f{i}": FileState("reg", 0o644, 0, 0, i, i, f"d{i}", "", 0)
              for i in range(40)}
    db.record_sent("p", list(states.items())[:30])
    db.record_check([("/srv", True)], {n: Seen(s, 1, 1, 1) for n, s in states.items()}, ["p"])
    asked = [f"/srv/f{i}" for i in range(0, 50, 3)]  # some beyond both tables
    assert db.synced_for("p", asked) == {n: states[n] for n in asked if int(n[6:]) < 30}
    assert db.synced_for("p", iter(asked)) == db.synced_for("p", asked)
    assert db.synced_for("other", asked) == {}
    assert db.local_states(asked) == {n: states[n] for n in asked if n in states}
    assert db.dirty_names("p") == sorted(f"/srv/f{i}" for i in range(30, 40))
    assert db.dirty_names("p") == [r.name for r in db.dirty("p")]
    db.close()


_V3_SCHEMA = """
CREATE TABLE local(name TEXT PRIMARY KEY, kind TEXT, mode INTEGER, uid INTEGER, gid INTEGER,
                   size INTEGER, mtime_ns INTEGER, digest TEXT, target TEXT, rdev INTEGER,
                   ino INTEGER, ctime_ns INTEGER, checked_ns INTEGER, blocks BLOB,
                   verified_ns INTEGER, verify_pos INTEGER, stepped_ns INTEGER);
CREATE TABLE synced(peer TEXT, name TEXT, kind TEXT, mode INTEGER, uid INTEGER, gid INTEGER,
                    size INTEGER, mtime_ns INTEGER, digest TEXT, target TEXT, rdev INTEGER,
                    PRIMARY KEY(peer, name));
CREATE TABLE dirty(peer TEXT, name TEXT, forced INTEGER NOT NULL DEFAULT 0,
                   PRIMARY KEY(peer, name));
CREATE TABLE forced(peer TEXT, path TEXT, recursive INTEGER, PRIMARY KEY(peer, path));
"""


@pytest.mark.parametrize("version", [2, 3])
def test_an_older_database_keeps_its_records_in_name_ordered_tables(
    tmp_path: Path, version: int,
) -> None:
    """A version 3 database (rowid tables) opened by this version: every row of local,
    synced, dirty and forced is still there, in WITHOUT ROWID tables; a version 2 scan
    cache is dropped (its digests have another form), the peers' records are kept."""
    import sqlite3

    path = str(tmp_path / "n.db3")
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(_V3_SCHEMA)
    state = FileState("reg", 0o644, 0, 0, 3, 5, "d" * 40, "", 0)
    seen = Seen(state, 7, 9, 11, b"b" * 16, 13, 0, 13)
    old.execute("INSERT INTO local VALUES(" + ",".join("?" * 17) + ")", ("/srv/a", *seen))
    old.execute("INSERT INTO synced VALUES(" + ",".join("?" * 11) + ")",
                ("p", "/srv/a", *seen[:9]))
    old.execute("INSERT INTO dirty VALUES('p', '/srv/b', 1)")
    old.execute("INSERT INTO forced VALUES('p', '/srv', 1)")
    old.execute(f"PRAGMA user_version={version}")
    old.close()
    db = StateDB(path)
    assert db.local_all() == ({"/srv/a": seen} if version == 3 else {})
    assert db.synced_for("p") == {"/srv/a": state}
    assert [(r.name, r.forced) for r in db.dirty("p")] == [("/srv/b", True)]
    assert db.forced("p") == [("/srv", True)]
    tables = dict(db._db.execute("SELECT name, sql FROM sqlite_master WHERE type='table'"))
    assert set(tables) == {"local", "synced", "dirty", "marks", "forced", "tmpfiles",
                           "appends"}
    assert all("WITHOUT ROWID" in tables[t] for t in ("local", "synced", "dirty"))
    db.close()
    again = StateDB(path)  # opening a current database changes nothing
    assert again.synced_for("p") == {"/srv/a": state}
    again.close()


_KINDS = st.sampled_from(["reg", "dir", "lnk", "fifo", "chr", "blk"])
_STATES = st.builds(
    FileState, _KINDS, st.sampled_from([0o644, 0o600]), st.sampled_from([0, 1]),
    st.sampled_from([0, 1]), st.sampled_from([0, 7]), st.sampled_from([1, 2]),
    st.sampled_from(["", "d1"]), st.sampled_from(["", "t"]), st.sampled_from([0, 5]))


@settings(max_examples=150, deadline=None)
@given(ours=_STATES, theirs=st.none() | _STATES, ours_gone=st.booleans())
def test_record_check_marks_dirty_exactly_what_filestate_same_calls_different(
    tmp_path_factory: pytest.TempPathFactory, ours: FileState, theirs: FileState | None,
    ours_gone: bool,
) -> None:
    """The dirty test runs as SQL; it must agree with FileState.same() for every pair of states
    (directory and link mtimes and non-file sizes ignored, everything else compared)."""
    db = StateDB(str(tmp_path_factory.mktemp("db") / "n.db3"))
    name = "/srv/x"
    if theirs is not None:
        db.record_sent("p", [(name, theirs)])
    seen = {} if ours_gone else {name: Seen(ours, 1, 1, 1)}
    old = {name: Seen(ours, 1, 1, 1)} if ours_gone else {}
    dirty = db.record_check([("/srv", True)], seen, ["p"], old=old)["p"]
    expected = theirs is not None if ours_gone else not ours.same(theirs)
    assert dirty == ([name] if expected else [])
    assert [r.name for r in db.dirty("p")] == dirty
    db.close()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_decoder_only_raises_protocol_error(data: bytes) -> None:
    d = Decoder()
    try:
        for f in d.feed(data):
            if f.kind is not Kind.DATA:
                obj = f.obj()
                Op.from_wire(obj.get("op"))
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=10) | st.dictionaries(st.text(max_size=3), c,
                                                                         max_size=6),
                    max_leaves=30))
def test_wire_decoders_only_raise_protocol_error(raw: object) -> None:
    for fn in (Op.from_wire, FileState.from_wire):
        with contextlib.suppress(ProtocolError):
            fn(raw)


def test_frames_round_trip_and_proofs() -> None:
    op = Op("put", "/etc/a b", None, FileState("reg", 0o644, 1, 2, 3, 4, "d"))
    raw = protocol.encode_obj(Kind.OFFER, {"op": op.to_wire()}) + protocol.encode(Kind.DATA, b"x")
    d = Decoder()
    frames = d.feed(raw[:7]) + d.feed(raw[7:])
    assert [f.kind for f in frames] == [Kind.OFFER, Kind.DATA]
    assert Op.from_wire(frames[0].obj()["op"]) == op
    t = protocol.transcript("g", "a", "b", "n1", "n2", "fp")
    good = protocol.proof(b"k" * 32, "client", t)
    assert protocol.check_proof(b"k" * 32, "client", t, good)
    assert not protocol.check_proof(b"k" * 32, "server", t, good)  # no reflection
    assert not protocol.check_proof(b"j" * 32, "client", t, good)


def test_pathmap_prefix(tmp_path: Path) -> None:
    from nonstop.config.csync2 import parse_csync2_text

    cfg = parse_csync2_text(
        "prefix data { on a: /srv/a; on b: /srv/b; }\n"
        "group g { host a b; key k; include %data%; }\n", str(tmp_path / "c.cfg"))
    pa = PathMap("/r", cfg.prefixes, "a")
    pb = PathMap("/", cfg.prefixes, "b")
    assert pa.local("%data%/x") == "/r/srv/a/x"
    assert pb.local("%data%/x") == "/srv/b/x"
    assert Matcher([Pattern("%data%", True, Location("c", 1))]).included("%data%/x")


def test_a_file_growing_while_it_is_hashed_is_described_as_far_as_it_was_seen(
    tmp_path: Path,
) -> None:
    import threading

    from nonstop.sync.digest import Hasher
    from nonstop.sync.scan import describe

    log = tmp_path / "full"
    log.write_bytes(b"x" * (8 << 20))
    stop = threading.Event()

    def grow() -> None:
        with open(log, "ab", buffering=0) as fh:
            while not stop.is_set():
                fh.write(b"a line of the Asterisk full log\n" * 64)

    t = threading.Thread(target=grow)
    t.start()
    try:
        seen = [describe(str(log), None, 1) for _ in range(5)]
    finally:
        stop.set()
        t.join()
    data = log.read_bytes()
    for s in seen:
        assert s is not None
        # exactly a prefix that existed, hashed once
        h = Hasher()
        h.update(data[: s.state.size])
        assert s.state.digest == h.hexdigest()
    # untrusted for the next scan when it grew during the hash (a loaded machine may leave
    # the writer thread unscheduled for one whole hash: then that one is trusted, rightly)
    assert any(s is not None and s.checked_ns == 0 for s in seen)
    # a quiet file is trusted again
    quiet = describe(str(log), seen[-1], 2)
    assert quiet is not None and quiet.state.size == len(data) and quiet.checked_ns == 2


def test_a_large_file_is_read_whole_again_within_its_verify_budget(tmp_path: Path) -> None:
    from nonstop.sync.scan import LARGE_FILE, verify_after_ns

    p = tmp_path / "full"
    p.write_bytes(b"a" * LARGE_FILE)
    t = p.stat().st_mtime_ns  # every look below happens within the racy window of this mtime
    first = describe(str(p), None, t)
    assert first is not None and first.verified_ns == t
    with open(p, "r+b") as fh:  # a same-size edit of a middle block in the same clock tick
        fh.seek(LARGE_FILE // 2)
        fh.write(b"b")
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, t))
    cached = first._replace(ctime_ns=p.stat().st_ctime_ns)
    # Within the budget only the last block is read again (the edit is not seen yet) ...
    soon = describe(str(p), cached, t + 1)
    assert soon is not None and soon.state.digest == first.state.digest
    assert soon.verified_ns == t
    # ... and once size / VERIFY_BYTES_PER_S has passed, the whole content is read again.
    later = describe(str(p), soon, t + verify_after_ns(LARGE_FILE) + 1)
    assert later is not None and later.state.digest != first.state.digest


def test_older_blocks_of_a_growing_file_are_rechecked_a_little_at_each_scan(
    tmp_path: Path,
) -> None:
    from nonstop.sync.digest import BLOCK
    from nonstop.sync.scan import VERIFY_BYTES_PER_S

    p = tmp_path / "full"
    p.write_bytes(os.urandom(40 * BLOCK))
    t = time.time_ns()
    first = describe(str(p), None, t)
    assert first is not None and first.verify_pos == 0 and first.stepped_ns == t
    one_s = 1_000_000_000
    per_s = VERIFY_BYTES_PER_S // BLOCK  # blocks re-checked per second since the last scan
    with open(p, "ab") as fh:
        fh.write(b"appended\n")
    grown = describe(str(p), first, t + one_s)
    assert grown is not None and grown.verify_pos == per_s * BLOCK  # one second's worth
    assert grown.verified_ns == first.verified_ns
    # a block in the next stretch is rewritten in place (and the file grows): the next step
    # finds it and the file is read whole again
    with open(p, "r+b") as fh:
        fh.seek((per_s + 2) * BLOCK)
        fh.write(b"rewritten")
        fh.seek(0, 2)
        fh.write(b"more\n")
    again = describe(str(p), grown, t + 2 * one_s)
    assert again is not None and again.verify_pos == 0 and again.verified_ns == t + 2 * one_s
    h = Hasher()
    h.update(p.read_bytes())
    assert again.state.digest == h.hexdigest()


def test_a_tree_deeper_than_the_recursion_limit_is_scanned(tmp_path: Path) -> None:
    import sys

    depth = sys.getrecursionlimit() + 100
    d = tmp_path / "etc/asterisk"
    d.mkdir(parents=True)
    # One-letter levels: the path stays under PATH_MAX; opened relative to keep it so.
    fd = os.open(d, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("a", dir_fd=fd)
            nfd = os.open("a", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        with open(os.open("deep.conf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as fh:
            fh.write("x")
    finally:
        os.close(fd)
    pm = PathMap(str(tmp_path), {}, "n")
    try:
        seen = scan(_matcher(), pm, [("/etc/asterisk", True)], {}, time.time_ns())
        deepest = "/etc/asterisk" + "/a" * depth + "/deep.conf"
        assert seen[deepest].kind == "reg" and seen[deepest].size == 1
    finally:
        _remove_deep(d, depth)


def _remove_deep(top: Path, depth: int) -> None:
    """Remove the chain bottom-up without recursion (shutil.rmtree, and so pytest's clean-up
    of old temporary directories, recurses per level and would fail on it)."""
    fds = [os.open(top, os.O_RDONLY)]
    try:
        for _ in range(depth):
            fds.append(os.open("a", os.O_RDONLY, dir_fd=fds[-1]))
        os.unlink("deep.conf", dir_fd=fds[-1])
        for i in range(depth, 0, -1):
            os.close(fds.pop())
            os.rmdir("a", dir_fd=fds[i - 1])
    finally:
        for fd in fds:
            os.close(fd)


def test_large_files_hashed_on_threads_and_small_ones_inline_give_the_same_states(
        tmp_path: Path) -> None:
    """A scan with both kinds (large files on the hashing threads, small ones on the scanning
    thread meanwhile) describes every file exactly as a scan of each file alone does."""
    ast = tmp_path / "etc/asterisk"
    ast.mkdir(parents=True)
    sizes = [0, 10, 5000, (128 << 10) - 1, 128 << 10, 300_000, (1 << 20) + 7, 40, 2_500_000]
    for i, size in enumerate(sizes):
        (ast / f"f{i}.conf").write_bytes(os.urandom(size))
        _age(ast / f"f{i}.conf")
    pm = PathMap(str(tmp_path), {}, "vpbx1-1")
    now = time.time_ns()
    seen = scan(_matcher(), pm, [("/", True)], {}, now)
    assert set(seen) == {"/etc/asterisk"} | {f"/etc/asterisk/f{i}.conf" for i in range(len(sizes))}
    for i, size in enumerate(sizes):
        alone = describe(str(ast / f"f{i}.conf"), None, now)
        assert alone is not None
        got = seen[f"/etc/asterisk/f{i}.conf"]
        assert got.state == alone.state and got.state.size == size
        assert got.blocks == alone.blocks


def test_a_large_file_rewritten_in_place_at_the_same_size_is_read_whole(tmp_path: Path) -> None:
    """An append always grows a file: one as large as recorded but written since (a new mtime)
    was rewritten in place, and its digest is the new content's at once (it was taken for an
    append of no bytes, and a change in its middle went unseen until the rolling re-checks came
    round to it: the peer kept the old bytes, reported in sync)."""
    from nonstop.sync.digest import BLOCK
    from nonstop.sync.scan import LARGE_FILE

    p = tmp_path / "db.bin"
    p.write_bytes(os.urandom(LARGE_FILE + BLOCK))
    t = time.time_ns()
    first = describe(str(p), None, t)
    assert first is not None
    with open(p, "r+b") as fh:
        fh.seek(LARGE_FILE // 2)
        fh.write(os.urandom(BLOCK))
    os.utime(p, ns=(t, first.state.mtime_ns + 1_000_000_000))
    again = describe(str(p), first, t + 1)  # no time for any rolling re-check
    h = Hasher()
    h.update(p.read_bytes())
    assert again is not None and again.state.digest == h.hexdigest()


def test_a_growing_file_whose_first_block_changed_is_read_whole(tmp_path: Path) -> None:
    """sqlite (and Berkeley DB) rewrite their header in the first block at each commit that
    grows the file: that block is checked at every scan of a grown file, not only when the
    rolling re-checks reach it."""
    from nonstop.sync.digest import BLOCK

    p = tmp_path / "astdb.sqlite3"
    p.write_bytes(os.urandom(3 * BLOCK))
    t = time.time_ns()
    first = describe(str(p), None, t)
    assert first is not None
    grown = first
    for step in range(1, 4):  # rounds of the re-checks at every position
        with open(p, "r+b") as fh:
            fh.seek(24)  # sqlite's file change counter
            fh.write(step.to_bytes(4, "big"))
            fh.seek(0, 2)
            fh.write(os.urandom(4096))  # a new page
        described = describe(str(p), grown, t + step)  # 1 ns later: no rolling budget
        h = Hasher()
        h.update(p.read_bytes())
        assert described is not None and described.state.digest == h.hexdigest(), step
        grown = described
