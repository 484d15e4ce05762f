"""Logging as Heartbeat does it, without ever blocking the heartbeat path.

Records go through a queue to a listener thread that writes stderr, ``logfile``, ``debugfile``
and syslog (``use_logd``/``logfacility``). Lines keep Heartbeat's shape
(``nonstop[pid]: 2008/01/02_03:04:05 WARN: node x: is dead``) so existing log watchers work.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import sys
import time

from nonstop.config.model import HaConfig

_LEVEL_NAMES = {
    logging.CRITICAL: "CRIT",
    logging.ERROR: "ERROR",
    logging.WARNING: "WARN",
    logging.INFO: "info",
    logging.DEBUG: "debug",
}


class HeartbeatFormatter(logging.Formatter):
    """``nonstop[pid]: YYYY/MM/DD_HH:MM:SS.mmm LEVEL: message``: Heartbeat's format plus ms."""

    def __init__(self, tag: str = "nonstop") -> None:
        super().__init__()
        self.tag = tag

    def format(self, record: logging.LogRecord) -> str:
        t = time.localtime(record.created)
        stamp = time.strftime("%Y/%m/%d_%H:%M:%S", t) + f".{int(record.msecs):03d}"
        level = _LEVEL_NAMES.get(record.levelno, record.levelname)
        line = f"{self.tag}[{record.process}]: {stamp} {level}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class SyslogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = _LEVEL_NAMES.get(record.levelno, record.levelname)
        return f"nonstop[{record.process}]: {level}: {record.getMessage()}"


class NonBlockingQueueHandler(logging.handlers.QueueHandler):
    """Never waits: a full queue drops the record and counts it rather than stall a heartbeat."""

    dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            NonBlockingQueueHandler.dropped += 1


_listener: logging.handlers.QueueListener | None = None


def setup_logging(ha: HaConfig | None, *, stderr: bool = True, verbose: int = 0) -> None:
    """Route the ``nonstop`` logger through a queue to the sinks ha.cf asks for."""
    global _listener
    stop_logging()
    sinks: list[logging.Handler] = []
    notes: list[str] = []
    fmt = HeartbeatFormatter()
    debug = verbose > 0 or (ha is not None and ha.debug > 0)
    if stderr:
        h: logging.Handler = logging.StreamHandler(sys.stderr)
        h.setFormatter(fmt)
        h.setLevel(logging.DEBUG if debug else logging.INFO)
        sinks.append(h)
    if ha is not None:
        if ha.logfile and ha.logfile != "/dev/null":
            h = logging.FileHandler(ha.logfile)
            h.setFormatter(fmt)
            h.setLevel(logging.INFO)
            sinks.append(h)
        if ha.debugfile and ha.debugfile != "/dev/null":
            h = logging.FileHandler(ha.debugfile)
            h.setFormatter(fmt)
            h.setLevel(logging.DEBUG)
            sinks.append(h)
        wants_syslog = ha.use_logd or (ha.logfacility and ha.logfacility != "none")
        syslog = _syslog_handler(ha.logfacility or "daemon") if wants_syslog else None
        if syslog is not None:
            sinks.append(syslog)
        elif wants_syslog:
            notes.append("syslog requested (use_logd/logfacility) but /dev/log cannot be "
                         "reached: logging to the other sinks only")
    q: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=10000)
    root = logging.getLogger("nonstop")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(NonBlockingQueueHandler(q))
    root.setLevel(logging.DEBUG)
    root.propagate = False
    # asyncio reports lost task exceptions through its own logger: same queue, same sinks.
    aio = logging.getLogger("asyncio")
    for old in list(aio.handlers):
        aio.removeHandler(old)
    aio.addHandler(NonBlockingQueueHandler(q))
    aio.propagate = False
    _listener = logging.handlers.QueueListener(q, *sinks, respect_handler_level=True)
    _listener.start()
    for note in notes:
        root.warning("%s", note)


def _syslog_handler(facility: str) -> logging.Handler | None:
    """Syslog through /dev/log; ``use_logd`` has no separate logging daemon in nonstop."""
    address = "/dev/log"
    if not os.path.exists(address):
        return None
    fac = logging.handlers.SysLogHandler.facility_names.get(facility, "daemon")
    try:
        h = logging.handlers.SysLogHandler(address=address, facility=fac)
    except OSError:
        return None
    h.setFormatter(SyslogFormatter())
    return h


def stop_logging() -> None:
    """Flush and stop the listener (called at exit so the last lines are written), and give
    the loggers back their default routing."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None
    for name in ("nonstop", "asyncio"):
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            if isinstance(h, NonBlockingQueueHandler):
                logger.removeHandler(h)
        logger.propagate = True
