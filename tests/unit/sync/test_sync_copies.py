"""Content the peer already holds under another name is copied there, not sent: a rotated log,
renumbered voicemail messages (the plan's copy sources, and two real nodes over TLS on loopback)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sync_harness import pair, talk_config

from nonstop.sync import backups, fsops, rdiff
from nonstop.sync import protocol as p
from nonstop.sync.digest import Hasher
from nonstop.sync.patterns import Matcher, PathMap
from nonstop.sync.plan import COPY_FDS, COPY_MIN, Op, batches, plan
from nonstop.sync.protocol import ProtocolError
from nonstop.sync.receiver import Receiver
from nonstop.sync.state import FileState
from nonstop.sync.statedb import StateDB
from nonstop.sync.writes import Batch, Pending

LOGS = "/var/log/asterisk"
INBOX = "/var/spool/asterisk/voicemail/default/100/INBOX"


def reg(tag: str, size: int = COPY_MIN) -> FileState:
    return FileState("reg", 0o644, 0, 0, size, 1, f"d-{tag}")


def test_plan_names_the_peers_copy_of_each_rotated_log() -> None:
    synced = {f"{LOGS}/full": reg("F"), f"{LOGS}/full.2.gz": reg("A"),
              f"{LOGS}/full.3.gz": reg("B")}
    local = {f"{LOGS}/full": reg("new", 20), f"{LOGS}/full.1": reg("F"),
             f"{LOGS}/full.3.gz": reg("A"), f"{LOGS}/full.4.gz": reg("B")}
    p = plan([(n, False) for n in sorted(set(synced) | set(local))], local, synced)
    assert [(o.kind, o.name, o.src) for o in p.ops] == [
        ("del", f"{LOGS}/full.2.gz", ""),
        ("put", f"{LOGS}/full", ""),  # new bytes (and too small to be worth a copy)
        ("put", f"{LOGS}/full.1", f"{LOGS}/full"),
        ("put", f"{LOGS}/full.3.gz", f"{LOGS}/full.2.gz"),
        ("put", f"{LOGS}/full.4.gz", f"{LOGS}/full.3.gz"),
    ]
    assert p.ops[3].src_base == reg("A") and p.ops[3].base == reg("B")
    # on the wire and back
    assert [Op.from_wire(o.to_wire()) for o in p.ops] == list(p.ops)


def test_plan_names_no_copy_source_for_small_forced_or_unknown_content() -> None:
    synced = {"/a": reg("X", COPY_MIN - 1), "/b": reg("Y")}
    local = {"/a": reg("Z"), "/c": reg("X", COPY_MIN - 1), "/d": reg("Y"), "/e": reg("W")}
    p = plan([("/a", False), ("/c", False), ("/d", True), ("/e", False)], local, synced)
    assert [(o.name, o.src) for o in p.ops] == [("/a", ""), ("/c", ""), ("/d", ""), ("/e", "")]


def test_copied_puts_count_no_bytes_so_a_rotation_stays_in_one_batch() -> None:
    big = 1 << 30
    ops = [Op("del", "/l/full.2.gz", reg("A", big), None),
           Op("put", "/l/full.1", None, reg("F", big), False, "/l/full", reg("F", big)),
           Op("put", "/l/full.3.gz", reg("B", big), reg("A", big), False, "/l/full.2.gz",
              reg("A", big)),
           Op("put", "/l/other", None, reg("O", big))]
    assert [len(b) for b in batches(ops)] == [3, 1]


def test_copies_past_what_a_receiver_copies_in_a_batch_count_their_bytes() -> None:
    mib = 1 << 20
    ops = [Op("put", f"/m/{i:03}", None, reg(f"n{i}", mib), False, f"/m/{i + 1:03}",
              reg(f"n{i}", mib)) for i in range(COPY_FDS + 6)]
    assert [len(b) for b in batches(ops, max_bytes=3 * mib)] == [COPY_FDS + 3, 3]


def test_the_rest_of_a_grown_copy_counts_as_sent() -> None:
    mib = 1 << 20
    grown = Op("put", "/l/full.1", None, reg("F+", 1024 * mib + 60 * mib), False, "/l/full",
               reg("F", 1024 * mib))
    other = Op("put", "/l/other", None, reg("O", 10 * mib))
    assert [len(b) for b in batches([grown, other])] == [1, 1]  # 60 + 10 MiB > 64 MiB
    assert [len(b) for b in batches([grown, other], max_bytes=80 * mib)] == [2]


async def test_a_rotated_log_moves_no_bytes_and_keeps_its_backups(tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        full = os.urandom(3_000_000)
        old = [os.urandom(400_000) for _ in range(3)]
        n1.write(f"{LOGS}/full", full)
        for i, data in enumerate(old, start=2):
            n1.write(f"{LOGS}/full.{i}.gz", data)
        assert await n1.sync() == []
        # logrotate with delaycompress: every generation moves up one name, a new `full`
        for i in (4, 3, 2):
            os.rename(n1.path(f"{LOGS}/full.{i}.gz"), n1.path(f"{LOGS}/full.{i + 1}.gz"))
        os.rename(n1.path(f"{LOGS}/full"), n1.path(f"{LOGS}/full.1"))
        n1.write(f"{LOGS}/full", "[Dec  6 06:25:01] NOTICE logger reloaded\n")
        n1.node.check()
        report = await n1.node.update()
        assert report.problems == []
        assert report.bytes_sent < 8_000, report.bytes_sent  # 3.4 MB changed names
        for name in ("full", "full.1", "full.3.gz", "full.4.gz", "full.5.gz"):
            assert n2.path(f"{LOGS}/{name}").read_bytes() == \
                n1.path(f"{LOGS}/{name}").read_bytes(), name
            assert n2.path(f"{LOGS}/{name}").stat().st_mtime_ns == \
                n1.path(f"{LOGS}/{name}").stat().st_mtime_ns
        assert not n2.path(f"{LOGS}/full.2.gz").exists()
        assert any("copied from /var/log/asterisk/full on vpbx1-2" in m for m in n1.log)
        # What left the tree is backed up as for any update: the deleted oldest archive. The
        # replaced generations are not: their bytes live on under the next name.
        bdir = str(n2.root / "var/backups/csync2")
        assert backups.generations_of(bdir, f"{LOGS}/full.2.gz") != []
        for name in ("full", "full.3.gz", "full.4.gz"):
            assert backups.generations_of(bdir, f"{LOGS}/{name}") == [], name
        # the next rotation backs up what then leaves
        os.unlink(n1.path(f"{LOGS}/full.1"))
        n1.write(f"{LOGS}/full.3.gz", os.urandom(COPY_MIN))
        assert await n1.sync() == []
        assert backups.generations_of(bdir, f"{LOGS}/full.1") != []
        assert backups.generations_of(bdir, f"{LOGS}/full.3.gz") != []
        # and nothing is left to do, nor any temp file
        assert await n1.sync() == [] and n1.node.dirty_lines() == []
        assert [p.name for p in n2.path(LOGS).iterdir() if p.name.startswith(".")] == []


async def test_a_log_written_on_after_its_rename_sends_only_its_last_lines(
    tmp_path: Path,
) -> None:
    # logrotate renames `full`; Asterisk writes on to it until its logger reloads: `full.1`
    # is the old `full` plus some lines, a digest the peer holds under no name.
    async with pair(tmp_path) as (n1, n2):
        body = os.urandom(3_000_000)
        n1.write(f"{LOGS}/full", body)
        assert await n1.sync() == []
        os.rename(n1.path(f"{LOGS}/full"), n1.path(f"{LOGS}/full.1"))
        last = b"[Dec  6 06:25:01] VERBOSE[2001] pbx.c: Executing Dial\n" * 40
        with open(n1.path(f"{LOGS}/full.1"), "ab") as fh:
            fh.write(last)
        n1.write(f"{LOGS}/full", "[Dec  6 06:25:02] NOTICE[1] logger.c: reloaded\n")
        n1.node.check()
        report = await n1.node.update()
        assert report.problems == []
        assert report.bytes_sent < len(last) + 8_000, report.bytes_sent
        for name in ("full", "full.1"):
            assert n2.path(f"{LOGS}/{name}").read_bytes() == \
                n1.path(f"{LOGS}/{name}").read_bytes(), name
        assert any("copied from 3,000,000 bytes of /var/log/asterisk/full" in m for m in n1.log)
        # the old `full` lives on as full.1's first bytes: not backed up
        bdir = str(n2.root / "var/backups/csync2")
        assert backups.generations_of(bdir, f"{LOGS}/full") == []
        assert await n1.sync() == [] and n1.node.dirty_lines() == []


async def test_four_logs_rotated_together_each_find_their_old_bytes(tmp_path: Path) -> None:
    # Debian's asterisk rules rotate full, messages, queue_log and security in one directory:
    # each X.1 must find X among the replaced names, whatever their order and sizes.
    logs = ("full", "messages", "queue_log", "security")
    async with pair(tmp_path) as (n1, n2):
        for i, name in enumerate(logs):
            n1.write(f"{LOGS}/{name}", os.urandom(200_000 * (4 - i)))
            for n in range(2, 5):  # older archives, replaced too
                n1.write(f"{LOGS}/{name}.{n}.gz", os.urandom(COPY_MIN + 7 * n + i))
        assert await n1.sync() == []
        for name in logs:
            os.rename(n1.path(f"{LOGS}/{name}"), n1.path(f"{LOGS}/{name}.1"))
            with open(n1.path(f"{LOGS}/{name}.1"), "ab") as fh:
                fh.write(b"a last line\n" * 20)
            n1.write(f"{LOGS}/{name}", f"{name} reopened\n")
            for n in range(2, 5):
                n1.write(f"{LOGS}/{name}.{n}.gz", os.urandom(COPY_MIN + 3 * n))
        n1.node.check()
        report = await n1.node.update()
        assert report.problems == []
        assert sum("copied from" in m and "bytes of" in m for m in n1.log) == 4
        new_bytes = 12 * (COPY_MIN + 9) + 4 * 240
        assert report.bytes_sent < new_bytes + 20_000, report.bytes_sent
        for name in logs:
            assert n2.path(f"{LOGS}/{name}.1").read_bytes() == \
                n1.path(f"{LOGS}/{name}.1").read_bytes()


async def test_a_receiver_of_version_2_gets_the_bytes_and_honest_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A peer that predates copy sources (protocol version 2) would ignore them: the sender
    # names none there, so it sends those files and counts their bytes in its batches.
    monkeypatch.setattr(p, "PROTO_LATEST", 2)  # the server's side (the client's was bound)
    async with pair(tmp_path) as (n1, n2):
        data = os.urandom(300_000)
        n1.write(f"{LOGS}/full", data)
        assert await n1.sync() == []
        os.rename(n1.path(f"{LOGS}/full"), n1.path(f"{LOGS}/full.1"))
        n1.write(f"{LOGS}/full", "reopened\n")
        n1.node.check()
        report = await n1.node.update()
        assert report.problems == []
        assert report.bytes_sent > len(data)
        assert n2.path(f"{LOGS}/full.1").read_bytes() == data
        assert not any("copied from" in m for m in n1.log)


async def test_renumbered_voicemail_messages_are_copied(tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        msgs = [os.urandom(60_000 + i) for i in range(5)]
        for i, data in enumerate(msgs):
            n1.write(f"{INBOX}/msg{i:04}.wav", data)
        assert await n1.sync() == []
        # message 1 deleted: app_voicemail closes the gap, each later one moves down a number
        os.unlink(n1.path(f"{INBOX}/msg0001.wav"))
        for i in range(2, 5):
            os.rename(n1.path(f"{INBOX}/msg{i:04}.wav"), n1.path(f"{INBOX}/msg{i - 1:04}.wav"))
        n1.node.check()
        report = await n1.node.update()
        assert report.problems == []
        assert report.bytes_sent < 10_000, report.bytes_sent
        assert sorted(p.name for p in n2.path(INBOX).iterdir()) == [
            f"msg{i:04}.wav" for i in range(4)]
        for i, data in enumerate(msgs[:1] + msgs[2:]):
            assert n2.path(f"{INBOX}/msg{i:04}.wav").read_bytes() == data


async def test_a_copy_source_changed_on_the_receiver_is_not_used(tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        a, b = os.urandom(200_000), os.urandom(200_000)
        n1.write(f"{LOGS}/a", a)
        n1.write(f"{LOGS}/b", b)
        assert await n1.sync() == []
        n2.write(f"{LOGS}/a", b"edited on the standby")  # our record of the peer is stale
        n1.write(f"{LOGS}/b", a)
        n1.node.check()
        report = await n1.node.update()
        assert report.problems == []
        assert report.bytes_sent > 200_000  # sent, not copied from a file that no longer has it
        assert n2.path(f"{LOGS}/b").read_bytes() == a
        assert n2.path(f"{LOGS}/a").read_bytes() == b"edited on the standby"


@pytest.fixture
def side(tmp_path: Path) -> Iterator[tuple[Receiver, Path]]:
    """vpbx1-2's receiving side for vpbx1-1 on a root of its own, closed after the test."""
    rec, root = _receiver(tmp_path)
    yield rec, root
    rec.close()
    rec.db.close()


def _receiver(tmp_path: Path) -> tuple[Receiver, Path]:
    root = tmp_path / "root"
    (root / "var/log/asterisk").mkdir(parents=True)
    group = talk_config(tmp_path).groups[0]
    db = StateDB(str(tmp_path / "db.db3"))
    return Receiver(db, Matcher(group.patterns), PathMap(str(root), {}, "vpbx1-2"), group,
                    "vpbx1-2", "vpbx1-1"), root


def _state_of(data: bytes) -> FileState:
    h = Hasher()
    h.update(data)
    return FileState("reg", 0o640, os.getuid(), os.getgid(), len(data), 1_700_000_000_000_000_000,
                     h.hexdigest())


def test_the_receiver_copies_an_included_source_and_needs_no_bytes(
    side: tuple[Receiver, Path],
) -> None:
    rec, root = side
    data = os.urandom(100_000)
    (root / "var/log/asterisk/full").write_bytes(data)
    new = _state_of(data)
    op = Op("put", f"{LOGS}/full.1", None, new, False, f"{LOGS}/full", new)
    results, need, batch = rec.evaluate([op])
    assert need == [] and results == [None]
    (done,) = rec.commit(batch)
    assert done.status == "ok" and "copied from" in done.message
    copy = root / "var/log/asterisk/full.1"
    assert copy.read_bytes() == data
    assert (copy.stat().st_mode & 0o7777, copy.stat().st_mtime_ns) == (0o640, new.mtime_ns)
    assert rec.db.local_get(f"{LOGS}/full.1") is not None


def test_a_copy_source_outside_the_includes_is_never_read(side: tuple[Receiver, Path]) -> None:
    rec, root = side
    secret = os.urandom(100_000)
    (root / "etc").mkdir()
    (root / "etc/shadow").write_bytes(secret)  # on the receiver, outside every include
    os.symlink(root / "etc", root / "var/log/asterisk/via")
    new = _state_of(secret)
    forged = [Op("put", f"{LOGS}/x", None, new, False, "/etc/shadow", new),
              Op("put", f"{LOGS}/y", None, new, False, f"{LOGS}/via/shadow", new),
              Op("put", f"{LOGS}/z", None, new, False, f"{LOGS}/../../../etc/shadow", new)]
    _, need, _ = rec.evaluate(forged)
    assert need == [0, 1, 2]  # the sender must send them: nothing was copied
    rec.abort()
    assert not (root / "var/log/asterisk/x").exists()


def test_a_copy_that_does_not_match_its_digest_is_sent_instead(side: tuple[Receiver, Path]) -> None:
    rec, root = side
    data = os.urandom(100_000)
    (root / "var/log/asterisk/full").write_bytes(data)  # no record of it here: copy, check
    claimed = _state_of(os.urandom(100_000))  # the peer's record of our file is wrong
    op = Op("put", f"{LOGS}/full.1", None, claimed, False, f"{LOGS}/full", claimed)
    _, need, batch = rec.evaluate([op])
    assert need == [0] and batch.pending[0].final is None  # to be sent, fresh
    assert [p.name for p in (root / "var/log/asterisk").iterdir()] == ["full"]
    assert rec.db.tmp_paths() == [batch.pending[0].tmp]  # only the one to receive


def test_a_copy_whose_source_changed_under_it_leaves_nothing(side: tuple[Receiver, Path]) -> None:
    # A local program rewrote the source between its opening and the copy: the digest check
    # fails, the temp file goes, and the file is needed from the sender as usual.
    rec, root = side
    src = root / "var/log/asterisk/full"
    src.write_bytes(b"x" * 100_000)
    new = _state_of(os.urandom(100_000))
    op = Op("put", f"{LOGS}/full.1", None, new, False, f"{LOGS}/full", new)
    local = str(root / "var/log/asterisk/full.1")
    p = Pending(0, op, local, fsops.tmp_path_for(local), None, "ok", "")
    batch = Batch()
    fd = os.open(src, os.O_RDONLY)
    try:
        assert rec.copy_into(batch, p, fd) is False
        assert batch.pending == {} and rec.db.tmp_paths() == []
        assert [x.name for x in src.parent.iterdir()] == ["full"]
    finally:
        os.close(fd)
        batch.close_dirs()


def test_a_directory_swapped_for_a_symlink_between_batches_is_not_read_through(
    side: tuple[Receiver, Path],
) -> None:
    rec, root = side
    data = os.urandom(100_000)
    sub = root / "var/log/asterisk/sub"
    sub.mkdir()
    (sub / "f").write_bytes(data)
    outside = root / "etc/private"
    outside.mkdir(parents=True)
    (outside / "f").write_bytes(data)
    new = _state_of(data)
    _, need, batch = rec.evaluate([Op("put", f"{LOGS}/a", None, new, False, f"{LOGS}/sub/f",
                                      new)])
    assert need == []
    rec.commit(batch)
    # a local program puts a symlink where the directory was, in the same session
    (sub / "f").unlink()
    sub.rmdir()
    sub.symlink_to(outside)
    _, need, _ = rec.evaluate([Op("put", f"{LOGS}/b", None, new, False, f"{LOGS}/sub/f",
                                  new)])
    assert need == [0]


def test_no_copy_is_made_for_a_conflict(side: tuple[Receiver, Path]) -> None:
    rec, root = side
    data = os.urandom(100_000)
    (root / "var/log/asterisk/full").write_bytes(data)
    (root / "var/log/asterisk/full.1").write_bytes(b"changed here since the last sync")
    new = _state_of(data)
    base = _state_of(b"what both had")
    op = Op("put", f"{LOGS}/full.1", base, new, False, f"{LOGS}/full", new)
    results, need, _ = rec.evaluate([op])
    assert need == [] and results[0] is not None and results[0].status == "conflict"
    assert sorted(p.name for p in (root / "var/log/asterisk").iterdir()) == [
        "full", "full.1"]
    assert rec.db.tmp_paths() == []


def test_ids_and_sizes_linux_cannot_hold_are_refused_on_the_wire() -> None:
    good = _state_of(b"x").to_wire()
    assert FileState.from_wire(good) == _state_of(b"x")
    for i, bad in ((2, 1 << 40), (3, (1 << 32) - 1), (4, 1 << 63), (8, 1 << 64)):
        raw = list(good)
        raw[i] = bad
        try:
            FileState.from_wire(raw)
        except ProtocolError:
            continue
        raise AssertionError(f"field {i} = {bad} accepted")


def test_a_new_session_leaves_the_files_of_a_live_one_alone(side: tuple[Receiver, Path]) -> None:
    # The daemon's session is receiving a file when cron's `nonstop sync -x` (or a second
    # peer) opens another session on the same database: its start-up cleanup must not remove
    # the live session's temp file. Once no session is live, a killed one's are removed.
    live, root = side
    other = Receiver(live.db, live.matcher, live.paths, live.group, "vpbx1-2", "vpbx1-1")
    data = os.urandom(50_000)
    new = _state_of(data)
    try:
        _, need, batch = live.evaluate([Op("put", f"{LOGS}/full", None, new)])
        assert need == [0]
        live.open_data(batch, 0)
        live.write(batch, 0, data[:1000])
        tmp = batch.pending[0].tmp
        assert other.cleanup() == 0
        assert os.path.exists(tmp) and live.db.tmp_paths() == [tmp]
        live.write(batch, 0, data[1000:])
        live.end_data(batch, 0, new)
        (done,) = live.commit(batch)
        assert done.status == "ok" and (root / "var/log/asterisk/full").read_bytes() == data
        other.close()
        # a session killed mid-file (its rows and temp file stay), then a new one alone
        _, _, batch = live.evaluate([Op("put", f"{LOGS}/x", None, new)])
        live.open_data(batch, 0)
        left = batch.pending[0].tmp
        assert os.path.exists(left)
        os.close(batch.pending[0].fd)
        batch.close_dirs()
        live._open.clear()  # as if the process had been killed: nothing undone
        live.close()
        fresh = Receiver(live.db, live.matcher, live.paths, live.group, "vpbx1-2", "vpbx1-1")
        assert fresh.cleanup() == 1 and not os.path.exists(left)
        fresh.close()
    finally:
        other.close()


def test_a_new_session_does_not_cut_an_append_in_flight(side: tuple[Receiver, Path]) -> None:
    live, root = side
    other = Receiver(live.db, live.matcher, live.paths, live.group, "vpbx1-2", "vpbx1-1")
    log = root / "var/log/asterisk/full"
    old = os.urandom(300_000)
    log.write_bytes(old)
    log.chmod(0o640)
    os.utime(log, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    tail = os.urandom(200_000)
    base = _state_of(old)
    new = _state_of(old + tail)
    try:
        results, need, batch = live.evaluate([Op("put", f"{LOGS}/full", base, new)])
        assert need == [0], results
        live.open_data(batch, 0, "append", len(old))
        assert batch.pending[0].journalled
        live.write(batch, 0, tail[:100_000])
        assert other.cleanup() == 0  # before: cut the file back to 300,000 bytes here
        live.write(batch, 0, tail[100_000:])
        live.end_data(batch, 0, new)
        (done,) = live.commit(batch)
        assert done.status == "ok"
        assert log.read_bytes() == old + tail
    finally:
        other.close()


def _append_begun(live: Receiver, root: Path) -> tuple[Path, bytes, bytes, Batch]:
    """Our 300 KB `full`, a 200 KB append to it offered, and its first 50 KB written in place
    (the batch uncommitted)."""
    log = root / "var/log/asterisk/full"
    old = os.urandom(300_000)
    _put(log, old)
    tail = os.urandom(200_000)
    _, need, batch = live.evaluate([Op("put", f"{LOGS}/full", _state_of(old),
                                       _state_of(old + tail))])
    assert need == [0]
    live.open_data(batch, 0, "append", len(old))
    live.write(batch, 0, tail[:50_000])
    live.wait_writes()
    return log, old, tail, batch


@pytest.mark.parametrize("local_lines", [b"", b"asterisk on the new active node\n" * 200])
def test_an_aborted_append_never_cuts_what_was_written_after_it(
        side: tuple[Receiver, Path], local_lines: bytes) -> None:
    """The active node crashed mid-append; the session here hung half-open (no FIN) while
    this node took over and its Asterisk wrote on; when the session ended at last, the cut
    back to the old size deleted those lines too, on both nodes once pushed."""
    live, root = side
    log, old, tail, _ = _append_begun(live, root)
    with open(log, "ab") as fh:  # a local writer, after our partial append
        fh.write(local_lines)
    live.close()  # the session ends uncommitted
    if local_lines:
        assert log.read_bytes() == old + tail[:50_000] + local_lines  # nothing lost
    else:
        assert log.read_bytes() == old  # only our bytes: cut back, as before
    assert live.db.appends() == []


def test_an_append_that_fails_half_written_is_cut_back(
        side: tuple[Receiver, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk nearly full: pwrite wrote part of a chunk, then ENOSPC. The bytes counted as
    ours lagged the file by that part, the cut-back took the file for written on by someone
    else and left the half append (and forgot its journal row)."""
    import errno

    live, root = side
    log, old, tail, batch = _append_begun(live, root)
    real = os.pwrite
    calls = [0]

    def nearly_full(fd: int, data: bytes | memoryview, pos: int) -> int:
        calls[0] += 1
        if calls[0] == 1:
            return real(fd, bytes(data[:1000]), pos)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", nearly_full)
    live.write(batch, 0, tail[50_000:60_000])
    monkeypatch.setattr(os, "pwrite", real)
    assert "No space left" in batch.pending[0].failed
    live.close()
    assert log.read_bytes() == old
    assert live.db.appends() == []


def test_an_append_that_writes_nothing_before_enospc_gets_its_old_mtime_back(
        side: tuple[Receiver, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """ext4 sets a file's mtime on a write that then fails with ENOSPC, having written no
    byte. The cut-back saw the old size and left the new mtime: every later push found the
    log 'changed on both' nodes (changed mtime), and the log never replicated again."""
    import errno

    live, root = side
    log = root / "var/log/asterisk/full"
    old = os.urandom(300_000)
    _put(log, old)
    before = log.stat().st_mtime_ns
    tail = os.urandom(4096)
    _, need, batch = live.evaluate([Op("put", f"{LOGS}/full", _state_of(old),
                                       _state_of(old + tail))])
    assert need == [0]
    live.open_data(batch, 0, "append", len(old))

    def full_disk(fd: int, data: bytes | memoryview, pos: int) -> int:
        os.utime(fd)  # what ext4 does before it finds no room
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full_disk)
    live.write(batch, 0, tail)
    monkeypatch.undo()
    assert "No space left" in batch.pending[0].failed
    assert log.stat().st_mtime_ns != before
    live.close()
    assert log.read_bytes() == old
    assert log.stat().st_mtime_ns == before
    assert live.db.appends() == []


def test_an_append_to_a_read_only_replica_says_so(
        side: tuple[Receiver, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica remounted read-only (or a chattr +i log) was reported as 'changed on vpbx1-2
    during the transfer; sent again later', a wrong cause."""
    import errno

    live, root = side
    log = root / "var/log/asterisk/full"
    old = os.urandom(300_000)
    _put(log, old)
    _, need, batch = live.evaluate([Op("put", f"{LOGS}/full", _state_of(old),
                                       _state_of(old + b"line\n"))])
    assert need == [0]
    real = os.open

    def read_only(path: str, flags: int, *args: object, **kw: object) -> int:
        if flags & os.O_RDWR and str(path).endswith("full"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(path, flags, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", read_only)
    live.open_data(batch, 0, "append", len(old))
    monkeypatch.undo()
    assert batch.pending[0].failed == (f"{LOGS}/full: cannot write on {live.me}: "
                                       "Read-only file system")


def _put(path: Path, data: bytes) -> None:
    """A file of ours as :func:`_state_of` describes it (as last synced)."""
    path.write_bytes(data)
    path.chmod(0o640)
    st = _state_of(data)
    os.utime(path, ns=(st.mtime_ns, st.mtime_ns))


def _grown(root: Path) -> tuple[bytes, bytes, Op]:
    """Our `full` (its old bytes) and the op of `full.1`: those bytes plus the last lines."""
    old = os.urandom(2_500_000)
    _put(root / "var/log/asterisk/full", old)
    tail = b"last line\n" * 5000
    grown = _state_of(old + tail)
    return old, tail, Op("put", f"{LOGS}/full.1", None, grown, False, f"{LOGS}/full",
                         _state_of(old))


@pytest.mark.parametrize("rest", ["append", "whole"])
def test_a_grown_copy_takes_our_bytes_and_the_rest_as_the_sender_sends_it(
    side: tuple[Receiver, Path], rest: str,
) -> None:
    # "append": the sender's START append at our copy's end. "whole": its prefix check failed
    # after all and it sends the whole file: the copy is dropped and the file starts afresh.
    rec, root = side
    old, tail, op = _grown(root)
    assert op.new is not None
    _, need, batch = rec.evaluate([op])
    assert need == [0] and batch.pending[0].resume_at == len(old)
    have = rec.basis(batch, 0)
    assert have is not None and (have.size, have.append) == (len(old), True)
    if rest == "append":
        rec.open_data(batch, 0, "append", len(old))
        rec.write(batch, 0, tail)
        rec.end_data(batch, 0, op.new)
    else:
        rec.write_whole(batch, 0, [old, tail], op.new)
    (done,) = rec.commit(batch)
    assert done.status == "ok", done
    assert ("copied from" in done.message) == (rest == "append")
    assert (root / "var/log/asterisk/full.1").read_bytes() == old + tail
    assert (root / "var/log/asterisk/full").read_bytes() == old  # the source is left as it was


def test_a_grown_copy_whose_source_differs_is_sent_and_an_abort_leaves_nothing(
    side: tuple[Receiver, Path],
) -> None:
    rec, root = side
    old, _tail, op = _grown(root)
    (root / "var/log/asterisk/full").write_bytes(old[:-1] + b"!")  # changed here since
    _, need, batch = rec.evaluate([op])
    assert need == [0] and batch.pending[0].resume_at == 0 and rec.basis(batch, 0) is None
    (root / "var/log/asterisk/full").write_bytes(old)
    _, need, batch = rec.evaluate([op])
    assert need == [0] and batch.pending[0].resume_at == len(old)
    rec.abort()  # the sender went away before the rest came
    assert sorted(p.name for p in (root / "var/log/asterisk").iterdir()) == ["full"]
    assert rec.db.tmp_paths() == []


def test_a_delta_after_a_grown_copy_still_has_its_basis(side: tuple[Receiver, Path]) -> None:
    # The sender's prefix check failed after all: it asks for the signature of our full.1
    # (last week's) and sends a delta; the copy is dropped, the basis stays open.
    rec, root = side
    old, tail, op = _grown(root)
    last_week = os.urandom(300_000)
    _put(root / "var/log/asterisk/full.1", last_week)
    op = Op("put", op.name, _state_of(last_week), op.new, False, op.src, op.src_base)
    _, need, batch = rec.evaluate([op])
    assert need == [0] and batch.pending[0].resume_at == len(old)
    sig = rec.signature(batch, 0)
    assert sig is not None
    delta = rdiff.Delta()
    try:
        for piece in sig:
            delta.signature(piece)
        delta.signature(b"", True)
        stream = delta.feed(old + tail) + delta.feed(b"", True)
    finally:
        delta.close()
    rec.open_data(batch, 0, "delta")
    rec.write(batch, 0, stream)
    assert op.new is not None
    rec.end_data(batch, 0, op.new)
    (done,) = rec.commit(batch)
    assert done.status == "ok", done
    assert "copied from" not in done.message
    assert (root / "var/log/asterisk/full.1").read_bytes() == old + tail


def test_a_source_whose_copy_was_dropped_is_backed_up(side: tuple[Receiver, Path]) -> None:
    rec, root = side
    old, _tail, grown = _grown(root)
    other = os.urandom(2_600_000)  # what the sender sends whole after all: not `old` + lines
    assert grown.new is not None
    rotate = Op("put", f"{LOGS}/full", _state_of(old), _state_of(b"new log\n"))
    ops = [rotate, Op("put", grown.name, None, _state_of(other), False, grown.src,
                      grown.src_base)]
    _, need, batch = rec.evaluate(ops)
    assert need == [0, 1] and batch.pending[1].resume_at == len(old)
    rec.write_whole(batch, 0, [b"new log\n"], _state_of(b"new log\n"))
    rec.write_whole(batch, 1, [other], _state_of(other))
    results = {r.index: r for r in rec.commit(batch)}
    assert results[0].status == results[1].status == "ok"
    assert "copied from" not in results[1].message
    bdir = str(root / "var/backups/csync2")
    assert backups.generations_of(bdir, f"{LOGS}/full") != []  # `old` is kept somewhere


def test_a_copy_that_cannot_be_installed_leaves_its_source_backed_up(
    side: tuple[Receiver, Path],
) -> None:
    rec, root = side
    old = os.urandom(200_000)
    _put(root / "var/log/asterisk/full", old)
    ops = [Op("put", f"{LOGS}/full", _state_of(old), _state_of(b"new log\n")),
           Op("put", f"{LOGS}/full.1", None, _state_of(old), False, f"{LOGS}/full",
              _state_of(old))]
    _, need, batch = rec.evaluate(ops)
    assert need == [0]
    rec.write_whole(batch, 0, [b"new log\n"], _state_of(b"new log\n"))
    (root / "var/log/asterisk/full.1").write_bytes(b"made here meanwhile")
    results = {r.index: r for r in rec.commit(batch)}
    assert results[0].status == "ok" and results[1].status == "error"
    bdir = str(root / "var/backups/csync2")
    assert backups.generations_of(bdir, f"{LOGS}/full") != []  # `old` is kept somewhere



async def test_small_renumbered_messages_rotate_no_backups(tmp_path: Path) -> None:
    """A renumbered voicemail's small files are sent whole, not copied; each replaced one
    still lives on under the next name, so none is backed up. Before, every renumbering
    rotated each small message's generations: a message kept only in a backup (a split
    brain's loser's, after the keeper's -f) was pushed out within a few listens."""
    async with pair(tmp_path) as (n1, n2):
        for i in range(6):
            n1.write(f"{INBOX}/msg{i:04}.txt", f"[message]\ncallerid=10{i}\nduration={i}\n")
        assert await n1.sync() == []
        bdir = str(n2.root / "var/backups/csync2")
        os.unlink(n1.path(f"{INBOX}/msg0001.txt"))  # listened to and deleted: the rest move down
        for i in range(2, 6):
            os.rename(n1.path(f"{INBOX}/msg{i:04}.txt"), n1.path(f"{INBOX}/msg{i - 1:04}.txt"))
        assert await n1.sync() == []
        for i in range(5):
            assert n2.path(f"{INBOX}/msg{i:04}.txt").read_bytes() == \
                n1.path(f"{INBOX}/msg{i:04}.txt").read_bytes()
        assert not n2.path(f"{INBOX}/msg0005.txt").exists()
        # Backed up: message 1's bytes (replaced at msg0001, gone from the tree) and the
        # deleted last name (a deletion always is); no replaced message whose bytes moved on.
        kept = [i for i in range(6) if backups.generations_of(bdir, f"{INBOX}/msg{i:04}.txt")]
        assert kept == [1, 5], kept
        (gen,) = backups.generations_of(bdir, f"{INBOX}/msg0001.txt")
        assert Path(gen).read_text() == "[message]\ncallerid=101\nduration=1\n"
