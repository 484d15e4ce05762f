"""Transfers that cost what changed: appends send the new bytes, other changes an rsync delta;
a crash or abort in the middle leaves the old content (two real nodes over TLS on loopback)."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sync_harness import KEY, pair

from nonstop.sync import backups, rdiff
from nonstop.sync.digest import BLOCK
from nonstop.sync.plan import Op
from nonstop.sync.protocol import Kind, encode
from nonstop.sync.receiver import cleanup_tmp
from nonstop.sync.scan import VERIFY_BYTES_PER_S
from nonstop.sync.transport import client_handshake, connect

if TYPE_CHECKING:
    from sync_harness import TestNode

LOG = "/var/log/asterisk/full"
BIG = "/var/spool/asterisk/big.wav"


def _text(n: int, seed: int = 1) -> bytes:
    rnd = random.Random(seed)
    words = [b"NOTICE", b"VERBOSE", b"chan_sip.c", b"Executing", b"SIP/100", b"Dial", b"ok"]
    out = bytearray()
    while len(out) < n:
        out += b" ".join(rnd.choice(words) for _ in range(12)) + b"\n"
    return bytes(out[:n])


def _sent(n1_report_bytes: int, payload: int) -> float:
    return n1_report_bytes / max(payload, 1)


async def test_an_append_sends_only_the_new_bytes(tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        body = _text(3 * BLOCK + 12345)
        n1.write(LOG, body)
        assert await n1.sync() == []
        assert n2.path(LOG).read_bytes() == body
        ino = n2.path(LOG).stat().st_ino
        for i in range(5):
            line = f"[Dec  4 19:{i:02}:00] NOTICE line {i}\n".encode() * 3
            with open(n1.path(LOG), "ab") as fh:
                fh.write(line)
            n1.node.check()
            report = await n1.node.update()
            assert report.problems == []
            # OFFER/VERDICT/START/DATA/EOF/COMMIT/RESULTS/BYE around ~100 bytes of text
            assert report.bytes_sent < len(line) + 2500, report.bytes_sent
            assert n2.path(LOG).read_bytes() == n1.path(LOG).read_bytes()
        # grown in place (same inode) and no backup generation was rotated for the appends
        assert n2.path(LOG).stat().st_ino == ino
        assert backups.generations_of(str(n2.root / "var/backups/csync2"), LOG) == []


async def test_an_in_place_change_sends_about_the_changed_block(tmp_path: Path) -> None:
    assert rdiff.available()
    async with pair(tmp_path) as (n1, n2):
        body = bytearray(os.urandom(8 << 20))
        n1.write(BIG, bytes(body))
        assert await n1.sync() == []
        body[4_000_000:4_001_000] = os.urandom(1000)
        n1.write(BIG, bytes(body))
        n1.node.check()
        report = await n1.node.update()
        assert report.problems == []
        assert n2.path(BIG).read_bytes() == bytes(body)
        # the signature comes back (~40 KB for 8 MB), the delta carries ~one rsync block
        assert report.bytes_sent < 64 * 1024, report.bytes_sent
        assert report.bytes_received < 128 * 1024, report.bytes_received
        # a real replacement: the old version is kept as a backup
        kept = backups.generations_of(str(n2.root / "var/backups/csync2"), BIG)
        assert len(kept) == 1


async def test_an_insertion_costs_what_rsync_would(tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        body = os.urandom(4 << 20)
        n1.write(BIG, body)
        assert await n1.sync() == []
        changed = body[:1_000_000] + b"inserted bytes" * 50 + body[1_000_000:]
        n1.write(BIG, changed)
        n1.node.check()
        report = await n1.node.update()
        assert report.problems == []
        assert n2.path(BIG).read_bytes() == changed
        assert report.bytes_sent + report.bytes_received < 96 * 1024


async def test_a_file_rewritten_in_place_and_grown_converges_within_its_verify_time(
    tmp_path: Path,
) -> None:
    async with pair(tmp_path) as (n1, n2):
        body = _text(2 * BLOCK + 500)
        n1.write(LOG, body)
        assert await n1.sync() == []
        rewritten = b"X" + body[1:] + b"more\n"  # first byte changed and grown: not an append
        with open(n1.path(LOG), "r+b") as fh:
            fh.write(rewritten)
        # Taken for an append at once (only the last old block is read again), but its whole
        # content is read again once size / VERIFY_BYTES_PER_S has passed since the last time.
        assert await n1.sync() == []
        await asyncio.sleep(len(rewritten) / VERIFY_BYTES_PER_S + 0.05)
        assert await n1.sync() == []
        assert n2.path(LOG).read_bytes() == rewritten


async def test_an_append_to_a_replica_changed_on_the_standby_is_a_conflict(tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        n1.write(LOG, _text(300_000))
        assert await n1.sync() == []
        with open(n2.path(LOG), "ab") as fh:
            fh.write(b"written on the standby\n")
        standby = n2.path(LOG).read_bytes()
        with open(n1.path(LOG), "ab") as fh:
            fh.write(b"written on the active node\n")
        problems = await n1.sync()
        assert problems and "changed on both" in problems[0]
        assert n2.path(LOG).read_bytes() == standby


async def test_an_append_cut_off_midway_leaves_the_old_content(tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        old = _text(BLOCK + 777)
        n1.write(LOG, old)
        assert await n1.sync() == []
        with open(n1.path(LOG), "ab") as fh:
            fh.write(_text(500_000, seed=2))
        n1.node.check()
        seen = n1.node.db.local_get(LOG)
        synced = n1.node.db.synced_for("vpbx1-2", [LOG])[LOG]
        assert seen is not None
        # A sender that dies after part of the new bytes: a session by hand.
        chan = await connect("127.0.0.2", n2.node.opts.port)
        await client_handshake(chan, KEY.encode(), "vpbx1", "vpbx1-1", "vpbx1-2")
        chan.send_obj(Kind.OFFER, {"b": 0, "ops": [Op("put", LOG, synced, seen.state).to_wire()]})
        verdict = (await chan.expect(Kind.VERDICT)).obj()
        assert verdict["need"] == [0] and verdict["have"]["0"]["size"] == len(old)
        chan.send_obj(Kind.START, {"i": 0, "m": "append", "at": len(old)})
        chan.send(encode(Kind.DATA, b"partial " * 20_000))
        await chan.drain()
        replica = n2.path(LOG)
        for _ in range(300):
            if replica.stat().st_size > len(old):
                break
            await asyncio.sleep(0.01)
        assert replica.stat().st_size > len(old)  # it really was being appended in place
        await chan.close()
        for _ in range(300):  # the receiver closes in a worker thread: cut, then journal
            if replica.stat().st_size == len(old) and not n2.node.db.appends():
                break
            await asyncio.sleep(0.01)
        assert replica.read_bytes() == old
        assert n2.node.db.appends() == []
        # the next run completes it
        assert await n1.sync() == []
        assert replica.read_bytes() == n1.path(LOG).read_bytes()


def test_a_crash_during_an_append_is_undone_at_the_next_start(tmp_path: Path) -> None:
    from nonstop.sync.statedb import StateDB

    f = tmp_path / "full"
    f.write_bytes(b"old content\n")
    st = f.stat()
    db = StateDB(str(tmp_path / "state.db3"))
    db.add_append(str(f), st.st_ino, st.st_size, st.st_mtime_ns)
    with open(f, "ab") as fh:  # the crashed receiver had written part of the new bytes
        fh.write(b"half a li")
    assert cleanup_tmp(db) == 1
    assert f.read_bytes() == b"old content\n"
    assert f.stat().st_mtime_ns == st.st_mtime_ns
    assert db.appends() == []
    db.close()


async def _append_beside_a_second_link(n1: TestNode, n2: TestNode) -> None:
    """A log synced once, a second hard link to the replica (`ln full full.keep`), one line
    appended at the source and synced: the replica is equal under a new inode, the other link
    keeps the old bytes, nothing is left dirty."""
    body = _text(3 * BLOCK + 12345)
    n1.write(LOG, body)
    assert await n1.sync() == []
    os.link(n2.path(LOG), n2.path(LOG + ".keep"))
    ino = n2.path(LOG).stat().st_ino
    _append_line(n1, b"[Dec  4 19:00:00] NOTICE one more line\n")
    assert await n1.sync() == []
    assert n2.path(LOG).read_bytes() == n1.path(LOG).read_bytes()
    assert n2.path(LOG).stat().st_ino != ino
    assert n2.path(LOG + ".keep").read_bytes() == body
    assert n1.node.dirty_lines() == []


async def test_a_log_with_a_second_hard_link_on_the_replica_is_replaced_whole(
        tmp_path: Path) -> None:
    """`ln full full.keep` on the replica: an append in place would change full.keep too, so it
    was refused ("it has other hard links") at every run, forever. The file is replaced as for
    any other change instead (csync2 does the same): the name gets a new inode, the other link
    keeps the old bytes."""
    async with pair(tmp_path) as (n1, n2):
        await _append_beside_a_second_link(n1, n2)


async def test_a_log_whose_append_an_older_receiver_refuses_is_replaced_in_the_same_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rolling upgrade: the release before cd6f31e (protocol 3) offers a log with a second
    hard link as a basis to append to, then refuses the append ("cannot append on vpbx1-2: it
    has other hard links"), and a newer sender sent the append again at every run: the log
    never converged until the standby was upgraded. That receiver is this one with its basis
    as it was (no hard-link test; the refusal is the same code) at the version it negotiates.
    The sender now replaces such a file in the same run: no error, no conflict, the name
    gets a new inode, the other link keeps its bytes."""
    from nonstop.sync import protocol
    from nonstop.sync.receivedata import ReceiveData

    monkeypatch.setattr(protocol, "PROTO_LATEST", 3)
    monkeypatch.setattr(ReceiveData, "_linked", staticmethod(lambda _local: False))
    async with pair(tmp_path) as (n1, n2):
        await _append_beside_a_second_link(n1, n2)
        assert any("could not append" in m and "replacing it instead" in m for m in n1.log), n1.log
        # The replica has one link now: the next line is an append in place again.
        ino = n2.path(LOG).stat().st_ino
        n1.log.clear()
        _append_line(n1, b"[Dec  4 19:00:01] NOTICE and another\n")
        assert await n1.sync() == []
        assert n2.path(LOG).read_bytes() == n1.path(LOG).read_bytes()
        assert n2.path(LOG).stat().st_ino == ino
        assert not any("could not append" in m for m in n1.log)


def _append_line(node: TestNode, line: bytes) -> None:
    with open(node.path(LOG), "ab") as fh:
        fh.write(line)
