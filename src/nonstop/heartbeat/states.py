"""Node states and the transitions allowed between them, kept as data.

An illegal transition is a bug in the caller and raises, rather than being silently ignored.
"""

from __future__ import annotations

import enum

from nonstop.errors import NonstopError


class NodeStatus(enum.Enum):
    """Heartbeat's node status values (``st=`` on the wire, ``cl_status nodestatus``)."""

    INIT = "init"  # configured, never heard from
    UP = "up"  # heard (remote) / listening, comm not yet confirmed (local)
    ACTIVE = "active"  # fully up
    DEAD = "dead"  # declared dead by us (timeout) or left the cluster

    @classmethod
    def from_wire(cls, text: str | None) -> NodeStatus | None:
        """The status a peer advertises; ``None`` for values a live node never sends."""
        if text in ("init", "up", "active"):
            return cls(text)
        return None


class IllegalTransition(NonstopError, RuntimeError):
    """A state machine was asked for a transition its table does not allow."""


_S = NodeStatus

#: Remote nodes: anything may follow anything except staying dead by advertisement; a node
#: that restarts goes from active back to init/up.
REMOTE_TRANSITIONS: dict[NodeStatus, frozenset[NodeStatus]] = {
    _S.INIT: frozenset({_S.UP, _S.ACTIVE, _S.DEAD}),
    _S.UP: frozenset({_S.INIT, _S.ACTIVE, _S.DEAD}),
    _S.ACTIVE: frozenset({_S.INIT, _S.UP, _S.DEAD}),
    _S.DEAD: frozenset({_S.INIT, _S.UP, _S.ACTIVE}),
}

#: The local node: up at start, active once every node was heard or declared dead, dead on leave.
LOCAL_TRANSITIONS: dict[NodeStatus, frozenset[NodeStatus]] = {
    _S.INIT: frozenset({_S.UP}),
    _S.UP: frozenset({_S.ACTIVE, _S.DEAD}),
    _S.ACTIVE: frozenset({_S.DEAD}),
    _S.DEAD: frozenset(),
}


def check_transition(
    table: dict[NodeStatus, frozenset[NodeStatus]], old: NodeStatus, new: NodeStatus
) -> None:
    """Raise :class:`IllegalTransition` unless ``old -> new`` is in ``table``."""
    if new not in table[old]:
        raise IllegalTransition(f"illegal node status transition {old.value} -> {new.value}")
