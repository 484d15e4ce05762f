"""Phase 2 of receiving a batch: the bytes of the files that need them.

Run on the writer thread: a whole file or a delta goes into a temp file, an append goes into our
file in place after being journalled; every form is hashed as it is written and checked against
the sender's digest at its end; a file we hold under another name is copied from there instead
(``copy_sources``, ``copy_into``). :class:`nonstop.sync.receiver.Receiver` builds on this part;
``commit`` (phase 3) installs what arrived.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
import threading
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from nonstop.errors import MachineError
from nonstop.sync import fsops, rdiff
from nonstop.sync.digest import Hasher, blocks_match, extend, give_buffer, hash_fd, take_buffer
from nonstop.sync.messages import Basis
from nonstop.sync.patterns import PathMap
from nonstop.sync.plan import COPY_BYTES, COPY_FDS, Op, copy_span
from nonstop.sync.protocol import is_hole
from nonstop.sync.state import FileState, held_ns
from nonstop.sync.statedb import StateDB
from nonstop.sync.writes import Batch, Pending, undo_append

# A batch with this many names in one directory lists it once instead of a lookup per name,
# if the directory is small enough (ext4: a few thousand names).
LIST_MIN = 16
LIST_MAX_BYTES = 256 << 10


_P = ParamSpec("_P")
_T = TypeVar("_T")
_R = TypeVar("_R", bound="ReceiveData")


def exclusive(method: Callable[Concatenate[_R, _P], _T]) -> Callable[Concatenate[_R, _P], _T]:
    """A receiver's method that never runs beside :meth:`ReceiveData.abort` (see there)."""
    def run(self: _R, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        with self._mutex:
            return method(self, *args, **kwargs)
    run.__name__, run.__doc__ = method.__name__, method.__doc__
    return run


class ReceiveData:
    """The data phase of a :class:`~nonstop.sync.receiver.Receiver` (which sets the fields)."""

    db: StateDB
    paths: PathMap
    me: str
    peer: str
    ignore: frozenset[str]
    _cleanup_error: str | None
    _listed: dict[str, set[str] | None]
    _crowded: set[str]
    _open: list[Batch]
    _inode_ops: dict[int, int]
    _mutex: threading.Lock

    def abort(self) -> None:
        """The sender went away mid-batch: undo what uncommitted batches wrote, now.

        Not beside a judging or a commit still running in a worker thread: the session's
        task cancelled (a takeover ends sessions) does not stop that thread, and undoing a
        batch under its commit cut back appends the commit had just recorded as received,
        leaving a replica shorter than its record. Waits for it instead (its own thread)."""
        with self._mutex:
            for batch in self._open:
                self._drop(batch)
            self._open.clear()
            self._inode_ops.clear()

    def _touches(self, ino: int) -> None:
        self._inode_ops[ino] = self._inode_ops.get(ino, 0) + 1

    def _as_judged(self, p: Pending) -> bool:
        """Whether the file to be replaced is still what ``evaluate`` saw: same inode, size,
        mtime, owner and mode, and same ctime (any write, chmod, chown or rename since moves
        it) unless another operation of ours changes the same inode under another name."""
        seen = p.seen
        if seen is None:
            return True
        try:
            st = os.lstat(p.local)
        except FileNotFoundError:
            return False
        if (st.st_ino, st.st_size, held_ns(st.st_mtime_ns), stat.S_IMODE(st.st_mode), st.st_uid,
                st.st_gid) != (seen.ino, seen.size, seen.mtime_ns, seen.mode, seen.uid, seen.gid):
            return False
        return st.st_ctime_ns == seen.ctime_ns or self._inode_ops.get(st.st_ino, 0) > 1

    def basis(self, batch: Batch, index: int) -> Basis | None:
        """What the sender may build on for a needed file: our current regular file's size and
        digest, and whether the new bytes may be appended to it in place."""
        p = batch.pending[index]
        if p.resume_at:  # what we copied of a file that then grew: append the rest to it
            return Basis(p.resume_at, copy_span(p.op)[1], True)
        cur = p.current
        if cur is None or cur.kind != "reg" or cur.size == 0 or p.src_local:
            return None
        new = p.op.new
        assert new is not None
        in_place = all(
            k in self.ignore or getattr(cur, a) == getattr(new, a)
            for k, a in (("mod", "mode"), ("uid", "uid"), ("gid", "gid"))
        ) and not self._linked(p.local)
        return Basis(cur.size, cur.digest, in_place)

    @staticmethod
    def _linked(local: str) -> bool:
        """Whether our file has other hard links (``ln full full.keep``): an append in place
        would change them too, so the sender sends a delta or the whole file instead, which
        gives the name a new inode and leaves the other links alone, as csync2 does."""
        try:
            return os.lstat(local).st_nlink > 1
        except OSError:
            return False  # gone or unreadable: the append's own checks say what it is

    def signature(self, batch: Batch, index: int) -> list[bytes] | None:
        """The rsync signature of our current file, kept open as the basis of the delta to come
        (None if the file changed since ``evaluate``: the sender then sends it whole)."""
        p = batch.pending[index]
        fd = self._open_current(batch, p, write=False)
        if fd < 0:
            return None
        p.basis_fd = fd
        try:
            return list(rdiff.signature(fd, p.at))
        except (rdiff.RdiffError, OSError) as e:
            p.failed = f"{p.op.name}: signature failed on {self.me}: {e}"
            return None

    def crowded_dirs(self, ops: list[Op], least: int) -> set[str]:
        """The directories that get ``least`` or more of these operations."""
        count: dict[str, int] = {}
        for op in ops:
            with contextlib.suppress(KeyError):
                parent = os.path.dirname(self.paths.local(op.name))
                count[parent] = count.get(parent, 0) + 1
        return {parent for parent, n in count.items() if n >= least}

    def _listing(self, parent: str) -> set[str] | None:
        """The names in ``parent`` if it gets many names of this batch and is small
        (LIST_MAX_BYTES), listed once, when the first of them is judged (a first sync makes
        the directory earlier in the same batch): a first sync would otherwise look up every
        file it is about to create (a failed lstat each, a GIL hand-off in this thread).
        None: look the name up. No operation of a batch looks at a name an earlier one of
        the batch created (names are distinct in a batch), so the listing stays true for it."""
        if parent in self._listed or parent not in self._crowded:
            return self._listed.get(parent)
        names = None
        with contextlib.suppress(OSError):
            if os.lstat(parent).st_size <= LIST_MAX_BYTES:
                names = set(os.listdir(parent))
        self._listed[parent] = names
        return names

    def copy_sources(self, ops: list[Op], may_read: Callable[[str], bool]) -> dict[int, int]:
        """Open the files whose bytes a put may copy (``Op.src``) before any operation of the
        batch renames, replaces or deletes them (an open file keeps its bytes): those
        ``may_read`` allows, up to COPY_FDS files and COPY_BYTES bytes a batch (the planner
        counts the same). Returns operation index -> open file; the rest are sent."""
        out: dict[int, int] = {}
        budget = COPY_BYTES
        for i, op in enumerate(ops):
            new = op.new
            if (op.kind != "put" or not op.src or new is None or new.kind != "reg"
                    or len(out) >= COPY_FDS or not may_read(op.src)):
                continue
            size, digest = copy_span(op)
            if size > budget:
                continue
            fd = self._open_source(op.src, size, digest)
            if fd >= 0:
                out[i] = fd
                budget -= size
        return out

    def _open_source(self, name: str, size: int, digest: str) -> int:
        """Our file ``name``, opened without following a symlink anywhere below the root, if its
        first ``size`` bytes may have ``digest``: a regular file at least that long, not known
        from our record of it (same inode, size and mtime) to hold other bytes. -1 otherwise.
        The copy is checked against the digest as it is made."""
        local = self.paths.local(name)
        try:
            dfd = fsops.open_dir(self.paths.root, os.path.dirname(local))
        except OSError:
            return -1
        fd = -1
        try:
            fd = os.open(os.path.basename(local),
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
            st = os.fstat(fd)
            seen = self.db.local_get(name)
            other = (seen is not None and seen.state.digest != digest
                     and (seen.ino, seen.size, seen.mtime_ns)
                     == (st.st_ino, st.st_size, held_ns(st.st_mtime_ns)))
            if stat.S_ISREG(st.st_mode) and st.st_size >= size and not other:
                fd, opened = -1, fd
                return opened
        except OSError:
            pass
        finally:
            if fd >= 0:
                os.close(fd)
            os.close(dfd)
        return -1

    def copy_into(self, batch: Batch, p: Pending, src_fd: int) -> bool:
        """Fill ``p``'s temp file from our own copy of its bytes, checked against their digest.
        All of them: the file is finished as if it had arrived (owner, mode, mtime). A prefix
        (the file grew after it was renamed, a log's last lines): the temp file stays open and
        the sender appends the rest to it (``basis``). False: it failed and left nothing; the
        sender sends the file."""
        new = p.op.new
        assert new is not None
        size, digest = copy_span(p.op)
        batch.pending[p.index] = p
        self.db.add_tmp([p.tmp])
        self.open_data(batch, p.index)
        pos = 0
        buf = take_buffer()
        try:
            with memoryview(buf) as view:
                while not p.failed and pos < size:
                    n = os.preadv(src_fd, [view[: min(len(view), size - pos)]], pos)
                    if not n:
                        break
                    self.write(batch, p.index, view[:n])
                    pos += n
        except OSError as e:
            p.failed = f"{p.op.name}: cannot read {p.op.src} on {self.me}: {e.strerror}"
        finally:
            give_buffer(buf)
        if size < new.size:
            if not p.failed and (p.hasher is None or p.hasher.size != size
                                 or p.hasher.hexdigest() != digest):
                p.failed = f"{p.op.name}: {p.op.src} does not hold what was copied"
        else:
            self.end_data(batch, p.index, new)
        if p.failed:
            self._drop_copy(batch, p)
            self.db.drop_tmp([p.tmp])
            del batch.pending[p.index]
            return False
        p.resume_at = size if size < new.size else 0
        note = self._copy_note(p)
        p.message = f"{p.message}; {note}" if p.message else note
        batch.copied[p.op.src] = (digest, p.index)
        return True

    def _copy_note(self, p: Pending) -> str:
        what = f"{p.resume_at:,} bytes of {p.op.src}" if p.resume_at else p.op.src
        return f"copied from {what} on {self.me}"

    def _drop_copy(self, batch: Batch, p: Pending) -> None:
        """Forget what was copied into ``p``'s temp file (its row stays: the path is reused).
        A basis the sender asked a signature of stays open."""
        if p.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(p.fd)
            p.fd = -1
        with contextlib.suppress(OSError):
            os.unlink(p.tmp)
        if p.resume_at:
            p.message = p.message.removesuffix(self._copy_note(p)).removesuffix("; ")
        p.hasher, p.size, p.resume_at, p.failed = None, 0, 0, ""
        for name in [n for n, (_, i) in batch.copied.items() if i == p.index]:
            del batch.copied[name]

    def copied_away(self, batch: Batch, name: str, current: FileState) -> bool:
        """Whether this batch copied ``current`` (the content of ``name`` it replaces) into
        another file, now installed: then replacing it needs no backup."""
        c = batch.copied.get(name)
        if c is None or c[0] != current.digest:
            return False
        q = batch.pending.get(c[1])
        return q is not None and q.installed

    @staticmethod
    def _note_carried(batch: Batch) -> None:
        """A file this batch replaces whose bytes another of its files brings whole (small
        files are sent, not copied: a renumbered voicemail's .txt, msg0004 -> msg0003) counts
        as copied there, so it goes first and the replaced one needs no backup. Otherwise each
        renumbering rotated every small message's backups, and a message kept only there
        (a split brain's loser's) was pushed out of them within minutes."""
        brings = {q.op.new.digest: q.index for q in batch.pending.values()
                  if q.op.new is not None and q.op.new.kind == "reg"}
        for p in batch.pending.values():
            c = p.current
            if (c is not None and c.kind == "reg" and p.op.name not in batch.copied
                    and (i := brings.get(c.digest)) is not None and i != p.index):
                batch.copied[p.op.name] = (c.digest, i)

    def commit_order(self, batch: Batch) -> list[Pending]:
        """The batch's files in the order commit installs them: a copy before the file it was
        copied from is replaced (then that one needs no backup: ``copied_away``), else as
        offered. (Two files that swapped their bytes: one of them is backed up.)"""
        self._note_carried(batch)
        copier = {name: i for name, (_, i) in batch.copied.items()}
        out: list[Pending] = []
        placed: set[int] = set()
        for p in batch.pending.values():
            chain: list[Pending] = []
            q: Pending | None = p
            while q is not None and q.index not in placed:
                placed.add(q.index)
                chain.append(q)
                c = copier.get(q.op.name)
                q = batch.pending.get(c) if c is not None else None
            out.extend(reversed(chain))
        return out

    def _open_current(self, batch: Batch, p: Pending, *, write: bool = True) -> int:
        """Our file, opened if it is still exactly what ``evaluate`` saw; else -1. Read-only
        unless it is to be appended to: opening for writing is itself a change on some file
        systems (overlayfs copies a lower-layer file up, with a new ctime)."""
        cur, seen = p.current, p.seen
        if cur is None or seen is None:
            return -1
        try:
            dfd = batch.dir_fd(self.paths.root, os.path.dirname(p.local))
            access = os.O_RDWR if write else os.O_RDONLY
            fd = os.open(os.path.basename(p.local), access | os.O_CLOEXEC | os.O_NOFOLLOW,
                         dir_fd=dfd)
        except OSError as e:
            if write and e.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                # A read-only or immutable replica: say so, not "changed during the transfer".
                p.failed = f"{p.op.name}: cannot write on {self.me}: {e.strerror}"
            return -1
        st = os.fstat(fd)
        if (st.st_ino, st.st_size, held_ns(st.st_mtime_ns)) != (seen.ino, cur.size, cur.mtime_ns):
            os.close(fd)
            return -1
        p.at = cur.size
        return fd

    def open_data(self, batch: Batch, index: int, mode: str = "full", at: int = 0) -> None:
        """Start a needed file (writer thread): a temp file, or ours opened for the append."""
        p = batch.pending[index]
        if p.resume_at:
            if mode == "append" and at == p.resume_at and p.fd >= 0:
                return  # the rest of a file copied in part: written on after the copy
            self._drop_copy(batch, p)  # sent another way: from the start
        p.mode = mode
        if mode == "append":
            self._open_append(batch, p, at)
            return
        if mode == "delta" and p.basis_fd < 0:
            p.failed = f"{p.op.name}: delta without a basis on {self.me}"
            return
        p.hasher = Hasher()
        try:
            dfd = batch.dir_fd(self.paths.root, os.path.dirname(p.local))
            create = self._creation_mode(batch, p)
            p.fd = os.open(os.path.basename(p.tmp),
                           os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, create, dir_fd=dfd)
        except OSError as e:
            p.failed = f"{p.op.name}: cannot create a temp file on {self.me}: {e.strerror}"
            return
        if mode == "delta":
            try:
                p.patch = rdiff.Patch(p.basis_fd)
            except rdiff.RdiffError as e:
                p.failed = f"{p.op.name}: {e}"

    def _creation_mode(self, batch: Batch, p: Pending) -> int:
        """0600, or the file's own mode when nothing else would change it: the owner is
        already ours, no special bits, none lost to the umask or a default ACL. Then the
        file needs no chmod later (it was one more inode update per file); ``p.made_mode``
        is the mode it gets, if known."""
        new, parent = p.op.new, os.path.dirname(p.local)
        mask = batch.mode_mask(self.paths.root, parent)
        p.made_mode = -1 if mask is None else 0o600 & ~mask
        if (new is None or mask is None or new.mode & (0o7000 | mask) or self.ignore
                or (new.uid, new.gid) != batch.new_owner(self.paths.root, parent)):
            return 0o600
        p.made_mode = new.mode
        return new.mode

    def _open_append(self, batch: Batch, p: Pending, at: int) -> None:
        fd = self._open_current(batch, p)
        if fd < 0 or at != p.at:
            if fd >= 0:
                os.close(fd)
            p.failed = (p.failed or
                        f"{p.op.name}: changed on {self.me} during the transfer; sent again later")
            return
        p.fd = fd
        seen = p.seen
        assert seen is not None and p.current is not None
        try:
            blocks = seen.blocks
            if not blocks_match(blocks, at, p.current.digest):
                h, _ = hash_fd(fd, at)  # digests of our copy unknown (e.g. an old cache): once
                blocks = h.blocks()
            h2 = extend(fd, blocks, at, at)
            if h2 is None:
                raise MachineError(0, "our copy changed under us")
            p.hasher = h2
            st = os.fstat(fd)
            if st.st_nlink > 1:
                raise MachineError(0, "it has other hard links")
            # Journalled before the first byte is written, so a crash is undone at the next start.
            self.db.add_append(p.local, st.st_ino, at, held_ns(st.st_mtime_ns))
            p.journalled = True
        except OSError as e:
            os.close(fd)
            p.fd = -1
            p.failed = f"{p.op.name}: cannot append on {self.me}: {e.strerror or e}"

    def write(self, batch: Batch, index: int, chunk: bytes | memoryview) -> None:
        """The next bytes of a needed file (writer thread); a failure is kept for the result."""
        p = batch.pending[index]
        if p.failed:
            return
        try:
            data = chunk
            if p.patch is not None:
                data = p.patch.feed(bytes(chunk))
            new = p.op.new
            if new is not None and p.hasher is not None and p.hasher.size + len(data) > new.size:
                p.failed = f"{p.op.name}: {self.peer} sent more bytes than the file has"
                return
            self._put(p, data)
        except rdiff.RdiffError as e:
            p.failed = f"{p.op.name}: bad delta from {self.peer}: {e}"
        except OSError as e:
            p.failed = f"{p.op.name}: write failed on {self.me}: {e.strerror}"

    def _put(self, p: Pending, data: bytes | memoryview) -> None:
        assert p.hasher is not None
        view = memoryview(data)
        pos = p.at + p.size if p.mode == "append" else p.size
        if p.mode != "append" and is_hole(data):
            # Zeros in a new temp file are left as a hole (the file is made longer, not
            # written): a sparse file stays sparse here, as with rsync -S. Written out, a
            # 1 GiB disk image with 5 bytes of data took 1 GiB of the replica's disk.
            os.ftruncate(p.fd, pos + len(data))
            p.size += len(data)
            p.hasher.update(data)
            return
        while view:
            n = os.pwrite(p.fd, view, pos)
            view = view[n:]
            pos += n
            p.size += n  # per piece: an undo must know every byte we wrote (a full disk)
        p.hasher.update(data)

    def write_whole(self, batch: Batch, index: int, chunks: list[bytes],
                    final: FileState) -> None:
        """A whole file received in full (writer thread): start, bytes, end."""
        try:
            self.open_data(batch, index)
            for chunk in chunks:
                self.write(batch, index, chunk)
        finally:
            self.end_data(batch, index, final)

    def end_data(self, batch: Batch, index: int, final: FileState) -> None:
        """Finish a needed file (writer thread): digest check, owner, mode, mtime."""
        p = batch.pending[index]
        if not p.failed and p.patch is not None:
            try:
                self._put(p, p.patch.feed(b"", eof=True))
            except rdiff.RdiffError as e:
                p.failed = f"{p.op.name}: bad delta from {self.peer}: {e}"
            except OSError as e:
                p.failed = f"{p.op.name}: write failed on {self.me}: {e.strerror}"
        if not p.failed:
            assert p.hasher is not None
            total = p.hasher.size
            if final.size < 0:  # an EOF without a state (server.receive_files)
                p.failed = (f"{p.op.name}: not sent: it changed or vanished on {self.peer} while "
                            "it was read (the next run sends it)")
            elif p.hasher.hexdigest() != final.digest or total != final.size:
                p.failed = f"{p.op.name}: content does not match its digest (changed while sent?)"
            else:
                p.blocks = p.hasher.blocks()
        if not p.failed:
            # A temp file we created has our owner (or its directory's group): no chown then.
            made = (batch.new_owner(self.paths.root, os.path.dirname(p.local))
                    if p.mode != "append" else None)
            try:
                fsops.set_meta_fd(p.fd, final, self.ignore, p.current, made, p.made_mode)
            except OSError as e:
                p.failed = f"{p.op.name}: cannot set owner/mode/mtime on {self.me}: {e.strerror}"
        self._close_fds(p)
        p.final = final

    def _discard(self, p: Pending) -> None:
        """Drop what a failed file left: its temp file, or the bytes appended in place."""
        self._close_fds(p)
        with contextlib.suppress(OSError):
            os.unlink(p.tmp)
        with contextlib.suppress(OSError):
            self._undo_append(p)

    def _drop(self, batch: Batch) -> None:
        """Undo what an uncommitted ``batch`` wrote and forget its temp files.

        Never raises for the state database (a full disk): the temp files and appends it
        could not forget stay recorded, their files are gone or cut back, and the next
        session's clean-up (:func:`~nonstop.sync.writes.cleanup_tmp`) forgets them; the
        error is kept in ``_cleanup_error`` for the session to say once."""
        for p in batch.pending.values():
            try:
                self._discard(p)
            except sqlite3.Error as e:
                self._cleanup_error = str(e)
        batch.close_dirs()
        try:
            self.db.drop_tmp(p.tmp for p in batch.pending.values())
        except sqlite3.Error as e:
            self._cleanup_error = str(e)

    def _close_fds(self, p: Pending) -> None:
        if p.patch is not None:
            p.patch.close()
            p.patch = None
        for attr in ("fd", "basis_fd"):
            fd = getattr(p, attr)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(p, attr, -1)

    def _undo_append(self, p: Pending) -> None:
        """Cut our file back to what it was before a failed or aborted append."""
        seen, cur = p.seen, p.current
        if not p.journalled or seen is None or cur is None:
            return
        undo_append(p.local, seen.ino, cur.size, cur.mtime_ns, ours=p.at + p.size)
        self.db.drop_appends([p.local])
        p.journalled = False
