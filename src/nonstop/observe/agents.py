"""Resource agents that report each action, its result and its duration to the recorder.

The failover engine is handed these wrappers instead of the agents themselves (through the
agent factory), so what it does with resources is recorded without a line in the engine.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from nonstop.config.model import ResourceGroup, ResourceSpec
from nonstop.resources.base import Agent, AgentContext, ResourceError, ResourceState


class ActionSink(Protocol):
    def on_resource(self, *, group: str, resource: str, action: str, ok: bool,
                    duration_s: float, result: str) -> None: ...


AgentFactory = Callable[[ResourceSpec, AgentContext], Agent]
Action = Callable[[], Awaitable[None]]


class TimedAgent(Agent):
    """Runs the wrapped agent's actions unchanged; reports starts and stops always, and a
    status result only when it differs from what the last action left (a monitor finding a
    stopped service), so a healthy monitor every few seconds does not fill the history."""

    def __init__(self, inner: Agent, group: str, sink: ActionSink,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.group = group
        self.sink = sink
        self.clock = clock
        self._expected: ResourceState | None = None

    def describe(self) -> str:
        return self.inner.describe()

    def __getattr__(self, name: str) -> object:
        # Anything else of the agent (a test looking at a driver's own state) is the agent's.
        if name.startswith("__") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def _run(self, action: str, expect: ResourceState, run: Action) -> None:
        t0 = self.clock()
        try:
            await run()
        except ResourceError as e:
            self._report(action, False, t0, str(e))
            raise
        self._expected = expect
        self._report(action, True, t0, "ok")

    async def start(self) -> None:
        await self._run("start", ResourceState.RUNNING, self.inner.start)

    async def stop(self) -> None:
        await self._run("stop", ResourceState.STOPPED, self.inner.stop)

    async def status(self) -> ResourceState:
        t0 = self.clock()
        state = await self.inner.status()
        if self._expected is not None and state is not self._expected:
            self._report("monitor", state is ResourceState.RUNNING, t0, state.value)
        self._expected = state
        return state

    def _report(self, action: str, ok: bool, t0: float, result: str) -> None:
        self.sink.on_resource(group=self.group, resource=self.inner.describe(), action=action,
                              ok=ok, duration_s=self.clock() - t0, result=result)


class TimedAddressAgent(TimedAgent):
    """The same for an agent that re-announces what it holds (an address): the engine looks
    for ``reannounce`` to order stops and to answer a settled split claim."""

    def reannounce(self) -> None:
        self.inner.reannounce()  # type: ignore[attr-defined]

    def probe_next_start(self, on: bool) -> None:
        probe = getattr(self.inner, "probe_next_start", None)
        if probe is not None:
            probe(on)


def timed_factory(factory: AgentFactory, groups: Sequence[ResourceGroup],
                  sink: ActionSink) -> AgentFactory:
    """An agent factory whose agents report to ``sink``, each with the key of its group."""

    def make(spec: ResourceSpec, ctx: AgentContext) -> Agent:
        agent = factory(spec, ctx)
        group = next((g.key for g in groups if any(r is spec for r in g.resources)), "")
        if callable(getattr(agent, "reannounce", None)):
            return TimedAddressAgent(agent, group, sink)
        return TimedAgent(agent, group, sink)

    return make
