"""What happened in a drill round, read from the programs' own records after the round.

The daemon logs, each machine's ``ip monitor`` record and the mail server's log give the
moments of the timeline (death declared, address moved, takeover done, rejoin, mail); the live
panel is only for watching.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nonstop.demo.cluster import DemoCluster
from nonstop.demo.mailsink import read_mail
from nonstop.demo.records import parse_addr_log, parse_daemon_log
from nonstop.demo.timeline import Event, Kind


@dataclass(frozen=True)
class RoundRecords:
    """The records of ``cluster`` for a round with ``fault``; ``offset`` turns the
    monotonic clock of the drill into the wall clock of the records."""

    cluster: DemoCluster
    fault: str
    offset: float

    def events(self, old: str, new: str, fault_at: float,
                         old_back_at: float | None) -> list[Event]:
        """Moments read from the programs' own records (logs, ip monitor, mail)."""
        c = self.cluster
        mnew = c.machines[new]
        events: list[Event] = []
        lines = [ln for path in mnew.all_logs("daemon") if path.exists()
                 for ln in parse_daemon_log(path.read_text(errors="replace"), self.offset)]
        after = [ln for ln in lines if ln.at >= fault_at - 0.005]
        dead = next((ln for ln in after if ln.message == f"node {old}: is dead"), None)
        if dead is not None:
            events.append(Event(dead.at, Kind.DEATH_DECLARED, f"{new} declares {old} dead"))
        mold = c.machines[old]
        old_lines = [ln for path in mold.all_logs("daemon") if path.exists()
                     for ln in parse_daemon_log(path.read_text(errors="replace"), self.offset)
                     if ln.at >= fault_at - 0.005]
        going = next((ln for ln in old_lines if ln.message.startswith("Going standby")), None)
        if going is not None:
            events.append(Event(going.at, Kind.HANDOVER, f"{old} gives the group away"))
        released = re.compile(r"Resource group .* released")
        gone = next((ln for ln in old_lines if released.match(ln.message)), None)
        if gone is not None:
            why = ("two holders once the cable was back: it gave its copy up"
                   if self.fault == "cable" else "its resources are stopped")
            events.append(Event(gone.at, Kind.RELEASED, f"{old}: {why}"))
        acquired = re.compile(r"Resource group .* acquired")
        done = next((ln for ln in after if acquired.match(ln.message)), None)
        if done is not None:
            waited = (" (its nonstop sync calls wait for the unreachable peer)"
                      if self.fault != "standby" else "")
            events.append(Event(done.at, Kind.TAKEOVER_DONE,
                                f"{new} holds the whole group: master ran{waited}"))
        if old_back_at is not None:
            rejoin = re.compile(rf"(Status update for node {re.escape(old)}: status|"
                                rf"Link {re.escape(old)}:\S+ up|Heartbeat restart on node "
                                rf"{re.escape(old)}|Cluster node {re.escape(old)} returning)")
            back = next((ln for ln in lines if ln.at >= old_back_at and rejoin.match(
                ln.message)), None)
            if back is not None:
                events.append(Event(back.at, Kind.REJOINED, f"{new} hears {old} again"))
        events += self._address_events(old, new, fault_at, old_back_at)
        mail = next((m for m in read_mail(mnew.mail_log)
                     if float(m.get("received", 0)) >= fault_at
                     and "Takeover" in str(m.get("subject"))), None)
        if mail is not None:
            events.append(Event(float(mail["received"]), Kind.MAIL_RECEIVED,
                                f"\"{mail.get('subject')}\" delivered on {new}"))
        return events

    def _address_events(self, old: str, new: str, fault_at: float,
                        old_back_at: float | None) -> list[Event]:
        """The address's moves, from each machine's ``ip monitor`` record."""
        c = self.cluster
        mold, mnew = c.machines[old], c.machines[new]
        events: list[Event] = []
        if self.fault == "cable":
            dropped = next((a for path in mold.all_logs("addr") if path.exists()
                            for a in parse_addr_log(path.read_text(), self.offset)
                            if not a.added and a.ip == c.vip and a.at >= fault_at), None)
            if dropped is not None:
                events.append(Event(dropped.at, Kind.OLD_VIP_DROPPED,
                                    f"{old} removed {c.vip}: it held it all along, cut off"))
        if old_back_at is not None:
            claimed = next((a for path in mold.all_logs("addr") if path.exists()
                            for a in parse_addr_log(path.read_text(), self.offset)
                            if a.added and a.ip == c.vip and a.at >= old_back_at), None)
            if claimed is not None:
                events.append(Event(claimed.at, Kind.OLD_NODE_CLAIMED,
                                    f"{c.vip} configured on {old} again: two holders"))
        for path in mnew.all_logs("addr"):
            if not path.exists():
                continue
            moved = next((a for a in parse_addr_log(path.read_text(), self.offset)
                          if a.added and a.ip == c.vip and a.at >= fault_at - 0.005), None)
            if moved is not None:
                events.append(Event(moved.at, Kind.ADDRESS_MOVED,
                                    f"{c.vip} configured on {new} (kernel event)"))
                break
        return events
