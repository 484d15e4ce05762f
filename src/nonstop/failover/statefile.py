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

from nonstop.failover.state import GroupState

log = logging.getLogger("nonstop.failover")

RETRY_S = 5.0  # a failed save is tried again this often


_HOLDING = (GroupState.HELD.name, GroupState.STARTING.name, GroupState.STOPPING.name)
_REPLICATED = (" What was written here in its last moments may not have reached the peers. If"
               " another node took the group meanwhile, its force-sync replaces those files "
               "here and keeps each old version in the group's backup directory (history: "
               "sync_overwritten); files outside its forced paths stay here alone (`nonstop "
               "sync -T` compares this node's files with the peers').")


def _valid(key: str, saved: dict[str, Any], path: Path) -> dict[str, Any]:
    """One group's record with numbers a start can use: an epoch that is not a count (a file
    edited by hand, bit rot) counts as 0, said once, rather than stopping the start."""
    out = dict(saved)
    for field in ("epoch", "seen"):
        value = saved.get(field, 0)
        if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63):
            log.warning("%s: group %s: ignoring %s %r (not a count): taken as 0", path, key,
                        field, value)
            out[field] = 0
    return out


class GroupStateFile:
    """The failover engine's saved state, by group key."""

    def __init__(self, path: Path, *, replicated: bool = False) -> None:
        self.path = path
        self.replicated = replicated  # nonstop_sync is on: a start-up warning says more
        # load() found a group held, being started or stopped, or whose stop failed: the last
        # run ended without releasing it (its last changes may not have reached the peers).
        self.ended_holding = False
        self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-state")
        self._last_save: asyncio.Future[bool] | None = None
        # A write that failed (a full disk) is tried again until one lands: a state that
        # changes no more would otherwise stay unsaved, and a restart would not know its claim.
        self._latest: dict[str, dict[str, Any]] = {}
        self._failing = False  # the saver thread's alone (or the caller's without a loop)
        self._retry: asyncio.TimerHandle | None = None

    def load(self) -> dict[str, dict[str, Any]]:
        """What was saved; empty when nothing (readable) was. A group saved as held (or being
        started or stopped) means the last run ended without releasing it: that is said."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        data = {k: _valid(k, v, self.path) for k, v in data.items() if isinstance(v, dict)}
        states = {k: v.get("state") for k, v in data.items()}
        held = sorted(k for k, st in states.items() if st in _HOLDING)
        stuck = sorted(k for k, st in states.items() if st == GroupState.STOP_FAILED.name)
        files = _REPLICATED if self.replicated else ""
        self.ended_holding = bool(held or stuck)
        # After a power cut the operator's first question (a user trial): nothing said it.
        if held:
            log.warning("The previous run ended while this node held %s, without releasing it "
                        "(the daemon killed or crashed, or the machine lost power).%s",
                        ", ".join(held), files)
        if stuck:
            log.warning("The previous run ended with a stop of %s failed: its services may still "
                        "run here; the start-up probe finds out.%s", ", ".join(stuck), files)
        return data

    def save(self, data: dict[str, dict[str, Any]]) -> None:
        """Write ``data`` off the event-loop thread (at once without a running loop). A disk
        error is logged, never raised into a takeover."""
        self._latest = data
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write(data)
            return
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        save = loop.run_in_executor(self._saver, self._write, data)
        save.add_done_callback(lambda done: self._written(done, loop))
        self._last_save = save

    def _written(self, done: asyncio.Future[bool], loop: asyncio.AbstractEventLoop) -> None:
        if done is self._last_save and not done.cancelled() and done.result() is False:
            self._retry = loop.call_later(RETRY_S, lambda: self.save(self._latest))

    async def flush(self) -> None:
        """Wait until the last save is on disk."""
        if self._last_save is not None:
            await asyncio.shield(self._last_save)

    def _write(self, data: dict[str, dict[str, Any]]) -> bool:
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "w") as fh:
                json.dump(data, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            if not self._failing:  # once, not every RETRY_S of a full disk
                log.error("cannot save group state to %s: %s (tried again every %g s)",
                          self.path, e, RETRY_S)
            self._failing = True
            return False
        if self._failing:
            log.warning("saving group state to %s works again", self.path)
        self._failing = False
        return True
