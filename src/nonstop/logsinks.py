"""The log queue, its writer thread and the file and syslog sinks, without logging.handlers.

:mod:`logging.handlers` imports :mod:`pickle` (for a socket handler nonstop never uses): ~0.45 MB
of heap in every daemon for four small classes (issue 15: an idle node under 25 MB PSS).
These are the same classes cut to what nonstop uses, with the standard library's behaviour:
the queue handler formats a record before queueing it (so the exception text travels as
text), the listener hands each record to every sink whose level admits it, the file sink
reopens a path that logrotate moved away, the syslog sink writes ``<PRI>message\\0`` to a
Unix socket (datagram, else stream) and reconnects once when a write fails.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import queue
import socket
import sys
import threading

# Syslog facilities (RFC 5424), by the names ha.cf's logfacility uses.
FACILITIES = {
    "auth": 4, "authpriv": 10, "console": 14, "cron": 9, "daemon": 3, "ftp": 11, "kern": 0,
    "lpr": 6, "mail": 2, "news": 7, "ntp": 12, "security": 13, "solaris-cron": 15,
    "syslog": 5, "user": 1, "uucp": 8, **{f"local{i}": 16 + i for i in range(8)},
}
# logging's levels as syslog severities (as SysLogHandler.mapPriority).
_SEVERITIES = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class QueueHandler(logging.Handler):
    """Puts each record, formatted, on a queue (as logging.handlers.QueueHandler)."""

    def __init__(self, q: queue.Queue[logging.LogRecord]) -> None:
        super().__init__()
        self.queue = q

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        msg = self.format(record)  # the message with its exception and stack text, if any
        record = copy.copy(record)
        record.message = msg
        record.msg = msg
        record.args = None
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None  # in ``msg`` already, as the exception's text
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        self.queue.put_nowait(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.enqueue(self.prepare(record))
        except Exception:  # logging's rule: a failing sink never raises
            self.handleError(record)


class QueueListener:
    """A thread writing queued records to the sinks whose level admits them."""

    def __init__(self, q: queue.Queue[logging.LogRecord], *sinks: logging.Handler) -> None:
        self.queue = q
        self.sinks = sinks
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nonstop-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            record = self.queue.get()
            if record is None:  # stop()'s sentinel
                return
            for sink in self.sinks:
                if record.levelno >= sink.level:
                    sink.handle(record)

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        if self._thread is not None:
            self.queue.put(None)  # type: ignore[arg-type]
            self._thread.join()
            self._thread = None


class WatchedFileHandler(logging.FileHandler):
    """A file sink that reopens its path when it no longer names the open file (moved or
    removed by logrotate): compared by device and inode before each write."""

    def __init__(self, filename: str) -> None:
        super().__init__(filename, encoding="locale")
        self._id = self._stream_id()
        self.lost = 0  # lines not written since the last one that was (a full disk)
        self.error = ""  # why the first of them was not

    def _stream_id(self) -> tuple[int, int]:
        if self.stream is None:  # closed
            return -1, -1
        st = os.fstat(self.stream.fileno())
        return st.st_dev, st.st_ino

    def emit(self, record: logging.LogRecord) -> None:
        lost = self.lost
        try:
            try:
                st = os.stat(self.baseFilename)
                now: tuple[int, int] | None = (st.st_dev, st.st_ino)
            except FileNotFoundError:
                now = None
            if now != self._id and self.stream is not None:
                stream, self.stream = self.stream, None
                with contextlib.suppress(OSError, ValueError):  # a flush that fails (a full
                    stream.close()  # disk) still closes the file
            if self.stream is None:
                self.stream = self._open()
                self._id = self._stream_id()
        except OSError:
            self.handleError(record)
            return
        super().emit(record)
        if lost and self.lost == lost:  # this line was written: say what was not
            self.lost = 0
            self._say(f"{lost} line(s) before the previous one could not be written to this "
                      f"file ({self.error})")

    def handleError(self, record: logging.LogRecord) -> None:
        """A write that failed (a full or failing disk): one line on stderr when the file
        stops taking lines, not logging's traceback for every line; the stream is dropped
        with what it buffered, and the next line opens the file again."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
            return
        if self.stream is not None:
            with contextlib.suppress(OSError, ValueError):
                self.stream.close()
            self.stream = None
        self.lost += 1
        if self.lost == 1:
            self.error = exc.strerror or str(exc)
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"nonstop: cannot write log file {self.baseFilename}: "
                                 f"{self.error}; its lines are lost until it can be written "
                                 "again\n")
                sys.stderr.flush()

    def _say(self, text: str) -> None:
        """``text`` in the file and on stderr (the file works again)."""
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"nonstop: log file {self.baseFilename}: writable again; {text}\n")
            sys.stderr.flush()
        record = logging.LogRecord("nonstop", logging.WARNING, __file__, 0, text, None, None)
        super().emit(record)


class SyslogHandler(logging.Handler):
    """Syslog through a local Unix socket (``/dev/log``)."""

    def __init__(self, address: str, facility: int) -> None:
        super().__init__()
        self.address = address
        self.facility = facility
        self.socket: socket.socket | None = None
        self.socktype = 0
        # As openlog(3) and SysLogHandler: nobody listening yet is no error, each write
        # tries again.
        with contextlib.suppress(OSError):
            self._connect()

    def _connect(self) -> None:
        last: OSError | None = None
        for kind in (self.socktype,) if self.socktype else (socket.SOCK_DGRAM,
                                                            socket.SOCK_STREAM):
            sock = socket.socket(socket.AF_UNIX, kind)
            try:
                sock.connect(self.address)
            except OSError as e:
                sock.close()
                last = e
                continue
            self.socket, self.socktype = sock, kind
            return
        assert last is not None
        raise last

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prio = self.facility << 3 | _SEVERITIES.get(record.levelname, 4)
            data = f"<{prio}>{self.format(record)}\000".encode()
            if self.socket is None:
                self._connect()
            assert self.socket is not None
            try:
                self.socket.send(data)
            except OSError:  # syslogd restarted: reconnect once
                self.socket.close()
                self._connect()
                self.socket.send(data)
        except Exception:  # logging's rule: a failing sink never raises
            self.handleError(record)

    def close(self) -> None:
        self.acquire()
        try:
            if self.socket is not None:
                self.socket.close()
                self.socket = None
        finally:
            self.release()
        super().close()
