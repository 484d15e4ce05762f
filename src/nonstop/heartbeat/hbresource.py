"""Heartbeat v1's resource-management messages, as typed values. Pure, sans-IO.

Heartbeat 3.0.6 with ``auto_failback on`` or ``off`` ("nice_failback") tells its peer what it
holds with a handful of cluster messages; docs/HEARTBEAT-RESOURCES.md describes them and the
sequences they form, from captures of two real Heartbeat nodes (tests/fixtures/heartbeat-rsc/).
This module turns an authenticated :class:`~nonstop.heartbeat.codec.Message` into one of the
events below, and an event back into the message-specific fields Heartbeat sends, in its order::

    event = parse(decoded.message)          # None: not a resource message (status, acks...)
    if isinstance(event, ResourcesHeld):
        peer = peer.apply(event)            # PeerResources: what the peer holds, as it says

    body = to_message(ResourcesHeld("vpbx1-2", RscSet.NONE, full=True, stable=True))
    # the protocol object adds src, srcuuid, seq, hg, ts, ld and ttl, then codec.encode signs it

Resource sets are relative to the *sender*: ``local`` are the haresources groups whose line
names the sender, ``foreign`` the others (:meth:`RscSet.groups` maps them to group keys).

A malformed resource message (a field missing, an unknown set or phase, ``isstable`` that is
not 0 or 1) raises the codec's bad-remote-input error, ``BadPacket("bad_field")``; nothing else
is raised for remote input. Building a message from wrong local values raises ``FieldError``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from nonstop.heartbeat.codec import BAD_FIELD, BadPacket, FieldError, Message, Value
from nonstop.heartbeat.events import Msg

# Message types (the ``t`` field) this module reads and writes.
T_STARTING = "starting"
T_RESOURCE = "resource"
T_ASK_RESOURCES = "ask_resources"
T_HB_TAKEOVER = "hb_takeover"
T_SHUTDONE = "shutdone"
T_STONITH = "stonith"
T_IP_REQUEST = "ip-request"
T_IP_REQUEST_RESP = "ip-request-resp"
RESOURCE_TYPES = frozenset({T_STARTING, T_RESOURCE, T_ASK_RESOURCES, T_HB_TAKEOVER, T_SHUTDONE,
                            T_STONITH, T_IP_REQUEST, T_IP_REQUEST_RESP})

# Fields Heartbeat's messaging layer adds to every message; not part of a resource event.
CONTROL_FIELDS = frozenset({"src", "srcuuid", "destuuid", "seq", "hg", "ts", "ld", "ttl",
                            "auth"})


class RscSet(enum.Enum):
    """A set of resource groups as Heartbeat names it (``rsc_hold``), relative to one node."""

    NONE = "none"
    LOCAL = "local"
    FOREIGN = "foreign"
    ALL = "all"

    @property
    def local(self) -> bool:
        """The set includes the node's own (haresources-preferred) groups."""
        return self in (RscSet.LOCAL, RscSet.ALL)

    @property
    def foreign(self) -> bool:
        """The set includes the other node's groups."""
        return self in (RscSet.FOREIGN, RscSet.ALL)

    @classmethod
    def of(cls, *, local: bool, foreign: bool) -> RscSet:
        """The set with the given halves."""
        return _SETS[(local, foreign)]

    def __or__(self, other: RscSet) -> RscSet:
        return RscSet.of(local=self.local or other.local, foreign=self.foreign or other.foreign)

    def mirrored(self) -> RscSet:
        """The same groups named from the other node's side (local <-> foreign)."""
        return RscSet.of(local=self.foreign, foreign=self.local)

    def groups(self, node: str, preferred: Mapping[str, str]) -> frozenset[str]:
        """The group keys this set means for ``node``; ``preferred`` maps each haresources
        group key to the node its line names."""
        return frozenset(key for key, owner in preferred.items()
                         if (self.local if owner == node else self.foreign))


_SETS = {(False, False): RscSet.NONE, (True, False): RscSet.LOCAL,
         (False, True): RscSet.FOREIGN, (True, True): RscSet.ALL}


class StandbyPhase(enum.Enum):
    """The ``info`` of an ``ask_resources`` message: the three steps of a standby."""

    ME = "me"  # the requester wants to give its resources away
    OTHER = "other"  # the other node agrees to take them
    DONE = "done"  # the sender finished its part (released, or acquired)


class TakeoverArg(enum.Enum):
    """The argument of ``hb_takeover``, carried as ``rsc_hold`` of a ``hb_takeover`` message."""

    ALL = "all"
    LOCAL = "local"
    FOREIGN = "foreign"
    FAILBACK = "failback"

    def peer_standby(self) -> RscSet:
        """What the receiving node hands over (Heartbeat's rc.d/hb_takeover runs hb_standby
        with it): ``local`` for the sender is ``foreign`` for the receiver. ``failback`` is
        not mapped there, so hb_standby runs without argument, which means ``all``."""
        return {TakeoverArg.ALL: RscSet.ALL, TakeoverArg.LOCAL: RscSet.FOREIGN,
                TakeoverArg.FOREIGN: RscSet.LOCAL, TakeoverArg.FAILBACK: RscSet.ALL}[self]


class StonithResult(enum.Enum):
    """``result`` of a ``stonith`` message (Heartbeat tells the cluster how it fenced a node)."""

    OK = "OK"
    BADHOST = "badhost"
    BAD = "bad"
    NOT_CONFIGURED = "n_stnth"
    UNNEEDED = "unneeded"


@dataclass(frozen=True)
class Starting:
    """``t=starting``: the sender's resource manager starts; it wants a ``resource`` reply."""

    src: str


@dataclass(frozen=True)
class ResourcesHeld:
    """``t=resource``: what the sender holds.

    ``full`` (``rtype=full``) replaces what was known; without it (the ``mach_down`` script's
    message) ``held`` is added to it. ``stable`` is None when ``isstable`` is absent (again the
    ``mach_down`` message). ``info`` is Heartbeat's comment (``req_our_resources()``,
    ``standby``, ``shutdown``, ``mach_down``), informational except ``mach_down``.
    """

    src: str
    held: RscSet
    full: bool = True
    stable: bool | None = None
    info: str | None = None


@dataclass(frozen=True)
class AskResources:
    """``t=ask_resources``: one step of the standby protocol for ``rsc`` (in the requester's
    terms: ``local`` = groups preferred by the node that asked to go standby)."""

    src: str
    rsc: RscSet
    phase: StandbyPhase


@dataclass(frozen=True)
class HbTakeover:
    """``t=hb_takeover``: the sender's admin ran ``hb_takeover``; the receiver should go
    standby for :meth:`TakeoverArg.peer_standby`."""

    src: str
    arg: TakeoverArg


@dataclass(frozen=True)
class ShutDone:
    """``t=shutdone st=dead``: the sender released every group and is leaving: take over now,
    without waiting for deadtime."""

    src: str


@dataclass(frozen=True)
class Stonith:
    """``t=stonith``: the sender's fencing decision about ``node`` (after declaring it dead)."""

    src: str
    node: str
    result: StonithResult


@dataclass(frozen=True)
class IpRequest:
    """``t=ip-request`` (``auto_failback legacy`` only): the sender asks for group ``key``."""

    src: str
    key: str


@dataclass(frozen=True)
class IpRequestResp:
    """``t=ip-request-resp``: reply to an ip-request, telling ``dest`` to take group ``key``
    (Heartbeat also sends it to itself when it starts its own group); ``we_own``: the sender
    held the group and has released it. Heartbeat always sends ``ok=OK``."""

    src: str
    dest: str
    key: str
    we_own: bool


ResourceEvent: TypeAlias = (Starting | ResourcesHeld | AskResources | HbTakeover | ShutDone
                            | Stonith | IpRequest | IpRequestResp)


def _bad(kind: str, detail: str) -> BadPacket:
    return BadPacket(BAD_FIELD, f"{kind}: {detail}")


def _required(msg: Msg, kind: str, name: str) -> str:
    value = msg.get(name)
    if value is None:
        raise _bad(kind, f"no {name} field")
    return value


_E = TypeVar("_E", bound=enum.Enum)


def _choice(enum_type: type[_E], kind: str, name: str, value: str) -> _E:
    try:
        return enum_type(value)
    except ValueError:
        raise _bad(kind, f"{name}={value[:40]!r} is not one of "
                         f"{', '.join(str(m.value) for m in enum_type)}") from None


def _rsc(msg: Msg, kind: str, *, default: RscSet | None = None) -> RscSet:
    value = msg.get("rsc_hold")
    if value is None:
        if default is None:
            raise _bad(kind, "no rsc_hold field")
        return default
    return _choice(RscSet, kind, "rsc_hold", value)


def _yes_no(kind: str, name: str, value: str, yes: str, no: str) -> bool:
    if value == yes:
        return True
    if value == no:
        return False
    raise _bad(kind, f"{name}={value[:40]!r} is neither {yes!r} nor {no!r}")


def _parse_resource(src: str, msg: Msg) -> ResourcesHeld:
    held = _rsc(msg, T_RESOURCE)
    rtype = msg.get("rtype")
    if rtype not in (None, "full"):
        raise _bad(T_RESOURCE, f"rtype={rtype[:40]!r} is not 'full'")
    stable_text = msg.get("isstable")
    stable = None if stable_text is None else _yes_no(T_RESOURCE, "isstable", stable_text,
                                                      "1", "0")
    return ResourcesHeld(src, held, full=rtype == "full", stable=stable, info=msg.get("info"))


def _parse_ask(src: str, msg: Msg) -> AskResources:
    # Heartbeat reads a missing rsc_hold as "all"; a missing info makes it drop the message.
    rsc = _rsc(msg, T_ASK_RESOURCES, default=RscSet.ALL)
    phase = _choice(StandbyPhase, T_ASK_RESOURCES, "info",
                    _required(msg, T_ASK_RESOURCES, "info"))
    return AskResources(src, rsc, phase)


def _parse_takeover(src: str, msg: Msg) -> HbTakeover:
    rsc = _required(msg, T_HB_TAKEOVER, "rsc_hold")
    return HbTakeover(src, _choice(TakeoverArg, T_HB_TAKEOVER, "rsc_hold", rsc))


def _parse_stonith(src: str, msg: Msg) -> Stonith:
    result = _choice(StonithResult, T_STONITH, "result", _required(msg, T_STONITH, "result"))
    return Stonith(src, _required(msg, T_STONITH, "node"), result)


def _parse_ip_resp(src: str, msg: Msg) -> IpRequestResp:
    kind = T_IP_REQUEST_RESP
    we_own = _yes_no(kind, "weown", _required(msg, kind, "weown"), "yes", "no")
    ok = _required(msg, kind, "ok")
    if ok != "OK":
        raise _bad(kind, f"ok={ok[:40]!r} is not 'OK'")
    return IpRequestResp(src, _required(msg, kind, "dest"), _required(msg, kind, "ipaddr"),
                         we_own)


def parse(msg: Msg) -> ResourceEvent | None:
    """The resource event ``msg`` carries; None if it is not a resource message.

    ``msg`` is an authenticated message as decoded (control fields included). Raises
    ``BadPacket`` (reason ``bad_field``) for a resource message Heartbeat would not have sent.
    """
    kind = msg.get("t")
    if kind not in RESOURCE_TYPES:
        return None
    src = _required(msg, kind, "src")
    if kind == T_STARTING:
        return Starting(src)
    if kind == T_RESOURCE:
        return _parse_resource(src, msg)
    if kind == T_ASK_RESOURCES:
        return _parse_ask(src, msg)
    if kind == T_HB_TAKEOVER:
        return _parse_takeover(src, msg)
    if kind == T_SHUTDONE:
        st = _required(msg, kind, "st")
        if st != "dead":
            raise _bad(kind, f"st={st[:40]!r} is not 'dead'")
        return ShutDone(src)
    if kind == T_STONITH:
        return _parse_stonith(src, msg)
    if kind == T_IP_REQUEST:
        return IpRequest(src, _required(msg, kind, "ipaddr"))
    return _parse_ip_resp(src, msg)


def to_message(event: ResourceEvent) -> Message:
    """The message-specific fields of ``event``, in the order Heartbeat 3.0.6 writes them.

    ``src`` is not included: the sender's protocol layer adds it with the other control fields.
    Raises FieldError for values Heartbeat could not carry (an empty group key or node name).
    """
    fields: list[tuple[str, Value]]
    if isinstance(event, Starting):
        fields = [("t", T_STARTING)]
    elif isinstance(event, ResourcesHeld):
        fields = [("t", T_RESOURCE), ("rsc_hold", event.held.value)]
        if event.full:
            fields.append(("rtype", "full"))
        if event.stable is not None:
            fields.append(("isstable", "1" if event.stable else "0"))
        if event.info is not None:
            fields.append(("info", event.info))
    elif isinstance(event, AskResources):
        fields = [("t", T_ASK_RESOURCES), ("rsc_hold", event.rsc.value),
                  ("info", event.phase.value)]
    elif isinstance(event, HbTakeover):
        fields = [("t", T_HB_TAKEOVER), ("rsc_hold", event.arg.value)]
    elif isinstance(event, ShutDone):
        fields = [("t", T_SHUTDONE), ("st", "dead")]
    elif isinstance(event, Stonith):
        fields = [("t", T_STONITH), ("node", event.node), ("result", event.result.value)]
    elif isinstance(event, IpRequest):
        fields = [("t", T_IP_REQUEST), ("ipaddr", event.key)]
    elif isinstance(event, IpRequestResp):
        fields = [("t", T_IP_REQUEST_RESP), ("dest", event.dest), ("ipaddr", event.key),
                  ("weown", "yes" if event.we_own else "no"), ("ok", "OK")]
    else:
        raise FieldError(f"not a resource event: {event!r}")
    return Message.of(fields)


@dataclass(frozen=True)
class PeerResources:
    """What a Heartbeat peer holds and whether it is stable, as its messages say.

    Follows Heartbeat's own bookkeeping of its peer (``other_holds_resources``,
    ``other_is_stable`` in hb_resource.c): a full ``resource`` message replaces the set, a
    partial one (``mach_down``) adds to it, ``shutdone`` means nothing held and stable,
    ``starting`` means in flux. ``heard`` stays False until the first ``resource`` message:
    until then the set is unknown, not empty.
    """

    held: RscSet = RscSet.NONE
    stable: bool = False
    heard: bool = False

    @classmethod
    def gone(cls) -> PeerResources:
        """The peer was declared dead: Heartbeat takes over from it and counts it as holding
        nothing and stable (``takeover_from_node``), as after a ``shutdone``."""
        return cls(RscSet.NONE, True, True)

    def apply(self, event: ResourceEvent) -> PeerResources:
        """The state after ``event`` from the peer (events of other kinds change nothing)."""
        if isinstance(event, ResourcesHeld):
            held = event.held if event.full else event.held | self.held
            stable = self.stable if event.stable is None else event.stable
            return PeerResources(held, stable, True)
        if isinstance(event, ShutDone):
            return PeerResources.gone()
        if isinstance(event, Starting):
            return PeerResources(self.held, False, self.heard)
        if isinstance(event, AskResources) and event.phase is StandbyPhase.ME:
            # Both sides consider the requester unstable until its "done".
            return PeerResources(self.held, False, self.heard)
        return self

    def groups(self, peer: str, preferred: Mapping[str, str]) -> frozenset[str]:
        """The group keys the peer holds (see :meth:`RscSet.groups`)."""
        return self.held.groups(peer, preferred)
