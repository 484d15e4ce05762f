"""The one snapshot failover decides from, and the one place that builds it.

``build_view`` is pure: membership's view of the nodes (statuses, links, each peer's last
status fields), what only this node knows about its groups (``LocalFacts``, from the engine),
the configuration's order of nodes and groups, and ``now``. ``decide()`` reads nothing else,
so every rule can be tested by writing a ``ClusterView`` by hand with a simulated ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from nonstop.config.model import AutoFailback
from nonstop.coord.lease import LeaseState
from nonstop.failover.state import NodeAd, decode_ad
from nonstop.failover.witness import decode_running
from nonstop.heartbeat.membership import MembershipView
from nonstop.heartbeat.states import NodeStatus
from nonstop.resources.stonith import FenceResult


@dataclass(frozen=True)
class GroupInfo:
    index: int
    key: str
    preferred: str


@dataclass(frozen=True)
class LocalFacts:
    """What this node knows of its own groups and nobody else does."""

    # Its advertisement: each group's state and epoch, the groups it declines after
    # ``nonstop standby`` and those it asks for after ``nonstop takeover``.
    ad: NodeAd
    # Groups with an action (start, stop, monitor check) running here.
    busy: frozenset[int] = frozenset()
    # Groups this node took over because their preferred node was unavailable (dead, not
    # active, failed): only these fail back (Heartbeat's rsc_needs_failback), not a group
    # that came here through standby or takeover.
    needs_failback: frozenset[int] = frozenset()
    # The highest epoch this node has ever seen for each group, dead nodes' claims included:
    # a takeover must out-rank the claim of the node it replaces if that node comes back.
    seen_epochs: Mapping[int, int] = field(default_factory=dict)
    # When a start of the group failed here (the group is START_FAILED), and why (the
    # resource's error: an address conflict names the host that answered for the address).
    start_failed_at: Mapping[int, float] = field(default_factory=dict)
    start_failure: Mapping[int, str] = field(default_factory=dict)
    # When a failed stop of the group may be retried (the group is STOP_FAILED).
    stop_retry_at: Mapping[int, float] = field(default_factory=dict)
    # Groups the start-up probe found partly running: claimed again, the rest still to start.
    incomplete: frozenset[int] = frozenset()


@dataclass(frozen=True)
class ClusterView:
    """The snapshot ``decide`` reads. ``ads`` has an entry for every alive node (the local
    one is ``here.ad``); None means that node has not (yet) told us what it holds."""

    now: float
    local: str
    order: tuple[str, ...]
    alive: frozenset[str]
    active: frozenset[str]
    comm_up: bool
    ads: Mapping[str, NodeAd | None]
    groups: tuple[GroupInfo, ...]
    auto_failback: AutoFailback
    here: LocalFacts
    # Peers heard on a link whose first status has not arrived: alive, holdings unknown.
    unannounced: frozenset[str] = frozenset()
    # Whether the start-up probe has looked at what this box still runs.
    probed: bool = True
    # Whether a takeover from a lost peer probes the addresses first (nonstop_address_probe).
    address_probe: bool = True
    # Whether this node is shutting down (the shutdown releases every group itself).
    leaving: bool = False
    # With nonstop_etcd: each group's etcd lease as this node knows it (None: no etcd, the
    # heartbeats alone decide).
    lease: Mapping[int, LeaseState] | None = None
    # With nonstop_etcd: peers heard so recently that they cannot have declared this node
    # dead yet (see build_view's ``fresh_ms``), so none of them can be taking a group over.
    heard: frozenset[str] = frozenset()
    # Peers that speak Heartbeat's resource protocol (a real Heartbeat node): a group goes
    # to one only through its standby exchange, never by a silent stop.
    heartbeat_peers: frozenset[str] = frozenset()
    # Groups a Heartbeat peer agreed to take from us (its ``other``): they may be stopped.
    handover_agreed: frozenset[int] = frozenset()
    # Peers declared dead by silence, not by a clean leave: a takeover from them is what
    # ipfail and fencing guard (failover/guards.py).
    lost: frozenset[str] = frozenset()
    # ipfail on with ping nodes: how many of the ``ping_total`` ping nodes each node reaches,
    # settled for deadping (peers: as last advertised, dead ones too). None: ipfail off; a node
    # missing from it: not known.
    ping_counts: Mapping[str, int] | None = None
    ping_total: int = 0
    # How many ping nodes answered this node lately (within deadping/2): a cut that is not yet
    # settled (ping nodes time out about when the peer does) already stops a takeover.
    ping_fresh: int | None = None
    # Fencing configured: each lost peer's fencing so far (absent: not asked yet; "pending";
    # or its result). None: no STONITH device.
    fencing: Mapping[str, FenceResult | str] | None = None
    # The reason when this node's own key looks wrong (OwnKeyCheck): it takes nothing over.
    own_key_suspect: str | None = None
    # Peers this node fenced that came back: they start as standby (nothing fails back to them).
    fenced: frozenset[str] = frozenset()
    # While a peer is lost: why the links of this node's virtual addresses are all down
    # ("eth0 ... has no carrier"), if they are: its cable is the one pulled, and it takes
    # nothing over.
    own_links_down: str | None = None
    # What each alive peer says it sees: group index -> the node running it (failover/witness).
    running_seen: Mapping[str, Mapping[int, str]] = field(default_factory=dict)


PING_FIELD = "pn"  # status field: how many ping nodes the sender reaches (ipfail)


@dataclass(frozen=True)
class Guards:
    """The daemon's inputs for failover/guards.py: this node's settled ping count (None: not
    settled yet) and total, the fencing states, the own-key verdict, the fenced peers."""

    ping_mine: int | None = None
    ping_total: int = 0  # 0: ipfail off (or no ping nodes)
    ping_fresh: int | None = None
    fencing: Mapping[str, FenceResult | str] | None = None
    own_key_suspect: str | None = None
    fenced: frozenset[str] = frozenset()
    own_links_down: str | None = None


def _ping_counts(members: MembershipView, guards: Guards) -> dict[str, int] | None:
    if guards.ping_total <= 0:
        return None
    counts = {} if guards.ping_mine is None else {members.local: guards.ping_mine}
    for n in members.nodes:
        text = n.fields.get(PING_FIELD, "")
        if not n.local and text.isdigit():
            counts[n.name] = int(text)
    return counts


_ALIVE = (NodeStatus.UP, NodeStatus.ACTIVE)


def build_view(
    members: MembershipView,
    here: LocalFacts,
    *,
    now: float,
    order: tuple[str, ...],
    groups: tuple[GroupInfo, ...],
    auto_failback: AutoFailback,
    probed: bool,
    leaving: bool,
    address_probe: bool = True,
    lease: Mapping[int, LeaseState] | None = None,
    fresh_ms: int = 0,
    heartbeat_ads: Mapping[str, NodeAd | None] | None = None,
    handover_agreed: frozenset[int] = frozenset(),
    guards: Guards = Guards(),
) -> ClusterView:
    """The snapshot of one instant, from membership's view and this node's own facts.

    ``fresh_ms`` (with a lease): a peer last heard at most this long ago counts as ``heard``.
    The daemon passes deadtime - keepalive - the lease margin: in a clean cut a peer stopped
    hearing us at most one keepalive before we stopped hearing it, so it declares us dead no
    sooner than deadtime - keepalive after our last news of it; a holder that needs its peers
    heard steps down a margin before that.

    ``heartbeat_ads``: the ads of peers that speak Heartbeat's resource protocol, made from
    their resource messages (``hbpeer.ad_from_heartbeat``); used for a peer whose status
    carries no failover fields."""
    alive = frozenset(n.name for n in members.nodes if n.status in _ALIVE)
    hb = heartbeat_ads or {}
    ads: dict[str, NodeAd | None] = {}
    hb_peers: set[str] = set()
    for n in members.nodes:
        if n.name not in alive:
            continue
        ad = here.ad if n.local else decode_ad(n.fields)
        if ad is None and n.name in hb:
            ad = hb[n.name]
            hb_peers.add(n.name)
        ads[n.name] = ad
    # Any packet brings comm up (Heartbeat's rule), but a peer whose first status has not
    # arrived is alive with unknown holdings, not dead (seen in nonstop demo: a rebooted
    # node took the group back from the node finishing its takeover).
    unannounced = frozenset(
        n.name for n in members.nodes
        if not n.local and n.status is NodeStatus.INIT and any(n.links.values())
    )
    return ClusterView(
        now=now,
        local=members.local,
        order=order,
        alive=alive,
        active=frozenset(n.name for n in members.nodes if n.status is NodeStatus.ACTIVE),
        comm_up=members.comm_up,
        ads=ads,
        groups=groups,
        auto_failback=auto_failback,
        here=here,
        unannounced=unannounced,
        probed=probed,
        address_probe=address_probe,
        leaving=leaving,
        lease=lease,
        heard=frozenset(
            n.name for n in members.nodes
            if not n.local and n.name in alive and n.last_heard_ago_ms is not None
            and n.last_heard_ago_ms <= fresh_ms
        ),
        heartbeat_peers=frozenset(hb_peers),
        handover_agreed=handover_agreed,
        lost=frozenset(n.name for n in members.nodes
                       if not n.local and n.status is NodeStatus.DEAD and not n.left),
        ping_counts=_ping_counts(members, guards),
        ping_total=guards.ping_total,
        ping_fresh=guards.ping_fresh if guards.ping_total > 0 else None,
        fencing=guards.fencing,
        own_key_suspect=guards.own_key_suspect,
        fenced=guards.fenced,
        own_links_down=guards.own_links_down,
        running_seen={n.name: decode_running(n.fields) for n in members.nodes
                      if not n.local and n.name in alive},
    )


def holders(view: ClusterView) -> dict[int, str]:
    """The node each group is at: the alive node that claims it (HELD or STARTING), this
    node first, then in ha.cf order. A group nobody claims has no entry."""
    nodes = [view.local, *(n for n in view.order if n != view.local)]
    out: dict[int, str] = {}
    for name in nodes:
        ad = view.ads.get(name) if name in view.alive else None
        if ad is None:
            continue
        for i, g in ad.groups.items():
            if g.state.claims:
                out.setdefault(i, name)
    return out


def foreign_digests(view: ClusterView) -> dict[str, str]:
    """Alive peers whose haresources digest differs from ours, with their digest."""
    ours = view.here.ad.digest
    return {
        name: ad.digest
        for name, ad in view.ads.items()
        if name != view.local and ad is not None and ad.digest and ad.digest != ours
    }
