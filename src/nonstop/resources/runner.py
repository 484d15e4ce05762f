"""Run one resource script action with a deadline, capturing its output.

Each script runs in a session (and so a process group) of its own. When it overruns its
timeout the whole group gets SIGTERM, then SIGKILL after a short grace: a hung ``start`` is
killed together with the children it forked. A child that called setsid() itself (a daemon
that detached properly) has left the group and escapes; a daemon must be stopped by its stop
action anyway. After a normal exit the group is left alone: an init script's daemon is meant
to keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nonstop.tasks import cancel_and_wait

# How long a script's output pipe may stay open after the script exited: a daemon that
# inherited stdout must not make us wait for its lifetime.
OUTPUT_DRAIN_S = 0.5
KILL_GRACE_S = 2.0
TAIL_LINES = 5
# Output kept for the result (all of it is logged): enough for any sane script.
MAX_OUTPUT_BYTES = 1 << 20


@dataclass(frozen=True)
class RunResult:
    """How a script action ended. ``returncode`` is None when it was killed for time."""

    argv: tuple[str, ...]
    returncode: int | None
    output: str
    timed_out: bool
    duration_s: float

    def tail(self, n: int = TAIL_LINES) -> tuple[str, ...]:
        """The last ``n`` non-empty output lines."""
        lines = [ln for ln in self.output.splitlines() if ln.strip()]
        return tuple(lines[-n:])


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def run_script(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout_s: float,
    logger: logging.Logger,
    log_prefix: str,
    kill_grace_s: float = KILL_GRACE_S,
) -> RunResult:
    """Run ``argv`` to completion or until ``timeout_s``; never raises for the script's failure.

    Raises OSError only if the program cannot be executed at all.
    """
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    logger.info("Running %s", " ".join(argv))
    # Our own pipe rather than asyncio's: asyncio's Process.wait() also waits for its pipes
    # to close, which a daemon that inherited stdout would delay for its whole life.
    read_fd, write_fd = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            env=dict(env),
            start_new_session=True,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    pgid = proc.pid  # a new session's leader is its group's leader
    chunks: list[bytes] = []
    stream = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(read_fd, "rb", buffering=0)
    )

    async def read_output() -> None:
        # Read in blocks, not lines: one endless line must not break the reader.
        pending = b""
        kept = 0
        while True:
            block = await stream.read(65536)
            if not block:
                break
            if kept < MAX_OUTPUT_BYTES:
                chunks.append(block)
                kept += len(block)
            *lines, pending = (pending + block).split(b"\n")
            for line in lines:
                logger.info("%s: %s", log_prefix, line.decode(errors="replace").rstrip())
        if pending:
            logger.info("%s: %s", log_prefix, pending.decode(errors="replace").rstrip())

    reader = asyncio.create_task(read_output())
    timed_out = False
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            timed_out = True
            logger.error(
                "%s: timed out after %.1fs; killing its process group", log_prefix, timeout_s
            )
            _kill_group(pgid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), kill_grace_s)
            # SIGKILL the group even if the leader left: its children may linger.
            _kill_group(pgid, signal.SIGKILL)
            await proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), OUTPUT_DRAIN_S)
    except asyncio.CancelledError:
        # Our caller gave up: the script must not outlive the action it belonged to.
        _kill_group(pgid, signal.SIGKILL)
        raise
    finally:
        try:
            await cancel_and_wait(reader)
        finally:  # also when our caller is cancelled meanwhile: the pipe must not leak
            transport.close()
    output = b"".join(chunks).decode(errors="replace")
    return RunResult(
        argv=tuple(argv),
        returncode=None if timed_out else proc.returncode,
        output=output,
        timed_out=timed_out,
        duration_s=loop.time() - t0,
    )
