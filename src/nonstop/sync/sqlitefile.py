"""SQLite databases in a replicated tree: sent as last committed, their journals not at all.

A database in rollback-journal mode (sqlite's default, and Asterisk's ``astdb.sqlite3`` under
the talk's ``/var/lib/asterisk``) is rewritten in place at every commit. A copy read while a
commit writes mixes two versions, and sqlite on the replica calls it "database disk image is
malformed": 40 of 40 pushes of a database committed every few milliseconds arrived so before
this module (csync2 and rsync copy the same way). The sender now reads such a file as sqlite's
own readers do: under a SHARED lock on the file's lock bytes, which no writer can hold beside
while it writes the database file, so the copy is the last committed state. The copy goes to
a memory file at once and the lock is let go before a byte crosses the network: Asterisk's next
commit waits for a copy in the page cache, never for the peer.

The rollback journal beside such a database (``<db>-journal``) is never replicated: it means
something only together with the database file of the same instant, and a journal on the
replica beside a newer committed copy would be "hot" to sqlite there, which would roll the copy
back with pages of another transaction. The scan leaves journals out as if absent, so a replica
that has one from an earlier sync deletes it.

The locks are open-file-description locks (``F_OFD_SETLK``): they conflict with sqlite's POSIX
record locks in other processes, and unlike POSIX locks they are not dropped when another
thread of this process closes the same file. Databases in WAL mode (header bytes 18-19 = 2)
are read as any file: their committed state spans the ``-wal`` file, which a copy of the
database file alone does not hold consistently (see docs/SYNC.md).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import struct

from nonstop.errors import MachineError

MAGIC = b"SQLite format 3\x00"
HEAD = 20  # the magic and the write/read format versions at 18-19 (1: rollback journal)
JOURNAL_SUFFIX = "-journal"
JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")
# sqlite's lock bytes (os_unix.c), at 1 GiB: a page there is never used for data.
PENDING_BYTE = 0x40000000
RESERVED_BYTE = PENDING_BYTE + 1
SHARED_FIRST = PENDING_BYTE + 2
SHARED_SIZE = 510
_FLOCK = "hhqqi4x"  # struct flock on 64-bit Linux: type, whence, start, len, pid (0 for OFD)
# A database larger than this is read as any file: its committed copy would sit in memory
# (a memfd) while it is hashed or sent, and a PBX's databases are far smaller.
SNAPSHOT_MAX = 64 << 20


class NoLocks(MachineError):
    """The file system has no record locks (ENOLCK, EINVAL, EOPNOTSUPP: some network and FUSE
    ones, or a kernel before open-file-description locks): sqlite cannot lock there either, and
    the file is read as any other."""


def is_rollback_database(head: bytes) -> bool:
    """The first bytes of a file are those of a sqlite database in rollback-journal mode."""
    return len(head) >= HEAD and head.startswith(MAGIC) and head[18] == 1 and head[19] == 1


def may_be_database(size: int) -> bool:
    """A file of ``size`` bytes may be a database to copy as committed: a multiple of 512 (as
    every page size), and at most SNAPSHOT_MAX."""
    return 512 <= size <= SNAPSHOT_MAX and not size % 512


def database_head(fd: int, size: int) -> bool:
    """The open file of ``size`` bytes is a sqlite database in rollback-journal mode that is
    copied as committed (its first bytes say so; see :func:`may_be_database`)."""
    if not may_be_database(size):
        return False
    try:
        return is_rollback_database(os.pread(fd, HEAD, 0))
    except OSError:
        return False


def is_journal(path: str) -> bool:
    """``path`` is the rollback journal of a sqlite database beside it: named ``<db>-journal``
    where ``<db>`` is a rollback-mode database (whatever the journal holds: a live journal, a
    persisted one with a zeroed header, or an empty truncated one)."""
    if not path.endswith(JOURNAL_SUFFIX):
        return False
    try:
        fd = os.open(path[: -len(JOURNAL_SUFFIX)],
                     os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return database_head(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def is_journal_entry(name: str, local: str, st: os.stat_result) -> bool:
    """A walk's entry (name, local path, lstat) is the journal of a sqlite database."""
    return name.endswith(JOURNAL_SUFFIX) and stat.S_ISREG(st.st_mode) and is_journal(local)


def without_journals(found: list[tuple[str, str, os.stat_result]]
                     ) -> list[tuple[str, str, os.stat_result]]:
    """A walk's (name, local path, lstat) entries without the journals of sqlite databases:
    they are left out as if absent, so that a peer's copy of one is deleted."""
    if not any(f[0].endswith(JOURNAL_SUFFIX) for f in found):
        return found
    return [f for f in found if not is_journal_entry(*f)]


def _lock(fd: int, kind: int, start: int, length: int) -> bool:
    """Take (or with F_UNLCK let go of) a lock; False if another holds one in the way."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack(_FLOCK, kind, os.SEEK_SET, start, length,
                                                       0))
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        if e.errno in (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):
            raise NoLocks(e.errno, e.strerror) from None
        raise
    return True


def _held_by_other(fd: int, start: int) -> bool:
    """Someone holds a lock on byte ``start`` of the file that a write lock would meet."""
    try:
        got = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET,
                                                             start, 1, 0))
    except OSError:  # no locks on this file system (see _lock)
        return False
    return bool(struct.unpack(_FLOCK, got)[0] != fcntl.F_UNLCK)


def shared(fd: int) -> bool:
    """Take sqlite's SHARED lock as its readers do: through the PENDING byte, so that a writer
    waiting for its EXCLUSIVE lock is not starved, then the shared range (NoLocks where the
    file system has none)."""
    if not _lock(fd, fcntl.F_RDLCK, PENDING_BYTE, 1):
        return False
    try:
        return _lock(fd, fcntl.F_RDLCK, SHARED_FIRST, SHARED_SIZE)
    finally:
        _lock(fd, fcntl.F_UNLCK, PENDING_BYTE, 1)


def _hot_journal(fd: int, journal: str) -> bool:
    """A writer died in a commit: its journal is there, not empty and not zeroed, and nobody
    holds the RESERVED lock. The database file is then a mix until sqlite rolls it back."""
    try:  # never blocks (a FIFO of that name), never follows a link
        jfd = os.open(journal, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        head = os.read(jfd, len(JOURNAL_MAGIC))
    except OSError:
        return False
    finally:
        os.close(jfd)
    return head == JOURNAL_MAGIC and not _held_by_other(fd, RESERVED_BYTE)


def committed_copy(fd: int, path: str) -> tuple[int, os.stat_result] | None:
    """A memory file holding the database open at ``fd`` as last committed, and the file's
    stat at that moment; None while a writer holds it or a dead writer's journal waits for
    its rollback (try again later); NoLocks where the file system has no locks. The caller
    closes the memory file."""
    if not shared(fd):
        return None
    try:
        if _hot_journal(fd, path + JOURNAL_SUFFIX):
            return None
        st = os.fstat(fd)
        copy = os.memfd_create("nonstop-sqlite", os.MFD_CLOEXEC)
        try:
            pos = 0
            while pos < st.st_size:
                n = os.sendfile(copy, fd, pos, st.st_size - pos)
                if n == 0:  # shorter than its stat under the lock: not sqlite writing it
                    os.close(copy)
                    return None
                pos += n
        except BaseException:
            os.close(copy)
            raise
        return copy, st
    finally:
        release(fd)


def release(fd: int) -> None:
    """Let go of the SHARED lock :func:`shared` took."""
    _lock(fd, fcntl.F_UNLCK, SHARED_FIRST, SHARED_SIZE)


def drop_stale_journal(path: str, size: int) -> None:
    """``path`` was just replaced by a peer's committed copy of ``size`` bytes: a journal of
    this node's beside it (a hot one, left by a crash here) belongs to the old file, and
    sqlite would roll the new one back with it. It goes."""
    if may_be_database(size) and os.path.isfile(path + JOURNAL_SUFFIX) and is_journal(
            path + JOURNAL_SUFFIX):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + JOURNAL_SUFFIX)
