"""Content digests that can be extended: a file's digest is the hash of its blocks' hashes.

A regular file is cut into blocks of :data:`BLOCK` bytes; each block has a 16-byte blake2b
digest, and the file's digest is the blake2b (20 bytes, hex) of those digests in order. Unlike a
plain hash of the whole content, this lets a file that grew be described by re-hashing only its
last old block and the new bytes (its earlier block digests are kept in the scan cache), and lets
both ends of an append-only transfer verify the whole new content while reading only its tail.
"""

from __future__ import annotations

import os
import threading

from nonstop.errors import InvalidValue

try:  # what hashlib.blake2b is, without hashlib's start (it loads OpenSSL: ~4 ms of `sync -M`)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b

BLOCK = 1 << 20
BLOCK_DIGEST = 16


def _block() -> blake2b:
    return blake2b(digest_size=BLOCK_DIGEST)


def tree_digest(blocks: bytes) -> str:
    """The file digest of a list of block digests."""
    return blake2b(blocks, digest_size=20).hexdigest()


class Hasher:
    """Block digests of content fed in order, from the start or resumed at a block boundary."""

    def __init__(self, blocks: bytes = b"", offset: int = 0) -> None:
        if offset % BLOCK or len(blocks) != offset // BLOCK * BLOCK_DIGEST:
            raise InvalidValue("a hasher resumes at a block boundary with the blocks before it")
        self._done = bytearray(blocks)
        self._cur = _block()
        self._fill = 0
        self.size = offset

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Hash the next bytes of the content."""
        view = memoryview(data)
        while view:
            take = min(len(view), BLOCK - self._fill)
            self._cur.update(view[:take])
            self._fill += take
            self.size += take
            view = view[take:]
            if self._fill == BLOCK:
                self._done += self._cur.digest()
                self._cur = _block()
                self._fill = 0

    def blocks(self) -> bytes:
        """The block digests so far (the last block may be partial)."""
        return bytes(self._done) + (self._cur.digest() if self._fill else b"")

    def hexdigest(self) -> str:
        """The file digest of everything fed so far."""
        return tree_digest(self.blocks())

    def feed_fd(self, fd: int, start: int, end: int) -> int:
        """Hash the bytes ``[start, end)`` of an open file; stops early at its end of file.

        Returns the bytes read. Never reads past ``end``: a file that keeps growing is described
        only as far as the caller asked.
        """
        pos = start
        buf = take_buffer()
        try:
            with memoryview(buf) as view:
                while pos < end:
                    n = os.preadv(fd, [view[: min(_READ, end - pos)]], pos)
                    if not n:
                        break
                    self.update(view[:n])
                    pos += n
        finally:
            give_buffer(buf)
        return pos - start


# Reads go into one kept buffer, not a new object per read (a rolling re-check reads a block
# per call, and a receiver copies a file it holds under another name through it): with the
# daemon's fixed malloc thresholds (process.limit_malloc_arenas) a fresh 1 MiB object per read
# was a new mapping each time (0.65 ms a MiB against 0.08 reused), and one of 256 KiB at the
# heap's top is trimmed and faulted in again (0.24 ms). One buffer is kept; a thread that
# finds it taken reads into one of its own for that call.
_READ = 256 << 10
_spare: list[bytearray] = []
_spare_lock = threading.Lock()


def take_buffer() -> bytearray:
    with _spare_lock:
        return _spare.pop() if _spare else bytearray(_READ)


def give_buffer(buf: bytearray) -> None:
    with _spare_lock:
        if not _spare:
            _spare.append(buf)


def resume_point(blocks: bytes, size: int) -> tuple[bytes, int]:
    """Where to resume hashing content of ``size`` bytes whose block digests are ``blocks``:
    the whole blocks before the last (partial or full) one, and its offset. Re-hashing from
    there re-creates the last block, which is how a caller checks the old end is still there."""
    if size <= 0:
        return b"", 0
    last = (size - 1) // BLOCK
    return blocks[: last * BLOCK_DIGEST], last * BLOCK


def prefix_hasher(fd: int, blocks: bytes, size: int, digest: str) -> Hasher | None:
    """A hasher over an open file's first ``size`` bytes if they have ``digest`` (what a peer
    holds): then only the bytes after them need to go. ``blocks`` are the file's block digests
    (from the scan): at most one block is read."""
    keep, offset = resume_point(blocks, size)
    h = Hasher(keep, offset)
    if h.feed_fd(fd, offset, size) != size - offset:
        return None
    return h if h.hexdigest() == digest else None


def blocks_match(blocks: bytes, size: int, digest: str) -> bool:
    """Whether ``blocks`` describe content of ``size`` bytes with file digest ``digest``."""
    count = (size + BLOCK - 1) // BLOCK
    return len(blocks) == count * BLOCK_DIGEST and tree_digest(blocks) == digest


def hash_fd(fd: int, size: int) -> tuple[Hasher, int]:
    """Hash the first ``size`` bytes of an open file (fewer if it is shorter now)."""
    h = Hasher()
    n = h.feed_fd(fd, 0, size)
    return h, n


def extend(fd: int, blocks: bytes, old_size: int, new_size: int) -> Hasher | None:
    """Describe a file that grew from ``old_size`` (block digests ``blocks``) to ``new_size``
    by re-hashing its last old block and the new bytes; None if that last block changed (the
    file was rewritten, not appended to) or the file is now shorter than ``new_size``."""
    keep, offset = resume_point(blocks, old_size)
    h = Hasher(keep, offset)
    if h.feed_fd(fd, offset, old_size) != old_size - offset:
        return None
    if h.blocks() != blocks:
        return None
    if h.feed_fd(fd, old_size, new_size) != new_size - old_size:
        return None
    return h
