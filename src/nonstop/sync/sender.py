"""Streaming one file's bytes to the peer: whole, appended, or as an rsync delta.

Used by the pushing client for the files a verdict needs and by the server for fetched files.
Never more than the size the scan saw is sent: a file that keeps growing goes as far as it was
described, the rest is the next run's work. A sqlite database is the exception: it goes whole,
as last committed, copied under sqlite's own lock (sqlitefile).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable, Mapping, Sequence

from nonstop.sync import rdiff, sqlitefile
from nonstop.sync.digest import Hasher, blocks_match, prefix_hasher
from nonstop.sync.messages import Basis
from nonstop.sync.patterns import PathMap
from nonstop.sync.plan import Op
from nonstop.sync.protocol import CHUNK
from nonstop.sync.session import ClientSession, ServerSession
from nonstop.sync.state import FileState, held_ns
from nonstop.sync.statedb import StateDB
from nonstop.sync.transport import Channel
from nonstop.tasks import in_thread, in_thread_made

# Below this size a file is sent whole: a signature round trip costs more than the bytes.
DELTA_MIN = 64 * 1024
# Version 2: files up to CHUNK bytes go several to a WHOLE frame, up to this many or CHUNK bytes.
PACK_FILES = 64
DeltaStart = Callable[[int, Basis], Awaitable[rdiff.Delta | None]]
# How long a sqlite database may stay locked by its writers before its file is given up for
# this run (it stays dirty): a commit holds its lock for milliseconds.
SQLITE_WAIT_S = 2.0
SQLITE_RETRY_S = 0.005


class FileSender:
    """Sends files over one session."""

    def __init__(self, chan: Channel, session: ClientSession | ServerSession, db: StateDB,
                 paths: PathMap, delta_start: DeltaStart | None = None,
                 no_append: set[str] | None = None) -> None:
        self.chan = chan
        self.session = session
        self.db = db
        self.paths = paths
        self.delta_start = delta_start  # asks the peer for its signature (client only)
        # Names the peer could not append to (its copy has other hard links): never appended
        # to again in this session, whatever its basis says (client._send_ops).
        self.no_append = no_append if no_append is not None else set()

    async def stream(self, op: Op, index: int, have: Basis | None = None) -> FileState | None:
        """Send one file's bytes; returns the state actually sent (None if it vanished).

        With ``have`` (the peer's copy of the file) only the new bytes go when the file grew
        by appending, and an rsync delta when it changed otherwise.
        """
        local = self.paths.local(op.name)
        try:
            fd = os.open(local, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            fd = -1
        final: FileState | None = None
        try:
            st = os.fstat(fd) if fd >= 0 else None
            if st is not None and stat.S_ISREG(st.st_mode):
                new = op.new
                limit = min(st.st_size, new.size) if new is not None else st.st_size
                # (a big file's first bytes are read off the loop, as its content: a cold disk)
                snapshot = sqlitefile.may_be_database(st.st_size) and (
                    await in_thread(sqlitefile.database_head, fd, st.st_size)
                    if st.st_size > CHUNK else sqlitefile.database_head(fd, st.st_size))
                try:
                    copied = await _committed(fd, local, st.st_size) if snapshot else None
                except sqlitefile.NoLocks:  # no locks on this file system: as any file
                    snapshot = False
                if snapshot:
                    # Sent as last committed, whole: a prefix of a database is no database, so
                    # one grown beyond what was offered waits for the next run.
                    os.close(fd)
                    fd, st = copied if copied is not None else (-1, None)
                    if st is not None and new is not None and st.st_size > new.size:
                        st = None
                    limit = st.st_size if st is not None else 0
                if st is not None:
                    final = await self._content(op, index, fd, st, limit, have, snapshot)
        except OSError:
            final = None
        finally:
            if fd >= 0:
                os.close(fd)
        self.chan.send(self.session.eof(index, final))
        await self.chan.drain(1 << 20)
        return final

    async def stream_needed(self, ops: Sequence[Op], need: Sequence[int],
                            have: Mapping[int, Basis]) -> dict[int, FileState | None]:
        """Send the ``need``ed files of a batch, in order; returns the state each went as.

        With protocol version 2, small files the peer has no copy of and that are exactly as
        the scan saw them go several to a WHOLE frame, with no EOF: one frame and no JSON for
        many files, where each cost two frames and a JSON state on both ends (the files of
        a first sync are mostly such). The receiver checks each against the offered digest."""
        finals: dict[int, FileState | None] = {}
        packed: list[tuple[int, bytes]] = []
        size = 0
        lean = isinstance(self.session, ClientSession) and self.session.version >= 2
        for i in need:
            op = ops[i]
            data = self._as_offered(op) if lean and i not in have else None
            if data is not None:
                packed.append((i, data))
                size += len(data)
                finals[i] = op.new
                if len(packed) < PACK_FILES and size < CHUNK:
                    continue
            if packed:
                await self._send_whole(packed)
                packed, size = [], 0
            if data is None:
                finals[i] = await self.stream(op, i, have.get(i))
        if packed:
            await self._send_whole(packed)
        return finals

    async def _send_whole(self, files: list[tuple[int, bytes]]) -> None:
        assert isinstance(self.session, ClientSession)
        self.chan.send(self.session.whole(files))
        await self.chan.drain(1 << 20)

    def _as_offered(self, op: Op) -> bytes | None:
        """The bytes of a small regular file still exactly as the scan described it (size and
        mtime; the digest is checked by the receiver), else None (it goes the usual way)."""
        new = op.new
        if new is None or new.kind != "reg" or not new.digest or new.size > CHUNK:
            return None
        try:
            fd = os.open(self.paths.local(op.name),
                         os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if (not stat.S_ISREG(st.st_mode) or st.st_size != new.size
                    or held_ns(st.st_mtime_ns) != new.mtime_ns):
                return None
            data = os.pread(fd, new.size, 0)
            if sqlitefile.is_rollback_database(data[:sqlitefile.HEAD]):
                return None  # read under sqlite's lock by stream()
            return data if len(data) == new.size else None
        except OSError:
            return None
        finally:
            os.close(fd)

    async def _basis(self, op: Op, index: int, fd: int, limit: int, have: Basis
                     ) -> tuple[Hasher | None, rdiff.Delta | None]:
        """How to build on the peer's copy: a hasher already over the prefix it holds (append),
        or a delta against its signature, or neither (the file goes whole)."""
        new = op.new
        assert new is not None
        seen = await asyncio.to_thread(self.db.local_get, op.name)
        blocks = (seen.blocks if seen is not None and seen.state.digest == new.digest
                  and blocks_match(seen.blocks, new.size, new.digest) else b"")
        if have.append and blocks and have.size <= limit and op.name not in self.no_append:
            h = await in_thread(prefix_hasher, fd, blocks, have.size, have.digest)
            if h is not None:
                assert isinstance(self.session, ClientSession)
                self.chan.send(self.session.start_append(index, have.size))
                return h, None
        if (rdiff.available() and have.size >= DELTA_MIN and limit >= DELTA_MIN
                and self.delta_start is not None):
            return None, await self.delta_start(index, have)
        return None, None

    async def _content(self, op: Op, index: int, fd: int, st: os.stat_result, limit: int,
                       have: Basis | None, snapshot: bool = False) -> FileState | None:
        """Send the file open at ``fd`` (``st``: its stat) up to ``limit``; returns the state
        the peer may install, or None when what went is no state the file ever had."""
        new = op.new
        h: Hasher | None = None
        delta: rdiff.Delta | None = None
        if have is not None and new is not None:
            h, delta = await self._basis(op, index, fd, limit, have)
        start = have.size if h is not None and have is not None else 0
        # A whole file unchanged since the scan hashed it is not hashed again: a write in the
        # same timestamp tick would still be caught, as the receiver checks the digest.
        unchanged = (h is None and delta is None and not snapshot and new is not None
                     and new.digest != ""
                     and st.st_size == new.size and held_ns(st.st_mtime_ns) == new.mtime_ns)
        if h is None:
            h = Hasher()
        try:
            sent = await self._send_range(fd, start, limit, None if unchanged else h, delta)
        finally:
            if delta is not None:
                delta.close()
        if unchanged:
            # Shorter now than at the scan: what went is unknown, so the file is not installed.
            return new if new is not None and sent == new.size else None
        digest = h.hexdigest()
        if new is not None and digest == new.digest and h.size == new.size:
            return new
        # Not what the scan saw. Installed only if it is the whole file as it stood, unchanged
        # while it was read (or a database's committed copy): the first bytes of a file
        # rewritten larger since the scan are no version of it, and the next run sends it.
        if h.size != st.st_size or not (snapshot or _still(fd, st)):
            return None
        return FileState.from_stat(st, digest).with_size(h.size)

    async def _send_range(self, fd: int, pos: int, limit: int, hasher: Hasher | None,
                          delta: rdiff.Delta | None) -> int:
        """Bytes ``pos`` to ``limit`` of the file (through ``delta`` if given); returns where
        the file ended."""
        # A file of one chunk is read right here; a bigger one chunk by chunk in a worker thread,
        # so the event loop (the heartbeats) never waits on a long read from a cold disk.
        big = limit - pos > CHUNK
        while pos < limit:
            n = min(CHUNK, limit - pos)
            chunk = (await in_thread(_read_chunk, fd, n, pos, hasher) if big
                     else _read_chunk(fd, n, pos, hasher))
            if not chunk:
                break
            pos += len(chunk)
            out = chunk if delta is None else await in_thread(delta.feed, chunk)
            self.chan.send_all(self.session.data(out))
            await self.chan.drain(1 << 20)
        if delta is not None:
            self.chan.send_all(self.session.data(await in_thread(delta.feed, b"", True)))
        return pos


def _still(fd: int, st: os.stat_result) -> bool:
    """The open file is as ``st`` describes it: not written since."""
    now = os.fstat(fd)
    return (now.st_size == st.st_size and now.st_mtime_ns == st.st_mtime_ns
            and now.st_ctime_ns == st.st_ctime_ns)


async def _committed(fd: int, path: str, size: int) -> tuple[int, os.stat_result] | None:
    """A copy of the sqlite database at ``fd`` as last committed (see sqlitefile), waiting
    out its writers' commits for up to SQLITE_WAIT_S; None if it never came free."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SQLITE_WAIT_S
    while True:
        copied = (await in_thread_made(_close_copy, sqlitefile.committed_copy, fd, path)
                  if size > CHUNK else sqlitefile.committed_copy(fd, path))
        if copied is not None or loop.time() >= deadline:
            return copied
        await asyncio.sleep(SQLITE_RETRY_S)


def _close_copy(made: tuple[int, os.stat_result] | None) -> None:
    """A copy made for a push cancelled meanwhile (in_thread_made): closed, not leaked."""
    if made is not None:
        os.close(made[0])


def _read_chunk(fd: int, n: int, pos: int, h: Hasher | None) -> bytes:
    """``n`` bytes of an open file at ``pos``, added to ``h`` if given."""
    chunk = os.pread(fd, n, pos)
    if h is not None:
        h.update(chunk)
    return chunk
