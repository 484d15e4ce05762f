"""Ending asyncio tasks without losing the caller's own cancellation, and worker threads
that a cancelled task does not leave running on what its clean-up closes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended; its result and its CancelledError are
    dropped (the caller asked it to stop), an error it ends with is raised.

    ``contextlib.suppress(CancelledError)`` around the wait cannot tell the task's
    cancellation from the caller's: a ``stop()`` whose own caller was cancelled meanwhile (a
    shutdown's time limit, a reload given up) swallowed that and went on as if it had not
    been. Here the caller's cancellation (``Task.cancelling()``) is raised again, at once,
    and the task is left to finish the clean-up it was asked for: awaiting it bare would pass
    the caller's cancellation on and cut that clean-up short.
    """
    if task is None:
        return
    task.cancel()
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling() > 0:
            raise


async def in_thread(fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``asyncio.to_thread``, but a cancellation (however often repeated) waits for the thread
    before it goes on. A cancelled ``to_thread`` leaves its thread running, while the
    cancelled task's clean-up closes what the thread works on: a file descriptor (whose
    number the next open may reuse), librsync's state (a daemon died of that). Use it for a
    short call on something the caller closes; what the call returned is then dropped (see
    :func:`in_thread_made` for a result that must be released)."""
    return await in_thread_made(None, fn, *args, **kwargs)


async def in_thread_made(release: Callable[[_T], None] | None, fn: Callable[_P, _T], /,
                         *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """:func:`in_thread`, with ``release`` called on what the thread returned when the caller
    was cancelled meanwhile (a file descriptor the thread opened, say)."""
    job = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        while not job.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(job)
        if release is not None and not job.cancelled() and job.exception() is None:
            release(job.result())
        raise
