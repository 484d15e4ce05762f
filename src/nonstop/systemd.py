"""systemd's notify protocol (``Type=notify``): READY, RELOADING, STOPPING, STATUS, WATCHDOG.

A datagram of ``KEY=value`` lines to the unix socket named by ``NOTIFY_SOCKET`` (see
sd_notify(3)). The protocol is a few lines of stdlib code and stable since systemd 209; the
binding (python3-systemd) would add a C extension to the package for it. Without
``NOTIFY_SOCKET`` (not under systemd) every call does nothing. A send never blocks: a full
socket drops the message, as sd_notify does not retry either.
"""

from __future__ import annotations

import os
import socket


class SystemdNotifier:
    """Tells systemd how the service is doing, if systemd asked (``NOTIFY_SOCKET``)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self.address = address if address.startswith(("/", "\0")) else None
        self.watchdog_s: float | None = None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._last_ping = float("-inf")
        self.ready_sent = False
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **state: str | int) -> bool:
        """Send ``KEY=value`` lines (keys upper-cased); False if not sent."""
        if self.address is None:
            return False
        text = "\n".join(f"{k.upper()}={v}" for k, v in state.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.setblocking(False)
                s.sendto(text.encode(), self.address)
        except OSError:
            return False
        self.sent += 1
        return True

    def ready(self, status: str) -> None:
        """The service is up (once; again after a reload with :meth:`reloaded`)."""
        if not self.ready_sent:
            self.ready_sent = True
            self.send(ready=1, status=status, mainpid=os.getpid())

    def reloading(self) -> None:
        self.send(reloading=1, status="reloading the configuration")

    def reloaded(self, status: str) -> None:
        self.send(ready=1, status=status)

    def stopping(self, status: str) -> None:
        self.send(stopping=1, status=status)

    def status(self, text: str) -> None:
        self.send(status=text)

    def extend_start(self, seconds: float, status: str) -> None:
        """Ask for ``seconds`` more before systemd gives up on the start (initdead may be
        longer than the unit's start timeout)."""
        self.send(extend_timeout_usec=int(seconds * 1e6), status=status)

    def watchdog(self, now: float) -> None:
        """``WATCHDOG=1`` at most four times per WatchdogSec: called from the heartbeat path,
        so a stalled heartbeat loop lets systemd restart the service."""
        if self.watchdog_s is None or now - self._last_ping < self.watchdog_s / 4:
            return
        self._last_ping = now
        self.send(watchdog=1)
