"""Apply a peer's changes on this node: checks, conflicts, backups, atomic writes, state records.

Used per session by the server. ``evaluate`` judges a batch of operations and applies those that
need no data (deletions, directories, links, metadata, renames); regular files that need bytes
arrive in one of three forms and are installed by ``commit``:

- whole: streamed into a temp file, renamed over the old one;
- a delta against our current file (the rsync algorithm, :mod:`nonstop.sync.rdiff`): patched into
  a temp file, renamed over the old one;
- an append (the sender's file only grew): the new bytes are written at the end of our file in
  place, after its size and mtime were journalled (``appends``), so an aborted or crashed transfer
  is cut back to the old content; a reader sees the file grow, as it does on the active node.

A file whose new bytes we already hold under another name (``Op.src``: a rotated log, a
renumbered voicemail message) is copied from that file, as it was before the batch, into its temp
file during ``evaluate`` and needs no bytes from the sender.

Every form is checked against the sender's content digest before it becomes visible for good.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nonstop.config.csync2 import Group
from nonstop.errors import MachineError
from nonstop.logs import escape
from nonstop.sync import backups, fsops, sqlitefile
from nonstop.sync.conflicts import DISAGREE, Action, Verdict, judge, rebased
from nonstop.sync.messages import Result
from nonstop.sync.patterns import Matcher, PathMap, valid_name
from nonstop.sync.plan import Op
from nonstop.sync.receivedata import LIST_MIN, ReceiveData, exclusive
from nonstop.sync.scan import Seen, describe, racy_window
from nonstop.sync.state import FileState, held_ns
from nonstop.sync.statedb import StateDB
from nonstop.sync.writes import Batch, Pending, ReceivingLock, Writer, cleanup_tmp

__all__ = ["Batch", "Receiver", "Result", "cleanup_tmp"]

Log = Callable[[str], None]
# Whole files held for one writer job (see Receiver.submit_whole).
HOLD_FILES = 64
HOLD_BYTES = 1 << 20


@dataclass
class Receiver(ReceiveData):
    """One session's receiving side for ``peer`` in ``group``."""

    db: StateDB
    matcher: Matcher
    paths: PathMap
    group: Group
    me: str
    peer: str
    ignore: frozenset[str] = frozenset()
    log: Log = field(default=lambda _m: None)
    changed: list[str] = field(default_factory=list)
    # Names whose unsynced local change a forced push overwrote (the history says which).
    overwritten: list[str] = field(default_factory=list)
    # Set (the reason) while this node takes no pushes from ``peer`` (it holds the group):
    # only unforced files it has no record of are taken (a crashed holder's last voicemail:
    # taking it overwrites, deletes, brings back nothing); all else is refused.
    only_new: str | None = None
    _open: list[Batch] = field(default_factory=list)
    _writer: Writer | None = None
    _parents: dict[str, bool] = field(default_factory=dict)
    # Parents found to be real directories with no symlink above them, under the same rule as
    # _parents (forgotten when a directory goes or a link comes): the files of one directory
    # cost no stat of it each.
    _dirs: set[str] = field(default_factory=set)
    _cache: dict[str, Seen] = field(default_factory=dict)
    _held: list[tuple[Batch, int, list[bytes], FileState, int]] = field(default_factory=list)
    _held_bytes: int = 0
    _listed: dict[str, set[str] | None] = field(default_factory=dict)
    _crowded: set[str] = field(default_factory=set)
    # How many operations of the open batches change each existing inode (replace, delete,
    # chmod, rename). Any of them moves the ctime of every name linked to that inode, so a
    # hard-linked name is not taken for one a local program changed (see _as_judged).
    _inode_ops: dict[int, int] = field(default_factory=dict)
    # This batch's copy sources: operation index -> our file holding its bytes, opened.
    _copies: dict[int, int] = field(default_factory=dict)
    _lock: ReceivingLock | None = None
    _cleanup_error: str | None = None  # see close()
    _mutex: threading.Lock = field(default_factory=threading.Lock)  # see abort()

    # --- data arrives on the event loop; the writes happen on the writer thread
    def submit_open(self, batch: Batch, index: int, mode: str = "full", at: int = 0) -> None:
        """Queue the start of a needed file: a temp file, or our file opened for an append."""
        self._w().submit(lambda: self.open_data(batch, index, mode, at))

    def submit_write(self, batch: Batch, index: int, chunk: bytes) -> None:
        """Queue a chunk of a needed file."""
        w = self._w()

        def job() -> None:
            self.write(batch, index, chunk)
            w.queued -= len(chunk)

        w.submit(job, len(chunk))

    def submit_whole(self, batch: Batch, index: int, chunks: list[bytes],
                     final: FileState) -> None:
        """Queue a whole needed file received in full: start, bytes and end in one job.

        Such files are held and handed to the writer thread together, up to HOLD_FILES files
        or HOLD_BYTES bytes per job (or at :meth:`flush_writes`): a job is a hand-off of the
        GIL between the event loop and the writer, which cost more than a small file's
        write when it was one per file."""
        size = sum(len(c) for c in chunks)
        self._held.append((batch, index, chunks, final, size))
        self._held_bytes += size
        if len(self._held) >= HOLD_FILES or self._held_bytes >= HOLD_BYTES:
            self.flush_writes()

    def flush_writes(self) -> None:
        """Hand the writer thread the whole files held (event loop only)."""
        if not self._held:
            return
        held, size = self._held, self._held_bytes
        self._held, self._held_bytes = [], 0
        w = self._w()

        def job() -> None:
            for batch, index, chunks, final, n in held:
                try:
                    self.write_whole(batch, index, chunks, final)
                finally:
                    w.queued -= n

        w.submit(job, size)

    def submit_end(self, batch: Batch, index: int, final: FileState) -> None:
        """Queue the end of a needed file: check its digest, set its metadata."""
        self._w().submit(lambda: self.end_data(batch, index, final))

    @property
    def queued_bytes(self) -> int:
        return self._writer.queued if self._writer is not None else 0

    def wait_writes(self) -> None:
        """Block until the writer thread has done everything submitted."""
        if self._writer is not None:
            self._writer.wait()

    def close(self) -> str | None:
        """End of session: finish pending writes, stop the writer, drop unfinished batches.

        Never raises for the state database: what it could not record of the clean-up (a full
        disk) is the one line returned; the next session's clean-up finishes it."""
        self._held, self._held_bytes = [], 0  # never committed: nothing to write
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        try:
            self.abort()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
        problem, self._cleanup_error = self._cleanup_error, None
        return None if problem is None else (
            f"could not record the clean-up of its temp files in the state database "
            f"({problem}): the next session's clean-up does")

    def _w(self) -> Writer:
        if self._held:
            self.flush_writes()  # in order: what was held goes before the next job
        if self._writer is None:
            self._writer = Writer()
        return self._writer

    # --- session start: what an earlier killed session left behind
    def cleanup(self) -> int:
        """Hold the receiving lock for this session; if no other session (in any process)
        holds it, first remove the temp files and appends an earlier killed one left."""
        if self._lock is not None:
            return 0
        self._lock = ReceivingLock(self.db)
        return self._lock.enter()

    def _now(self) -> int:
        return time.time_ns()

    def _backup(self, name: str, local: str) -> str | None:
        if self.group.backup_directory is None:
            return None
        bdir = self.paths.root + self.group.backup_directory
        mirror = local[len(self.paths.root):]
        return backups.keep(local, bdir, mirror, self.group.backup_generations)

    def _refuse(self, name: str) -> str:
        if not valid_name(name):
            return f"{name!r} is not a valid absolute path"
        if not self.matcher.included(name):
            return f"{name} is outside the group's includes (or excluded) on {self.me}"
        try:
            self.paths.local(name)
        except KeyError as e:
            return f"{name}: {e.args[0]} on {self.me}"
        return ""

    # --- phase 1
    @exclusive
    def evaluate(self, ops: list[Op]) -> tuple[list[Result | None], list[int], Batch]:
        """Judge each operation; apply what needs no data.

        Returns the results so far, the indices whose bytes are needed, and their batch.
        """
        results: list[Result | None] = []
        need: list[int] = []
        batch = Batch()
        records: list[tuple[str, FileState | None, Seen | None]] = []
        self.cleanup()  # holds the lock (a no-op after the session's first call)
        host = self.group.host(self.peer)
        # One query for the batch's cached entries (stale ones are caught by describe's stat).
        self._cache = self.db.local_many([op.name for op in ops])
        self._listed.clear()
        self._crowded = self.crowded_dirs(ops, LIST_MIN)
        # A copy source must be included here (opened without following a symlink).
        self._copies = ({} if host is not None and host.slave
                        else self.copy_sources(ops, lambda n: not self._refuse(n)))
        try:
            for i, op in enumerate(ops):
                try:
                    if host is not None and host.slave:
                        res: Result | None = Result(
                            i, "refused", f"{self.peer} is a slave of {self.group.name}: "
                                          "it may not push")
                    else:
                        res = self._evaluate_one(i, op, batch, records)
                except OSError as e:
                    res = Result(i, "error", f"{op.name}: {e.strerror or e}")
                if res is None:
                    if batch.pending[i].final is None:  # else copied here, in _install
                        need.append(i)
                else:
                    self._report(op.name, res)
                results.append(res)
        except BaseException:
            self._drop(batch)  # its copied files
            raise
        finally:
            for fd in self._copies.values():
                os.close(fd)
            self._copies = {}
        if batch.pending:
            self.db.add_tmp(p.tmp for p in batch.pending.values())
            self._open.append(batch)
        elif not self._open:
            self._inode_ops.clear()  # nothing waits on them
        if records:
            self.db.record_received(self.peer, records)
        return results, need, batch

    def _report(self, name: str, res: Result) -> None:
        if res.status == "forced":
            self.overwritten.append(name)
        if self.only_new is not None and res.message == f"{name}: {self.only_new}":
            return  # the sender says it; refused here as every push from it was before
        for status, message in ((res.status, res.message or name),
                                (res.src_status, res.src_message)):
            if status in ("conflict", "lost", "refused", "error", "forced", "auto"):
                # File names come from the peer: escaped, so none can forge a log line.
                self.log(f"{self.peer} -> {self.me}: {status}: {escape(message, 400)}")

    def _evaluate_one(
        self, i: int, op: Op, batch: Batch,
        records: list[tuple[str, FileState | None, Seen | None]],
    ) -> Result | None:
        refused = self._refusal(i, op)
        if refused is not None:
            return refused
        local = self.paths.local(op.name)
        cached = self._cache.pop(op.name, None)
        listed = self._listing(os.path.dirname(local)) if cached is None else None
        if listed is not None and os.path.basename(local) not in listed:
            seen = None  # not there when its directory was listed, and never recorded here
        else:
            seen = describe(local, cached, self._now())
        current = seen.state if seen else None
        if self.only_new is not None and not (
                op.kind == "put" and not op.forced and op.base is None and current is None
                and not self.db.known_with(op.name, self.group.host_names)):
            return Result(i, "refused", f"{op.name}: {self.only_new}")
        verdict = self._judged(op.name, op.base, op.new, current, op.forced)
        if verdict.action is Action.SAME:
            records.append((op.name, op.new, seen))
            if op.kind == "mv":
                return self._drop_src(i, op, "same", records)
            return Result(i, "same")
        if verdict.action is Action.CONFLICT:
            return Result(i, "conflict", verdict.reason)
        if verdict.action is Action.LOSE:
            return Result(i, "lost", verdict.reason)
        status = {Action.APPLY: "ok", Action.FORCE: "forced", Action.AUTO_WIN: "auto"}[
            verdict.action
        ]
        if seen is not None:
            self._touches(seen.ino)
        if ((current is not None and current.kind == "dir" and _kind(op) != "dir")
                or _kind(op) == "lnk"):
            # A directory goes or a link comes: what was checked below it no longer holds.
            self._parents.clear()
            self._dirs.clear()
        if op.kind == "del":
            return self._delete(op, local, current, Result(i, status, verdict.reason), records)
        return self._install(i, op, batch, seen, Result(i, status, verdict.reason), records)

    def _judged(self, name: str, base: FileState | None, new: FileState | None,
                current: FileState | None, forced: bool) -> Verdict:
        """What to do with the sender's change of ``name`` from ``base`` to ``new`` (None: a
        deletion), ours being ``current``; a change we lose is marked to go back to it."""
        verdict = judge(name, base, new, current, forced=forced, auto=self.group.auto,
                        sender=self.peer, receiver=self.me, hosts=self.group.host_names,
                        ignore=self.ignore)
        if verdict.action in DISAGREE:  # or only the sender's base is older than our record
            verdict = rebased(verdict, name, current, self._agreed(name), sender=self.peer,
                              receiver=self.me, ignore=self.ignore)
        if verdict.action is Action.LOSE:
            self.db.mark_dirty(self.peer, [name])
        return verdict

    def _src_kept(self, op: Op, seen: Seen) -> tuple[str, str]:
        """A rename's source ``op.src`` goes as a plain deletion would: not when it changed here
        since (a conflict, or lost to ``auto``); then its status and reason, else empty."""
        verdict = self._judged(op.src, op.src_base, None, seen.state, op.forced)
        kept = {Action.CONFLICT: "conflict", Action.LOSE: "lost"}.get(verdict.action, "")
        return (kept, verdict.reason) if kept else ("", "")

    def _refusal(self, i: int, op: Op) -> Result | None:
        """Names outside our includes, or under a symlinked directory, are refused."""
        refusal = self._refuse(op.name) or (self._refuse(op.src) if op.kind == "mv" else "")
        if refusal:
            return Result(i, "refused", refusal)
        for name in (op.name, op.src) if op.kind == "mv" else (op.name,):
            parent = os.path.dirname(self.paths.local(name))
            if parent in self._dirs:
                continue
            if os.path.lexists(parent) and not self._parent_ok(parent):
                return Result(i, "refused", f"a directory above {name} is a symlink on "
                                            f"{self.me}; nothing is written through it")
        return None

    def _delete(self, op: Op, local: str, current: FileState | None, res: Result,
                records: list[tuple[str, FileState | None, Seen | None]]) -> Result:
        msg = res.message
        if current is not None:
            kept = self._backup(op.name, local) if current.kind == "reg" else None
            fsops.remove(local)
            msg = _with_backup(msg, kept)
            self.changed.append(op.name)
        records.append((op.name, None, None))
        return Result(res.index, res.status, msg)

    def _install(self, i: int, op: Op, batch: Batch, seen: Seen | None, res: Result,
             records: list[tuple[str, FileState | None, Seen | None]]) -> Result | None:
        """Install what needs no bytes; a regular file that does waits in ``batch``."""
        new = op.new
        assert new is not None
        local = self.paths.local(op.name)
        current = seen.state if seen else None
        msg = res.message
        parent = os.path.dirname(local)
        if parent not in self._dirs:
            if not os.path.isdir(parent):
                return Result(i, "error", f"{op.name}: parent directory missing on {self.me}")
            self._dirs.add(parent)
        if current is not None and current.kind != new.kind:
            kept = self._backup(op.name, local) if current.kind == "reg" else None
            fsops.remove(local)
            msg = _with_backup(msg, kept)
            current = None
        if new.kind != "reg":
            fsops.make_special(local, new, self.ignore)
            self._done(op.name, new, local, records)
            return Result(i, res.status, msg)
        if current is not None and current.same_content(new):
            fsops.set_meta(local, new, ignore=self.ignore)
            self._done(op.name, new, local, records, seen.blocks if seen else b"")
            return Result(i, res.status, msg)
        pending = Pending(i, op, local, fsops.tmp_path_for(local), current, res.status, msg,
                           seen)
        if i in self._copies:
            if self.copy_into(batch, pending, self._copies[i]):
                return None
            pending = Pending(i, op, local, fsops.tmp_path_for(local), current, res.status,
                              msg, seen)
        if op.kind == "mv":
            renamed = self._rename(pending, Result(i, res.status, msg), records)
            if renamed is not None:
                return renamed
        batch.pending[i] = pending
        return None

    def _rename(self, p: Pending, res: Result,
                records: list[tuple[str, FileState | None, Seen | None]]) -> Result | None:
        """A rename whose source still holds the new bytes: no bytes move. Otherwise the
        source (unless it is kept: ``_src_kept``) goes when the file arrives; None."""
        op, new, local, msg = p.op, p.op.new, p.local, res.message
        assert new is not None
        src_local = self.paths.local(op.src)
        src_seen = describe(src_local, self.db.local_get(op.src), self._now())
        if src_seen is None:
            return None  # gone here too: the new name comes whole
        p.kept_src = self._src_kept(op, src_seen)
        if p.kept_src[0]:
            return None  # the new name comes whole; the source stays (and is reported)
        self._touches(src_seen.ino)  # renamed now, or removed when the file arrives
        if src_seen.state.same_content(new):
            if p.current is not None and p.current.kind == "reg":
                msg = _with_backup(msg, self._backup(op.name, local))
            os.replace(src_local, local)
            fsops.set_meta(local, new, ignore=self.ignore)
            self._done(op.name, new, local, records, src_seen.blocks)
            records.append((op.src, None, None))
            self.changed.append(op.src)
            return Result(res.index, res.status, msg)
        p.src_local = src_local
        return None

    def _agreed(self, name: str) -> FileState | None:
        """What we and the sender held after our last sync (None: nothing)."""
        return self.db.synced_for(self.peer, [name]).get(name)

    def _parent_ok(self, parent: str) -> bool:
        """No symlink among the directories of a path (csync2's rule), so nothing a peer sends
        lands outside the included trees."""
        ok = self._parents.get(parent)
        if ok is None:
            root = self.paths.root
            real_root = os.path.realpath(root or "/")
            expected = os.path.normpath(real_root + "/" + parent[len(root):])
            ok = self._parents[parent] = os.path.realpath(parent) == expected
        return ok

    def _drop_src(
        self, i: int, op: Op, status: str,
        records: list[tuple[str, FileState | None, Seen | None]], msg: str = "",
    ) -> Result:
        """The source of a rename whose new name is in place goes, unless it is kept."""
        src_local = self.paths.local(op.src)
        seen = describe(src_local, self.db.local_get(op.src), self._now())
        if seen is not None:
            kept_src = self._src_kept(op, seen)
            if kept_src[0]:
                return Result(i, status, msg, *kept_src)
            kept = self._backup(op.src, src_local) if seen.state.kind == "reg" else None
            fsops.remove(src_local)
            self.changed.append(op.src)
            msg = _with_backup(msg, kept)
        records.append((op.src, None, None))
        return Result(i, status, msg)

    def _done(
        self, name: str, state: FileState, local: str,
        records: list[tuple[str, FileState | None, Seen | None]], blocks: bytes = b"",
    ) -> None:
        st = os.lstat(local)
        reg = stat.S_ISREG(st.st_mode)
        digest = state.digest if reg else ""
        target = state.target if stat.S_ISLNK(st.st_mode) else ""
        now = self._now()
        # The content was checked against the sender's digest: as good as read in full now.
        # Its mtime is the sender's, set by us: a local write would stamp this machine's clock
        # instead, so the racy window of that mtime does not apply (no full re-read of a big
        # replica just because it was received within 50 ms of the sender's last write).
        mtime = held_ns(st.st_mtime_ns)
        checked = max(now, mtime + racy_window(mtime, st.st_ctime_ns))
        seen = Seen(FileState.from_stat(st, digest, target), st.st_ino, st.st_ctime_ns, checked,
                    blocks if reg else b"", now, 0, now)
        records.append((name, state, seen))
        self.changed.append(name)

    # --- phase 3
    @exclusive
    def commit(self, batch: Batch) -> list[Result]:
        """Install the received files of a batch; returns their results."""
        records: list[tuple[str, FileState | None, Seen | None]] = []
        ready = [p for p in batch.pending.values() if p.final is not None and not p.failed]
        results: list[Result] = []
        try:
            fsops.flush([p.local if p.mode == "append" else p.tmp for p in ready])
        except OSError as e:
            for p in ready:
                p.failed = f"{p.op.name}: flush failed on {self.me}: {e.strerror}"
        dirs: set[str] = set()
        appended: list[str] = []
        for p in self.commit_order(batch):
            if p.final is None and not p.failed:
                p.failed = f"{p.op.name}: no data received"
            if p.failed:
                self._discard(p)
                results.append(Result(p.index, "error", p.failed))
                continue
            try:
                final = p.final
                assert final is not None
                msg = p.message
                if p.mode == "append":
                    # Grown in place: the old version is a prefix of the new one, so no backup
                    # generation is rotated for it (see docs/SYNC.md, backups).
                    appended.append(p.local)
                else:
                    msg = self._rename_into_place(batch, p, msg)
                    sqlitefile.drop_stale_journal(p.local, final.size)  # (see there)
                    p.installed = True
                    dirs.add(os.path.dirname(p.local))
                self._done(p.op.name, final, p.local, records, p.blocks)
                if p.src_local:
                    results.append(self._drop_src(p.index, p.op, p.verdict_status, records,
                                                  msg))
                else:
                    results.append(Result(p.index, p.verdict_status, msg, *p.kept_src))
            except OSError as e:
                self._discard(p)
                results.append(Result(p.index, "error", f"{p.op.name}: {e.strerror}"))
        with contextlib.suppress(OSError):
            fsops.flush_dirs(dirs, len(ready))
        if records:
            self.db.record_received(self.peer, records)
        self.db.drop_appends(appended)
        self.db.drop_tmp(p.tmp for p in batch.pending.values())
        batch.close_dirs()
        for r in results:
            self._report(batch.pending[r.index].op.name, r)
        with contextlib.suppress(ValueError):
            self._open.remove(batch)
        if not self._open:
            self._inode_ops.clear()
        return results

    def _rename_into_place(self, batch: Batch, p: Pending, msg: str) -> str:
        """The temp file over the target (the old file backed up); returns the message."""
        if p.current is not None and not p.op.forced and not self._as_judged(p):
            # A local program wrote (or removed) the file since it was judged: that change is
            # kept and the peer's version not installed, a conflict at the next run, as for a
            # file that appeared (below). The window left is this lstat to the rename. (A
            # forced update overwrites local changes by definition, backed up, as before.)
            raise MachineError(errno.EBUSY, f"changed on {self.me} during the transfer; "
                               "left alone")
        if (p.current is not None and p.current.kind == "reg"
                and not self.copied_away(batch, p.op.name, p.current)):
            # Not when this batch copied its bytes to another name: they live on there.
            with contextlib.suppress(FileNotFoundError):
                msg = _with_backup(msg, self._backup(p.op.name, p.local))
        dfd = batch.dir_fd(self.paths.root, os.path.dirname(p.local))
        # A file we judged absent must still be: one a local program made since is left
        # alone (a conflict at the next run), never overwritten unseen.
        if not fsops.rename(os.path.basename(p.tmp), os.path.basename(p.local), dfd,
                            replace=p.current is not None):
            raise MachineError(errno.EEXIST, f"appeared on {self.me} during the transfer; "
                               "left alone")
        return msg


def _kind(op: Op) -> str:
    return op.new.kind if op.new is not None else ""


def _with_backup(msg: str, kept: str | None) -> str:
    if kept is None:
        return msg
    return f"{msg}; old version kept in {kept}" if msg else f"old version kept in {kept}"
