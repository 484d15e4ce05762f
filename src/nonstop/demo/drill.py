"""The failover drill: build the cluster, show it, break the active node, measure, clean up.

Each round: a voicemail is written on the active node and watched arriving on the standby; the
fault hits the active node; the standby declares it dead, takes the address, starts the PBX and
the client is answered again; a voicemail left during the outage waits on the new active; the
old node comes back, rejoins as standby (auto_failback off) and receives that voicemail. The
moments come from the programs' own records (daemon logs, ``ip monitor``, the SIP prober, the
mail server), read after the round; the live panel is only for watching.
"""

from __future__ import annotations

import contextlib
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Literal, TypeVar

from nonstop.demo.cluster import PROBE_INTERVAL_S, PROBE_TIMEOUT_S, VOICEMAIL_DIR, DemoCluster
from nonstop.demo.config import describe_changes
from nonstop.demo.records import ProbeTail
from nonstop.demo.render import ClientView, NodeView, Screen, panel
from nonstop.demo.roundrecords import RoundRecords
from nonstop.demo.timeline import (
    Event,
    Kind,
    RoundResult,
    format_timeline,
    service_gap,
    summarize,
    table,
    timeline,
)
from nonstop.errors import InvalidValue, NonstopError
from nonstop.lab import LabError, cleanup_leftovers
from nonstop.lab.outage import read_probes

Fault = Literal["crash", "cable", "standby"]
FAULTS: tuple[Fault, ...] = ("crash", "cable", "standby")
T = TypeVar("T")


def _short(path: str) -> str:
    """A voicemail's name without the long spool directory (shown once, in the intro)."""
    return path.removeprefix(VOICEMAIL_DIR + "/")


class DrillError(NonstopError):
    """The cluster did not do what the drill waited for (with what it waited for)."""


@dataclass(frozen=True)
class Timing:
    """How long the drill lets things run; quick mode is for CI."""

    initdead_s: int
    down_s: float  # how long the old node stays down after the takeover
    settle_s: float  # how long to watch after the rejoin (would it fail back?)
    cron_interval_s: float

    @classmethod
    def of(cls, quick: bool) -> Timing:
        """Quick: the smallest waits that still show every step; full: room to watch."""
        if quick:
            return cls(initdead_s=4, down_s=1.0, settle_s=2.0, cron_interval_s=1.0)
        return cls(initdead_s=10, down_s=5.0, settle_s=5.0, cron_interval_s=2.0)


@dataclass
class RoundRecord:
    """One round as it ran: its result, its timeline and any failure."""

    result: RoundResult
    timeline: list[dict[str, Any]]
    error: str | None = None


@dataclass
class DrillResult:
    """Everything ``--json`` prints."""

    fault: str
    quick: bool
    replication: str
    changes: list[dict[str, str]]
    rounds: list[RoundRecord] = field(default_factory=list)
    error: str | None = None
    duration_s: float = 0.0
    cleaned_up: bool = False

    @property
    def ok(self) -> bool:
        """No error and every round ended as the drill expects."""
        return self.error is None and bool(self.rounds) and all(
            r.error is None for r in self.rounds)

    def to_json(self) -> dict[str, Any]:
        """Plain values, stable keys."""
        return {
            "ok": self.ok, "fault": self.fault, "quick": self.quick,
            "replication": self.replication, "changes": self.changes,
            "rounds": [{**r.result.to_json(), "timeline": r.timeline, "error": r.error}
                       for r in self.rounds],
            "error": self.error, "duration_s": round(self.duration_s, 3),
            "cleaned_up": self.cleaned_up,
        }


@contextlib.contextmanager
def _signals_deferred(*, reraise: bool) -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done (building or tearing down namespaces
    must not stop half way); with ``reraise`` one that came meanwhile is raised afterwards."""
    came: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        came.append(signum)

    try:
        saved = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals cannot reach us here anyway
        saved = {}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    if came and reraise:
        raise KeyboardInterrupt


class Drill:
    """Runs the demo on a :class:`DemoCluster`, drawing on a :class:`Screen`."""

    def __init__(self, screen: Screen, *, fault: Fault, rounds: int, quick: bool,
                 keep_going: bool) -> None:
        if fault not in FAULTS:
            raise InvalidValue(f"unknown fault {fault!r}")
        if rounds < 1:
            raise InvalidValue("at least one round")
        self.screen = screen
        self.fault: Fault = fault
        self.rounds = rounds
        self.quick = quick
        self.keep_going = keep_going
        self.timing = Timing.of(quick)
        self.cluster = DemoCluster(initdead_s=self.timing.initdead_s,
                                   cron_interval_s=self.timing.cron_interval_s)
        self._probes = ProbeTail(self.cluster.probe_record)
        self.started = time.monotonic()
        self.offset = time.time() - time.monotonic()
        self._last_draw = 0.0
        self._cables_out: set[str] = set()
        self.result = DrillResult(fault=fault, quick=quick, replication="unknown", changes=[])

    # -- the whole run

    def run(self) -> DrillResult:
        """The drill from start to cleanup; never leaves a namespace or process behind."""
        cluster = self.cluster
        self.result.changes = [{"file": c.file, "before": c.before, "after": c.after,
                                "why": c.why} for c in cluster.files.changes]
        try:
            self._intro()
            with _signals_deferred(reraise=True):
                removed = cleanup_leftovers()
                if removed:
                    self.screen.say("  removed what an earlier, killed run left behind: "
                                    + ", ".join(removed), "")
                cluster.__enter__()
            self._bring_up()
            for n in range(1, self.rounds + 1):
                record = self._round(n)
                self.result.rounds.append(record)
                if record.error is not None and not self.keep_going:
                    break
        except KeyboardInterrupt:
            self.result.error = "interrupted (Ctrl-C)"
            self.screen.say("", "  interrupted: cleaning up ...")
        except (DrillError, LabError, OSError) as exc:
            self.result.error = str(exc)
            self.screen.say("", f"  ERROR: {exc}")
            self._diagnose()
            self.screen.say("  cleaning up ...")
        except Exception as exc:  # a bug of ours: still clean up, and say what it was
            self.result.error = f"internal error: {type(exc).__name__}: {exc}"
            self.screen.say("", f"  INTERNAL ERROR: {traceback.format_exc()}",
                            "  cleaning up ...")
        finally:
            self.screen.finish()
            with _signals_deferred(reraise=False):
                try:
                    cluster.close()
                    self.result.cleaned_up = True
                except LabError as exc:
                    self.result.error = self.result.error or str(exc)
                    self.screen.say(f"  cleanup problem: {exc}")
            self.result.duration_s = time.monotonic() - self.started
        self._outro()
        return self.result

    # -- screens

    def _diagnose(self, lines: int = 12) -> None:
        """The end of each node's daemon log: what a failed wait needs to be understood."""
        c = self.cluster
        for name, m in c.machines.items():
            path = m.log("daemon")
            if not path.exists():
                continue
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            self.screen.say(f"  --- last lines of {name}'s daemon log ---",
                            *(f"  {line[:200]}" for line in tail))

    def _intro(self) -> None:
        c = self.cluster
        mode = "quick mode" if self.quick else "full mode"
        say = self.screen.say
        say("nonstop demo: the talk's two-node Asterisk cluster (\"Asterisk Redundancy Using "
            "Heartbeat\", 2008)",
            f"  {mode}; fault: {self.fault}; rounds: {self.rounds}",
            "",
            "  Built on this machine in network namespaces (nothing outside them changes):",
            f"    vpbx1-1 {c.lab.ip('vpbx1-1')}   vpbx1-2 {c.lab.ip('vpbx1-2')}   "
            f"client {c.lab.ip('client')}   virtual IP {c.vip}",
            "    kamailio stands in for Asterisk (/etc/init.d/asterisk); each node has its own "
            "mail server on 127.0.0.1:25",
            f"    voicemail goes to {VOICEMAIL_DIR}/ (replicated by csync2.cfg's "
            "include /var/spool/asterisk)",
            "",
            "  The talk's files, unchanged except:")
        say(*(f"    {line}" for line in describe_changes(c.files.changes)))
        say("")

    def _outro(self) -> None:
        say = self.screen.say
        rounds = [r.result for r in self.result.rounds]
        if rounds:
            say("", "Results", *table(rounds))
        say("")
        status = "cleaned up: every namespace and process of the demo is gone" \
            if self.result.cleaned_up else "CLEANUP FAILED (see above)"
        verdict = "demo passed" if self.result.ok else "demo FAILED"
        if self.result.error:
            verdict += f": {self.result.error}"
        say(f"  {verdict}; {status}; {self.result.duration_s:.1f} s in all")
        others = [f"--fault {f}" for f in FAULTS if f != self.fault]
        say(f"  try also: nonstop demo {' | '.join(others)} | --rounds 3")

    # -- watching

    def _views(self) -> tuple[list[NodeView], ClientView]:
        c = self.cluster
        views = []
        for name in c.nodes:
            m = c.machines[name]
            st = c.status(name) if m.powered else None
            peer = peer_ms = group_state = holder = None
            repl = "-"
            if st is not None:
                other = next((n for n in st.get("nodes", []) if not n.get("local")), None)
                if other is not None:
                    peer = str(other.get("status"))
                    heard = other.get("last_heard_ms_ago")
                    peer_ms = int(heard) if isinstance(heard, int) else None
                groups = st.get("groups") or []
                if groups:
                    group_state = str(groups[0].get("local_state"))
                    h = groups[0].get("holder")
                    holder = str(h) if h else None
                repl = self._replication_text(st)
            vip = False
            if m.powered:
                with contextlib.suppress(LabError):
                    vip = c.lab.has_address(name, c.vip)
            views.append(NodeView(name=name, powered=m.powered,
                                  cable=name not in self._cables_out,
                                  daemon=str(st.get("status")) if st else None,
                                  peer=peer, peer_heard_ms=peer_ms,
                                  group_state=group_state, holder=holder, has_vip=vip,
                                  master_flag=m.powered and c.is_master(name),
                                  replication=repl))
        probes = self._probes.poll()
        answered = sum(1 for p in probes if p.answered is not None)
        last = next((p for p in reversed(probes) if p.answered is not None), None)
        client = ClientView(vip=c.vip, sent=len(probes), answered=answered,
                            last_node=last.node if last else None,
                            last_ago_s=(time.monotonic() - last.answered)
                            if last and last.answered else None,
                            interval_s=PROBE_INTERVAL_S)
        return views, client

    def _replication_text(self, st: dict[str, Any]) -> str:
        sync = st.get("sync")
        if isinstance(sync, dict):
            if not sync.get("active"):
                return "receiving"
            dirty = sync.get("dirty")
            text = f"pushing, {dirty} unsynced" if dirty else "pushing, in sync"
            if sync.get("last_sync_ok") is False:
                text += ", errors"
            lag = sync.get("lag_s")
            return text + (f", lag {lag:.2f} s" if isinstance(lag, float) and lag else "")
        return "not available" if self.cluster.daemon_replicates else "cron line"

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and (not self.screen.live or now - self._last_draw < 0.25):
            return  # in a pipe the panel only shows in snapshots: no need to build it
        self._last_draw = now
        nodes, client = self._views()
        self.screen.update(panel(nodes, client, now - self.started))

    def _wait(self, check: Callable[[], T | None], timeout: float, what: str) -> T:
        """Poll ``check`` (refreshing the panel) until it is truthy; DrillError at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                self._refresh()
                return value
            if time.monotonic() >= deadline:
                self._refresh(force=True)
                raise DrillError(f"timed out after {timeout:.0f} s waiting for {what}")
            self._refresh()
            time.sleep(0.02)

    def _pause(self, seconds: float) -> None:
        """Keep the panel live for ``seconds`` (a wait whose end is a time, not a state)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._refresh()
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    # -- cluster state

    def _holder(self) -> str | None:
        c = self.cluster
        for name in c.nodes:
            st = c.status(name)
            for g in (st or {}).get("groups") or []:
                if g.get("local_state") == "held":
                    return name
        return None

    def _answered_by(self, node: str, since: float) -> bool:
        for p in reversed(self._probes.poll()):
            if p.node == node and p.sent >= since and p.answered is not None:
                return True
            if p.sent < since - PROBE_TIMEOUT_S - 1.0:
                return False  # the prober writes in about the order it sends
        return False

    def _sees(self, node: str, peer: str) -> bool:
        c = self.cluster
        st = c.status(node)
        return any(n.get("name") == peer and n.get("status") in ("up", "active")
                   for n in (st or {}).get("nodes", []))

    # -- bring-up

    def _bring_up(self) -> None:
        c = self.cluster
        say = self.screen.say
        say("Starting the cluster")
        c.install_key()
        say("  csync2 group key made with `nonstop sync -k /etc/csync2.key_vpbx1`, "
            "copied to both nodes")
        first, second = c.nodes
        c.start_prober()
        c.boot(first)
        say(f"  {first}: booted (nonstop run --config-dir /etc/ha.d)")
        self._wait(lambda: c.status(first), 30, f"the daemon of {first} to answer")
        if c.daemon_replicates:
            self.result.replication = "daemon"
            say("  replication: the daemons, with the talk's /etc/csync2.cfg (ha.cf "
                "nonstop_sync): the active node pushes every change, the standby receives")
        else:
            self.result.replication = "talk"
            say("  replication: the talk's way, `nonstop sync -i` on each node (csync2's "
                "inetd service) and the crontab line",
                f"    {c.files.cron_command}",
                f"    run every {c.cron_interval_s:g} s instead of every 5 minutes "
                "(the daemon does not replicate by itself yet)")
        c.boot(second)
        say(f"  {second}: booted")
        say("  status pages while the demo runs (nonstop_metrics, relayed from each node): "
            + ", ".join(f"{n} {url}" for n, url in c.pages.items()))
        holder = self._wait(self._holder, 30 + self.timing.initdead_s,
                            "a node to take the resource group")
        self._wait(lambda: self._sees(first, second) and self._sees(second, first), 30,
                   "both nodes to see each other")
        self._wait(lambda: self._answered_by(holder, 0.0), 30,
                   f"the SIP client to be answered by {holder}")
        say(f"  {holder} took the group (MailTo, {c.vip}, asterisk, master); "
            "the SIP client is answered")
        self._refresh(force=True)
        self.screen.snapshot()

    # -- a round

    def _round(self, n: int) -> RoundRecord:
        c = self.cluster
        say = self.screen.say
        old = self._wait(self._holder, 30, "a holder of the group")
        new = c.other(old)
        say("", f"Round {n}: {self.fault} of the active node {old}")
        events: list[Event] = []
        error: str | None = None
        lag: float | None = None
        fault_at = time.monotonic()
        old_back_at: float | None = None
        outage_file = f"{VOICEMAIL_DIR}/msg{2 * n:04d}.txt"
        try:
            lag = self._replicate(old, new, f"{VOICEMAIL_DIR}/msg{2 * n - 1:04d}.txt", n)
            # A moment of normal service, so the client's record shows the fault's edge.
            self._wait(lambda: self._answered_by(old, time.monotonic() - 0.2), 10,
                       f"{old} to answer SIP")
            fault_at = time.monotonic()
            self._inject(old)
            say(f"  fault injected: {self._fault_text(old)}")
            self._wait(lambda: self._answered_by(new, fault_at), 30 + self.timing.initdead_s,
                       f"the SIP client to be answered by {new}")
            say(f"  {new} took over: the SIP client is answered by {new}")
            data = f"voicemail left on {new} while {old} was down (round {n})\n"
            c.write_file(new, outage_file, data)
            where = ("now the active node" if self.fault == "standby"
                     else f"while {old} is away")
            events.append(Event(time.monotonic(), Kind.VOICEMAIL_WRITTEN,
                                f"{_short(outage_file)} left on {new} {where}"))
            say(f"  voicemail {_short(outage_file)} left on {new} {where}")
            self._refresh(force=True)
            self.screen.snapshot()
            self._pause(self.timing.down_s)
            old_back_at = time.monotonic()
            self._restore(old)
            if self.fault != "standby":
                events.append(Event(old_back_at, Kind.OLD_NODE_BACK, self._restore_text(old)))
            say(f"  {self._restore_text(old)}")
            self._wait(lambda: self._sees(new, old) and self._sees(old, new), 30,
                       f"{old} and {new} to see each other again")
            arrived = self._wait(lambda: c.has_file(old, outage_file, data) and time.monotonic(),
                                 30, f"{outage_file} to reach {old}")
            events.append(Event(arrived, Kind.REPLICATION_RESUMED,
                                f"{_short(outage_file)} reached {old}, pushed by the new "
                                f"active {new}"))
            say(f"  the voicemail left during the outage reached {old}")
            self._pause(self.timing.settle_s)
        except DrillError as exc:
            error = str(exc)
            say(f"  ROUND FAILED: {exc}")
            self._diagnose()
        holder = self._holder()
        if old_back_at is not None and holder is not None:
            kind = Kind.STAYED_STANDBY if holder == new else Kind.FAILED_BACK
            text = (f"{old} stays standby, {new} keeps the group (auto_failback off)"
                    if holder == new else f"the group went back to {holder}")
            events.append(Event(time.monotonic(), kind, text))
            if holder != new and self.fault != "cable" and error is None:
                error = f"the group moved back to {holder} although auto_failback is off"
        recorded = RoundRecords(self.cluster, self.fault, self.offset).events(
            old, new, fault_at, old_back_at)
        events.extend(recorded)
        if any(e.kind is Kind.OLD_NODE_CLAIMED for e in recorded) and error is None:
            error = f"{old} took the virtual IP again on its return although {new} held it"
        downtime = lost = None
        gap = service_gap(read_probes(c.probe_record), fault_at, old, new)
        if gap is not None:
            downtime, lost = gap.seconds, gap.lost
            late = [p for p in read_probes(c.probe_record) if p.node == old
                    and p.answered is not None and p.answered > gap.first_new_at]
            if late:
                # Both nodes had the address: some clients still reached the old one.
                events.append(Event(late[0].answered or 0.0, Kind.OLD_ANSWERED,
                                    f"{len(late)} probes answered by {old} after {new} took "
                                    "over (two holders of the address)"))
            events.append(Event(gap.last_old_at, Kind.SIP_SILENT,
                                f"last 200 OK from {old}"))
            events.append(Event(gap.first_new_at, Kind.SIP_ANSWERING,
                                f"first 200 OK from {new}: {gap.seconds:.3f} s without "
                                f"service, {gap.lost} probes unanswered"))
        events.append(Event(fault_at, Kind.FAULT, self._fault_text(old)))
        result = summarize(round_no=n, fault=self.fault, old_active=old,
                           new_active=new if self._took_over(events) else None, events=events,
                           downtime_s=downtime, lost_probes=lost, replication_lag_s=lag,
                           final_holder=holder)
        rows = timeline(events, fault_at)
        say("", f"  Timeline of round {n} (seconds from the fault):", *format_timeline(rows))
        self._refresh(force=True)
        self.screen.snapshot()
        return RoundRecord(result=result, error=error, timeline=[
            {"offset_s": round(r.offset_s, 4), "event": r.kind.value, "text": r.text}
            for r in rows])

    @staticmethod
    def _took_over(events: list[Event]) -> bool:
        return any(e.kind in (Kind.TAKEOVER_DONE, Kind.ADDRESS_MOVED) for e in events)

    def _replicate(self, active: str, standby: str, path: str, n: int) -> float:
        """Write a voicemail on the active node; return how long it took to reach the standby."""
        c = self.cluster
        data = f"voicemail for extension 1000, left on {active} (round {n})\n"
        written = time.monotonic()
        c.write_file(active, path, data)
        arrived = self._wait(lambda: c.has_file(standby, path, data) and time.monotonic(), 30,
                             f"{path} to reach {standby}")
        lag = arrived - written
        self.screen.say(f"  voicemail {_short(path)} written on {active}: on {standby} "
                        f"{lag:.2f} s later")
        return lag

    def _fault_text(self, node: str) -> str:
        return {"crash": f"{node} crashed (power cut: every process killed, link dead)",
                "cable": f"{node}'s network cable pulled (its programs keep running)",
                "standby": f"`nonstop standby` on {node} (a planned handover)"}[self.fault]

    def _restore_text(self, node: str) -> str:
        return {"crash": f"{node} powered on again (a boot: no VIP, same disk)",
                "cable": f"{node}'s cable plugged back in",
                "standby": f"{node} never went away: it is the standby now"}[self.fault]

    def _inject(self, node: str) -> None:
        c = self.cluster
        if self.fault == "crash":
            c.power_off(node)
        elif self.fault == "cable":
            c.cable_out(node)
            self._cables_out.add(node)
        else:
            c.standby(node)

    def _restore(self, node: str) -> None:
        c = self.cluster
        if self.fault == "crash":
            c.power_on(node)
        elif self.fault == "cable":
            c.cable_in(node)
            self._cables_out.discard(node)
