"""What may stop or move a takeover besides holdings: ipfail, fencing, a suspect own key, a
third node's testimony.

Pure helpers of :func:`nonstop.failover.decide.decide`, reading only the snapshot:

* **ipfail** (``ping``/``ping_group`` nodes and ipfail on): every node advertises how many ping
  nodes it reaches (``pn=`` in its status); its own count counts once it has held for three
  keepalives (nonstop.guards.settle_hold_s says why that is enough). A node that reaches
  fewer than a live peer is not available for a group and gives the groups it holds to that
  peer; when both reach as many, nothing moves. A node whose peer died and that reaches no ping
  node, while that peer reached one when last heard (or was never heard), is probably the one
  cut off: it does not take over. For that rule the count is also the number of ping nodes
  that answered lately, since a cut off node loses its peer and its ping nodes at about the
  same time, before the cut has settled.
* **fencing** (``stonith``/``stonith_host``): before taking over from a peer declared dead by
  silence (not one that left cleanly) the peer is fenced; no takeover until that succeeded, a
  failure is retried every ``RETRY_INTERVAL_S``. Without a device the takeover goes ahead with
  Heartbeat's "No STONITH device configured.".
* **own key** (OwnKeyCheck): a node whose packets from its peers' addresses keep failing
  authentication holds the wrong key; it takes nothing over.
* **testimony** (three or more nodes, failover/witness.py): a live peer still sees the node
  that is silent here running the group: that node serves, the cut is this node's; it waits.
* **own links** (``view.own_links_down``): a node whose virtual addresses' interfaces have
  all lost their carrier had its own cable pulled (or its switch died): it lost its peers, but
  nobody can reach the service through it either. It takes nothing over. (Not the heartbeat
  interfaces: a crossover cable loses its carrier when the peer's box loses power.) Before,
  it did, and its newer claim won the heal: the node that had served clients all along
  released the group, and the cut-off node's takeover force-sync reverted what was written
  there meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

from nonstop.failover.view import ClusterView
from nonstop.resources.stonith import RETRY_INTERVAL_S, FenceResult

FENCE_PENDING = "pending"  # a fencing of the peer is running
NO_DEVICE = "No STONITH device configured."  # Heartbeat's line


@dataclass(frozen=True)
class Block:
    """Why this node must not take over now; ``fence``: the peer to fence first."""

    reason: str
    fence: str | None = None


def reaches(view: ClusterView, node: str) -> int | None:
    """How many ping nodes ``node`` reaches (None: ipfail off or not known)."""
    return None if view.ping_counts is None else view.ping_counts.get(node)


def reaches_more(view: ClusterView, node: str, than: str) -> bool:
    """Both counts known and ``node`` reaches more ping nodes than ``than``."""
    a, b = reaches(view, node), reaches(view, than)
    return a is not None and b is not None and a > b


def worse(view: ClusterView, node: str) -> bool:
    """Some other active node reaches more ping nodes than ``node``."""
    return any(n != node and n in view.active and reaches_more(view, n, node)
               for n in view.order)


def give_reason(view: ClusterView, peer: str) -> str:
    mine, theirs = reaches(view, view.local), reaches(view, peer)
    return (f"ipfail: I reach {mine} of {view.ping_total} ping nodes, {peer} reaches "
            f"{theirs}: giving my groups to {peer}")


def _cut_off(view: ClusterView) -> Block | None:
    if view.ping_counts is None or not view.lost:
        return None
    mine = reaches(view, view.local)
    if mine is None:
        return Block(f"{', '.join(sorted(view.lost))} is dead but my ping nodes have not "
                     "settled yet: not taking over until they have")
    if view.ping_fresh is not None:
        mine = min(mine, view.ping_fresh)  # a cut not settled yet counts
    if mine > 0:
        return None
    for peer in (n for n in view.order if n in view.lost):
        last = reaches(view, peer)
        if last is None or last > 0:
            return Block(f"{peer} is dead but I reach none of the ping nodes: I am probably "
                         "the one cut off; not taking over")
    return None


def _fencing(view: ClusterView) -> Block | None:
    if view.fencing is None:
        return None
    for peer in (n for n in view.order if n in view.lost):
        state = view.fencing.get(peer)
        if state is None:
            return Block(f"{peer} is dead: fencing it before taking over", fence=peer)
        if isinstance(state, str):
            return Block(f"{peer} is dead: waiting for its fencing before taking over")
        if not state.ok:
            return Block(f"{state.reason}; not taking over; retrying in "
                         f"{RETRY_INTERVAL_S:.0f} s")
    return None


def _witnessed(view: ClusterView, group: int) -> Block | None:
    """A live peer still sees a node that is silent here running ``group``: the cut is
    between that node and this one alone (failover/witness.py). Before fencing: fencing would
    power off the node that serves the clients."""
    for peer in view.order:
        if peer == view.local or peer not in view.alive:
            continue
        runner = view.running_seen.get(peer, {}).get(group)
        if runner is not None and runner != view.local and runner not in view.alive:
            return Block(f"{runner} is silent here but {peer} still sees it running the "
                         f"group: the cut is between {runner} and this node; not taking over")
    return None


def takeover_block(view: ClusterView, group: int) -> Block | None:
    """Why this node must not take ``group`` over now, if so (the first that applies)."""
    if view.own_key_suspect is not None:
        return Block(f"{view.own_key_suspect}; not taking over")
    if view.own_links_down is not None and view.lost:
        return Block(f"{', '.join(sorted(view.lost))} is dead but {view.own_links_down}: "
                     "this node is (or was) the one cut off; not taking over")
    return _witnessed(view, group) or _cut_off(view) or _fencing(view)


def takeover_note(view: ClusterView) -> str:
    """What a takeover from a dead peer adds to its reason: how the peer was fenced."""
    if not view.lost:
        return ""
    if view.fencing is None:
        return f" ({NO_DEVICE})"
    done = [s.reason for n in view.order if n in view.lost
            and isinstance(s := view.fencing.get(n), FenceResult) and s.ok]
    return f" ({'; '.join(done)})" if done else ""


def fenced_standby(view: ClusterView, node: str) -> bool:
    """``node`` was fenced by this node and came back: it starts as standby (no failback)."""
    return node in view.fenced
