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
_queue: queue.Queue[logging.LogRecord] | None = None
_sinks: list[logging.Handler] = []
_options: tuple[bool, int] = (True, 0)  # stderr, verbose: kept for reconfigure()

# Syslog priorities, for the ``<N>`` prefix journald reads from a service's stderr.
_PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    """``<priority>LEVEL: message`` for stderr connected to the journal: journald takes the
    priority from the prefix and adds the time, the host and ``nonstop[pid]`` itself."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITIES.get(record.levelno, 6)
        level = _LEVEL_NAMES.get(record.levelno, record.levelname)
        text = f"{level}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        # One journal entry per line: every line of a multi-line record carries the priority.
        return "\n".join(f"<{prio}>{line}" for line in text.split("\n"))


def stderr_is_journal() -> bool:
    """True when stderr is the journal stream systemd gave this service (``JOURNAL_STREAM`` is
    ``device:inode`` of that stream; a child with redirected stderr inherits the variable but
    not the stream, so both are compared, as sd_journal_stream_fd's users do)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(sys.stderr.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (ValueError, OSError, AttributeError):
        return False


def _make_sinks(ha: HaConfig | None, stderr: bool, verbose: int,
                ) -> tuple[list[logging.Handler], list[str]]:
    sinks: list[logging.Handler] = []
    notes: list[str] = []
    fmt = HeartbeatFormatter()
    debug = verbose > 0 or (ha is not None and ha.debug > 0)
    journal = stderr and stderr_is_journal()
    if stderr:
        h: logging.Handler = logging.StreamHandler(sys.stderr)
        h.setFormatter(JournalFormatter() if journal else fmt)
        h.setLevel(logging.DEBUG if debug else logging.INFO)
        sinks.append(h)
    if ha is None:
        return sinks, notes
    # WatchedFileHandler reopens a file that logrotate moved away (it compares the path's
    # device and inode before each write), so the shipped logrotate file needs no signal.
    for path, level in ((ha.logfile, logging.INFO), (ha.debugfile, logging.DEBUG)):
        if not path or path == "/dev/null":
            continue
        try:
            h = logging.handlers.WatchedFileHandler(path)
        except OSError as e:
            notes.append(f"cannot open log file {path}: {e.strerror or e}")
            continue
        h.setFormatter(fmt)
        h.setLevel(level)
        sinks.append(h)
    wants_syslog = ha.use_logd or (ha.logfacility and ha.logfacility != "none")
    if wants_syslog and journal:
        # journald also receives syslog: writing both would show every line twice.
        return sinks, notes
    syslog = _syslog_handler(ha.logfacility or "daemon") if wants_syslog else None
    if syslog is not None:
        sinks.append(syslog)
    elif wants_syslog:
        notes.append("syslog requested (use_logd/logfacility) but /dev/log cannot be "
                     "reached: logging to the other sinks only")
    return sinks, notes


def setup_logging(ha: HaConfig | None, *, stderr: bool = True, verbose: int = 0) -> None:
    """Route the ``nonstop`` logger through a queue to the sinks ha.cf asks for."""
    global _listener, _queue, _sinks, _options
    stop_logging()
    _options = (stderr, verbose)
    sinks, notes = _make_sinks(ha, stderr, verbose)
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
    _queue, _sinks = q, sinks
    _listener = logging.handlers.QueueListener(q, *sinks, respect_handler_level=True)
    _listener.start()
    for note in notes:
        root.warning("%s", note)


def reconfigure(ha: HaConfig) -> None:
    """Switch to the sinks a reloaded ha.cf asks for, keeping the queue: nothing logged
    meanwhile is lost, and every file is opened anew (a reload also reopens the logs).
    Blocks until the old sinks have written what was queued: call it off the event loop."""
    global _listener, _sinks
    if _queue is None or _listener is None:
        return  # logging was never set up here (an embedded daemon): leave it to the caller
    sinks, notes = _make_sinks(ha, *_options)
    _listener.stop()  # writes what is queued to the old sinks, then returns
    for old in _sinks:
        old.close()
    _sinks = sinks
    _listener = logging.handlers.QueueListener(_queue, *sinks, respect_handler_level=True)
    _listener.start()
    for note in notes:
        logging.getLogger("nonstop").warning("%s", note)


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
    global _listener, _queue, _sinks
    if _listener is not None:
        _listener.stop()
        _listener = None
    for sink in _sinks:
        sink.close()  # files; a StreamHandler leaves stderr open
    _queue, _sinks = None, []
    for name in ("nonstop", "asyncio"):
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            if isinstance(h, NonBlockingQueueHandler):
                logger.removeHandler(h)
        logger.propagate = True
