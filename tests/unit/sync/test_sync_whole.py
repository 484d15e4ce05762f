"""The lean path of a first sync: WHOLE frames (protocol version 2, negotiated), whole files
held for one writer job, temp files that cost no getrandom and no chown when the owner is ours."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sync_harness import KEY, pair
from test_sync_session_core import deliver, phases

from nonstop.sync import protocol as p
from nonstop.sync.messages import Eof, Offer, Verdict, Whole
from nonstop.sync.plan import Op
from nonstop.sync.protocol import Kind, ProtocolError, RemoteError, encode
from nonstop.sync.session import ClientSession, Phase, ServerSession, SessionMisuse
from nonstop.sync.state import FileState
from nonstop.sync.transport import client_handshake, connect

A = FileState("reg", 0o644, 0, 0, 5, 1, "d1")
B = FileState("reg", 0o644, 0, 0, 3, 2, "d2")
OPS = [Op("put", "/etc/asterisk/a.conf", None, A), Op("put", "/etc/asterisk/b.conf", None, B),
       Op("put", "/etc/asterisk/c.conf", None, A)]


def offered(version: int = 2) -> tuple[ClientSession, ServerSession]:
    c, s = ClientSession(version=version), ServerSession(version=version)
    assert deliver(c.offer(0, OPS), s) == [Offer(0, OPS)]
    assert deliver(s.verdict(0, [], [0, 1, 2], {}), c) == [Verdict(0, {}, [0, 1, 2], {})]
    return c, s


# --- the session core --------------------------------------------------------------------------
def test_whole_frames_carry_several_files_with_no_eof_and_mix_with_data_frames() -> None:
    c, s = offered()
    assert deliver(c.whole([(0, b"hello"), (1, b"abc")]), s) == [
        Whole([(0, b"hello"), (1, b"abc")])]
    assert s.phase is Phase.RECEIVING
    # the last file the usual way (it changed since the scan, say)
    deliver([*c.data(b"hello"), c.eof(2, A)], s)
    assert phases(s) == (Phase.AWAIT_COMMIT,)
    c, s = offered()
    deliver([*c.data(b"hello"), c.eof(0, A)], s)
    assert deliver(c.whole([(1, b"abc"), (2, b"")]), s) == [Whole([(1, b"abc"), (2, b"")])]
    assert s.phase is Phase.AWAIT_COMMIT and c.phase is Phase.SENDING


def test_a_version_1_session_neither_sends_nor_accepts_whole_frames() -> None:
    c, _s = offered(version=1)
    with pytest.raises(SessionMisuse):
        c.whole([(0, b"hello")])
    c2, _ = offered()
    _c, s1 = offered(version=1)
    with pytest.raises(ProtocolError, match="WHOLE frame not allowed"):
        deliver(c2.whole([(0, b"hello")]), s1)


def test_whole_files_must_be_the_next_ones_due() -> None:
    c, _s = offered()
    for files in ([], [(1, b"x")], [(0, b"x"), (2, b"y")]):
        with pytest.raises(SessionMisuse):
            c.whole(files)


def _frame(count: int, sizes: list[int], body: bytes) -> bytes:
    return encode(Kind.WHOLE, b"".join(x.to_bytes(4, "big") for x in [count, *sizes]) + body)


@pytest.mark.parametrize("frame", [
    _frame(0, [], b""),                  # no file
    _frame(4, [1, 1, 1, 1], b"abcd"),    # more files than the batch still needs
    _frame(2, [3, 3], b"abcde"),         # sizes that do not add up
    _frame(1, [1], b"ab"),
    encode(Kind.WHOLE, b"\x00\x00"),     # shorter than its count
    _frame(2, [1], b""),                 # fewer sizes than its count
])
def test_a_bad_whole_frame_is_bad_remote_input(frame: bytes) -> None:
    _c, s = offered()
    with pytest.raises(ProtocolError):
        deliver(frame, s)


def test_a_whole_frame_in_the_middle_of_a_file_is_refused() -> None:
    c, s = offered()
    deliver(c.data(b"he"), s)
    with pytest.raises(ProtocolError):
        deliver(_frame(1, [1], b"x"), s)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 3))
def test_any_whole_payload_is_files_or_bad_remote_input(payload: bytes, done: int) -> None:
    c, s = offered()
    for i in range(done):
        deliver([*c.data(b"x"), c.eof(i, A)], s)
    with contextlib.suppress(ProtocolError, RemoteError):
        for ev in deliver(encode(Kind.WHOLE, payload), s):
            assert isinstance(ev, Whole) and 0 < len(ev.files) <= 3 - done


def test_the_version_1_transcript_is_unchanged() -> None:
    """Older nodes prove the key over exactly these bytes."""
    assert p.transcript("g", "c", "s", "n1", "n2", "fp") == \
        b"nonstop-sync\x001\x00g\x00c\x00s\x00n1\x00n2\x00fp"
    assert p.transcript("g", "c", "s", "n1", "n2", "fp", 2).startswith(b"nonstop-sync\x002\x00")


# --- negotiation and pushes over TLS -----------------------------------------------------------
async def test_new_nodes_agree_on_version_5_and_older_clients_get_theirs(
        tmp_path: Path) -> None:
    async with pair(tmp_path) as (_n1, n2):
        port = n2.node.opts.port
        for vmax, want in ((p.PROTO_LATEST, 5), (4, 4), (3, 3), (2, 2), (1, 1)):
            chan = await connect("127.0.0.2", port)
            try:
                assert await client_handshake(chan, KEY.encode(), "vpbx1", "vpbx1-1", "vpbx1-2",
                                              vmax) == want
            finally:
                await chan.close()


async def _push_bytes(tmp_path: Path, n: int) -> tuple[int, dict[str, bytes], dict[str, bytes]]:
    tmp_path.mkdir()
    async with pair(tmp_path) as (n1, n2):
        for i in range(n):
            n1.write(f"/var/spool/asterisk/vm/m{i:03}.txt", os.urandom(i * 7))
        n1.node.check()
        report = await n1.node.update()
        assert report.problems == []
        vm1, vm2 = n1.path("/var/spool/asterisk/vm"), n2.path("/var/spool/asterisk/vm")
        return (report.bytes_sent, {x.name: x.read_bytes() for x in vm1.iterdir()},
                {x.name: x.read_bytes() for x in vm2.iterdir()})


async def test_a_push_to_an_old_receiver_falls_back_to_data_and_eof_frames(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An old receiver ignores HELLO's vmax and answers no version: the client speaks 1."""
    new, src, dst = await _push_bytes(tmp_path / "new", 200)
    assert dst == src and len(dst) == 200
    monkeypatch.setattr(p, "PROTO_LATEST", 1)  # the server's side only: the client's default
    old, src, dst = await _push_bytes(tmp_path / "old", 200)  # was bound at import
    assert dst == src and len(dst) == 200
    # an EOF frame with its JSON state per file is gone: over 100 bytes a file
    assert old - new > 200 * 100


async def test_a_whole_frame_on_a_version_1_session_drops_it_and_installs_nothing(
        tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        n1.write("/etc/asterisk/a.conf", "hello")
        n1.node.check()
        seen = n1.node.db.local_get("/etc/asterisk/a.conf")
        assert seen is not None
        chan = await connect("127.0.0.2", n2.node.opts.port)
        assert await client_handshake(chan, KEY.encode(), "vpbx1", "vpbx1-1", "vpbx1-2", 1) == 1
        chan.send(p.encode_obj(Kind.OFFER, {"b": 0, "ops": [
            Op("put", "/etc/asterisk/a.conf", None, seen.state).to_wire()]}))
        assert (await chan.expect(Kind.VERDICT)).obj()["need"] == [0]
        chan.send(p.pack_whole([b"hello"]))
        chan.send(p.encode_obj(Kind.COMMIT, {"b": 0}))
        await chan.drain()
        with contextlib.suppress(ConnectionError, p.PeerClosed, RemoteError, ProtocolError):
            await asyncio.wait_for(chan.recv(), 5)
        await chan.close()
        assert not n2.path("/etc/asterisk/a.conf").exists()
        assert [x.name for x in n2.path("/etc/asterisk").iterdir()] == []


async def test_a_session_dropped_after_whole_frames_leaves_nothing(tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        names = [f"/etc/asterisk/f{i}.conf" for i in range(100)]
        for name in names:
            n1.write(name, "x" * 100)
        n1.node.check()
        ops = [Op("put", n, None, s.state) for n in names
               if (s := n1.node.db.local_get(n)) is not None]
        chan = await connect("127.0.0.2", n2.node.opts.port)
        assert await client_handshake(chan, KEY.encode(), "vpbx1", "vpbx1-1", "vpbx1-2") == \
            p.PROTO_LATEST
        chan.send(p.encode_obj(Kind.OFFER, {"b": 0, "ops": [op.to_wire() for op in ops]}))
        assert len((await chan.expect(Kind.VERDICT)).obj()["need"]) == 100
        chan.send(p.pack_whole([b"x" * 100] * 100))  # every file, then no COMMIT
        await chan.drain()
        conf = n2.path("/etc/asterisk")
        for _ in range(300):  # the writer makes the temp files...
            if any(x.name.startswith(".nonstop-tmp-") for x in conf.iterdir()):
                break
            await asyncio.sleep(0.01)
        await chan.close()
        for _ in range(300):  # ...and the dropped session removes them (in a worker thread:
            if not list(conf.iterdir()) and not n2.node.db.tmp_paths():  # files, then rows)
                break
            await asyncio.sleep(0.01)
        assert list(conf.iterdir()) == []
        assert n2.node.db.tmp_paths() == []
        assert await n1.sync() == []  # the next run installs them
        assert len(list(conf.iterdir())) == 100


def test_eof_is_still_accepted_after_whole_frames() -> None:
    c, s = offered()
    deliver(c.whole([(0, b"hello")]), s)
    assert deliver([*c.data(b"abc"), c.eof(1, B)], s)[-1] == Eof(1, B)
