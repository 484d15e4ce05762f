"""The talk's two-node PBX cluster in a lab, for failover tests: real daemons, kamailio as
"asterisk" on the virtual IP, an aiosmtpd mail server per node, a SIP prober in the client.

Only what the lab forces is changed from the talk's files: the address (10.0.10.10 becomes the
lab's VIP), initdead (120 s would make every test wait two minutes), and the program name in
the master script (``csync2`` becomes ``nonstop sync``, the documented migration). initdead
10 s costs nothing when both nodes start (comm is up as soon as both are heard) and keeps a
slow start on a loaded machine from looking like a dead peer.
"""

from __future__ import annotations

import itertools
import json
import mailbox
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from email import message_from_bytes
from pathlib import Path
from typing import Any

from nonstop.lab import CLIENT, VIP, Lab, LabProcess, wait_for
from nonstop.lab.hbconfig import set_directives
from nonstop.lab.kamailio import write_asterisk_service
from nonstop.lab.outage import Probe, read_probes
from nonstop.lab.sipprobe import probe_command
from nonstop.talk import copy_talk

N1, N2 = "vpbx1-1", "vpbx1-2"
TALK_VIP = "10.0.10.10"


class TalkCluster:
    """Builds per-node config dirs from the talk's files and runs nonstop daemons in a lab."""

    def __init__(self, lab: Lab, *, directives: Mapping[str, str | None] | None = None,
                 sync: bool = False, nodes: tuple[str, ...] = (N1, N2)) -> None:
        self.lab = lab
        self.sync = sync
        self.nodes = nodes
        self.daemons: dict[str, LabProcess] = {}
        self.smtp: dict[str, LabProcess] = {}
        self.prober: LabProcess | None = None
        self.probe_file = lab.workdir / "probes.jsonl"
        # MailTo goes to each node's aiosmtpd, even on a machine with its own MTA (sendmail).
        wanted: dict[str, str | None] = {"initdead": "10", "nonstop_mailrelay": "127.0.0.1:25"}
        if nodes != (N1, N2):
            wanted["node"] = " ".join(nodes)
        wanted.update(directives or {})
        for node in nodes:
            root = lab.host_dir(node) / "etc"
            copy_talk(root)
            cfg = root / "ha.d"
            cfg_file = cfg / "ha.cf"
            cfg_file.write_text(set_directives(cfg_file.read_text(), wanted))
            res = cfg / "haresources"
            res.write_text(res.read_text().replace(TALK_VIP, VIP))
            master = cfg / "resource.d" / "master"
            master.write_text(master.read_text().replace("csync2 ", "nonstop sync "))
            write_asterisk_service(cfg / "resource.d", lab.host_dir(node) / "sip", node=node,
                                   listen_ip=VIP)
            if sync:
                self._sync_files(node, root)
            mailbox.Maildir(str(lab.host_dir(node) / "mail"), create=True)

    def _sync_files(self, node: str, etc: Path) -> None:
        """The talk's csync2.cfg, its key in the node's directory (the one path a shared machine
        forces us to move), and the node's replicated tree under its own sync root."""
        key = etc / "csync2.key_vpbx1"
        key.write_text("K" * 64 + "\n")
        key.chmod(0o600)
        cfg = etc / "csync2.cfg"
        # The group's host line names the cluster's nodes (the talk's two, or more).
        cfg.write_text(cfg.read_text().replace("/etc/csync2.key_vpbx1", str(key))
                       .replace(f"host {N1} {N2};", f"host {' '.join(self.nodes)};"))
        for sub in ("etc/asterisk", "var/spool/asterisk", "var/log/asterisk", "var/lib/asterisk"):
            (self.sync_root(node) / sub).mkdir(parents=True, exist_ok=True)
        ha_cf = etc / "ha.d" / "ha.cf"
        ha_cf.write_text(set_directives(ha_cf.read_text(), {"nonstop_sync": str(cfg)}))

    def sync_root(self, node: str) -> Path:
        return self.lab.host_dir(node) / "root"

    def config_dir(self, node: str) -> Path:
        return self.lab.host_dir(node) / "etc" / "ha.d"

    def state_dir(self, node: str) -> Path:
        return self.lab.host_dir(node) / "state"

    def start_mail(self, node: str) -> None:
        maildir = self.lab.host_dir(node) / "mail"
        self.smtp[node] = self.lab.spawn(
            node,
            [sys.executable, "-m", "aiosmtpd", "-n", "-l", "127.0.0.1:25", "-c",
             "aiosmtpd.handlers.Mailbox", str(maildir)],
            name="smtp",
        )

    def start(self, node: str) -> LabProcess:
        if node not in self.smtp:
            self.start_mail(node)
        proc = self.lab.spawn(
            node,
            [sys.executable, "-m", "nonstop", "run", "--config-dir", str(self.config_dir(node)),
             "--state-dir", str(self.state_dir(node)), "--node", node,
             *(["--sync-root", str(self.sync_root(node))] if self.sync else [])],
            name="nonstop",
        )
        self.daemons[node] = proc
        return proc

    def crash(self, node: str) -> float:
        """The box dies: off the network at once, every process on it killed."""
        t = time.monotonic()
        self.lab.link_down(node)
        from nonstop.lab.nsprocs import kill_netns_processes

        kill_netns_processes(self.lab.netns(node))
        if self.lab.has_address(node, VIP):  # a dead box holds no address
            self.lab.del_address(node, VIP)
        self.daemons.pop(node, None)
        self.smtp.pop(node, None)
        return t

    def revive(self, node: str) -> None:
        """The crashed box boots again: cable back in, nothing running."""
        self.lab.link_up(node)

    def status(self, node: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "nonstop", "status", "--json", "--state-dir",
             str(self.state_dir(node))],
            capture_output=True, text=True, timeout=10,
        )
        if out.returncode != 0:
            return {}
        doc: dict[str, Any] = json.loads(out.stdout)
        return doc

    def holder(self, node: str) -> str | None:
        st = self.status(node)
        groups = st.get("groups") or []
        return groups[0].get("holder") if groups else None

    def vip_holders(self) -> list[str]:
        return [n for n in self.nodes if self.lab.has_address(n, VIP)]

    def wait_vip_on(self, node: str, timeout: float) -> float:
        wait_for(lambda: self.vip_holders() == [node], timeout, what=f"the VIP only on {node}",
                 interval=0.02)
        return time.monotonic()

    def start_prober(self) -> None:
        self.prober = self.lab.spawn(CLIENT, probe_command(VIP, self.probe_file), name="probe")

    def probes(self) -> list[Probe]:
        return read_probes(self.probe_file) if self.probe_file.exists() else []

    def longest_silence(self, since: float) -> float:
        """The longest gap between consecutive SIP answers received after ``since`` (from
        anyone): what a client saw of a planned move, during which the old node still
        answers for a while after the command."""
        times = sorted(p.answered for p in self.probes()
                       if p.answered is not None and p.answered >= since)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def answered_by(self, node: str, since: float) -> bool:
        return any(p.node == node and p.sent >= since and p.answered is not None
                   for p in self.probes())

    def mails(self, node: str) -> list[str]:
        """Subjects of the mails delivered to ``node``'s mail server."""
        new = self.lab.host_dir(node) / "mail" / "new"
        if not new.is_dir():
            return []
        return [str(message_from_bytes(p.read_bytes())["Subject"])
                for p in sorted(new.iterdir())]

    def log(self, node: str) -> str:
        proc = self.daemons.get(node)
        return proc.log_path.read_text() if proc is not None else ""

    def marker(self, node: str) -> bool:
        return self.lab.host_path(node, "/tmp/.HB-master").exists()

    def running(self) -> None:
        """Both daemons up, vpbx1-1 (the preferred node) holding the group, SIP answered."""
        self.start(N1)
        self.start(N2)
        self.wait_vip_on(N1, 20)
        wait_for(lambda: self.holder(N2) == N1, 10, what="vpbx1-2 to see vpbx1-1 holding")
        self.start_prober()
        since = time.monotonic()
        wait_for(lambda: self.answered_by(N1, since), 10, what="SIP answers from vpbx1-1")


def replicating(lab: Lab, prepare: Callable[[TalkCluster], None] | None = None,
                ) -> TalkCluster:
    """The talk's cluster with replication on, both daemons started and vpbx1-1 pushing;
    ``prepare`` changes the nodes' files before the daemons start."""
    c = TalkCluster(lab, sync=True)
    if prepare is not None:
        prepare(c)
    c.start(N1)
    c.start(N2)
    c.wait_vip_on(N1, 20)
    wait_for(lambda: (c.status(N1).get("sync") or {}).get("active"), 15,
             what="replication active on vpbx1-1")
    return c


def write_file(root: Path, rel: str, data: bytes) -> Path:
    """``data`` at ``rel`` under a node's sync root (directories made as needed)."""
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p
