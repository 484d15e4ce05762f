"""ha.cf ``watchdog``: the kernel watchdog, kept alive by our own heartbeats (adapter: device).

As Heartbeat does: opened at start with a timeout of ceil((deadtime + 10 ms) / 1 s) seconds,
tickled each time our own status packet comes back to us, closed with the magic 'V' on a clean
stop. If the daemon hangs, or stops hearing itself, the kernel resets the box before the peer
takes over, so the two never run the service at once.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import struct

log = logging.getLogger("nonstop.watchdog")

WDIOC_SETTIMEOUT = 0xC0045706  # _IOWR('W', 6, int)


class Watchdog:
    def __init__(self, device: str, deadtime_ms: int) -> None:
        self.device = device
        self.timeout_s = math.ceil((deadtime_ms + 10) / 1000)
        self.fd: int | None = None
        self.tickles = 0

    def open(self) -> None:
        try:
            self.fd = os.open(self.device, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            log.error("Cannot open watchdog device %s: %s", self.device, e)
            return
        try:
            fcntl.ioctl(self.fd, WDIOC_SETTIMEOUT, struct.pack("i", self.timeout_s))
        except OSError as e:
            log.warning("Cannot set watchdog timeout on %s to %d s: %s",
                        self.device, self.timeout_s, e)
        log.info("watchdog %s open, timeout %d s", self.device, self.timeout_s)

    def tickle(self) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, b"\0")
            self.tickles += 1
        except OSError as e:
            log.debug("watchdog write failed: %s", e)

    def close(self) -> None:
        """Clean stop: the magic close disarms the watchdog."""
        if self.fd is None:
            return
        try:
            os.write(self.fd, b"V")
        except OSError as e:
            log.debug("watchdog magic close failed: %s", e)
        os.close(self.fd)
        self.fd = None
