"""The recording coordination driver: an in-memory etcd for unit tests.

Several ``MemoryCoordinator`` share one ``MemoryStore`` (one per simulated node), whose leases
expire on an injected clock. ``calls`` records every request; ``reachable = False`` makes
every request of that node fail (a partition), ``store.down = True`` all of them (etcd lost).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from nonstop.coord.port import CoordError, KeyHolder


@dataclass
class MemoryStore:
    clock: Callable[[], float]
    down: bool = False
    keys: dict[str, KeyHolder] = field(default_factory=dict)
    leases: dict[int, tuple[int, float]] = field(default_factory=dict)  # id -> (ttl, expiry)
    next_id: int = 1

    def expire(self) -> None:
        now = self.clock()
        for lid, (_ttl, until) in list(self.leases.items()):
            if now >= until:
                self._drop(lid)

    def _drop(self, lease: int) -> None:
        self.leases.pop(lease, None)
        for k, h in list(self.keys.items()):
            if h.lease == lease:
                del self.keys[k]


class MemoryCoordinator:
    def __init__(self, store: MemoryStore, name: str = "") -> None:
        self.store = store
        self.name = name
        self.reachable = True
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def _enter(self, op: str, *args: object) -> MemoryStore:
        self.calls.append((op, args))
        if self.store.down or not self.reachable:
            raise CoordError(f"{op}: etcd unreachable")
        self.store.expire()
        return self.store

    async def grant(self, ttl_s: int) -> tuple[int, int]:
        s = self._enter("grant", ttl_s)
        lid, s.next_id = s.next_id, s.next_id + 1
        s.leases[lid] = (ttl_s, s.clock() + ttl_s)
        return lid, ttl_s

    async def keepalive(self, lease: int) -> int:
        s = self._enter("keepalive", lease)
        if lease not in s.leases:
            return 0
        ttl, _ = s.leases[lease]
        s.leases[lease] = (ttl, s.clock() + ttl)
        return ttl

    async def revoke(self, lease: int) -> None:
        self._enter("revoke", lease)._drop(lease)

    async def create(self, key: str, value: str, lease: int) -> KeyHolder | None:
        s = self._enter("create", key, value, lease)
        if key in s.keys:
            return s.keys[key]
        if lease not in s.leases:
            raise CoordError(f"create {key}: lease {lease} not found")
        s.keys[key] = KeyHolder(value, lease)
        return None

    async def delete_if(self, key: str, value: str, lease: int) -> None:
        s = self._enter("delete_if", key, value, lease)
        if s.keys.get(key) == KeyHolder(value, lease):
            del s.keys[key]

    async def read(self, prefix: str) -> Mapping[str, KeyHolder]:
        s = self._enter("read", prefix)
        return {k[len(prefix):]: h for k, h in s.keys.items() if k.startswith(prefix)}

    async def close(self) -> None:
        self.calls.append(("close", ()))
