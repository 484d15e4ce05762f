"""Log a bad packet once per burst, not once per packet (pure: the caller passes ``now``).

A burst of one (reason, source) gets its first line at once; what follows is counted, and when
the burst ends (``quiet`` seconds without one) :meth:`BurstLimiter.ended` gives one summary
line for every burst that ended since the last call: reason, source, how many packets and over
how long. So the log stays bounded, yet no kind of event is hidden: a new (reason, source) is
always said, and every packet is in some summary. The table is bounded too (spoofed sources
cannot grow it); what a forgotten burst had counted is still in the next summary.
"""

from __future__ import annotations

from dataclasses import dataclass

from nonstop.logs import escape

MAX_PARTS = 10  # bursts named in one summary line; the rest are counted


@dataclass
class _Burst:
    started: float
    last: float
    suppressed: int = 0


class BurstLimiter:
    """Say the first occurrence of a (reason, source), then stay quiet until ``quiet`` seconds
    pass without one; :meth:`ended` summarizes each burst that ended."""

    def __init__(self, quiet: float = 10.0, max_sources: int = 1024) -> None:
        self.quiet = quiet
        self.max_sources = max_sources
        self._bursts: dict[tuple[str, str], _Burst] = {}
        self._dropped_bursts = 0  # bursts forgotten (table full) with packets not yet summarized
        self._dropped_packets = 0

    def _forget(self, key: tuple[str, str]) -> None:
        b = self._bursts.pop(key)
        if b.suppressed:
            self._dropped_bursts += 1
            self._dropped_packets += b.suppressed + 1

    def should_log(self, reason: str, source: str, now: float) -> tuple[bool, int]:
        """Return (log it?, how many were suppressed since the last logged one and not yet
        summarized: a burst that ended before :meth:`ended` was called)."""
        key = (reason, source)
        if key not in self._bursts and len(self._bursts) >= self.max_sources:
            # Forget the quiet ones (their summary is counted), and if every one is still
            # active, the oldest.
            for k in [k for k, v in self._bursts.items() if now - v.last >= self.quiet]:
                self._forget(k)
            if len(self._bursts) >= self.max_sources:
                self._forget(min(self._bursts, key=lambda k: self._bursts[k].last))
        b = self._bursts.get(key)
        if b is None or now - b.last >= self.quiet:
            suppressed = b.suppressed if b else 0
            self._bursts[key] = _Burst(now, now)
            return True, suppressed
        b.last = now
        b.suppressed += 1
        return False, 0

    def ended(self, now: float, what: str = "bad packets") -> str | None:
        """One line summing up the bursts that ended (quiet for ``quiet`` s) with packets
        not logged one by one; None when there are none. Ended bursts are forgotten."""
        done = sorted(((k, b) for k, b in self._bursts.items() if now - b.last >= self.quiet),
                      key=lambda kb: (-kb[1].suppressed, kb[0]))
        for k, _b in done:
            del self._bursts[k]
        loud = [(k, b) for k, b in done if b.suppressed]
        if not loud and not self._dropped_bursts:
            return None
        total = len(loud) + self._dropped_bursts
        parts = [f"{escape(r, 40)} from {escape(s, 60)}: {b.suppressed + 1} in "
                 f"{b.last - b.started:.1f} s" for (r, s), b in loud[:MAX_PARTS]]
        rest_bursts = total - len(parts)
        rest_packets = sum(b.suppressed + 1 for _k, b in loud[MAX_PARTS:]) + self._dropped_packets
        self._dropped_bursts = self._dropped_packets = 0
        if rest_bursts:
            parts.append(f"and {rest_bursts} more burst(s) of {rest_packets} packets")
        return (f"{what}: {total} burst(s) ended (the first packet of each was logged): "
                f"{'; '.join(parts)}")
