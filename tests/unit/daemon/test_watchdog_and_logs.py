"""The watchdog adapter and the log sinks, on real files."""

from __future__ import annotations

import logging
from pathlib import Path

from nonstop.config.model import Bcast, HaConfig
from nonstop.logs import setup_logging, stop_logging
from nonstop.watchdog import Watchdog


def test_watchdog_is_tickled_and_closed_with_the_magic_character(tmp_path: Path) -> None:
    dev = tmp_path / "watchdog"
    dev.write_bytes(b"")
    wd = Watchdog(str(dev), deadtime_ms=2000)
    assert wd.timeout_s == 3  # ceil((deadtime + 10 ms) / 1 s), as Heartbeat sets it
    wd.open()  # a plain file takes no WDIOC_SETTIMEOUT: warned, not fatal
    for _ in range(3):
        wd.tickle()
    wd.close()
    assert dev.read_bytes() == b"\0\0\0V"
    assert wd.tickles == 3


def test_a_missing_watchdog_device_is_reported_not_fatal(tmp_path: Path) -> None:
    wd = Watchdog(str(tmp_path / "nope"), deadtime_ms=2000)
    wd.open()
    wd.tickle()
    wd.close()
    assert wd.tickles == 0


def test_logfile_and_debugfile_get_heartbeat_style_lines(tmp_path: Path) -> None:
    ha = HaConfig(path="ha.cf", nodes=("a",), media=(Bcast("eth0"),), use_logd=False,
                  logfile=str(tmp_path / "ha-log"), debugfile=str(tmp_path / "ha-debug"))
    setup_logging(ha, stderr=False)
    log = logging.getLogger("nonstop")
    log.warning("node %s: is dead", "vpbx1-2")
    log.debug("a debug line")
    stop_logging()
    main = (tmp_path / "ha-log").read_text()
    debug = (tmp_path / "ha-debug").read_text()
    assert "WARN: node vpbx1-2: is dead" in main and "a debug line" not in main
    assert "a debug line" in debug and "WARN: node vpbx1-2: is dead" in debug
