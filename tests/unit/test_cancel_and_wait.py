"""Stopping a task never swallows the stopper's own cancellation (nonstop.tasks)."""

from __future__ import annotations

import asyncio

import pytest

from nonstop.tasks import cancel_and_wait


async def _slow_to_stop(ended: asyncio.Event) -> None:
    """A task that takes a while to end when cancelled (it cleans up first)."""
    try:
        await asyncio.sleep(3600)
    finally:
        await asyncio.sleep(0.05)
        ended.set()


async def test_the_task_is_cancelled_and_waited_for() -> None:
    ended = asyncio.Event()
    task = asyncio.create_task(_slow_to_stop(ended))
    await asyncio.sleep(0)
    await cancel_and_wait(task)  # its CancelledError does not reach us
    assert task.cancelled() and ended.is_set()
    await cancel_and_wait(task)  # a task already ended, and None, are fine
    await cancel_and_wait(None)


async def test_the_callers_cancellation_comes_through() -> None:
    """The stopper is cancelled while the task cleans up: with contextlib.suppress it went
    on as if nothing had happened (a shutdown's time limit was lost)."""
    ended = asyncio.Event()
    task = asyncio.create_task(_slow_to_stop(ended))
    went_on = []

    async def stopper() -> None:
        await cancel_and_wait(task)
        went_on.append(True)

    stopping = asyncio.create_task(stopper())
    await asyncio.sleep(0.01)  # the task is cleaning up now
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert not went_on
    await asyncio.sleep(0.1)
    assert ended.is_set()


async def test_an_error_the_task_ends_with_is_raised() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancel_and_wait(task)
