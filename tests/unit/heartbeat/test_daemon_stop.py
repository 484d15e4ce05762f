"""SIGTERM: the first asks the node to release and leave; a second one later forces the exit
while a stop has failed; the same signal delivered twice at once (coreutils `timeout` signals
the daemon and its process group) is one request."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from daemon_harness import talk_daemon

import nonstop.daemon as daemon_module


async def test_one_signal_delivered_twice_is_one_stop_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    daemon, _ = talk_daemon(tmp_path)
    now = [1000.0]
    monkeypatch.setattr(daemon, "_now", lambda: now[0])
    with caplog.at_level(logging.INFO, logger="nonstop"):
        daemon.request_stop()
        now[0] += 0.002  # the process group's copy of the same SIGTERM
        daemon.request_stop()
        assert daemon._stop.is_set() and not daemon._force_stop.is_set()
        assert "second stop request" not in caplog.text
        now[0] += daemon_module.SAME_STOP_S  # an admin's second SIGTERM, to leave anyway
        daemon.request_stop()
    assert daemon._force_stop.is_set()
    assert "second stop request: leaving even though a resource may still run" in caplog.text
