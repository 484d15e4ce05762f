"""The asyncio shell around :class:`PingTracker`: sends echo requests, feeds it the replies.

Every ``interval_s`` (Heartbeat pings at each keepalive) one echo request goes to every member
address; replies are read by an event-loop reader callback, so nothing here ever blocks the loop
or the heartbeat path. A send that fails (no route, link down) is the same as no answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence

from nonstop.errors import InvalidValue
from nonstop.ping import icmp
from nonstop.ping.targets import PingEvent, PingTracker, PingView

SOL_RAW = 255
ICMP_FILTER = 1
_MAX_READS = 64  # per readable callback: a flood of ICMP must not starve the loop


def open_icmp_socket() -> tuple[socket.socket, bool]:
    """A non-blocking ICMP socket and whether it is raw (replies carry the IP header).

    The unprivileged datagram kind first (allowed by ``net.ipv4.ping_group_range``), else raw
    (needs CAP_NET_RAW). OSError when neither can be opened.
    """
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        raw = False
    except OSError:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        raw = True
        # Only echo replies reach us, not every ICMP packet of the host.
        with contextlib.suppress(OSError):
            sock.setsockopt(SOL_RAW, ICMP_FILTER,
                            struct.pack("I", ~(1 << icmp.ECHO_REPLY) & 0xFFFFFFFF))
    sock.setblocking(False)
    return sock, raw


class PingProber:
    """Pings the tracker's addresses and reports the tracker's events.

    Each event's Heartbeat lines go to ``logger``; ``on_event`` (if given) gets the event too.
    ``run()`` works until cancelled; :meth:`view` is the current snapshot.
    """

    def __init__(self, tracker: PingTracker, *, interval_s: float, logger: logging.Logger,
                 on_event: Callable[[PingEvent], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s <= 0:
            raise InvalidValue("ping interval must be > 0")
        self.tracker = tracker
        self.interval_s = interval_s
        self._logger = logger
        self._on_event = on_event
        self._clock = clock
        self._token = os.urandom(icmp.TOKEN_LEN)
        self._ident = int.from_bytes(os.urandom(2), "big")
        self._seq = 0
        self.sent = 0
        self.send_errors = 0
        self.replies = 0

    def view(self) -> PingView:
        """The ping nodes' states now."""
        return self.tracker.view(self._clock())

    def _emit(self, events: Sequence[PingEvent]) -> None:
        for event in events:
            for level, line in event.lines:
                self._logger.log(level, "%s", line)
            if self._on_event is not None:
                self._on_event(event)

    def _on_readable(self, sock: socket.socket, raw: bool) -> None:
        for _ in range(_MAX_READS):
            try:
                packet, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error queued on a datagram socket
                self._logger.debug("ping socket: %s", exc)
                return
            try:
                icmp.parse_echo_reply(packet, self._token, ip_header=raw,
                                      ident=self._ident if raw else None)
            except icmp.NotOurReply:
                continue
            self.replies += 1
            self._emit(self.tracker.reply(addr[0], self._clock()))

    def _send_round(self, sock: socket.socket) -> None:
        self._seq = (self._seq + 1) & 0xFFFF
        packet = icmp.echo_request(self._ident, self._seq, self._token)
        for addr in self.tracker.addresses:
            try:
                sock.sendto(packet, (str(addr), 0))
                self.sent += 1
            except OSError as exc:
                # Unreachable is what a cut uplink looks like: the timeout decides, quietly.
                if self.send_errors == 0:
                    self._logger.debug("ping %s: %s", addr, exc)
                self.send_errors += 1

    async def run(self) -> None:
        """Ping until cancelled. OSError at once if no ICMP socket can be opened."""
        sock, raw = open_icmp_socket()
        self._logger.info("pinging %d address(es) every %g s through an ICMP %s socket",
                          len(self.tracker.addresses), self.interval_s,
                          "raw" if raw else "datagram")
        loop = asyncio.get_running_loop()
        loop.add_reader(sock.fileno(), self._on_readable, sock, raw)
        try:
            next_send = self._clock()
            while True:
                now = self._clock()
                if now >= next_send:
                    self._send_round(sock)
                    next_send = max(next_send + self.interval_s, now)
                self._emit(self.tracker.tick(now))
                wake = min(next_send, self.tracker.next_wakeup())
                await asyncio.sleep(max(0.0, wake - self._clock()))
        finally:
            loop.remove_reader(sock.fileno())
            sock.close()
