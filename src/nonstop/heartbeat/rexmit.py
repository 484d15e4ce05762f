"""Serving retransmit requests within Heartbeat's limits, and counting them (pure).

A retransmit request (``NS_rexmit``) carries no sequence number, so a captured one can be
replayed at will (issue 9: 2,000 replayed requests made 2,000 extra broadcasts in 6 s).
As Heartbeat 3.0.6 (``process_rexmit``): at most ``MAX_PER_REQUEST`` packets per request and
each packet at most once per ``MIN_RESEND_S``; on top of that one budget for every resend and
NAK, so many different requests cannot add up to a flood either.
"""

from __future__ import annotations

MIN_RESEND_S = 0.24
MAX_PER_REQUEST = 50
RATE = 100.0  # resends and NAKs a second, over all requests
BURST = 200


class RexmitLimiter:
    """Decides which requested packets go out again; ``counters`` says what happened."""

    def __init__(self, rate: float = RATE, burst: int = BURST) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._refilled: float | None = None
        self._last_sent: dict[int, float] = {}
        self.counters: dict[str, int] = {"requests": 0, "resent": 0, "nak": 0, "suppressed": 0}

    def plan(self, first: int, last: int, now: float) -> range:
        """The sequence numbers of one request to look at (one request = at most 50)."""
        self.counters["requests"] += 1
        if last < first:
            return range(0)
        return range(first, min(last, first + MAX_PER_REQUEST - 1) + 1)

    def allow(self, seq: int, now: float, *, nak: bool = False) -> bool:
        """May ``seq`` be resent (or NAKed) now? Counts the answer."""
        if self._refilled is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        last = self._last_sent.get(seq)
        if (last is not None and now - last < MIN_RESEND_S) or self._tokens < 1.0:
            self.counters["suppressed"] += 1
            return False
        self._tokens -= 1.0
        self._last_sent[seq] = now
        if len(self._last_sent) > 4 * MAX_PER_REQUEST * 10:  # forget what no longer matters
            self._last_sent = {s: t for s, t in self._last_sent.items()
                               if now - t < MIN_RESEND_S}
        self.counters["nak" if nak else "resent"] += 1
        return True
