"""Resource-group states, their allowed transitions, and how a node advertises them.

Failover in nonstop is state-based: every status heartbeat carries this node's holding state
of every group (``nsg``), the groups it declines (``nsdecl``, after ``nonstop standby``) and
the groups it asks for (``nswant``, after ``nonstop takeover``). A lost message therefore loses
nothing: the next heartbeat says it again. Groups are numbered by their line in haresources,
which must be identical on all nodes (``nsres`` carries a digest to catch a mismatch).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nonstop.config.model import ResourceGroup
from nonstop.errors import NonstopError


class GroupState(enum.Enum):
    NONE = "N"  # not held
    STARTING = "S"  # acquiring: resources being started left to right
    HELD = "H"  # every resource started
    STOPPING = "T"  # releasing: resources being stopped right to left
    STOP_FAILED = "B"  # a stop failed and a resource may still run: peers must not take over
    START_FAILED = "F"  # a start failed here and the group was released; try another node

    # Two different questions are asked of a node's state, so they have two names:
    @property
    def claims(self) -> bool:
        """Whether a node in this state is the group's holder, or is becoming it: the node
        the cluster sees the group at (``holder`` in status, a rival claim, a request done)."""
        return self in (GroupState.STARTING, GroupState.HELD)

    @property
    def may_run(self) -> bool:
        """Whether a node in this state may have the group's resources (address) up: no
        other node may start them meanwhile, and a shutdown must stop them."""
        return self.claims or self in (GroupState.STOPPING, GroupState.STOP_FAILED)


_G = GroupState

TRANSITIONS: dict[GroupState, frozenset[GroupState]] = {
    _G.NONE: frozenset({_G.STARTING, _G.HELD}),  # HELD directly: found running at start-up
    _G.STARTING: frozenset({_G.HELD, _G.STOPPING}),
    _G.HELD: frozenset({_G.STOPPING, _G.STARTING}),  # STARTING: monitor restarts a resource
    _G.STOPPING: frozenset({_G.NONE, _G.STOP_FAILED, _G.START_FAILED}),
    _G.STOP_FAILED: frozenset({_G.STOPPING}),
    _G.START_FAILED: frozenset({_G.STARTING, _G.NONE, _G.HELD}),
}


class IllegalGroupTransition(NonstopError, RuntimeError):
    pass


def check(old: GroupState, new: GroupState) -> None:
    if new not in TRANSITIONS[old]:
        raise IllegalGroupTransition(f"group state {old.name} -> {new.name} is not allowed")


@dataclass(frozen=True)
class GroupAd:
    """What one node says about one group."""

    state: GroupState
    epoch: int


@dataclass(frozen=True)
class NodeAd:
    """Everything a node advertises about resource groups."""

    groups: Mapping[int, GroupAd]
    declines: frozenset[int] = frozenset()
    wants: frozenset[int] = frozenset()
    digest: str | None = None
    # Shutting down (its groups are declined because it leaves, not because of ``standby``):
    # a group taken over from it goes back when it returns, with auto_failback on.
    leaving: bool = False


def haresources_digest(groups: Iterable[ResourceGroup]) -> str:
    """A short digest of the group lines, so nodes notice differing haresources files."""
    h = hashlib.sha1()
    for g in groups:
        h.update(g.node.encode() + b" " + " ".join(r.raw for r in g.resources).encode() + b"\n")
    return h.hexdigest()[:8]


def encode_ad(ad: NodeAd) -> tuple[tuple[str, str], ...]:
    """Status-message fields for ``ad``: ``nsg=0:H:5 1:N:2``, ``nsdecl``, ``nswant``, ``nsres``,
    ``nsleave``."""
    fields = [("nsg", " ".join(f"{i}:{g.state.value}:{g.epoch}" for i, g in
                               sorted(ad.groups.items())) or "-")]
    if ad.declines:
        fields.append(("nsdecl", ",".join(str(i) for i in sorted(ad.declines))))
    if ad.wants:
        fields.append(("nswant", ",".join(str(i) for i in sorted(ad.wants))))
    if ad.digest:
        fields.append(("nsres", ad.digest))
    if ad.leaving:
        fields.append(("nsleave", "1"))
    return tuple(fields)


def _int_set(text: str | None) -> frozenset[int]:
    if not text:
        return frozenset()
    return frozenset(int(x) for x in text.split(",") if x.isdigit())


def decode_ad(fields: Mapping[str, str]) -> NodeAd | None:
    """The ad in a peer's status fields; None if it sends none (not a nonstop node) or garbage."""
    text = fields.get("nsg")
    if text is None:
        return None
    groups: dict[int, GroupAd] = {}
    if text != "-":
        for item in text.split():
            parts = item.split(":")
            if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit():
                return None
            try:
                state = GroupState(parts[1])
            except ValueError:
                return None
            groups[int(parts[0])] = GroupAd(state, int(parts[2]))
    return NodeAd(
        groups,
        declines=_int_set(fields.get("nsdecl")),
        wants=_int_set(fields.get("nswant")),
        digest=fields.get("nsres"),
        leaving=fields.get("nsleave") == "1",
    )
