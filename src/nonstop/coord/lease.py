"""What this node may believe about the group leases at ``now``: pure, clock injected.

One etcd lease per node (as Patroni's session); each group this node holds or wants is a key
``<prefix>/groups/<group>`` whose value is the node name, attached to that lease. The lease
stays ours until ``sent + TTL`` where ``sent`` is when the last successful grant or keep-alive
was *sent*: etcd counts the TTL from when it received the request, later, so a holder that
trusts itself until ``sent + TTL - margin`` has stopped believing before any other node can
create the key. A node whose requests fail simply lets that deadline pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from nonstop.coord.port import KeyHolder

MIN_TTL_S = 2  # etcd raises shorter TTLs to about 1.5 x its election timeout (1 s by default)


@dataclass(frozen=True)
class LeaseTiming:
    """Every period of the lease keeper, derived from ha.cf's deadtime (docs/ETCD.md)."""

    ttl_s: int  # the TTL asked of etcd
    renew_s: float  # keep-alive period
    rpc_timeout_s: float  # one request, all endpoints tried
    margin_s: float  # stop trusting the lease this long before it could expire
    campaign_s: float  # retry period for a key wanted and not owned

    @classmethod
    def from_deadtime(cls, deadtime_ms: int) -> LeaseTiming:
        """TTL = deadtime rounded up to whole seconds (etcd's unit), at least MIN_TTL_S: a
        cut-off holder gives up about when heartbeats would declare it dead, so etcd adds
        little to a failover. Renewing every TTL/4, each request bounded by TTL/4, let two
        renewals in a row fail before the holder steps down.

        The margin is TTL/8 (0.25 s of the talk's 2 s): it only has to cover this node's own
        step-down (a timer, then the address removed: milliseconds), since etcd's clock
        starts later than our send time anyway. TTL/4 (0.5 s) left the holder trusting its
        lease only 1.0-1.5 s after a cut, and an etcd election (the leader's box cut off)
        took 1.0-1.5 s on a busy machine: the holder released a group nobody else could
        take, an outage of a second and a half (docs/ETCD.md)."""
        ttl = max(MIN_TTL_S, math.ceil(deadtime_ms / 1000))
        q = ttl / 4
        return cls(ttl, renew_s=q, rpc_timeout_s=q, margin_s=q / 2, campaign_s=min(0.2, q))


@dataclass(frozen=True)
class LeaseState:
    """One group's lease as this node knows it, an input of ``ClusterView``."""

    # The node named in the group's key at the last successful read (this node when ``mine``);
    # None: nobody holds the key.
    holder: str | None
    # Whether etcd answered a read within the last TTL (``holder`` is current).
    known: bool
    # Whether this node owns the key under a lease it renewed in time (it may hold the group).
    mine: bool


class LeaseBook:
    """The keeper's record of what etcd answered; ``states(now)`` is what decide() sees."""

    def __init__(self, node: str, timing: LeaseTiming, groups: Mapping[int, str]) -> None:
        self.node = node
        self.timing = timing
        self.groups = dict(groups)  # group index -> key suffix (the group's name)
        self.lease_id: int | None = None
        self.valid_until = 0.0  # local time until which the lease is surely ours (margin off)
        self.owned: set[int] = set()
        self.holders: dict[int, str | None] = {}
        self.read_at: float | None = None
        self.renewed_at = -math.inf  # when the last successful grant/keep-alive was sent

    # -------------------------------------------------------------- results from etcd

    def granted(self, lease_id: int, ttl_s: int, sent: float) -> None:
        self.lease_id = lease_id
        self.owned.clear()  # keys of an earlier lease are not ours any more
        self.renewed(ttl_s, sent)

    def renewed(self, ttl_s: int, sent: float) -> None:
        self.renewed_at = sent
        self.valid_until = sent + ttl_s - self.timing.margin_s

    def lease_lost(self) -> None:
        """etcd says the lease is gone (expired or revoked): nothing is ours."""
        self.lease_id = None
        self.owned.clear()
        self.valid_until = 0.0

    def acquired(self, group: int) -> None:
        self.owned.add(group)
        self.holders[group] = self.node

    def released(self, group: int) -> None:
        self.owned.discard(group)
        if self.holders.get(group) == self.node:
            self.holders[group] = None

    def read(self, holders: Mapping[str, KeyHolder], sent: float) -> None:
        """The prefix's keys as read (group name -> holder). A key is ours exactly when it
        names this node under its current lease: one that is missing or names another node
        is not ours any more (deleted by hand, or expired); one created by a request whose
        answer was lost is ours (and is dropped if no longer wanted)."""
        self.read_at = sent
        for g, name in self.groups.items():
            h = holders.get(name)
            self.holders[g] = h.value if h is not None else None
            if h is not None and h.value == self.node and h.lease == self.lease_id:
                self.owned.add(g)
            else:
                self.owned.discard(g)

    # -------------------------------------------------------------- questions

    def lease_valid(self, now: float) -> bool:
        return self.lease_id is not None and now < self.valid_until

    def renew_due(self, now: float) -> bool:
        return now - self.renewed_at >= self.timing.renew_s

    def states(self, now: float) -> dict[int, LeaseState]:
        known = self.read_at is not None and now - self.read_at < self.timing.ttl_s
        valid = self.lease_valid(now)
        out: dict[int, LeaseState] = {}
        for g in self.groups:
            mine = valid and g in self.owned
            out[g] = LeaseState(self.node if mine else self.holders.get(g), known or mine, mine)
        return out
