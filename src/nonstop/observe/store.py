"""The history file: append-only, bounded, crash-safe, readable without the daemon.

Why a record file and not SQLite: the records are only ever appended and read in order, the
reader (``nonstop history``, possibly after a crash, possibly while the daemon writes) must
never need a lock, a write access or a journal replay, and a torn write must cost exactly the
record being written. One line per record with its own CRC-32 (see :mod:`events`) gives all of
that with a plain ``open()``: a reader skips a damaged line and finds the next one at the next
newline; at start the writer cuts a torn tail off before appending.

Bounded: ``<state-dir>/history/events.log`` grows to :data:`SEGMENT_BYTES`, then becomes
``events.log.1`` (replacing the previous one) and a new ``events.log`` starts: the history
holds the last one to two segments, at most 2 x 512 KiB (about 2,500 to 5,000 records).

Durable: each batch is written with one ``write()`` and flushed with ``fdatasync()`` by the
writer thread (:class:`HistoryWriter`), never by the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from nonstop.errors import MachineError, Misuse
from nonstop.observe.events import BadRecord, Record, decode_line, encode_line

log = logging.getLogger("nonstop.observe")

HISTORY_DIR = "history"
CURRENT = "events.log"
PREVIOUS = "events.log.1"
SEGMENT_BYTES = 512 * 1024
MAX_QUEUED = 10_000  # records waiting for a stuck disk; beyond this new ones are not written
BATCH = 256
# The writer's stack: it encodes flat records and runs small file jobs. A realtime daemon locks
# all its memory (mlockall), where a thread's default 8 MiB stack would be 8 MiB resident.
WRITER_STACK = 512 * 1024

T = TypeVar("T")


def history_dir(state_dir: str | Path) -> Path:
    return Path(state_dir) / HISTORY_DIR


def _parse(data: bytes) -> tuple[list[Record], int]:
    """The intact records of a segment's bytes, and where the last intact one ends."""
    records: list[Record] = []
    end = 0
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        line = data[pos:] if nl < 0 else data[pos:nl + 1]
        pos = len(data) if nl < 0 else nl + 1
        try:
            records.append(decode_line(line))
            end = pos
        except BadRecord:
            continue
    return records, end


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def read_records(directory: str | Path, after: int = 0) -> list[Record]:
    """Every intact record with a sequence number above ``after``, oldest first. Never needs
    the daemon nor a lock; a rotation while reading is noticed (the file changed) and read
    again."""
    d = Path(directory)
    records: list[Record] = []
    for _attempt in range(5):
        before = _inode(d / CURRENT)
        records = _parse(_read(d / PREVIOUS))[0] + _parse(_read(d / CURRENT))[0]
        if _inode(d / CURRENT) == before:
            break
    seen: set[int] = set()
    out = []
    for rec in sorted(records, key=lambda r: r.seq):
        if rec.seq > after and rec.seq not in seen:
            seen.add(rec.seq)
            out.append(rec)
    return out


class _Tail:
    """What ``follow`` has shown so far, and the records that come after it."""

    def __init__(self, directory: Path, last: int) -> None:
        self.dir = directory
        self.last = last

    def catch_up(self) -> Iterator[Record]:
        for rec in read_records(self.dir, self.last):
            self.last = rec.seq
            yield rec

    def lines(self, lines: list[bytes]) -> Iterator[Record]:
        for line in lines:
            try:
                rec = decode_line(line + b"\n")
            except BadRecord:
                continue
            if rec.seq > self.last + 1:
                yield from self.catch_up()
            if rec.seq > self.last:
                self.last = rec.seq
                yield rec


def follow(directory: str | Path, after: int = 0, *, poll_s: float = 0.5,
           should_stop: Callable[[], bool] = lambda: False) -> Iterator[Record]:
    """Records above ``after`` as they are written (``nonstop history --follow``). The open
    file is read to its end; after a rotation, or at a gap in the numbers (rotated twice
    between two polls), both files are read again from the last record shown."""
    d = Path(directory)
    tail = _Tail(d, after)
    yield from tail.catch_up()
    fh = None
    buf = b""
    try:
        while not should_stop():
            if fh is None:
                try:
                    fh = open(d / CURRENT, "rb")  # noqa: SIM115 (kept open across polls)
                except FileNotFoundError:
                    time.sleep(poll_s)
                    continue
                buf = b""
            chunk = fh.read()
            if chunk:
                *lines, buf = (buf + chunk).split(b"\n")
                yield from tail.lines(lines)
                continue
            if _inode(d / CURRENT) != os.fstat(fh.fileno()).st_ino:
                fh.close()  # rotated: on to the new file, after what we may have missed
                fh = None
                yield from tail.catch_up()
                continue
            time.sleep(poll_s)
    finally:
        if fh is not None:
            fh.close()


class HistoryFile:
    """The writing side; used by one thread at a time."""

    def __init__(self, directory: str | Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.dir = Path(directory)
        self.segment_bytes = segment_bytes
        self._fd: int | None = None
        self._size = 0

    def open(self) -> int:
        """Open for appending, cut a torn tail off, and return the last sequence number
        recorded (0 for a new history), so that numbering continues across restarts."""
        self.dir.mkdir(parents=True, exist_ok=True)
        current = self.dir / CURRENT
        records, end = _parse(_read(current))
        fd = os.open(current, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        size = os.fstat(fd).st_size
        if size > end:
            log.warning("history: ignoring a torn record at the end of %s (%d bytes)",
                        current, size - end)
            os.ftruncate(fd, end)
            os.fsync(fd)
        self._fd, self._size = fd, end
        if records:
            return max(r.seq for r in records)
        old = _parse(_read(self.dir / PREVIOUS))[0]
        return max((r.seq for r in old), default=0)

    def append(self, records: list[Record]) -> None:
        if self._fd is None:
            raise Misuse("history file not open")
        data = b"".join(encode_line(r) for r in records)
        written = os.write(self._fd, data)
        if written < len(data):  # a nearly full disk takes what fits: cut the torn record off
            os.ftruncate(self._fd, self._size)
            raise MachineError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (wrote {written} "
                                             f"of {len(data)} bytes)", str(self.dir / CURRENT))
        os.fdatasync(self._fd)
        self._size += len(data)
        if self._size >= self.segment_bytes:
            self._rotate()

    def _rotate(self) -> None:
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        os.replace(self.dir / CURRENT, self.dir / PREVIOUS)
        self._fd = os.open(self.dir / CURRENT,
                           os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self._size = 0
        dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class _Job:
    """A small file job for the writer thread (a notifier's cursor, a catch-up read, the
    metrics text), so that the feature adds one thread, not an executor's."""

    run: Callable[[], Any]
    done: concurrent.futures.Future[Any]


class HistoryWriter:
    """Appends records in a thread of its own: the event loop only puts them in a queue.
    ``on_written(seq)`` is called (from the thread) after each batch, with the last sequence
    number handled; it is called after a write error too, because the notifier then still
    delivers from memory (the records are only lost to a later restart)."""

    def __init__(self, file: HistoryFile, on_written: Callable[[int], None],
                 thread_init: Callable[[], None] = lambda: None) -> None:
        self.file = file
        self.on_written = on_written
        self.thread_init = thread_init  # e.g. back to normal priority in a realtime daemon
        self._queue: queue.SimpleQueue[Record | _Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.errors = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        old = threading.stack_size(WRITER_STACK)
        try:
            self._thread.start()
        finally:
            threading.stack_size(old)

    def call(self, run: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``run()`` in the writer thread, after the records queued before it."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(_Job(run, done))
        return asyncio.wrap_future(done)

    def put(self, rec: Record) -> None:
        if self._queue.qsize() >= MAX_QUEUED:
            self.dropped += 1
            self.on_written(rec.seq)
            return
        self._queue.put(rec)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop (waits at most ``timeout`` for a stuck disk)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        self.file.close()

    def _run(self) -> None:
        self.thread_init()
        done = False
        while not done:
            item = self._queue.get()
            batch: list[Record] = []
            job: _Job | None = None
            while True:
                if item is None:
                    done = True
                elif isinstance(item, _Job):
                    job = item
                else:
                    batch.append(item)
                if done or job is not None or len(batch) >= BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._write(batch)
            if job is not None and job.done.set_running_or_notify_cancel():
                try:
                    job.done.set_result(job.run())
                except Exception as e:  # the caller gets it
                    job.done.set_exception(e)

    def _write(self, batch: list[Record]) -> None:
        if not batch:
            return
        try:
            self.file.append(batch)
        except OSError as e:
            self.errors += 1
            if self.errors == 1 or self.errors % 1000 == 0:
                log.error("history: cannot write %s: %s (%d failed write(s))",
                          self.file.dir, e, self.errors)
        with contextlib.suppress(Exception):
            self.on_written(batch[-1].seq)
