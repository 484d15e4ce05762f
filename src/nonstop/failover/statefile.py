"""groups.json in the state directory: each group's epoch, the highest epoch seen, its state.

A restarted daemon reads it to know its claims. Writes go through one worker thread, off the
event loop (an fsync on a busy disk can take seconds), serialised so the newest lands last.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

log = logging.getLogger("nonstop.failover")


class GroupStateFile:
    """The failover engine's saved state, by group key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-state")
        self._last_save: asyncio.Future[None] | None = None

    def load(self) -> dict[str, dict[str, Any]]:
        """What was saved; empty when nothing (readable) was."""
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def save(self, data: dict[str, dict[str, Any]]) -> None:
        """Write ``data`` off the event-loop thread (at once without a running loop). A disk
        error is logged, never raised into a takeover."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write(data)
            return
        self._last_save = loop.run_in_executor(self._saver, self._write, data)

    async def flush(self) -> None:
        """Wait until the last save is on disk."""
        if self._last_save is not None:
            await asyncio.shield(self._last_save)

    def _write(self, data: dict[str, dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "w") as fh:
                json.dump(data, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            log.error("cannot save group state to %s: %s", self.path, e)
