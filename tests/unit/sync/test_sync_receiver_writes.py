"""The receiver's writes on a first sync: whole files held for one writer job (visible only at
commit, removed after a crash), temp files that cost no getrandom, and no chown of a new file
whose owner is already right."""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sync_harness import pair, talk_config

from nonstop.sync import fsops, receivedata, writes
from nonstop.sync.digest import Hasher
from nonstop.sync.node import Node

if TYPE_CHECKING:  # a name pytest would try to collect as a test class
    from sync_harness import TestNode
from nonstop.sync.patterns import PathMap
from nonstop.sync.plan import Op
from nonstop.sync.receivedata import ReceiveData
from nonstop.sync.receiver import Receiver
from nonstop.sync.scan import Seen, describe
from nonstop.sync.state import FileState
from nonstop.sync.statedb import StateDB
from nonstop.sync.writes import Batch, Pending, cleanup_tmp


# --- the receiver: held whole files, crash safety ----------------------------------------------
def _receiver(node: Node) -> Receiver:
    g = node.groups[0]
    return Receiver(node.db, g.matcher, g.paths, g.group, node.me, "vpbx1-1", node.ignore)


async def test_held_whole_files_become_visible_only_at_commit_and_a_crash_leaves_none(
        tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        names = [f"/var/spool/asterisk/vm/m{i:03}.txt" for i in range(150)]
        for i, name in enumerate(names):
            n1.write(name, f"message {i}\n")
        n2.path("/var/spool/asterisk/vm").mkdir()
        n1.node.check()
        states = []
        for name in names:
            seen = n1.node.db.local_get(name)
            assert seen is not None
            states.append(seen.state)
        ops = [Op("put", name, None, state) for name, state in zip(names, states, strict=True)]
        rec = _receiver(n2.node)
        _results, need, batch = rec.evaluate(ops)
        assert need == list(range(150))
        for i in need:  # more than one writer job's worth (HOLD_FILES)
            rec.submit_whole(batch, i, [n1.path(names[i]).read_bytes()], states[i])
        rec.flush_writes()
        rec.wait_writes()
        vm = n2.path("/var/spool/asterisk/vm")
        # written and flushed to temp files, every one recorded, none visible yet
        tmps = sorted(str(x) for x in vm.iterdir())
        assert len(tmps) == 150 and all(".nonstop-tmp-" in t for t in tmps)
        assert sorted(n2.node.db.tmp_paths()) == tmps
        # the receiver dies here (no commit, no close): the next start removes them all
        assert cleanup_tmp(n2.node.db) == 150
        assert list(vm.iterdir()) == []
        # the same again, committed: all visible, recorded, no temp file left
        rec2 = _receiver(n2.node)
        _results, need, batch = rec2.evaluate(ops)
        for i in need:
            rec2.submit_whole(batch, i, [n1.path(names[i]).read_bytes()], states[i])
        rec2.flush_writes()
        rec2.wait_writes()
        done = rec2.commit(batch)
        rec2.close()
        assert [r.status for r in done] == ["ok"] * 150
        assert sorted(x.name for x in vm.iterdir()) == sorted(os.path.basename(n)
                                                              for n in names)
        assert n2.node.db.tmp_paths() == []
        got = describe(str(n2.path(names[7])), n2.node.db.local_get(names[7]), 0)
        assert got is not None and got.state.same(ops[7].new)
        rec.close()


# --- temp files: names and owners ------------------------------------------------------------
def test_temp_names_are_distinct_and_hidden_without_a_random_call_each(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_random(_n: int) -> bytes:
        raise AssertionError("getrandom per temp file")

    monkeypatch.setattr(os, "urandom", no_random)
    names = {fsops.tmp_path_for("/srv/x/f") for _ in range(1000)}
    assert len(names) == 1000
    assert all(n.startswith("/srv/x/.nonstop-tmp-") for n in names)


def test_a_forked_child_gets_its_own_temp_names() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(w, fsops.tmp_path_for("/d/f").encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 200).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert child[: -2] != fsops.tmp_path_for("/d/f")[: -2]


def test_a_new_file_is_chowned_only_when_its_owner_differs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    real = os.fchown

    def fchown(fd: int, uid: int, gid: int) -> None:
        calls.append((uid, gid))
        real(fd, uid, gid)

    monkeypatch.setattr(os, "fchown", fchown)
    me = (os.geteuid(), os.getegid())
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fsops.set_meta_fd(fd, FileState("reg", 0o640, *me, 0, 10**9), owner=me)
        assert calls == []
        assert (path.stat().st_mode & 0o7777, path.stat().st_mtime_ns) == (0o640, 10**9)
        other = (me[0], me[1] + 1)
        fsops.set_meta_fd(fd, FileState("reg", 0o640, *other, 0, 10**9), owner=me)
        assert calls == [other]
        fsops.set_meta_fd(fd, FileState("reg", 0o640, *me, 0, 10**9))  # owner unknown
        assert calls == [other, me]
    finally:
        os.close(fd)


def test_a_set_group_id_directory_gives_its_group_to_new_files(tmp_path: Path) -> None:
    plain, shared = tmp_path / "plain", tmp_path / "shared"
    plain.mkdir()
    shared.mkdir()
    gid = os.getegid() + 4242
    if os.geteuid() == 0:
        os.chown(shared, -1, gid)
    os.chmod(shared, 0o2775)
    batch = Batch()
    try:
        assert batch.new_owner(str(tmp_path), str(plain)) == (os.geteuid(), os.getegid())
        want = shared.stat().st_gid
        assert batch.new_owner(str(tmp_path), str(shared)) == (os.geteuid(), want)
        made = shared / "f"
        made.write_text("x")
        assert made.stat().st_gid == want
    finally:
        batch.close_dirs()


# --- a new file created with its own mode: no chmod when nothing would change it ------------
def _receive_one(tmp: Path, mode: int, ignore: frozenset[str] = frozenset()) -> list[int]:
    """Receive one new file of ``mode`` owned by us; returns the fchmod modes used."""
    calls: list[int] = []
    real = os.fchmod

    def fchmod(fd: int, m: int) -> None:
        calls.append(m)
        real(fd, m)

    root = tmp / "root"
    (root / "d").mkdir(parents=True, exist_ok=True)
    state = FileState("reg", mode, os.geteuid(), os.getegid(), 5, 10**18, _digest(b"hello"))
    batch = Batch()
    p = Pending(0, Op("put", "/d/f", None, state), str(root / "d" / "f"),
                fsops.tmp_path_for(str(root / "d" / "f")), None, "ok", "")
    batch.pending[0] = p
    data = _Data(str(root), ignore)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fchmod", fchmod)
        data.write_whole(batch, 0, [b"hello"], state)
    batch.close_dirs()
    assert p.failed == ""
    st = os.stat(p.tmp)
    assert (st.st_mode & 0o7777, st.st_mtime_ns) == (mode, 10**18)
    return calls


def _digest(data: bytes) -> str:
    h = Hasher()
    h.update(data)
    return h.hexdigest()


class _Data(ReceiveData):
    def __init__(self, root: str, ignore: frozenset[str]) -> None:
        self.paths = PathMap(root, {}, "vpbx1-2")
        self.ignore = ignore
        self.me, self.peer = "vpbx1-2", "vpbx1-1"


def test_a_new_file_gets_its_mode_at_creation_and_no_chmod(tmp_path: Path) -> None:
    assert _receive_one(tmp_path, 0o644) == []
    assert _receive_one(tmp_path, 0o600) == []


@pytest.mark.parametrize("mode", [0o4755, 0o1777, 0o2644])
def test_special_bits_are_set_by_a_chmod(tmp_path: Path, mode: int) -> None:
    assert _receive_one(tmp_path, mode) == [mode]


def test_bits_the_umask_would_take_are_set_by_a_chmod(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writes, "_UMASK", [0o027])
    old = os.umask(0o027)
    try:
        assert _receive_one(tmp_path, 0o644) == [0o644]
        assert _receive_one(tmp_path, 0o640) == []
    finally:
        os.umask(old)


def test_with_an_ignore_directive_a_file_is_made_0600_first(tmp_path: Path) -> None:
    assert _receive_one(tmp_path, 0o644, frozenset({"uid"})) == [0o644]
    assert _receive_one(tmp_path, 0o600, frozenset({"uid"})) == []


def test_a_default_acl_on_the_directory_means_a_chmod(tmp_path: Path) -> None:
    d = tmp_path / "root" / "d"
    d.mkdir(parents=True)
    # system.posix_acl_default: version 2; user::rw-, group::---, other::--- (no umask then)
    undefined = 0xFFFFFFFF
    acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, undefined)
                                          for tag, perm in ((0x01, 6), (0x04, 0), (0x20, 0)))
    try:
        os.setxattr(d, "system.posix_acl_default", acl)
    except OSError as e:
        pytest.skip(f"no POSIX ACLs here: {e.strerror}")
    batch = Batch()
    try:
        assert batch.mode_mask(str(tmp_path / "root"), str(d)) is None
    finally:
        batch.close_dirs()
    assert _receive_one(tmp_path, 0o644) == [0o644]


async def test_a_directory_of_many_new_files_is_listed_once_and_a_local_file_still_conflicts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with pair(tmp_path) as (n1, n2):
        names = _forty_messages(n1)
        n2.write(names[5], "written on vpbx1-2 meanwhile\n")  # unrecorded there
        ops = []
        for name in names:
            seen = n1.node.db.local_get(name)
            assert seen is not None
            ops.append(Op("put", name, None, seen.state))
        looked = _record_lstat(monkeypatch)
        rec = _receiver(n2.node)
        results, need, _batch = rec.evaluate(ops)
        rec.close()
        assert results[5] is not None and results[5].status == "conflict"
        assert need == [i for i in range(40) if i != 5]
        vm = str(n2.path("/var/spool/asterisk/vm"))
        assert {p for p in looked if p.startswith(vm + "/")} == {vm + "/m005.txt"}
        # the same batch into a directory that is too big to list: a lookup per name
        monkeypatch.setattr(receivedata, "LIST_MAX_BYTES", 0)
        looked.clear()
        rec = _receiver(n2.node)
        rec.evaluate(ops)
        rec.close()
        assert len({p for p in looked if p.startswith(vm + "/")}) == 40


def test_a_batch_of_records_in_one_go_equals_them_one_by_one(tmp_path: Path) -> None:
    """record_received takes a batch with each name once in a statement per kind of change;
    the same records given one call each end the same."""
    def seen_of(st: FileState) -> Seen:
        return Seen(st, 7, 9, 11, b"", 13, 0, 13)

    a = FileState("reg", 0o644, 0, 0, 5, 1, "d1")
    b = FileState("dir", 0o755, 0, 0)
    records: list[tuple[str, FileState | None, Seen | None]] = [
        ("/etc/a", a, seen_of(a)), ("/etc/b", b, None), ("/etc/old", None, None)]
    dbs = []
    for how in ("batch", "each"):
        db = StateDB(str(tmp_path / f"{how}.db3"))
        for name in ("/etc/old", "/etc/a"):
            db.record_received("vpbx1-1", [(name, a, seen_of(a))])
        db.mark_dirty("vpbx1-1", ["/etc/a", "/etc/old"])
        db.mark_dirty("vpbx1-3", ["/etc/a"])
        if how == "batch":
            db.record_received("vpbx1-1", records)
        else:
            for r in records:
                db.record_received("vpbx1-1", [r])
        dbs.append(db)
    views = [(db.synced_for("vpbx1-1"), [db.local_get(n) for n in ("/etc/a", "/etc/b", "/etc/old")],
              db.dirty()) for db in dbs]
    for db in dbs:
        db.close()
    assert views[0] == views[1]
    synced, local, dirty = views[0]
    assert synced == {"/etc/a": a, "/etc/b": b}
    assert local[0] == seen_of(a) and local[1:] == [None, None]
    assert [(r.peer, r.name) for r in dirty] == [("vpbx1-3", "/etc/a")]


async def test_a_file_that_appears_before_the_commit_is_left_alone(tmp_path: Path) -> None:
    """Judged absent, written, then a local program creates it: the commit does not
    overwrite it (rename without replace) and says so; the next run finds the conflict."""
    async with pair(tmp_path) as (n1, n2):
        name = "/etc/asterisk/new.conf"
        n1.write(name, "from vpbx1-1\n")
        n1.node.check()
        seen = n1.node.db.local_get(name)
        assert seen is not None
        rec = _receiver(n2.node)
        _results, need, batch = rec.evaluate([Op("put", name, None, seen.state)])
        assert need == [0]
        rec.submit_whole(batch, 0, [b"from vpbx1-1\n"], seen.state)
        rec.flush_writes()
        rec.wait_writes()
        n2.write(name, "written on vpbx1-2 meanwhile\n")
        done = rec.commit(batch)
        rec.close()
        assert done[0].status == "error" and "appeared on vpbx1-2" in done[0].message
        assert n2.path(name).read_text() == "written on vpbx1-2 meanwhile\n"
        assert sorted(x.name for x in n2.path("/etc/asterisk").iterdir()) == ["new.conf"]
        assert await n1.sync() != []  # now a conflict, reported
        assert n2.path(name).read_text() == "written on vpbx1-2 meanwhile\n"


SIP_CONF = "/etc/asterisk/sip.conf"


async def _update_in_transit(n1: TestNode, n2: TestNode, *, forced: bool,
                             ) -> tuple[Receiver, Batch]:
    """sip.conf synced as "old", then changed on vpbx1-1: vpbx1-2's receiver has judged the
    update and written its bytes to a temp file, and not committed yet."""
    n1.write(SIP_CONF, "old\n")
    assert await n1.sync() == []
    n1.write(SIP_CONF, "new from vpbx1-1\n")
    n1.node.check()
    seen, base = n1.node.db.local_get(SIP_CONF), n2.node.db.local_get(SIP_CONF)
    assert seen is not None and base is not None
    rec = _receiver(n2.node)
    results, need, batch = rec.evaluate([Op("put", SIP_CONF, base.state, seen.state,
                                            forced=forced)])
    assert need == [0], results
    rec.submit_whole(batch, 0, [b"new from vpbx1-1\n"], seen.state)
    rec.flush_writes()
    rec.wait_writes()
    return rec, batch


@pytest.mark.parametrize("edit", ["write", "chmod", "remove"])
async def test_a_file_changed_locally_before_the_commit_is_left_alone(
        tmp_path: Path, edit: str) -> None:
    """Judged as it was, then a local program writes, chmods or removes it while the peer's
    version is in transit: the commit keeps the local change (no backup, no replace) and
    says so; the next run finds the conflict."""
    async with pair(tmp_path) as (n1, n2):
        rec, batch = await _update_in_transit(n1, n2, forced=False)
        local = n2.path(SIP_CONF)
        if edit == "write":
            local.write_text("edited on vpbx1-2 meanwhile\n")
        elif edit == "chmod":
            local.chmod(0o600)
        else:
            local.unlink()
        done = rec.commit(batch)
        rec.close()
        assert done[0].status == "error", done
        assert "changed on vpbx1-2 during the transfer" in done[0].message
        if edit == "write":
            assert local.read_text() == "edited on vpbx1-2 meanwhile\n"
        elif edit == "chmod":
            assert local.read_text() == "old\n" and local.stat().st_mode & 0o777 == 0o600
        else:
            assert not local.exists()
        assert sorted(x.name for x in n2.path("/etc/asterisk").iterdir()) == (
            [] if edit == "remove" else ["sip.conf"])  # no temp file left
        assert await n1.sync() != []  # now a conflict, reported
        if edit == "write":
            assert local.read_text() == "edited on vpbx1-2 meanwhile\n"


async def test_a_forced_update_still_overwrites_a_change_made_during_the_transfer(
        tmp_path: Path) -> None:
    """``-f``: the peer's local edits are overwritten by definition (backed up), also one
    made while the forced version was in transit."""
    async with pair(tmp_path) as (n1, n2):
        rec, batch = await _update_in_transit(n1, n2, forced=True)
        n2.path(SIP_CONF).write_text("edited on vpbx1-2 meanwhile\n")
        done = rec.commit(batch)
        rec.close()
        assert done[0].status != "error", done
        assert n2.path(SIP_CONF).read_text() == "new from vpbx1-1\n"


@pytest.mark.parametrize("generations", [5, 0])
async def test_hard_linked_names_updated_together_are_not_taken_for_local_changes(
        tmp_path: Path, generations: int) -> None:
    """Two names of one inode on the receiver, both updated in one batch: replacing the first
    (and backing it up) moves the shared inode's ctime, which is ours, not a local program's."""
    cfg = talk_config(tmp_path, generations=generations)
    async with pair(tmp_path, cfg) as (n1, n2):
        names = ["/etc/asterisk/a.conf", "/etc/asterisk/b.conf"]
        for name in names:
            n1.write(name, "same\n")
        assert await n1.sync() == []
        n2.path(names[1]).unlink()
        os.link(n2.path(names[0]), n2.path(names[1]))
        n2.node.check()
        ops = []
        for i, name in enumerate(names):
            n1.write(name, f"new {i}\n")
        n1.node.check()
        for name in names:
            seen, base = n1.node.db.local_get(name), n2.node.db.local_get(name)
            assert seen is not None and base is not None
            ops.append(Op("put", name, base.state, seen.state))
        rec = _receiver(n2.node)
        _results, need, batch = rec.evaluate(ops)
        assert need == [0, 1], _results
        for i in need:
            rec.submit_whole(batch, i, [f"new {i}\n".encode()], ops[i].new)  # type: ignore[arg-type]
        rec.flush_writes()
        rec.wait_writes()
        done = rec.commit(batch)
        rec.close()
        assert [r.status for r in done] == ["ok", "ok"], done
        assert [n2.path(n).read_text() for n in names] == ["new 0\n", "new 1\n"]


async def test_the_basis_of_a_delta_is_opened_read_only(tmp_path: Path) -> None:
    """Opening a file for writing changes it on some file systems (overlayfs copies a
    lower-layer file up, with a new ctime, and the commit would then refuse the update):
    the signature's basis is only read."""
    async with pair(tmp_path) as (n1, n2):
        name = "/etc/asterisk/extensions.conf"
        n1.write(name, "x" * 100_000)
        assert await n1.sync() == []
        n1.write(name, "x" * 50_000 + "y" + "x" * 49_999)
        n1.node.check()
        seen, base = n1.node.db.local_get(name), n2.node.db.local_get(name)
        assert seen is not None and base is not None
        rec = _receiver(n2.node)
        _results, need, batch = rec.evaluate([Op("put", name, base.state, seen.state)])
        assert need == [0]
        assert rec.signature(batch, 0)
        fd = batch.pending[0].basis_fd
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        rec.abort()
        rec.close()


def test_without_renameat2_a_hard_link_still_never_replaces(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").write_text("new")
    (tmp_path / "b").write_text("old")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert not fsops.rename("a", "b", fd, replace=False)
        assert (tmp_path / "b").read_text() == "old"
        monkeypatch.setattr(fsops, "_renameat2", [False])
        assert not fsops.rename("a", "b", fd, replace=False)
        assert (tmp_path / "b").read_text() == "old" and (tmp_path / "a").read_text() == "new"
        assert fsops.rename("a", "c", fd, replace=False)
        assert (tmp_path / "c").read_text() == "new" and not (tmp_path / "a").exists()
        assert (tmp_path / "c").stat().st_nlink == 1
    finally:
        os.close(fd)


def test_without_hard_links_either_a_rename_replaces_as_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").write_text("new")
    (tmp_path / "b").write_text("old")

    def no_links(*_a: object, **_k: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(fsops, "_renameat2", [False])
    monkeypatch.setattr(os, "link", no_links)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert fsops.rename("a", "b", fd, replace=False)
        assert (tmp_path / "b").read_text() == "new" and not (tmp_path / "a").exists()
    finally:
        os.close(fd)


async def test_a_directory_made_by_the_same_batch_is_listed_when_its_first_file_is_judged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first sync: the batch creates the directory, then judges the files it will hold."""
    async with pair(tmp_path) as (n1, n2):
        names = _forty_messages(n1)
        ops = []
        for name in ["/var/spool/asterisk/vm", *names]:
            seen = n1.node.db.local_get(name)
            assert seen is not None
            ops.append(Op("put", name, None, seen.state))
        assert not n2.path("/var/spool/asterisk/vm").exists()
        looked = _record_lstat(monkeypatch)
        rec = _receiver(n2.node)
        _results, need, _batch = rec.evaluate(ops)
        rec.close()
        assert need == list(range(1, 41))
        vm = str(n2.path("/var/spool/asterisk/vm"))
        assert [p for p in looked if p.startswith(vm + "/")] == []


def _record_lstat(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path os.lstat is asked about from now on, in order."""
    looked: list[str] = []
    real = os.lstat

    def lstat(path: str | bytes | os.PathLike[str], *a: object, **k: object) -> os.stat_result:
        looked.append(os.fspath(path))  # type: ignore[arg-type]
        return real(path, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "lstat", lstat)
    return looked


def _forty_messages(n1: TestNode) -> list[str]:
    """Forty new files in one directory on ``n1``, checked (recorded, dirty): their names."""
    names = [f"/var/spool/asterisk/vm/m{i:03}.txt" for i in range(40)]
    for i, name in enumerate(names):
        n1.write(name, f"message {i}\n")
    n1.node.check()
    return names
