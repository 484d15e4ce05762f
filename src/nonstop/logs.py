"""Logging as Heartbeat does it, without ever blocking the heartbeat path.

Records go through a queue to a listener thread that writes stderr, ``logfile``, ``debugfile``
and syslog (``use_logd``/``logfacility``). Lines keep Heartbeat's shape
(``nonstop[pid]: 2008/01/02_03:04:05 WARN: node x: is dead``) so existing log watchers work.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import time

from nonstop.config.model import HaConfig
from nonstop.logsinks import (
    FACILITIES,
    QueueHandler,
    QueueListener,
    SyslogHandler,
    WatchedFileHandler,
)

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


class NonBlockingQueueHandler(QueueHandler):
    """Never waits: a full queue drops the record and counts it rather than stall a heartbeat."""

    dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            NonBlockingQueueHandler.dropped += 1


_listener: QueueListener | None = None
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
            h = WatchedFileHandler(path)
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
    _listener = QueueListener(q, *sinks)
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
    _listener = QueueListener(_queue, *sinks)
    _listener.start()
    for note in notes:
        logging.getLogger("nonstop").warning("%s", note)


def _syslog_handler(facility: str) -> logging.Handler | None:
    """Syslog through /dev/log; ``use_logd`` has no separate logging daemon in nonstop."""
    address = "/dev/log"
    if not os.path.exists(address):
        return None
    try:
        h = SyslogHandler(address, FACILITIES.get(facility, FACILITIES["daemon"]))
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


# ---------------------------------------------------------------- bad remote input
# Whoever can reach a port can make us log: every remote string is escaped before it is logged
# (no forged lines, no terminal escapes), and lines about bad input share one global budget.


def escape(text: object, limit: int = 120) -> str:
    """A remote value made safe for one log line: printable ASCII is kept, everything else
    (newlines, control and escape characters, non-ASCII, backslash) is written as a Python
    escape, and the result is cut at ``limit`` characters with ``...``."""
    if isinstance(text, bytes | bytearray):
        s = bytes(text[: limit + 1]).decode("latin-1")
    else:
        s = str(text)[: limit + 1]
    out = s.encode("unicode_escape", "backslashreplace").decode("ascii")
    return out if len(out) <= limit and len(s) <= limit else out[: max(limit - 3, 0)] + "..."


class BadInputBudget:
    """One budget for all log lines about bad remote input, whatever their source.

    ``burst`` lines may be written at once and the budget refills at ``rate`` lines a second;
    lines over budget are counted by (reason, source) (at most ``max_keys`` pairs, the rest
    under ``"other"``) and :meth:`summary` reports them once every ``period`` seconds. Pure:
    the caller passes a monotonic ``now``.
    """

    def __init__(self, rate: float = 1.0, burst: int = 20, period: float = 60.0,
                 max_keys: int = 32) -> None:
        self.rate, self.burst, self.period, self.max_keys = rate, burst, period, max_keys
        self.reset()

    def reset(self) -> None:
        """A full budget and no counts (a fresh process; tests)."""
        self._tokens = float(self.burst)
        self._refilled: float | None = None
        self._since: float | None = None
        self.suppressed: dict[tuple[str, str], int] = {}
        self.total_suppressed = 0

    def admit(self, reason: str, source: str, now: float) -> bool:
        """True if a line about this bad input may be logged now; else it is counted."""
        if self._refilled is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        if self._since is None:
            self._since = now
        key = (reason, source)
        if key not in self.suppressed and len(self.suppressed) >= self.max_keys:
            key = (reason, "other")
        self.suppressed[key] = self.suppressed.get(key, 0) + 1
        self.total_suppressed += 1
        return False

    def summary(self, now: float) -> str | None:
        """Once per ``period`` while lines were suppressed: their counts by reason and source."""
        if self._since is None or now - self._since < self.period:
            return None
        top = sorted(self.suppressed.items(), key=lambda kv: (-kv[1], kv[0]))
        total = sum(self.suppressed.values())
        parts = ", ".join(f"{escape(r, 40)} from {escape(s, 60)}: {n}" for (r, s), n in top[:10])
        more = f", and {len(top) - 10} more" if len(top) > 10 else ""
        self.suppressed.clear()
        span = now - self._since
        self._since = None
        return (f"bad input: {total} more line(s) not logged in the last {span:.0f} s "
                f"(log budget): {parts}{more}")


#: The process's budget, shared by the heartbeat media, the sync port and the control socket.
BAD_INPUT = BadInputBudget()
