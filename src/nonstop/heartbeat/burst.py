"""Log a bad packet once per burst, not once per packet (pure: the caller passes ``now``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Burst:
    started: float
    last: float
    suppressed: int = 0


class BurstLimiter:
    """Say the first occurrence of a (reason, source), then stay quiet until ``quiet`` seconds
    pass without one; the next occurrence reports how many were suppressed in between."""

    def __init__(self, quiet: float = 10.0) -> None:
        self.quiet = quiet
        self._bursts: dict[tuple[str, str], _Burst] = {}

    def should_log(self, reason: str, source: str, now: float) -> tuple[bool, int]:
        """Return (log it?, how many were suppressed since the last logged one)."""
        key = (reason, source)
        b = self._bursts.get(key)
        if b is None or now - b.last >= self.quiet:
            suppressed = b.suppressed if b else 0
            self._bursts[key] = _Burst(now, now)
            return True, suppressed
        b.last = now
        b.suppressed += 1
        return False, 0
