"""Stopping a resource group's agents: right to left, each retried, the failures returned."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from nonstop.resources.base import Agent, ResourceError, ResourceState

log = logging.getLogger("nonstop.failover")

STOP_RETRIES = 3


@runtime_checkable
class Reannounces(Protocol):
    """An agent that can re-announce what it holds (gratuitous ARP for an address)."""

    def reannounce(self) -> None: ...


async def stop_all(agents: Sequence[Agent], states: list[str], retry_delay_s: float, *,
                   addresses_first: bool = False) -> list[Agent]:
    """Stop every agent right to left, retrying; return those that would not stop. ``states``
    (one per agent) is updated as they stop.

    ``addresses_first``: when another node holds the group too, the shared address is what
    hurts (clients and ARP caches flap between the two), so it goes before anything else.
    """
    failed: list[Agent] = []
    order = list(reversed(range(len(agents))))
    if addresses_first:
        order.sort(key=lambda i: 0 if isinstance(agents[i], Reannounces) else 1)
    for i in order:
        agent = agents[i]
        for attempt in range(STOP_RETRIES):
            try:
                log.info("Running %s stop", agent.describe())
                await agent.stop()
                states[i] = "stopped"
                break
            except ResourceError as e:
                log.error("%s", e)
                if attempt + 1 < STOP_RETRIES:
                    log.info("Retrying failed stop operation [%s]", agent.describe())
                    await asyncio.sleep(retry_delay_s)
        else:
            if await agent.status() is ResourceState.STOPPED:
                log.error("Resource script for %s probably not LSB-compliant: its stop "
                          "failed although it is stopped", agent.describe())
                states[i] = "stopped"
            else:
                states[i] = "failed"
                failed.append(agent)
    return failed
