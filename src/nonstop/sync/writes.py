"""The receiver's files in flight, its disk work beside the event loop, and the cleanup after an
interrupted receive.

A :class:`Batch` holds the :class:`Pending` files of one offer until they commit;
:class:`Writer` runs a session's file writes in order in one thread; :func:`cleanup_tmp` (at
start-up and per session) removes temp files a killed transfer left and cuts files an
interrupted in-place append made longer back to their journalled size.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import queue
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from nonstop.sync import fsops, rdiff
from nonstop.sync.digest import Hasher
from nonstop.sync.plan import Op
from nonstop.sync.scan import Seen
from nonstop.sync.state import FileState
from nonstop.sync.statedb import StateDB


@dataclass
class Pending:
    """One needed file of a batch: where it goes, how its bytes come, what came."""

    index: int
    op: Op
    local: str
    tmp: str
    current: FileState | None
    verdict_status: str
    message: str
    seen: Seen | None = None
    src_local: str = ""
    mode: str = "full"  # full | append | delta
    at: int = 0  # append: the old size, where the new bytes go
    fd: int = -1
    basis_fd: int = -1
    patch: rdiff.Patch | None = None
    hasher: Hasher | None = None
    size: int = 0
    final: FileState | None = None
    failed: str = ""
    blocks: bytes = b""
    journalled: bool = False  # an in-place append was recorded in ``appends``
    made_mode: int = -1  # the mode our temp file was created with (-1: not known)
    # Bytes of the temp file already copied from our own copy of a file that then grew (the
    # sender appends the rest; ReceiveData.copy_into), 0 if none.
    resume_at: int = 0
    installed: bool = False  # renamed into place by commit
    # A rename whose source stays here (changed since: Result.src_status), its status, reason.
    kept_src: tuple[str, str] = ("", "")


@dataclass
class Batch:
    """The files of one offer that wait for their bytes, then for ``commit``.

    ``dirs`` holds an fd per parent directory, opened without following symlinks: temp files
    are created, renamed and appended to relative to those, so a directory swapped for a
    symlink later in the same offer cannot redirect a write out of the tree.
    """

    pending: dict[int, Pending] = field(default_factory=dict)
    dirs: dict[str, int] = field(default_factory=dict)
    owners: dict[str, tuple[int, int]] = field(default_factory=dict)
    masks: dict[str, int | None] = field(default_factory=dict)
    # Names whose bytes (the digest) were copied to the file of another operation (its index)
    # of this batch: replacing them loses nothing once that file is ready, so they are not
    # backed up then (ReceiveData.copied_away).
    copied: dict[str, tuple[str, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def dir_fd(self, root: str, parent: str) -> int:
        with self._lock:
            fd = self.dirs.get(parent)
            if fd is None:
                fd = self.dirs[parent] = fsops.open_dir(root, parent)
            return fd

    def new_owner(self, root: str, parent: str) -> tuple[int, int]:
        """The uid and gid a file we create in ``parent`` gets: ours, or with a set-group-ID
        directory that directory's group."""
        own = self.owners.get(parent)
        if own is None:
            st = os.fstat(self.dir_fd(root, parent))
            gid = st.st_gid if st.st_mode & stat.S_ISGID else os.getegid()
            own = self.owners[parent] = (os.geteuid(), gid)
        return own

    def mode_mask(self, root: str, parent: str) -> int | None:
        """The permission bits a file created in ``parent`` loses (the umask), or None when
        its mode cannot be known without a stat (a default ACL decides, or no umask read)."""
        if parent not in self.masks:
            mask = _umask()
            if mask is not None:
                try:
                    os.getxattr(self.dir_fd(root, parent), "system.posix_acl_default")
                    mask = None
                except OSError as e:
                    if e.errno not in (errno.ENODATA, errno.ENOTSUP):
                        mask = None
            self.masks[parent] = mask
        return self.masks[parent]

    def close_dirs(self) -> None:
        with self._lock:
            for fd in self.dirs.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.dirs.clear()



class Writer:
    """One thread doing a session's file writes in order, so the event loop only decrypts and
    parses frames while the disk work runs beside it (the GIL is released in the syscalls)."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.queued = 0  # bytes submitted but not yet written (back-pressure for the loop)
        self._t = threading.Thread(target=self._run, name="sync-writer", daemon=True)
        self._t.start()

    def submit(self, fn: Callable[[], None], size: int = 0) -> None:
        self.queued += size
        self._q.put(fn)

    def wait(self) -> None:
        """Block until everything submitted so far is done."""
        ev = threading.Event()
        self._q.put(ev.set)
        ev.wait()

    def close(self) -> None:
        self._q.put(None)
        self._t.join(30)

    def _run(self) -> None:
        while (fn := self._q.get()) is not None:
            # Each job records its own failure in its pending file; nothing may stop the thread.
            with contextlib.suppress(Exception):
                fn()


_UMASK: list[int | None] = []


def _umask() -> int | None:
    """This process's umask, read once without changing it (os.umask would, for a moment,
    for every thread)."""
    if not _UMASK:
        mask = None
        with (contextlib.suppress(OSError, ValueError),
              open("/proc/self/status", encoding="ascii") as fh):
            for line in fh:
                if line.startswith("Umask:"):
                    mask = int(line.split()[1], 8)
        _UMASK.append(mask)
    return _UMASK[0]


class ReceivingLock:
    """A lock file beside the state database that every session receiving into it holds,
    shared, in any process (the daemon's server, a cron ``-x`` fetching, an inetd ``-i``).

    The temp files and journalled appends recorded in the database belong to live sessions
    while any holds it: only a session that finds none may clean them up (before, each new
    session removed the temp files of every other one and cut their appends in flight back)."""

    def __init__(self, db: StateDB) -> None:
        self._db = db
        self._fd = -1
        self._path = "" if db.path in ("", ":memory:") else db.path + ".receiving"

    def enter(self) -> int:
        """Hold the lock; first, if no other session holds it, :func:`cleanup_tmp` (what it
        removed or cut back, else 0)."""
        if not self._path:
            return cleanup_tmp(self._db)
        fd = self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while another session cleans up
            return 0
        try:
            return cleanup_tmp(self._db)
        finally:
            fcntl.flock(fd, fcntl.LOCK_SH)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def cleanup_tmp(db: StateDB) -> int:
    """Remove every recorded receive temp file that still exists, and cut files that an
    interrupted in-place append left longer back to their old content; returns how many."""
    paths = db.tmp_paths()
    n = 0
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
            n += 1
    db.drop_tmp(paths)
    journal = db.appends()
    for path, ino, size, mtime_ns in journal:
        with contextlib.suppress(OSError):
            n += undo_append(path, ino, size, mtime_ns)
    db.drop_appends(p for p, *_ in journal)
    return n


def undo_append(path: str, ino: int, size: int, mtime_ns: int, ours: int | None = None) -> int:
    """Cut ``path`` back to ``size`` bytes and its old mtime if it is still that inode and
    longer; returns 1 if it did. ``ours``: the size our own writes left it at, when known;
    a file that is longer now was written on by someone else since (a node that took over
    while a crashed peer's append hung half-open, and its Asterisk wrote on): it is left as
    it is, since a cut would delete those bytes too. An append of which we wrote no byte
    (``ours == size``) still gets its old mtime back: ext4 sets it on a write that then fails
    with ENOSPC, and the file would look changed here for ever after."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if (st.st_ino == ino and st.st_size == size == ours
                and st.st_mtime_ns != mtime_ns):
            os.utime(fd, ns=(st.st_atime_ns, mtime_ns))
            os.fsync(fd)
            return 1
        if st.st_ino != ino or st.st_size <= size:
            return 0
        if ours is not None and st.st_size != ours:
            return 0
        os.ftruncate(fd, size)
        os.utime(fd, ns=(st.st_atime_ns, mtime_ns))
        os.fsync(fd)
        return 1
    finally:
        os.close(fd)
