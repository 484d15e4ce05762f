"""The coordination port: what the lease keeper needs of a consistent store (etcd).

Every method is one request; a driver raises ``CoordError`` for anything that is not an answer
(no endpoint reachable, no quorum, a timeout, a garbled reply), never anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from nonstop.errors import RemoteInputError


class CoordError(RemoteInputError):
    """The store did not answer (or not sensibly): nothing is known from this request. From
    the network, never fatal: the keeper logs it and tries again next round."""


@dataclass(frozen=True)
class KeyHolder:
    """Who a key names, and under which lease."""

    value: str
    lease: int


class Coordinator(Protocol):
    async def grant(self, ttl_s: int) -> tuple[int, int]:
        """A new lease: (its id, the TTL granted in seconds)."""
        ...

    async def keepalive(self, lease: int) -> int:
        """Renew the lease; its TTL in seconds, 0 when it is gone (expired or revoked)."""
        ...

    async def revoke(self, lease: int) -> None:
        """End the lease now: its keys are deleted."""
        ...

    async def create(self, key: str, value: str, lease: int) -> KeyHolder | None:
        """Create the key under the lease if it does not exist: None if created, else who
        holds it (which may be this very lease, when a lost answer is retried)."""
        ...

    async def delete_if(self, key: str, value: str, lease: int) -> None:
        """Delete the key if it still names ``value`` under ``lease``."""
        ...

    async def read(self, prefix: str) -> Mapping[str, KeyHolder]:
        """Every key under ``prefix`` (without it): its value and lease."""
        ...

    async def close(self) -> None:
        ...
