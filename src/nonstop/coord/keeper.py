"""The lease keeper: an asyncio task that drives a coordination port for this node.

It never runs on the heartbeat path: the daemon only calls ``want()`` (no I/O) and reads
``states()``; a slow or unreachable etcd delays nothing but the keeper's own next request.
Each request is bounded by ``rpc_timeout_s``; when renewals keep failing the local deadline
(see ``lease.LeaseBook``) passes and a timer makes the daemon decide again at that instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from nonstop.config.model import HaConfig
from nonstop.coord.lease import LeaseBook, LeaseState
from nonstop.coord.port import CoordError, Coordinator, KeyHolder

log = logging.getLogger("nonstop.coord")

T = TypeVar("T")

WITHOUT_LEASE_TICK_S = 0.05


class LeaseKeeper:
    def __init__(self, coord: Coordinator, book: LeaseBook, prefix: str,
                 on_change: Callable[[], None]) -> None:
        self.coord = coord
        self.book = book
        self.prefix = prefix.rstrip("/") + "/groups/"
        self.on_change = on_change
        self.wanted: frozenset[int] = frozenset()
        self.kept: frozenset[int] = frozenset()
        self.failing: str | None = None  # the last error while etcd does not answer
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._said_expired = False

    # ------------------------------------------------------------------ daemon side (no I/O)

    def want(self, get: Iterable[int], keep: Iterable[int] = ()) -> None:
        """Get (and keep) the keys of ``get``, keep those of ``keep`` if owned, drop the rest."""
        wanted, kept = frozenset(get), frozenset(keep)
        if (wanted, kept) != (self.wanted, self.kept):
            self.wanted, self.kept = wanted, kept
            self._wake.set()

    def states(self, now: float) -> dict[int, LeaseState]:
        return self.book.states(now)

    def fresh_ms(self, ha: HaConfig) -> int:
        """How recently a peer must have been heard for this node to keep a group without its
        lease (see failover.view.build_view)."""
        return ha.deadtime_ms - ha.keepalive_ms - round(self.book.timing.margin_s * 1000)

    def status(self, now: float) -> dict[str, object]:
        b = self.book
        return {
            "lease": b.lease_id,
            "lease_valid_s": round(max(0.0, b.valid_until - now), 3),
            "ttl_s": b.timing.ttl_s,
            "owned": sorted(b.groups[g] for g in b.owned if g in b.groups),
            "error": self.failing,
        }

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def close(self) -> None:
        """Stop, and end this node's lease (its keys go with it) if etcd answers in time."""
        self._closing = True
        if self._task is not None:
            # Python 3.11's wait_for() can swallow a cancellation that arrives as the wait
            # ends (the round loop then goes on for ever): cancel until the task is done.
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._deadline is not None:
            self._deadline.cancel()
        lease = self.book.lease_id
        if lease is not None:
            try:
                await self._rpc(self.coord.revoke(lease))
                log.info("etcd: lease %x revoked", lease)
            except (CoordError, TimeoutError) as e:
                log.warning("etcd: could not revoke lease %x (%s); it expires in %d s at most",
                            lease, e or "timeout", self.book.timing.ttl_s)
            self.book.lease_lost()
        await self.coord.close()

    # ------------------------------------------------------------------ the task

    async def run(self) -> None:
        t = self.book.timing
        loop = asyncio.get_running_loop()
        while not self._closing:
            await self.cycle()
            now = loop.time()
            # A failed round is tried again after campaign_s, not renew_s: while etcd elects a
            # leader (its leader's box cut off), renewals fail until the election ends, and
            # the first renewal after it must come before the lease's trust runs out.
            hurry = (bool(self.wanted - self.book.owned) or not self.book.lease_valid(now)
                     or self.failing is not None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), t.campaign_s if hurry else t.renew_s)
            self._wake.clear()

    async def cycle(self) -> None:
        """One round: lease, keys, read; whatever fails is logged and tried next round."""
        loop = asyncio.get_running_loop()
        before = self.book.states(loop.time())
        try:
            await self._round(loop)
        except (CoordError, TimeoutError) as e:
            why = str(e) or f"no answer within {self.book.timing.rpc_timeout_s:g} s"
            if self.failing is None:
                log.warning("etcd: %s (the lease holds for %.1f s more at most)", why,
                            max(0.0, self.book.valid_until - loop.time()))
            self.failing = why
        else:
            if self.failing is not None:
                log.info("etcd: answering again")
            self.failing = None
        self._arm_deadline(loop)
        if self.book.states(loop.time()) != before:
            self.on_change()

    async def _round(self, loop: asyncio.AbstractEventLoop) -> None:
        b, t = self.book, self.book.timing
        if b.lease_id is None:
            sent = loop.time()
            new, ttl = await self._rpc(self.coord.grant(t.ttl_s))
            b.granted(new, ttl, sent)
            log.info("etcd: lease %x granted (TTL %d s)", new, ttl)
        elif b.renew_due(loop.time()):
            sent = loop.time()
            ttl = await self._rpc(self.coord.keepalive(b.lease_id))
            if ttl <= 0:
                log.warning("etcd: lease %x is gone (expired): the group keys under it are "
                            "lost", b.lease_id)
                b.lease_lost()
                return
            b.renewed(ttl, sent)
            self._said_expired = False
        lease = b.lease_id
        assert lease is not None
        for g in sorted(self.wanted - b.owned):
            key = self.prefix + b.groups[g]
            holder = await self._rpc(self.coord.create(key, b.node, lease))
            if holder is None or holder == KeyHolder(b.node, lease):
                b.acquired(g)
                log.info("etcd: this node now owns the lease of group %s", b.groups[g])
        for g in sorted(b.owned - self.wanted - self.kept):
            await self._rpc(self.coord.delete_if(self.prefix + b.groups[g], b.node, lease))
            b.released(g)
            log.info("etcd: gave up the lease of group %s", b.groups[g])
        sent = loop.time()
        b.read(await self._rpc(self.coord.read(self.prefix)), sent)

    async def _rpc(self, aw: Awaitable[T]) -> T:
        return await asyncio.wait_for(aw, self.book.timing.rpc_timeout_s)

    def _arm_deadline(self, loop: asyncio.AbstractEventLoop) -> None:
        """Decide again the instant the lease stops being trusted, should no renewal come;
        without a trusted lease, while a group is held or kept here, decide again every
        WITHOUT_LEASE_TICK_S: the rules then depend on how recently each peer was heard,
        which changes with time alone."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self.book.lease_valid(loop.time()):
            if self.book.owned:
                self._deadline = loop.call_at(self.book.valid_until, self._expired, loop)
        elif self.wanted or self.kept:
            self._deadline = loop.call_later(WITHOUT_LEASE_TICK_S, self._expired, loop)

    def _expired(self, loop: asyncio.AbstractEventLoop) -> None:
        self._deadline = None
        if self.book.owned and not self._said_expired and not self.book.lease_valid(loop.time()):
            self._said_expired = True
            log.warning("etcd: lease not renewed in time: this node no longer trusts it")
        self.on_change()
        self._arm_deadline(loop)
