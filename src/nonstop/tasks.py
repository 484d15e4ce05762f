"""Ending asyncio tasks without losing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any


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
