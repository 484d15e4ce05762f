"""Is my own key wrong? A pure verdict from authentication failures of peers' packets.

A node whose authkeys differ from its peers' sees every packet of the real cluster fail
authentication; to it, the peers look silent and it would declare them dead after initdead and
take the virtual IP (issue 12: a rogue answered the client 3,506 times in 40 s). The real nodes
are fine: they drop the rogue's packets, which do not come from a configured peer's address.

So: packets that fail authentication *from addresses of peers* while *no* packet from a peer
passes are evidence against our own key. ``threshold`` of them within ``window_s`` make the
verdict "suspect": refuse to take over and say so. One authenticated packet from a peer clears
it (our key works); so does a whole window without failures (the peers went quiet, or were
reconfigured). Bounded: at most ``threshold`` timestamps and ``max_sources`` addresses.

A peer's address is configured (ucast, /etc/hosts) or learned: the source of a packet that
passed authentication. With bcast or mcast and no /etc/hosts entries nothing else names one:
an authkeys edit gone wrong on the standby plus ``nonstop reload`` made it declare the active
node dead and take its address while that node still held it. When our keys change (a reload),
what passed under the old ones proves nothing about the new: :meth:`keys_changed`.
"""

from __future__ import annotations

import collections
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nonstop.errors import InvalidValue

DEFAULT_WINDOW_S = 10.0
DEFAULT_THRESHOLD = 5


@dataclass(frozen=True)
class KeyVerdict:
    """The current verdict; ``reason`` is the sentence for the log, status and decide()."""

    suspect: bool
    failures: int  # failures from peers' addresses counted in the window
    sources: tuple[str, ...]  # which peer addresses sent them
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """Status keys: ``own_key_suspect``, ``auth_failures_from_peers``, ``..._sources``,
        ``own_key_reason``."""
        return {"own_key_suspect": self.suspect, "auth_failures_from_peers": self.failures,
                "auth_failure_sources": list(self.sources), "own_key_reason": self.reason}


@dataclass(frozen=True)
class KeyVerdictChanged:
    """The verdict flipped: log ``verdict.reason`` (ERROR when it became suspect)."""

    verdict: KeyVerdict


class OwnKeyCheck:
    """Counts authentication failures of packets from ``peer_addresses`` (see module doc)."""

    def __init__(self, peer_addresses: Iterable[str], *, window_s: float = DEFAULT_WINDOW_S,
                 threshold: int = DEFAULT_THRESHOLD, max_sources: int = 64,
                 peer_nodes: int | None = None) -> None:
        if window_s <= 0 or threshold < 1:
            raise InvalidValue("window must be > 0 s and threshold >= 1")
        self.peers = frozenset(str(ipaddress.ip_address(a)) for a in peer_addresses)
        # How many other nodes ha.cf names (None: not said). With one, nothing tells whose key
        # is wrong: both nodes see only failures, and each said "my own key is probably wrong"
        # (a user trial: the admin could have copied the wrong file over the right one).
        self.peer_nodes = peer_nodes
        self._learned: dict[str, None] = {}  # sources of peers' packets, oldest first
        self.window_s = window_s
        self.threshold = threshold
        self._max_sources = max_sources
        self._failures: collections.deque[float] = collections.deque(maxlen=threshold)
        self._sources: dict[str, float] = {}
        self._last_good: float | None = None
        self._suspect = False

    def _is_peer(self, src: str) -> bool:
        if src in self.peers or src in self._learned:  # the kernel's dotted quad: no parsing
            return True
        try:
            return str(ipaddress.ip_address(src)) in self.peers
        except ValueError:
            return False

    def _expire(self, now: float) -> None:
        while self._failures and now - self._failures[0] > self.window_s:
            self._failures.popleft()
        for src in [s for s, t in self._sources.items() if now - t > self.window_s]:
            del self._sources[src]

    def verdict(self, now: float) -> KeyVerdict:
        """The verdict at ``now`` (read-only)."""
        recent = [t for t in self._failures if now - t <= self.window_s]
        sources = tuple(sorted(s for s, t in self._sources.items() if now - t <= self.window_s))
        good_recently = self._last_good is not None and now - self._last_good <= self.window_s
        if len(recent) >= self.threshold and not good_recently:
            return KeyVerdict(True, len(recent), sources, (
                f"{len(recent)} packets from peers' addresses ({', '.join(sources)}) failed "
                f"authentication within {self.window_s:g} s and none passed: "
                + ("my key and my peer's differ, and either may be the wrong one (compare "
                   "authkeys on both nodes)" if self.peer_nodes == 1 else
                   "my own key is probably wrong (check authkeys)")
                + "; refusing to take over"))
        if good_recently:
            reason = "packets from peers authenticate: my key is right"
        elif recent:
            reason = (f"{len(recent)} packets from peers' addresses failed authentication "
                      f"within {self.window_s:g} s (fewer than {self.threshold})")
        else:
            reason = "no authentication failures from peers' addresses"
        return KeyVerdict(False, len(recent), sources, reason)

    def _is_suspect(self, now: float) -> bool:
        """``verdict(now).suspect`` without building the verdict's sentence."""
        if self._last_good is not None and now - self._last_good <= self.window_s:
            return False
        return sum(1 for t in self._failures if now - t <= self.window_s) >= self.threshold

    def _changed(self, now: float) -> list[KeyVerdictChanged]:
        # Called for every packet: the verdict and its sentence are built only when it flips.
        suspect = self._is_suspect(now)
        if suspect == self._suspect:
            return []
        self._suspect = suspect
        return [KeyVerdictChanged(self.verdict(now))]

    def bad(self, src: str, now: float) -> list[KeyVerdictChanged]:
        """A packet from ``src`` failed authentication (other sources are not counted)."""
        self._expire(now)
        if self._is_peer(src):
            self._failures.append(now)
            if src in self._sources or len(self._sources) < self._max_sources:
                self._sources[src] = now
        return self._changed(now)

    def good(self, src: str, now: float) -> list[KeyVerdictChanged]:
        """A packet from ``src`` passed authentication (and was accepted): a peer sent it, so
        our key works, and ``src`` is a peer's address from now on (the ``max_sources`` learned
        last are kept)."""
        self._last_good = now
        if src not in self.peers and src not in self._learned:  # once per address, not per packet
            self._learned[src] = None
            if len(self._learned) > self._max_sources:
                del self._learned[next(iter(self._learned))]
        return self._changed(now)

    def keys_changed(self, now: float) -> list[KeyVerdictChanged]:
        """Our keys were reloaded: a packet that passed under the old ones says nothing about
        the new ones. Failures stay counted: a suspect verdict holds until a peer's packet
        passes with the new keys (the peer comes back alive with it), not from the reload on,
        when the peers still look dead and a takeover would race their next status."""
        self._last_good = None
        return self._changed(now)

    def tick(self, now: float) -> list[KeyVerdictChanged]:
        """Let old failures age out of the window."""
        self._expire(now)
        return self._changed(now)
