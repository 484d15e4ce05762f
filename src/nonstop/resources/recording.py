"""The recording driver of the agent port, for the failover engine's unit tests.

A `RecordingAgentFactory` has the signature of `make_agent`. It keeps one simulated world
(a state per resource, keyed by the resource as written) shared by every agent it creates,
records each call in order, and fails the actions it was told to fail. Nothing here sleeps.

    factory = RecordingAgentFactory()
    factory.fail("asterisk", "start")              # every start of asterisk fails
    factory.fail("master", "stop", times=2)        # the next two stops fail, then succeed
    factory.set_state("198.18.0.10/24/eth0", ResourceState.RUNNING)
    engine = Engine(..., agent_factory=factory)
    ...
    assert factory.actions() == [("198.18.0.10/24/eth0", "status"), ...]
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from nonstop.config.model import ResourceSpec
from nonstop.errors import InvalidValue
from nonstop.resources.base import Agent, AgentContext, ResourceError, ResourceState

ACTIONS = ("start", "stop", "status")


@dataclass(frozen=True)
class RecordedCall:
    """One call an agent received; ``outcome`` is "ok", "failed" or the state reported."""

    resource: str
    action: str
    node: str
    outcome: str


class RecordingAgentFactory:
    """Creates `RecordingAgent`s that share one recorded, scriptable world."""

    def __init__(self) -> None:
        self.calls: list[RecordedCall] = []
        self._states: dict[str, ResourceState] = {}
        self._failures: dict[tuple[str, str], int | None] = {}
        self._status_overrides: dict[str, ResourceState] = {}
        self._gates: dict[tuple[str, str], asyncio.Event] = {}

    def __call__(self, spec: ResourceSpec, ctx: AgentContext) -> RecordingAgent:
        return RecordingAgent(spec, ctx, self)

    def fail(self, resource: str, action: str, times: int | None = None) -> None:
        """Make ``action`` ("start" or "stop") of ``resource`` raise ResourceError, ``times``
        more times (None = always). A failed action leaves the state unchanged."""
        if action not in ("start", "stop"):
            raise InvalidValue(f"only start and stop can fail, not {action!r}")
        self._failures[(resource, action)] = times

    def heal(self, resource: str, action: str) -> None:
        """Undo `fail`."""
        self._failures.pop((resource, action), None)

    def set_state(self, resource: str, state: ResourceState) -> None:
        """Set the simulated state (what status reports, until an action changes it)."""
        self._states[resource] = state

    def override_status(self, resource: str, state: ResourceState | None) -> None:
        """Make status report ``state`` whatever the simulated state (None removes it)."""
        if state is None:
            self._status_overrides.pop(resource, None)
        else:
            self._status_overrides[resource] = state

    def state(self, resource: str) -> ResourceState:
        """The simulated state; STOPPED for a resource never touched."""
        return self._states.get(resource, ResourceState.STOPPED)

    def gate(self, resource: str, action: str) -> asyncio.Event:
        """An event that ``action`` of ``resource`` waits for before it completes (for tests
        of cancellation and concurrency). Set it to release the action."""
        return self._gates.setdefault((resource, action), asyncio.Event())

    def actions(self, node: str | None = None) -> list[tuple[str, str]]:
        """(resource, action) pairs in call order, optionally of one node only."""
        return [(c.resource, c.action) for c in self.calls if node is None or c.node == node]

    def clear(self) -> None:
        """Forget the recorded calls (states and failures stay)."""
        self.calls.clear()

    def _take_failure(self, resource: str, action: str) -> bool:
        key = (resource, action)
        if key not in self._failures:
            return False
        left = self._failures[key]
        if left is None:
            return True
        if left <= 1:
            del self._failures[key]
        else:
            self._failures[key] = left - 1
        return True

    async def _perform(self, resource: str, action: str, node: str) -> ResourceState | None:
        gate = self._gates.get((resource, action))
        if gate is not None:
            await gate.wait()
        if action == "status":
            state = self._status_overrides.get(resource, self.state(resource))
            self.calls.append(RecordedCall(resource, action, node, state.value))
            return state
        if self._take_failure(resource, action):
            self.calls.append(RecordedCall(resource, action, node, "failed"))
            raise ResourceError(resource, action, "Return code 1 (recording driver)", returncode=1)
        self._states[resource] = (
            ResourceState.RUNNING if action == "start" else ResourceState.STOPPED
        )
        self.calls.append(RecordedCall(resource, action, node, "ok"))
        return None


class RecordingAgent(Agent):
    """An agent whose every call goes to its factory's simulated world."""

    def __init__(self, spec: ResourceSpec, ctx: AgentContext, world: RecordingAgentFactory) -> None:
        self.spec = spec
        self._node = ctx.node
        self._world = world

    def describe(self) -> str:
        return f"recording {self.spec.raw}"

    async def start(self) -> None:
        await self._world._perform(self.spec.raw, "start", self._node)

    async def stop(self) -> None:
        await self._world._perform(self.spec.raw, "stop", self._node)

    async def status(self) -> ResourceState:
        state = await self._world._perform(self.spec.raw, "status", self._node)
        assert state is not None
        return state
