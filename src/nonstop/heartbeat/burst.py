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

    def __init__(self, quiet: float = 10.0, max_sources: int = 1024) -> None:
        self.quiet = quiet
        self.max_sources = max_sources
        self._bursts: dict[tuple[str, str], _Burst] = {}

    def should_log(self, reason: str, source: str, now: float) -> tuple[bool, int]:
        """Return (log it?, how many were suppressed since the last logged one)."""
        key = (reason, source)
        if key not in self._bursts and len(self._bursts) >= self.max_sources:
            # Spoofed sources must not grow this without bound: forget the quiet ones, and if
            # every one is still active, the oldest.
            for k in [k for k, v in self._bursts.items() if now - v.last >= self.quiet]:
                del self._bursts[k]
            if len(self._bursts) >= self.max_sources:
                del self._bursts[min(self._bursts, key=lambda k: self._bursts[k].last)]
        b = self._bursts.get(key)
        if b is None or now - b.last >= self.quiet:
            suppressed = b.suppressed if b else 0
            self._bursts[key] = _Burst(now, now)
            return True, suppressed
        b.last = now
        b.suppressed += 1
        return False, 0
