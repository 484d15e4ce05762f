"""The daemon's reports of bad input: dropped packets (``logfacility``'s log_badpack), status
messages that claim a configured node's name and fail authentication, and the summaries of the
bursts both held back. Every line is limited per burst and per source, within a global budget,
so spoofed sources cannot flood the log, and nothing remote is logged unescaped."""

from __future__ import annotations

import logging

from nonstop.daemon_base import DaemonBase
from nonstop.heartbeat.burst import BurstLimiter
from nonstop.logs import BAD_INPUT, BadInputBudget, escape

log = logging.getLogger("nonstop")


class BadInputWiring(DaemonBase):
    burst: BurstLimiter
    forged: BurstLimiter
    forged_budget: BadInputBudget

    def _log_summaries(self, now: float) -> None:
        """The bad-packet bursts that ended, and what the log budgets held back."""
        for line in (self.burst.ended(now), BAD_INPUT.summary(now),
                     self.forged.ended(now, "status messages with a configured node's name "
                                       "that failed authentication"),
                     self.forged_budget.summary(now)):
            if line:
                log.warning("%s", line)

    def _log_bad(self, reason: str, source: str, detail: str, now: float) -> None:
        if not self.cfg.ha.log_badpack:
            return
        # Once per burst per (reason, source), within the process's global budget.
        say, suppressed = self.burst.should_log(reason, source, now)
        if say and BAD_INPUT.admit(reason, source, now):
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            log.warning("dropped packet from %s: %s: %s%s", escape(source), reason,
                        escape(detail, 200), more)

    def _log_forged(self, node: str, source: str, reason: str, now: float) -> None:
        say, suppressed = self.forged.should_log(node, source, now)
        if say and self.forged_budget.admit(node, source, now):
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            log.error("a status message from %s claims to be node %s but fails authentication "
                      "(%s): a node configured with another key, or a forger%s",
                      escape(source), node, reason, more)
