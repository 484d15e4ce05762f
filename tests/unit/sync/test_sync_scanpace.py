"""The active node's safety-net full scan costs at most a thousandth of a core while inotify
watches the whole tree (scanpace)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sync_harness import pair

from nonstop.sync import scanpace
from nonstop.sync.node import ALL
from nonstop.sync.replicator import Replicator
from nonstop.sync.scanpace import LONGEST_S, full_scan_pause, thread_cpu


def test_the_pause_follows_the_last_scans_cpu_only_while_everything_is_watched() -> None:
    assert full_scan_pause(60.0, 0.3, watched=True) == pytest.approx(300.0)  # 20,000 files
    assert full_scan_pause(60.0, 0.002, watched=True) == 60.0  # the talk's tree
    assert full_scan_pause(60.0, 5.0, watched=True) == LONGEST_S
    assert full_scan_pause(60.0, 0.3, watched=False) == 60.0  # out of watches: every minute
    assert full_scan_pause(900.0, 5.0, watched=True) == 900.0  # never below the setting


def test_thread_cpu_counts_work_not_sleep() -> None:
    assert thread_cpu(time.sleep, 0.05) < 0.02
    assert thread_cpu(lambda: sum(range(3_000_000))) > 0.01


async def _full_scans(tmp: Path, watch: bool, monkeypatch: pytest.MonkeyPatch
                      ) -> tuple[int, dict[str, object]]:
    """Full checks an active replicator makes in 1.5 s with a 0.1 s interval, each made to
    look dear (a share of a millionth of a core: a few ms of CPU stand for minutes)."""
    monkeypatch.setattr(scanpace, "SHARE", 1e-6)
    async with pair(tmp) as (n1, _n2):
        for i in range(200):
            n1.write(f"/etc/asterisk/f{i:03d}.conf", f"line {i}\n")
        full = 0
        check = n1.node.check

        def counting(scopes: object = None, force_new: bool = False) -> dict[str, int]:
            nonlocal full
            full += scopes is ALL
            return check(scopes, force_new)  # type: ignore[arg-type]

        n1.node.check = counting  # type: ignore[method-assign]
        rep = Replicator(n1.node, serve=False, watch=watch, full_scan_interval=0.1)
        await rep.start()
        try:
            rep.set_active(True)
            await asyncio.sleep(1.5)
            return full, rep.status()
        finally:
            await rep.stop()


async def test_a_dear_scan_waits_while_inotify_watches_everything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full, status = await _full_scans(tmp_path, True, monkeypatch)
    assert full == 1  # the takeover's own; the next one is minutes away
    assert status["full_scan_every_s"] == LONGEST_S


async def test_without_inotify_the_scan_keeps_its_interval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full, status = await _full_scans(tmp_path, False, monkeypatch)
    assert full >= 3  # every 0.1 s as set, however dear (a loaded machine: at least 3)
    assert status["full_scan_every_s"] == 0.1
