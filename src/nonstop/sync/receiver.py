"""Apply a peer's changes on this node: checks, conflicts, backups, atomic writes, state records.

Used per session by the server. ``evaluate`` judges a batch of operations and applies those that
need no data (deletions, directories, links, metadata, renames); regular files that need bytes
are streamed into temp files (``open_data``/``write``/``end_data``) and installed by ``commit``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nonstop.config.csync2 import Group
from nonstop.sync import backups, fsops
from nonstop.sync.conflicts import Action, judge
from nonstop.sync.patterns import Matcher, PathMap, valid_name
from nonstop.sync.plan import Op
from nonstop.sync.scan import Seen, describe
from nonstop.sync.state import FileState
from nonstop.sync.statedb import StateDB

Log = Callable[[str], None]


@dataclass(frozen=True)
class Result:
    """The outcome of one operation, sent back to the sender."""

    index: int
    status: str  # ok | same | forced | auto | conflict | lost | refused | error
    message: str = ""

    @property
    def applied(self) -> bool:
        """Both sides now hold the sender's version."""
        return self.status in ("ok", "same", "forced", "auto")

    def to_wire(self) -> list[Any]:
        return [self.index, self.status, self.message]


@dataclass
class _Pending:
    index: int
    op: Op
    local: str
    tmp: str
    current: FileState | None
    verdict_status: str
    message: str
    src_local: str = ""
    fd: int = -1
    hasher: Any = None
    size: int = 0
    final: FileState | None = None
    failed: str = ""


class _Writer:
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


@dataclass
class Batch:
    """The files of one offer that wait for their bytes, then for ``commit``."""

    pending: dict[int, _Pending] = field(default_factory=dict)


@dataclass
class Receiver:
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
    _open: list[Batch] = field(default_factory=list)
    _writer: _Writer | None = None
    _parents: dict[str, bool] = field(default_factory=dict)

    # --- data arrives on the event loop; the writes happen on the writer thread
    def submit_open(self, batch: Batch, index: int) -> None:
        """Queue the temp file creation for a needed file."""
        self._w().submit(lambda: self.open_data(batch, index))

    def submit_write(self, batch: Batch, index: int, chunk: bytes) -> None:
        """Queue a chunk of a needed file."""
        w = self._w()

        def job() -> None:
            self.write(batch, index, chunk)
            w.queued -= len(chunk)

        w.submit(job, len(chunk))

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

    def close(self) -> None:
        """End of session: finish pending writes, stop the writer, drop unfinished batches."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.abort()

    def _w(self) -> _Writer:
        if self._writer is None:
            self._writer = _Writer()
        return self._writer

    # --- session start: what an earlier killed session left behind
    def cleanup(self) -> int:
        """Remove receive temp files recorded by an earlier session that did not finish."""
        return cleanup_tmp(self.db)

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
    def evaluate(self, ops: list[Op]) -> tuple[list[Result | None], list[int], Batch]:
        """Judge each operation; apply what needs no data.

        Returns the results so far, the indices whose bytes are needed, and their batch.
        """
        results: list[Result | None] = []
        need: list[int] = []
        batch = Batch()
        records: list[tuple[str, FileState | None, Seen | None]] = []
        host = self.group.host(self.peer)
        for i, op in enumerate(ops):
            try:
                if host is not None and host.slave:
                    res: Result | None = Result(i, "refused", f"{self.peer} is a slave of "
                                                              f"{self.group.name}: it may not push")
                else:
                    res = self._evaluate_one(i, op, batch, records)
            except OSError as e:
                res = Result(i, "error", f"{op.name}: {e.strerror or e}")
            if res is None:
                need.append(i)
            else:
                self._report(op.name, res)
            results.append(res)
        if batch.pending:
            self.db.add_tmp(p.tmp for p in batch.pending.values())
            self._open.append(batch)
        if records:
            self.db.record_received(self.peer, records)
        return results, need, batch

    def _report(self, name: str, res: Result) -> None:
        if res.status in ("conflict", "lost", "refused", "error", "forced", "auto"):
            self.log(f"{self.peer} -> {self.me}: {res.status}: {res.message or name}")

    def _evaluate_one(
        self, i: int, op: Op, batch: Batch,
        records: list[tuple[str, FileState | None, Seen | None]],
    ) -> Result | None:
        refusal = self._refuse(op.name) or (self._refuse(op.src) if op.kind == "mv" else "")
        if refusal:
            return Result(i, "refused", refusal)
        local = self.paths.local(op.name)
        seen = describe(local, self.db.local_get(op.name), self._now())
        current = seen.state if seen else None
        verdict = judge(
            op.name, op.base, op.new, current,
            forced=op.forced, auto=self.group.auto, sender=self.peer, receiver=self.me,
            hosts=self.group.host_names, ignore=self.ignore,
        )
        if verdict.action is Action.SAME:
            records.append((op.name, op.new, seen))
            if op.kind == "mv":
                return self._drop_src(i, op, "same", records)
            return Result(i, "same")
        if verdict.action is Action.CONFLICT:
            return Result(i, "conflict", verdict.reason)
        if verdict.action is Action.LOSE:
            self.db.mark_dirty(self.peer, [op.name])
            return Result(i, "lost", verdict.reason)
        status = {Action.APPLY: "ok", Action.FORCE: "forced", Action.AUTO_WIN: "auto"}[
            verdict.action
        ]
        msg = verdict.reason
        if op.kind == "del":
            if current is not None:
                kept = self._backup(op.name, local) if current.kind == "reg" else None
                fsops.remove(local)
                msg = _with_backup(msg, kept)
                self.changed.append(op.name)
            records.append((op.name, None, None))
            return Result(i, status, msg)
        new = op.new
        assert new is not None
        parent = os.path.dirname(local)
        if not os.path.isdir(parent):
            return Result(i, "error", f"{op.name}: parent directory missing on {self.me}")
        if not self._parent_ok(parent):
            return Result(i, "refused", f"a directory above {op.name} is a symlink on "
                                        f"{self.me}; nothing is written through it")
        if current is not None and current.kind != new.kind:
            kept = self._backup(op.name, local) if current.kind == "reg" else None
            fsops.remove(local)
            msg = _with_backup(msg, kept)
            current = None
        if new.kind != "reg":
            fsops.make_special(local, new, self.ignore)
            self._done(op.name, new, local, records)
            return Result(i, status, msg)
        if current is not None and current.same_content(new):
            fsops.set_meta(local, new, ignore=self.ignore)
            self._done(op.name, new, local, records)
            return Result(i, status, msg)
        pending = _Pending(i, op, local, fsops.tmp_path_for(local), current, status, msg)
        if op.kind == "mv":
            src_local = self.paths.local(op.src)
            src_seen = describe(src_local, self.db.local_get(op.src), self._now())
            src_ok = src_seen is not None and (op.forced or src_seen.state.same(op.src_base))
            if src_seen is not None and src_ok and src_seen.state.same_content(new):
                # The rename: no bytes move.
                if current is not None and current.kind == "reg":
                    msg = _with_backup(msg, self._backup(op.name, local))
                os.replace(src_local, local)
                fsops.set_meta(local, new, ignore=self.ignore)
                self._done(op.name, new, local, records)
                records.append((op.src, None, None))
                self.changed.append(op.src)
                return Result(i, status, msg)
            if src_ok:
                pending.src_local = src_local
        batch.pending[i] = pending
        return None

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
        records: list[tuple[str, FileState | None, Seen | None]],
    ) -> Result:
        src_local = self.paths.local(op.src)
        seen = describe(src_local, self.db.local_get(op.src), self._now())
        if seen is not None and seen.state.same(op.src_base):
            kept = self._backup(op.src, src_local) if seen.state.kind == "reg" else None
            fsops.remove(src_local)
            self.changed.append(op.src)
            records.append((op.src, None, None))
            return Result(i, status, _with_backup("", kept))
        if seen is None:
            records.append((op.src, None, None))
        return Result(i, status)

    def _done(
        self, name: str, state: FileState, local: str,
        records: list[tuple[str, FileState | None, Seen | None]],
    ) -> None:
        st = os.lstat(local)
        digest = state.digest if stat.S_ISREG(st.st_mode) else ""
        target = state.target if stat.S_ISLNK(st.st_mode) else ""
        seen = Seen(FileState.from_stat(st, digest, target), st.st_ino, st.st_ctime_ns,
                    self._now())
        records.append((name, state, seen))
        self.changed.append(name)

    # --- phase 2: data
    def open_data(self, batch: Batch, index: int) -> None:
        """Create the temp file of a needed file (writer thread)."""
        p = batch.pending[index]
        p.hasher = hashlib.blake2b(digest_size=20)
        try:
            p.fd = os.open(p.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as e:
            p.failed = f"{p.op.name}: cannot create a temp file on {self.me}: {e.strerror}"

    def write(self, batch: Batch, index: int, chunk: bytes) -> None:
        """Append a chunk (writer thread); a failure is kept for the result."""
        p = batch.pending[index]
        if p.failed:
            return
        try:
            view = memoryview(chunk)
            while view:
                n = os.write(p.fd, view)
                view = view[n:]
            p.hasher.update(chunk)
            p.size += len(chunk)
        except OSError as e:
            p.failed = f"{p.op.name}: write failed on {self.me}: {e.strerror}"

    def end_data(self, batch: Batch, index: int, final: FileState) -> None:
        """Finish a needed file (writer thread): digest check, owner, mode, mtime."""
        p = batch.pending[index]
        if not p.failed and (p.hasher.hexdigest() != final.digest or p.size != final.size):
            p.failed = f"{p.op.name}: content does not match its digest (changed while sent?)"
        if not p.failed:
            try:
                fsops.set_meta_fd(p.fd, final, self.ignore, p.current)
            except OSError as e:
                p.failed = f"{p.op.name}: cannot set owner/mode/mtime on {self.me}: {e.strerror}"
        if p.fd >= 0:
            os.close(p.fd)
        p.fd = -1
        p.final = final

    # --- phase 3
    def commit(self, batch: Batch) -> list[Result]:
        """Install the received files of a batch; returns their results."""
        records: list[tuple[str, FileState | None, Seen | None]] = []
        ready = [p for p in batch.pending.values() if p.final is not None and not p.failed]
        results: list[Result] = []
        try:
            fsops.flush([p.tmp for p in ready])
        except OSError as e:
            for p in ready:
                p.failed = f"{p.op.name}: flush failed on {self.me}: {e.strerror}"
        dirs: set[str] = set()
        for p in batch.pending.values():
            if p.final is None and not p.failed:
                p.failed = f"{p.op.name}: no data received"
            if p.failed:
                with contextlib.suppress(OSError):
                    os.unlink(p.tmp)
                results.append(Result(p.index, "error", p.failed))
                continue
            try:
                final = p.final
                assert final is not None
                msg = p.message
                if p.current is not None and p.current.kind == "reg":
                    with contextlib.suppress(FileNotFoundError):
                        msg = _with_backup(msg, self._backup(p.op.name, p.local))
                os.replace(p.tmp, p.local)
                dirs.add(os.path.dirname(p.local))
                self._done(p.op.name, final, p.local, records)
                if p.src_local:
                    results.append(self._drop_src(p.index, p.op, p.verdict_status, records))
                else:
                    results.append(Result(p.index, p.verdict_status, msg))
            except OSError as e:
                with contextlib.suppress(OSError):
                    os.unlink(p.tmp)
                results.append(Result(p.index, "error", f"{p.op.name}: {e.strerror}"))
        with contextlib.suppress(OSError):
            fsops.flush_dirs(dirs)
        if records:
            self.db.record_received(self.peer, records)
        self.db.drop_tmp(p.tmp for p in batch.pending.values())
        for r in results:
            self._report(batch.pending[r.index].op.name, r)
        with contextlib.suppress(ValueError):
            self._open.remove(batch)
        return results

    def abort(self) -> None:
        """The sender went away mid-batch: remove the temp files of uncommitted batches now."""
        for batch in self._open:
            for p in batch.pending.values():
                if p.fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(p.fd)
                with contextlib.suppress(OSError):
                    os.unlink(p.tmp)
            self.db.drop_tmp(p.tmp for p in batch.pending.values())
        self._open.clear()


def _with_backup(msg: str, kept: str | None) -> str:
    if kept is None:
        return msg
    return f"{msg}; old version kept in {kept}" if msg else f"old version kept in {kept}"


def cleanup_tmp(db: StateDB) -> int:
    """Remove every recorded receive temp file that still exists; returns how many."""
    paths = db.tmp_paths()
    n = 0
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
            n += 1
    db.drop_tmp(paths)
    return n
