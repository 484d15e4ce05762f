"""``nonstop_notify PATH``: every event, in order, to a program (docs/OBSERVE.md).

One task per program delivers the history's records one at a time, oldest first: the program
runs with the event in its environment (:func:`nonstop.observe.events.environment`); exit 0
means delivered, anything else (or no exit within :data:`TIMEOUT_S`: the program and its
children are killed) means the same event is tried again after a back-off that doubles from
1 s to 60 s. The sequence number of the last event delivered is kept in the state directory
(``notify/<name>.cursor``), so a restarted daemon continues where the last one stopped, from the
history file. A program configured for the first time starts with the events of that start.

It all happens in its own task and subprocesses: a slow or hung program never delays a
heartbeat or a takeover, it only falls behind and catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import signal
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from nonstop.observe.events import Record, environment
from nonstop.tasks import cancel_and_wait

if TYPE_CHECKING:
    from nonstop.observe.metrics import Metrics

log = logging.getLogger("nonstop.observe")
T = TypeVar("T")

TIMEOUT_S = 30.0
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
OUTPUT_KEPT = 2000  # bytes of a failed program's output quoted in the log


class Source(Protocol):
    """Where the records come from: the recorder."""

    metrics: Metrics | None
    written: int

    def listen(self, wake: Callable[[], None]) -> None: ...

    def in_worker(self, run: Callable[[], T]) -> Awaitable[T]: ...

    async def written_after(self, after: int, limit: int = 100) -> list[Record]: ...


def cursor_name(program: str) -> str:
    """A file name for a program's cursor: readable, and distinct for distinct paths."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(program))[:40]
    return f"{readable}-{hashlib.sha256(program.encode()).hexdigest()[:12]}.cursor"


def read_cursor(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.error("notify: unreadable cursor %s (%s): starting from the current events",
                  path, e)
        return None


def write_cursor(path: Path, seq: int) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        fh.write(f"{seq}\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Notifier:
    """Delivers the records of ``source`` to one program, in order, until closed."""

    def __init__(self, program: str, source: Source, directory: Path, *,
                 timeout_s: float = TIMEOUT_S, backoff_first_s: float = BACKOFF_FIRST_S,
                 backoff_max_s: float = BACKOFF_MAX_S) -> None:
        self.program = program
        self.source = source
        self.cursor_file = directory / cursor_name(program)
        self.timeout_s = timeout_s
        self.backoff_first_s = backoff_first_s
        self.backoff_max_s = backoff_max_s
        self.delivered = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the cursor (a new program starts at the current end of the history)."""
        self.cursor_file.parent.mkdir(parents=True, exist_ok=True)
        saved = await self.source.in_worker(partial(read_cursor, self.cursor_file))
        if saved is None:
            saved = self.source.written
            await self.source.in_worker(partial(write_cursor, self.cursor_file, saved))
        self.delivered = saved
        self.source.listen(self._wake.set)
        self._task = asyncio.create_task(self._run(), name=f"notify {self.program}")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            self._count_pending()
            batch = await self.source.written_after(self.delivered)
            if not batch:
                self._wake.clear()
                if self.source.written <= self.delivered:
                    await self._wake.wait()
                continue
            if batch[0].seq > self.delivered + 1:
                log.warning("notify %s: events %d to %d are no longer in the history "
                            "(bounded); continuing with %d", self.program, self.delivered + 1,
                            batch[0].seq - 1, batch[0].seq)
            for rec in batch:
                await self._deliver(rec)
                self.delivered = rec.seq
                self._count_pending()
                try:
                    await self.source.in_worker(partial(write_cursor, self.cursor_file,
                                                        rec.seq))
                except OSError as e:
                    log.error("notify %s: cannot record delivery of event %d: %s",
                              self.program, rec.seq, e)

    def _count_pending(self) -> None:
        if self.source.metrics is not None:
            self.source.metrics.notify_pending.labels(self.program).set(
                max(0, self.source.written - self.delivered))

    async def _deliver(self, rec: Record) -> None:
        """Run the program for one record until it succeeds, backing off between tries."""
        delay = self.backoff_first_s
        attempt = 0
        while True:
            attempt += 1
            problem = await self._run_once(rec, attempt)
            if problem is None:
                if self.source.metrics is not None:
                    self.source.metrics.notify_delivered.labels(self.program).inc()
                if attempt > 1:
                    log.info("notify %s: event %d delivered at attempt %d", self.program,
                             rec.seq, attempt)
                return
            if self.source.metrics is not None:
                self.source.metrics.notify_failures.labels(self.program).inc()
            log.warning("notify %s: event %d (%s): %s; retrying in %g s", self.program,
                        rec.seq, rec.kind, problem, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max_s)

    async def _run_once(self, rec: Record, attempt: int) -> str | None:
        env = {**os.environ, **environment(rec), "NONSTOP_EVENT_ATTEMPT": str(attempt)}
        try:
            proc = await asyncio.create_subprocess_exec(
                self.program, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                env=env, start_new_session=True,  # its own group: a timeout kills it all
            )
        except OSError as e:
            return f"cannot run: {e.strerror or e}"
        assert proc.stdout is not None
        kept = bytearray()

        async def drain() -> None:
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(65536):
                if len(kept) < OUTPUT_KEPT:
                    kept.extend(chunk[: OUTPUT_KEPT - len(kept)])

        reader = asyncio.create_task(drain())
        # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation (close())
        # that arrives as the program exits (gh-86296), and the delivery loop ran on for ever.
        try:
            async with asyncio.timeout(self.timeout_s):
                code = await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            reader.cancel()
            return f"no exit within {self.timeout_s:.0f} s: killed"
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            reader.cancel()
            raise
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):  # a child may keep the pipe open
                await reader
        if code == 0:
            return None
        out = kept.decode(errors="replace").strip().replace("\n", " | ")
        return f"exit status {code}" + (f": {out}" if out else "")
