"""Wait on a state with a deadline: the only way lab code and lab tests wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from nonstop.lab.errors import LabError

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, *, what: str,
             interval: float = 0.05) -> T:
    """Call ``check`` until it returns something truthy, and return that.

    Raises LabError when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LabError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(min(interval, remaining))


async def wait_for_async(check: Callable[[], T | None], timeout: float, *, what: str,
                         interval: float = 0.05) -> T:
    """Like :func:`wait_for`, but yields to the event loop between checks."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LabError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(min(interval, remaining))
