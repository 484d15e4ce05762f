"""A sparse file stays sparse on the replica: the zeros that arrive go to its temp file as holes.
A user trial: a 1 GiB disk image holding 5 bytes took 1 GiB of the standby's disk."""

from __future__ import annotations

import os
from pathlib import Path

from sync_harness import pair

from nonstop.sync.protocol import HOLE_MIN
from nonstop.sync.protocol import is_hole as holes

IMAGE = "/var/lib/asterisk/sparse.img"


def test_only_zeros_long_enough_for_a_block_are_holes() -> None:
    assert holes(bytes(HOLE_MIN)) and holes(bytes(256 << 10))
    assert not holes(bytes(HOLE_MIN - 1))
    assert not holes(bytes(HOLE_MIN - 1) + b"\1") and not holes(b"\1" + bytes(HOLE_MIN))
    assert not holes(os.urandom(HOLE_MIN))


async def test_a_sparse_file_arrives_sparse_and_equal(tmp_path: Path) -> None:
    size = 64 << 20
    async with pair(tmp_path) as (n1, n2):
        src = n1.path(IMAGE)
        with open(src, "wb") as f:
            f.truncate(size)  # ending in a hole: the length must still be right
            f.seek(20 << 20)
            f.write(b"hello")
        assert await n1.sync() == []
        got = n2.path(IMAGE)
        assert got.stat().st_size == size
        assert got.read_bytes() == src.read_bytes()
        assert got.stat().st_blocks * 512 < 1 << 20, got.stat().st_blocks  # not 64 MiB written
        # changed at its start and longer: not an append, a new temp file (a delta or whole)
        with open(src, "r+b") as f:
            f.write(b"header")
            f.truncate(size + (3 << 20))
            f.seek(size + (2 << 20))
            f.write(b"end")
        assert await n1.sync() == []
        assert got.stat().st_size == size + (3 << 20)
        assert got.read_bytes() == src.read_bytes()
        assert got.stat().st_blocks * 512 < 1 << 20, got.stat().st_blocks
