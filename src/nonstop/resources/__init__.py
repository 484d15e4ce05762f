"""Resource agents: the port (`base`), its real drivers and a recording driver for tests."""

from nonstop.resources.base import (
    ActionTimeouts,
    Agent,
    AgentContext,
    AgentFactory,
    ResourceError,
    ResourceState,
    heartbeat_environment,
    make_agent,
)

__all__ = [
    "ActionTimeouts",
    "Agent",
    "AgentContext",
    "AgentFactory",
    "ResourceError",
    "ResourceState",
    "heartbeat_environment",
    "make_agent",
]
