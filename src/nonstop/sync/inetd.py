"""``nonstop sync -i`` run by inetd, xinetd or a systemd socket with ``Accept=yes``: the
accepted connection is stdin, and with inetd and xinetd stdout and stderr too."""

from __future__ import annotations

import contextlib
import os
import socket
import stat


def stdin_socket() -> socket.socket | None:
    """fd 0 as a connected stream socket (inetd, xinetd, systemd ``Accept=yes``), else None."""
    try:
        if not stat.S_ISSOCK(os.fstat(0).st_mode):
            return None
        sock = socket.socket(fileno=os.dup(0))
    except OSError:
        return None
    try:
        sock.getpeername()
    except OSError:
        sock.close()
        return None
    if sock.type != socket.SOCK_STREAM:
        sock.close()
        return None
    return sock


def stderr_off_the_socket() -> None:
    """Point stderr at /dev/null when it is the connection on stdin (inetd and xinetd hand
    it as fds 0, 1 and 2): a line written there, a traceback too, would land in the
    session's TLS stream. A stderr of its own (a journal, a log file) is left alone."""
    with contextlib.suppress(OSError):
        here, there = os.fstat(0), os.fstat(2)
        if (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
