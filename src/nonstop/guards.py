"""The daemon's side of issue 12: ping nodes, respawn clients, fencing and the own-key check.

:class:`GuardServices` owns the tasks and trackers that feed ``failover/guards.py`` (through
:class:`~nonstop.failover.view.Guards` in each snapshot) and the status keys they add. Nothing
here runs on the heartbeat path: the ping prober is its own task reading its socket from the
event loop, fencing runs ``stonith`` in a task, respawn clients are subprocesses watched by
tasks, and the key check is two counters fed from the receive path. The carrier of this node's
own links is read here too: for the takeover guard (:meth:`GuardServices.own_links_down`) and
for a release's last push (:func:`peers_cut_off`).

:class:`SettledCount` is the pure rule ipfail acts on: a ping count is only used (and
advertised) once it has held for deadping, so one lost echo or a flapping link moves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from nonstop import rtnetlink
from nonstop.config.haresources import parse_ip_spec
from nonstop.config.model import ClusterConfig, HaConfig, Ucast
from nonstop.failover.decide import Action, Decision
from nonstop.failover.guards import FENCE_PENDING
from nonstop.failover.view import PING_FIELD, Guards
from nonstop.heartbeat.keycheck import KeyVerdictChanged, OwnKeyCheck
from nonstop.ping.prober import PingProber
from nonstop.ping.targets import PingTracker
from nonstop.resources import netlink
from nonstop.resources.respawn import Respawner, RespawnError, stop_all
from nonstop.resources.stonith import (
    RETRY_INTERVAL_S,
    Fencer,
    FenceResult,
    StonithFencer,
)

log = logging.getLogger("nonstop")

KEY_REMIND_S = 60.0  # a suspect own key is said again at ERROR this often while it lasts


def settle_hold_s(ha: HaConfig) -> float:
    """How long this node's ping count must hold before ipfail acts on it.

    A ping node is already dead only after deadping of silence, so the hold does not filter
    lost echoes; it covers the case where both nodes lose the same ping node (the router
    itself died). Both ping every keepalive, so each notices that loss within one keepalive
    of the other, and the peer's new count (advertised as it is, unheld) reaches us within
    one keepalive more: three keepalives cover both with one to spare. Holding deadping
    again, as before, delayed every ipfail move by deadping (2 s with the talk's timing)."""
    return min(ha.deadping_ms, 3 * ha.keepalive_ms) / 1000


class SettledCount:
    """A value that counts only once it has stayed the same for ``hold_s`` (pure)."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self._value: int | None = None
        self._since = 0.0
        self.settled: int | None = None

    def update(self, value: int, now: float) -> int | None:
        """Feed the current value; return the settled one (None until one has settled)."""
        if value != self._value:
            self._value, self._since = value, now
        if now - self._since >= self.hold_s:
            self.settled = value
        return self.settled


HOSTS_FILE = "/etc/hosts"


def hosts_addresses(hosts_text: str, names: Iterable[str]) -> list[str]:
    """IPv4 addresses that an /etc/hosts text gives ``names`` (Heartbeat sites name their
    nodes after their hosts). Only the file: a DNS query could hang a node's start or exit."""
    wanted = {n.lower() for n in names}
    out: set[str] = set()
    for line in hosts_text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 2 or not wanted & {w.lower() for w in words[1:]}:
            continue
        with contextlib.suppress(ValueError):
            out.add(str(ipaddress.IPv4Address(words[0])))
    return sorted(out)


def _read_hosts() -> str:
    try:
        with open(HOSTS_FILE, encoding="utf-8", errors="replace") as fh:
            return fh.read(1 << 20)
    except OSError:
        return ""


def link_carriers(
        targets: Iterable[tuple[ipaddress.IPv4Address, str | None]]) -> dict[str, bool] | None:
    """Whether each interface ``targets`` go out on has a carrier (an interface not found
    counts as having one: nothing says its cable is out); None when the routes or links cannot
    be read. A target is an address and the interface named for it (None: its route's)."""
    try:
        ifaces = {(iface or netlink.covering_route(ip)[0]).partition(":")[0]
                  for ip, iface in targets}
        links = {link.name: link for link in rtnetlink.links()}
    except (OSError, rtnetlink.RtnlError, netlink.NetlinkFailure):
        return None
    return {i: i not in links or links[i].carrier for i in ifaces}


def peers_cut_off(hosts: Mapping[str, Sequence[str]]) -> str | None:
    """Why none of the peers in ``hosts`` (peer -> the names or addresses its replication
    connects to, one per csync2 group) can be reached from here, if so: the kernel's route to
    every address of theirs goes over an interface without carrier (this node's cable
    pulled). None when one may be reached, or when it cannot be told (a name /etc/hosts does
    not give: no DNS query at a release; no route)."""
    if not hosts:
        return None
    text = ""
    if not all(_ipv4(h) for hs in hosts.values() for h in hs):
        text = _read_hosts()
    where: list[str] = []
    ips: list[ipaddress.IPv4Address] = []
    for peer, names in sorted(hosts.items()):
        found: list[ipaddress.IPv4Address] = []
        for host in names:
            got = [ip] if (ip := _ipv4(host)) else [
                ipaddress.IPv4Address(a) for a in hosts_addresses(text, [host])]
            if not got:
                return None
            found += got
        if not found:
            return None
        ips += found
        where.append(f"{peer} ({', '.join(dict.fromkeys(map(str, found)))})")
    carriers = _egress_carriers(ips)
    if not carriers or any(carriers.values()):
        return None
    return (f"the route to {', '.join(where)} goes over {', '.join(sorted(carriers))}, "
            f"which {'has' if len(carriers) == 1 else 'have'} no carrier")


def _egress_carriers(ips: Iterable[ipaddress.IPv4Address]) -> dict[str, bool] | None:
    """Whether each interface the kernel's routes to ``ips`` go out on has a carrier (longest
    prefix first, as ``ip route get``: a host route over a crossover beats the LAN's subnet);
    None when a route or a link cannot be read. One dump of the links for all."""
    try:
        links = {link.index: link for link in rtnetlink.links()}
        out: dict[str, bool] = {}
        for ip in ips:
            link = links.get(rtnetlink.route_to(str(ip)).oif or -1)
            if link is None:
                return None
            out[link.name] = link.carrier
        return out
    except (OSError, rtnetlink.RtnlError):
        return None


def _ipv4(host: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        return None


def peer_addresses(cfg: ClusterConfig) -> list[str]:
    """Addresses the configured peers send from, as far as the configuration says (ucast)."""
    out = []
    for m in cfg.ha.media:
        if isinstance(m, Ucast):
            with contextlib.suppress(ValueError):
                out.append(str(ipaddress.ip_address(m.peer)))
    return out


def service_addresses(cfg: ClusterConfig) -> tuple[tuple[ipaddress.IPv4Address, str | None], ...]:
    """Each IPaddr/IPaddr2 address of the groups with the interface it names (None: the route
    to it decides)."""
    found = []
    for g in cfg.groups:
        for r in g.resources:
            if r.name in ("IPaddr", "IPaddr2") and r.args:
                with contextlib.suppress(ValueError):
                    spec = parse_ip_spec(r.args[0])
                    found.append((spec.ip, spec.iface))
    return tuple(found)


class GuardServices:
    """Ping prober, respawn clients, fencing and the own-key check of one node."""

    def __init__(self, cfg: ClusterConfig, node: str, *, clock: Callable[[], float],
                 on_change: Callable[[], None], fencer: Fencer | None = None,
                 peers: Iterable[str] | None = None) -> None:
        ha = cfg.ha
        self.node = node
        self._clock = clock
        self._on_change = on_change
        self.tracker: PingTracker | None = None
        self.prober: PingProber | None = None
        self.ipfail = ha.ipfail and bool(ha.ping_targets)
        # The groups' virtual addresses (and the interface each names, if any): when every
        # interface they go on has lost its carrier, no client can reach this node.
        self._addresses = service_addresses(cfg)
        self._others = [n for n in ha.nodes if n != node]
        # When the carrier came back after being lost: for deadtime after it, peers not heard
        # yet may simply not have been heard (their next heartbeat is on its way).
        self._carrier_lost = False
        self._carrier_back = float("-inf")
        self._deadtime_s = ha.deadtime_ms / 1000.0
        self.settled = SettledCount(settle_hold_s(ha))
        self.ping_total = len(ha.ping_targets)
        if ha.ping_targets:
            self.tracker = PingTracker(ha.ping_targets, deadping_ms=ha.deadping_ms, now=clock(),
                                       initdead_ms=ha.initdead_ms, deadtime_ms=ha.deadtime_ms,
                                       warntime_ms=ha.warntime_ms)
            self.prober = PingProber(self.tracker, interval_s=ha.keepalive_ms / 1000,
                                     logger=logging.getLogger("nonstop.ping"),
                                     on_event=lambda _e: self._ping_changed(), clock=clock)
        device = ha.stonith_device(node)
        self.device = device
        self.fencer: Fencer | None = fencer
        if self.fencer is None and device is not None:
            self.fencer = StonithFencer(device, logger=logging.getLogger("nonstop.stonith"),
                                        clock=clock)
        # Per lost peer: "pending" while fencing runs, then its result (a failure is dropped
        # after RETRY_INTERVAL_S so decide() asks again).
        self.fencing: dict[str, FenceResult | str] = {}
        self._failed_at: dict[str, float] = {}
        self.fenced: set[str] = set()  # fenced by us and back since: standby
        self.last_fence: FenceResult | None = None
        self.keycheck = OwnKeyCheck(peers if peers is not None else peer_addresses(cfg),
                                    peer_nodes=len(ha.nodes) - 1)
        self._key_said_at: float | None = None  # when the suspect verdict was last logged
        self._resolve = [n for n in ha.nodes if n != node] if peers is None else []
        self._respawn_specs = ha.respawn
        self._respawn_env = dict(ha.respawn_env)
        self.respawners: list[Respawner] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._settle_timer: asyncio.TimerHandle | None = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start pinging (at once: ping nodes are timed from the start, as Heartbeat does)."""
        if self.prober is not None:
            self._spawn(self._ping())
        if self._resolve:
            self._spawn(self._learn_peers())

    async def _learn_peers(self) -> None:
        """bcast/mcast give no peer address: the peers' node names in /etc/hosts do."""
        found = hosts_addresses(await asyncio.to_thread(_read_hosts), self._resolve)
        self.keycheck.peers = self.keycheck.peers | frozenset(found)
        if found:
            log.debug("own key check: peers' addresses %s", ", ".join(found))

    async def _ping(self) -> None:
        assert self.prober is not None
        try:
            await self.prober.run()
        except OSError as e:
            log.error("ping nodes: cannot open an ICMP socket (%s): every ping node will be "
                      "declared dead", e)

    def comm_up(self) -> None:
        """Start the respawn clients (Heartbeat starts them once comm is up)."""
        if self.respawners or not self._respawn_specs:
            return
        logger = logging.getLogger("nonstop.respawn")
        for spec in self._respawn_specs:
            try:
                r = Respawner(spec, logger=logger, env=self._respawn_env)
            except RespawnError as e:
                log.error("%s", e)
                continue
            self.respawners.append(r)
            logger.info('Starting child client "%s" (%d,%d)', spec.command, r.identity.uid,
                        r.identity.gid)
            self._spawn(r.run())

    def _ping_changed(self) -> None:
        """A ping node came or went: decide now, and again the moment the new count has held
        (the daemon's periodic decision comes only once a second: it made ipfail moves up to
        a second late)."""
        self._on_change()
        if self._settle_timer is not None:
            self._settle_timer.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven by a test's clock, without a loop
            return
        self._settle_timer = loop.call_later(self.settled.hold_s + 0.01, self._on_change)

    async def stop(self) -> None:
        """Shutdown: respawn clients first (reverse start order), then every task."""
        if self._settle_timer is not None:
            self._settle_timer.cancel()
        await stop_all(self.respawners)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def reconfigure(self, ha: HaConfig, keys_changed: bool = False) -> None:
        """A reload: deadping (which follows deadtime when absent) applies from now on; new
        keys start the own-key check afresh (what passed under the old ones proves nothing)."""
        self.settled.hold_s = settle_hold_s(ha)
        if self.tracker is not None:
            self.tracker.deadping_ms = ha.deadping_ms
        if keys_changed:
            self._key_events(self.keycheck.keys_changed(self._clock()), self._clock())

    # ---------------------------------------------------------------- inputs

    def ping_mine(self, now: float) -> int | None:
        if self.tracker is None:
            return None
        return self.settled.update(self.tracker.view(now).count, now)

    def ping_fresh(self, now: float) -> int | None:
        """Ping nodes that answered within deadping/2."""
        if self.tracker is None:
            return None
        window = self.tracker.deadping_ms / 2000
        return sum(1 for t in self.tracker.view(now).targets
                   if t.last_reply_age_s is not None and t.last_reply_age_s <= window)

    def status_fields(self, now: float) -> list[tuple[str, str]]:
        """``pn=`` for peers (ipfail on, once the count has first settled): the count as it
        is now, so that a loss both nodes see reaches the peer before its own hold ends."""
        if not self.ipfail or self.tracker is None or self.ping_mine(now) is None:
            return []
        return [(PING_FIELD, str(self.tracker.view(now).count))]

    def own_links_down(self, alive: set[str], now: float) -> str | None:
        """While a peer is not alive: why the interfaces of the groups' virtual addresses are
        all down, if they are (none has a carrier); None otherwise, or when it cannot be told.
        Not the heartbeat interfaces: on a crossover cable the peer's power off takes our
        carrier too, and the survivor must take over."""
        if not self._addresses:
            return None
        if not set(self._others) - alive:
            # Every peer heard: what listening after a carrier's return waits for. A flag
            # left set made a later real crash wait a deadtime more (a user trial).
            self._carrier_lost, self._carrier_back = False, float("-inf")
            return None
        carriers = link_carriers(self._addresses)
        if carriers is None:
            return None
        names = ", ".join(sorted(carriers))
        if any(carriers.values()):
            if self._carrier_lost:  # back now: a peer that lives is heard within deadtime
                self._carrier_lost, self._carrier_back = False, now
            if now - self._carrier_back < self._deadtime_s:
                return (f"{names} (the virtual addresses' link) got its carrier back "
                        f"{now - self._carrier_back:.1f} s ago: listening for the peers for "
                        f"deadtime ({self._deadtime_s:g} s) first")
            return None
        self._carrier_lost = True
        return f"{names} (the virtual addresses' link) {'has' if len(carriers) == 1 else 'have'} " \
               "no carrier"

    def inputs(self, now: float, alive: Iterable[str]) -> Guards:
        """This instant's inputs of decide(); a fenced peer that is alive again is standby
        and its fencing is forgotten (the next death is fenced again)."""
        alive = set(alive)
        for peer in alive & set(self.fencing):
            if isinstance(self.fencing[peer], FenceResult):
                self.fenced.add(peer)
                del self.fencing[peer]
        for peer, at in list(self._failed_at.items()):
            if now - at >= RETRY_INTERVAL_S:
                del self._failed_at[peer]
                self.fencing.pop(peer, None)
        verdict = self.keycheck.verdict(now)
        return Guards(
            ping_mine=self.ping_mine(now) if self.ipfail else None,
            ping_total=self.ping_total if self.ipfail else 0,
            ping_fresh=self.ping_fresh(now) if self.ipfail else None,
            fencing=dict(self.fencing) if self.fencer is not None else None,
            own_key_suspect=verdict.reason if verdict.suspect else None,
            fenced=frozenset(self.fenced),
            own_links_down=self.own_links_down(alive, now),
        )

    # ---------------------------------------------------------------- fencing

    def act(self, decisions: Iterable[Decision]) -> None:
        """Start fencing each peer a FENCE decision names (once while it runs)."""
        for d in decisions:
            if d.action is Action.FENCE and d.target and d.target not in self.fencing:
                self.fencing[d.target] = FENCE_PENDING
                self._spawn(self._fence(d.target))

    async def _fence(self, peer: str) -> None:
        assert self.fencer is not None
        result = await self.fencer.fence(peer)
        self.fencing[peer] = result
        self.last_fence = result
        if not result.ok:
            self._failed_at[peer] = self._clock()
            log.error("STONITH of %s failed.  Retrying...", peer)
        self._on_change()

    # ---------------------------------------------------------------- own key

    def packet(self, src: str | None, authentic: bool, now: float) -> None:
        """A datagram from ``src`` came from a peer and was accepted (``authentic``), or it
        failed authentication."""
        if src is None:
            return
        self._key_events((self.keycheck.good if authentic else self.keycheck.bad)(src, now), now)

    def _key_events(self, events: list[KeyVerdictChanged], now: float) -> None:
        for ev in events:
            level = logging.ERROR if ev.verdict.suspect else logging.INFO
            log.log(level, "own key: %s", ev.verdict.reason)
            self._key_said_at = now if ev.verdict.suspect else None
            self._on_change()

    def tick(self, now: float) -> None:
        """Age the key check; while the own key stays suspect, say so again every
        KEY_REMIND_S (a log read later must not miss why this node takes nothing over)."""
        for ev in self.keycheck.tick(now):
            log.info("own key: %s", ev.verdict.reason)
            self._key_said_at = None
            self._on_change()
        verdict = self.keycheck.verdict(now)
        if (verdict.suspect and self._key_said_at is not None
                and now - self._key_said_at >= KEY_REMIND_S):
            log.error("own key: still suspect: %s", verdict.reason)
            self._key_said_at = now

    # ---------------------------------------------------------------- status

    def status(self, now: float) -> dict[str, Any]:
        """Status keys (docs/STATUS.md): ping_*, ipfail, respawn, fencing, own key."""
        ping: Mapping[str, Any] = (self.tracker.view(now).as_dict() if self.tracker is not None
                                   else {"ping_nodes": [], "ping_reachable": 0, "ping_total": 0})
        return {
            **ping,
            "ipfail": {"on": self.ipfail,
                       "settled": self.ping_mine(now) if self.tracker is not None else None},
            "respawn": [r.as_dict() for r in self.respawners],
            "fencing": {
                "device": self.device.describe() if self.device is not None else None,
                "pending": sorted(p for p, s in self.fencing.items() if s == FENCE_PENDING),
                "fenced_back_as_standby": sorted(self.fenced),
                "last": self.last_fence.as_dict() if self.last_fence is not None else None,
            },
            **self.keycheck.verdict(now).as_dict(),
        }
