"""HOLE frames (protocol version 5): a chunk of zeros crosses the wire as its length.

A user trial replicated a 1 GiB disk image holding 5 bytes: 1 GiB went over the wire (182 s,
every other change waiting behind it), where rsync -S sends almost nothing. The receiver
already left such zeros as holes on its disk; now the sender sends no zeros either."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sync_harness import pair
from test_sync_session_core import deliver
from test_sync_whole import OPS, offered

from nonstop.sync import protocol as p
from nonstop.sync.messages import Data, Eof
from nonstop.sync.protocol import CHUNK, Kind, ProtocolError, encode
from nonstop.sync.session import ServerSession


def _kinds(frames: list[bytes]) -> list[Kind]:
    return [Kind(f[p.HEADER.size - 1]) for f in frames]


def test_zeros_go_as_hole_frames_and_arrive_as_the_same_bytes() -> None:
    c, s = offered(version=5)
    payload = bytes(CHUNK) + b"x" + bytes(CHUNK - 1) + bytes(100)
    frames = c.data(payload)
    # a chunk of zeros, a chunk with one byte of data, and a tail too short to be worth it
    assert _kinds(frames) == [Kind.HOLE, Kind.DATA, Kind.DATA]
    assert sum(map(len, frames)) < CHUNK + 200 + 3 * 13
    got = deliver([*frames, c.eof(0, OPS[0].new)], s)
    assert b"".join(e.payload for e in got if isinstance(e, Data)) == payload
    assert got[-1] == Eof(0, OPS[0].new)


def test_an_older_peer_gets_data_frames() -> None:
    c, s = offered(version=4)
    frames = c.data(bytes(CHUNK))
    assert _kinds(frames) == [Kind.DATA]
    assert deliver(frames, s) == [Data(0, bytes(CHUNK))]


@pytest.mark.parametrize("payload", [b"", b"\0" * 7, p.HEADER.pack(0, 0)[:8],
                                     (CHUNK + 1).to_bytes(8, "big"), (0).to_bytes(8, "big")])
def test_a_malformed_or_oversized_hole_is_bad_remote_input(payload: bytes) -> None:
    _c, s = offered(version=5)
    with pytest.raises(ProtocolError):
        deliver([encode(Kind.HOLE, payload)], s)


def test_a_hole_frame_outside_a_file_is_refused() -> None:
    s = ServerSession(version=5)
    with pytest.raises(ProtocolError):
        deliver([encode(Kind.HOLE, (4096).to_bytes(8, "big"))], s)


async def test_a_sparse_file_costs_its_data_on_the_wire_and_stays_sparse(
        tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        name = "/var/lib/asterisk/disk.img"
        image = n1.write(name, b"")
        with open(image, "r+b") as fh:
            fh.truncate(64 << 20)
            fh.seek(32 << 20)
            fh.write(b"hello")
        n1.node.check()
        report = await n1.node.update()
        assert report.problems == []
        assert report.bytes_sent < 1 << 20, report.bytes_sent  # 64 MiB before
        copy = n2.path(name)
        assert copy.read_bytes() == image.read_bytes()
        assert os.stat(copy).st_blocks * 512 < 1 << 20  # left as holes there
