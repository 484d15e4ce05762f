"""What each node tells the others about who runs each group: a third node's testimony.

With three or more nodes, a node that stops hearing the holder is not always the one that
knows best: the cut may lie between it and the holder alone (a switch port dropping one
pair's traffic, a firewall rule), while the other nodes hear both. Heartbeat v1 takes the
group over anyway, and the address is then up twice for as long as the cut lasts (a user
trial of nonstop's three nodes did the same: 17 s of two holders, for a cut of 17 s).

So every status carries ``nsrun=``: for each group, the peer the sender sees running it
(claiming it, or still stopping it), as its own heartbeats tell it. A node about to take a
group over from a peer it lost by silence first asks the live peers' testimony: if one of
them still sees the lost peer running the group, that peer is alive and serving, and the cut
is this node's own; it waits (failover/guards.py). A crash ends the testimony as soon as the
witness declares the holder dead too, about when this node did (both stop hearing its last
heartbeat at the same moment); a release ends it when the holder's ad says stopped.

Pure: the snapshot's testimony as a status field, and back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # view.py reads the field with decode_running: no import at run time
    from nonstop.failover.view import ClusterView

RUN_FIELD = "nsrun"  # status field: ``0:vpbx1-1 2:vpbx1-3``, group index and who runs it


def encode_running(running: Mapping[int, str]) -> tuple[tuple[str, str], ...]:
    """The ``nsrun`` field for ``running`` (group index -> peer); none when it is empty."""
    if not running:
        return ()
    return ((RUN_FIELD, " ".join(f"{i}:{n}" for i, n in sorted(running.items()))),)


def decode_running(fields: Mapping[str, str]) -> dict[int, str]:
    """The testimony in a peer's status fields ({} when absent; malformed entries skipped:
    it can only ever make a node wait, never act)."""
    out: dict[int, str] = {}
    for word in fields.get(RUN_FIELD, "").split():
        index, sep, node = word.partition(":")
        if sep and index.isdigit() and node:
            out.setdefault(int(index), node)
    return out


def witness_fields(view: ClusterView) -> tuple[tuple[str, str], ...]:
    """This node's testimony for its peers, as status fields: for each group, the first alive
    peer in ha.cf order whose ad says it may run it (held, starting or stopping). None with two
    nodes: nobody else could read it, and the talk's pair sends the same bytes as before."""
    if len(view.order) < 3:
        return ()
    out: dict[int, str] = {}
    for name in view.order:
        ad = view.ads.get(name) if name in view.alive and name != view.local else None
        for i, g in (ad.groups.items() if ad is not None else ()):
            if g.state.may_run:
                out.setdefault(i, name)
    return encode_running(out)
