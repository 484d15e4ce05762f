"""The three systems under test, each running the talk's two-node PBX cluster in a lab.

* nonstop: ``python3 -m nonstop run`` per node with the talk's ha.d.
* Heartbeat 3.0.6: the Debian package in lab boxes with the same ha.d.
* keepalived 2.2.7: one VRRP instance for the VIP (advert_int 1, no auth), notify scripts
  running the same group scripts (asterisk = kamailio, then master).

Common ground, identical on every side: the nodes are ``vpbx1-1``/``vpbx1-2``, the VIP is the
lab's 198.18.0.10/24 on eth0, kamailio stands in for Asterisk (started after the address,
answers OPTIONS naming the node), the talk's ``master`` script runs after it, and the
replication program that ``master`` calls (``csync2`` for Heartbeat, ``nonstop sync`` for
nonstop after the documented migration) is a stand-in that only records its arguments:
replication is benchmarked on its own, and Part 2 of the spec left the csync2 step out too.

Every system runs in lab boxes (the node's network namespace plus its own PID, mount and UTS
namespaces with an init that reaps orphans at once), as the real Heartbeat must. Outside a box
an orphaned kamailio is reaped by this sandbox's PID 1, which does so only every second or two;
the asterisk script's stop waits until the pid is gone, so a stop took 1.3-2 s there and 0.1 s
in a box. Same box for everyone keeps that artefact out of the comparison.
"""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar

from bench.measure import LogWatcher, ProbeLog
from nonstop.lab import CLIENT, VIP, BoxProcess, Lab, LabError, LabProcess
from nonstop.lab.box import box_bin
from nonstop.lab.hbconfig import set_directives
from nonstop.lab.kamailio import write_asterisk_service
from nonstop.lab.nsprocs import kill_netns_processes, netns_pids
from nonstop.lab.sipprobe import probe_command
from nonstop.talk import copy_talk

N1, N2 = "vpbx1-1", "vpbx1-2"
NODES = (N1, N2)
TALK_VIP = "10.0.10.10"
# The talk's ha.cf with what the lab needs: initdead 5 as in Part 2 (120 s would make each
# start wait two minutes) and a log file instead of logd. Everything else is the talk's.
HA_DIRECTIVES: dict[str, str | None] = {"initdead": "5", "use_logd": "no"}

_STANDIN = """#!/bin/sh
# bench stand-in for the replication program the master script calls: records the call only.
echo "$(date '+%F %T') $0 $*" >> {log}
exit 0
"""


# No fault is injected sooner than this after a node (re)started, on every system alike: a
# Heartbeat node advertises its start-up deadtime (dt=fa0, 4 s) for initdead (5 s) after a
# start, and its peer times it out with that, so a fault in that window is detected after
# ~4.2 s instead of ~2.2 s (seen in 3 of 9 trials of a rehearsal and on the wire).
STEADY_S = 6.0
# A quick (smoke) run keeps no quiet period for its timings, but Heartbeat still ignores an
# hb_standby that comes while its peer's resources are "in flux" after a restart (seen in a
# quick run: the planned move came in the second of the peer's restart and no node took the
# group for 60 s), so on a Heartbeat node a quick run waits this long after a restart.
QUICK_HEARTBEAT_STEADY_S = 3.0


def steady(started: float, seconds: float = STEADY_S) -> None:
    """Let ``seconds`` pass since ``started`` (a quiet period: nothing to poll for)."""
    time.sleep(max(0.0, started + seconds - time.monotonic()))


def other(node: str) -> str:
    """The other node of the pair."""
    return N2 if node == N1 else N1


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _write_standin(directory: Path, name: str, log: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(_STANDIN.format(log=log))
    path.chmod(0o755)


def _talk_config(dest: Path, node: str, lab: Lab, *, replication: str,
                 directives: dict[str, str | None]) -> Path:
    """The talk's ha.d for ``node``: lab VIP, ``directives`` in ha.cf, the master script calling
    ``replication`` instead of csync2, kamailio as the asterisk script in resource.d."""
    copy_talk(dest)
    cfg = dest / "ha.d"
    ha_cf = cfg / "ha.cf"
    ha_cf.write_text(set_directives(ha_cf.read_text(), directives))
    res = cfg / "haresources"
    res.write_text(res.read_text().replace(TALK_VIP, VIP))
    master = cfg / "resource.d" / "master"
    master.write_text(master.read_text().replace("csync2 ", f"{replication} "))
    write_asterisk_service(cfg / "resource.d", lab.host_dir(node) / "sip", node=node,
                           listen_ip=VIP)
    return cfg


class Cluster(abc.ABC):
    """A two-node cluster of one system in a lab, with the client's SIP prober."""

    name: str = ""
    detects_death: bool = True  # logs a "node X: is dead" line
    idle_only = False  # a variant measured for its idle cost only
    # Log lines that start a release (old node) and an acquisition (new node); "" = none.
    release_pattern = "Releasing resource group"
    acquire_pattern = "Acquiring resource group"
    # The client's SIP prober sends OPTIONS this often; a gap between answers is measured in
    # steps of about this much (the hand-off suite uses a finer one for its tens of ms).
    probe_interval_s = 0.02

    def __init__(self, lab: Lab, watcher: LogWatcher) -> None:
        self.lab = lab
        self.watcher = watcher
        self.prober: LabProcess | None = None
        self.probes = ProbeLog(lab.workdir / "probes.jsonl")
        # Quick (smoke) runs skip the quiet period after a restart (see quick_steady_s).
        self.steady_s = STEADY_S

    # The quiet period after a restart in a quick run: none, unless the system needs one to
    # accept the next fault at all.
    quick_steady_s = 0.0

    # -- what each system provides ---------------------------------------------------------

    @abc.abstractmethod
    def start(self, node: str) -> None:
        """Start the system on ``node`` and follow its log under key ``node``."""

    @abc.abstractmethod
    def stop(self, node: str) -> None:
        """Stop the system on ``node`` gracefully (it releases what it holds)."""

    @abc.abstractmethod
    def planned(self, node: str) -> None:
        """The operator moves the service away from ``node``."""

    @abc.abstractmethod
    def daemon_pids(self, node: str) -> list[int]:
        """Host pids of the system's own processes on ``node`` (not kamailio, not scripts)."""

    @abc.abstractmethod
    def joined_pattern(self, node: str) -> tuple[str, str]:
        """(log key, regex) of the line that says ``node`` has (re)joined the cluster."""

    def dead_pattern(self, node: str) -> str:
        """Regex of the survivor's log line that declares ``node`` dead."""
        return rf"node {node}: is dead"

    def after_planned(self, node: str) -> None:
        """Bring ``node`` back as the standby after :meth:`planned` (if that stopped it)."""
        return

    # -- common ----------------------------------------------------------------------------

    def start_all(self) -> None:
        """Start both nodes and the prober; wait until one node serves the VIP."""
        for node in NODES:
            self.start(node)
        self.prober = self.lab.spawn(CLIENT, probe_command(VIP, self.probes.path,
                                                           interval=self.probe_interval_s,
                                                           timeout=0.5),
                                     name="probe")
        t0 = time.monotonic()
        try:
            self.probes.wait_answer(None, t0, 90.0)
            self.wait_settled(30.0)
        except LabError as exc:
            raise LabError(f"{self.name} did not start serving: {exc}\n{self.log_tails()}"
                           ) from exc

    def restart_all(self) -> None:
        """Both nodes crash and boot again (recovery after a trial left nobody serving)."""
        for node in NODES:
            kill_netns_processes(self.lab.netns(node))
            if self.lab.has_address(node, VIP):
                self.lab.del_address(node, VIP)
        t = time.monotonic()
        for node in NODES:
            self.start(node)
        self.probes.wait_answer(None, t, 90.0)
        self.wait_settled(30.0)
        steady(t, self.steady_s)

    def holders(self) -> list[str]:
        """Nodes that have the VIP configured."""
        return [n for n in NODES if self.lab.has_address(n, VIP)]

    def active(self) -> str:
        """The only node holding the VIP; LabError when that is not exactly one."""
        held = self.holders()
        if len(held) != 1:
            raise LabError(f"{self.name}: VIP held by {held}")
        return held[0]

    def wait_settled(self, timeout: float) -> str:
        """Wait until exactly one node holds the VIP and answers SIP; return it."""
        deadline = time.monotonic() + timeout
        while True:
            held = self.holders()
            if len(held) == 1:
                since = time.monotonic()
                with contextlib.suppress(LabError):
                    self.probes.wait_answer(held[0], since, 2.0)
                    return held[0]
            if time.monotonic() > deadline:
                raise LabError(f"{self.name}: not settled within {timeout} s (VIP on {held})")
            time.sleep(0.1)

    def crash(self, node: str) -> float:
        """The box dies: every process on it killed, its VIP gone (spec Part 2, 1c)."""
        t = time.monotonic()
        kill_netns_processes(self.lab.netns(node))
        if self.lab.has_address(node, VIP):
            self.lab.del_address(node, VIP)
        return t

    def link_down(self, node: str) -> float:
        """Pull the node's cable (its switch port goes down)."""
        t = time.monotonic()
        self.lab.link_down(node)
        return t

    def restore(self, node: str, fault: str) -> None:
        """Bring a failed node back as the standby: kill what is left, reconnect, restart.

        A cut-off node is killed rather than stopped: Heartbeat takes up to a minute to shut
        down without its peer, and the way back is not what is measured.
        """
        kill_netns_processes(self.lab.netns(node))
        if self.lab.has_address(node, VIP):
            self.lab.del_address(node, VIP)
        self.lab.link_up(node)
        t = time.monotonic()
        self.start(node)
        key, pattern = self.joined_pattern(node)
        self.watcher.wait(key, pattern, t, 60.0)
        steady(t, self.steady_s)

    def log_tails(self, lines: int = 25) -> str:
        """The last lines of every node's log, for error reports."""
        parts = []
        for node in NODES:
            tail = self.watcher.lines(node)[-lines:]
            parts.append(f"--- {self.name} {node} log (last {len(tail)} lines):\n"
                         + "\n".join(tail))
        return "\n".join(parts)

    def close(self) -> None:
        """Stop the prober (the lab stops everything else)."""
        if self.prober is not None:
            self.prober.stop(timeout=5.0)


class NonstopCluster(Cluster):
    """nonstop daemons, an aiosmtpd mail server per node for MailTo."""

    name = "nonstop"
    # ha.cf directives set over the talk's (a timing profile changes them).
    ha_directives: ClassVar[Mapping[str, str | None]] = HA_DIRECTIVES

    def __init__(self, lab: Lab, watcher: LogWatcher) -> None:
        super().__init__(lab, watcher)
        self.daemons: dict[str, BoxProcess] = {}
        for node in NODES:
            base = lab.host_dir(node)
            # Same ha.cf as Heartbeat's; the log file is per node (no private /var/log here).
            _talk_config(base / "etc", node, lab, replication="nonstop sync",
                         directives=dict(self.ha_directives, logfile=str(self.log_file(node))))
            _write_standin(box_bin(base / "box"), "nonstop", Path("/var/log/replication.log"))

    def config_dir(self, node: str) -> Path:
        return self.lab.host_dir(node) / "etc" / "ha.d"

    def log_file(self, node: str) -> Path:
        return self.lab.host_dir(node) / "ha-log"

    def state_dir(self, node: str) -> Path:
        return self.lab.host_dir(node) / "state"

    def start(self, node: str) -> None:
        base = self.lab.host_dir(node)
        self.lab.spawn(node, [sys.executable, "-m", "aiosmtpd", "-n", "-l", "127.0.0.1:25",
                              "-c", "aiosmtpd.handlers.Mailbox", str(base / "mail")],
                       name="smtp")
        self.watcher.watch(node, self.log_file(node))
        self.daemons[node] = self.lab.start_box(
            node, [sys.executable, "-m", "nonstop", "run", "--config-dir",
                   str(self.config_dir(node)), "--state-dir", str(self.state_dir(node)),
                   "--node", node, *self.extra_run_args(node)])

    def extra_run_args(self, node: str) -> list[str]:
        """More `nonstop run` options for a node (subclasses add theirs)."""
        return []

    def stop(self, node: str) -> None:
        proc = self.daemons.pop(node, None)
        if proc is not None:
            proc.stop(timeout=30.0)

    def planned(self, node: str) -> None:
        done = self.lab.box_run(node, [sys.executable, "-m", "nonstop", "standby",
                                       "--state-dir", str(self.state_dir(node))], timeout=20.0)
        if done.returncode != 0:
            raise LabError(f"nonstop standby on {node}: {done.stderr.strip()}")

    def daemon_pids(self, node: str) -> list[int]:
        return [pid for pid in netns_pids(self.lab.netns(node))
                if _cmdline(pid)[1:4] == ["-m", "nonstop", "run"]]

    def joined_pattern(self, node: str) -> tuple[str, str]:
        return other(node), rf"Status update for node {node}: status active"


SCRAPE = """
import sys, time, urllib.request
while True:
    try:
        urllib.request.urlopen(sys.argv[1], timeout=5).read()
    except OSError as e:
        print("scrape:", e, flush=True)
    time.sleep(float(sys.argv[2]))
"""


class ObservedNonstopCluster(NonstopCluster):
    """nonstop with issue 14's features on: the history (always on), a nonstop_notify program
    (/bin/true) for every event, and nonstop_metrics scraped every 15 s as Prometheus does."""

    name = "nonstop + notify + metrics"
    idle_only = True
    scrape_interval_s = 15.0

    def __init__(self, lab: Lab, watcher: LogWatcher) -> None:
        super().__init__(lab, watcher)
        for node in NODES:
            ha_cf = self.config_dir(node) / "ha.cf"
            ha_cf.write_text(set_directives(ha_cf.read_text(), {
                "nonstop_metrics": "9464", "nonstop_notify": "/bin/true"}))

    def start(self, node: str) -> None:
        super().start(node)
        self.lab.spawn(node, [sys.executable, "-c", SCRAPE, "http://127.0.0.1:9464/metrics",
                              str(self.scrape_interval_s)], name="scraper")


class HeartbeatCluster(Cluster):
    """The real Heartbeat 3.0.6 in boxes; mail goes to the box's mail(1) stand-in."""

    name = "Heartbeat 3.0.6"
    quick_steady_s = QUICK_HEARTBEAT_STEADY_S

    def __init__(self, lab: Lab, watcher: LogWatcher) -> None:
        super().__init__(lab, watcher)
        directives = dict(HA_DIRECTIVES, logfile="/var/log/ha-log")
        for node in NODES:
            base = lab.host_dir(node)
            _talk_config(base / "etc", node, lab, replication="csync2", directives=directives)
            _write_standin(box_bin(base / "box"), "csync2", Path("/var/log/replication.log"))

    def start(self, node: str) -> None:
        self.watcher.watch(node, self.lab.host_path(node, "/var/log/ha-log"))
        self.lab.start_heartbeat(node, self.lab.host_dir(node) / "etc" / "ha.d")

    def stop(self, node: str) -> None:
        with contextlib.suppress(LabError):
            box = self.lab.box(node)
            box.signal(signal.SIGTERM)
            box.stop(timeout=60.0)

    def planned(self, node: str) -> None:
        done = self.lab.box_run(node, ["/usr/share/heartbeat/hb_standby"], timeout=20.0)
        if done.returncode != 0:
            raise LabError(f"hb_standby on {node}: {done.stdout.strip()} {done.stderr.strip()}")

    def daemon_pids(self, node: str) -> list[int]:
        return [pid for pid in netns_pids(self.lab.netns(node)) if _comm(pid) == "heartbeat"]

    def joined_pattern(self, node: str) -> tuple[str, str]:
        return other(node), rf"Status update for node {node}: status active"


KEEPALIVED_CONF = """\
global_defs {{
    router_id {node}
    script_user root
    enable_script_security
}}

vrrp_instance VI_1 {{
    state BACKUP
    nopreempt
    interface eth0
    virtual_router_id 51
    priority {priority}
    version {vrrp_version}
    advert_int {advert_int}
    virtual_ipaddress {{
        {vip}/24 dev eth0
    }}
    notify_master "{group} start"
    notify_backup "{group} stop"
    notify_fault "{group} stop"
    notify_stop "{group} stop"
}}
"""

GROUP_SCRIPT = """#!/bin/sh
# The talk's group after the address, for keepalived's notify hooks: asterisk (kamailio), master.
RD={rd}
case "$1" in
    start) "$RD/asterisk" start; "$RD/master" start ;;
    stop) "$RD/master" stop; "$RD/asterisk" stop ;;
esac
exit 0
"""


class KeepalivedCluster(Cluster):
    """keepalived 2.2.7, VRRP only, advert_int 1, nopreempt (auto_failback off's equivalent)."""

    name = "keepalived 2.2.7"
    detects_death = False
    release_pattern = ""
    acquire_pattern = "Entering MASTER STATE"
    advert_int = "1"
    vrrp_version = 2  # keepalived's default; sub-second adverts need VRRPv3

    def __init__(self, lab: Lab, watcher: LogWatcher) -> None:
        super().__init__(lab, watcher)
        self.daemons: dict[str, BoxProcess] = {}
        for node, priority in ((N1, 150), (N2, 100)):
            base = lab.host_dir(node)
            cfg = _talk_config(base / "etc", node, lab, replication="csync2",
                               directives=HA_DIRECTIVES)
            _write_standin(box_bin(base / "box"), "csync2", Path("/var/log/replication.log"))
            group = base / "group"
            group.write_text(GROUP_SCRIPT.format(rd=cfg / "resource.d"))
            group.chmod(0o755)
            (base / "keepalived.conf").write_text(KEEPALIVED_CONF.format(
                node=node, priority=priority, vip=VIP, group=group,
                advert_int=self.advert_int, vrrp_version=self.vrrp_version))

    def start(self, node: str) -> None:
        base = self.lab.host_dir(node)
        log = self.lab.host_dir(node) / "logs" / "keepalived.log"
        self.watcher.watch(node, log)
        proc = self.lab.start_box(node, ["keepalived", "--dont-fork", "--log-console",
                                         "--log-detail", "--no-syslog", "--vrrp", "-f",
                                         str(base / "keepalived.conf")], log_path=log)
        self.daemons[node] = proc

    def stop(self, node: str) -> None:
        proc = self.daemons.pop(node, None)
        if proc is not None:
            proc.stop(timeout=30.0)

    def planned(self, node: str) -> None:
        # keepalived's planned move: stop it on the master (it sends priority 0 on the way out).
        proc = self.daemons.get(node)
        if proc is None:
            raise LabError(f"keepalived is not running on {node}")
        proc.signal(signal.SIGTERM)

    def after_planned(self, node: str) -> None:
        proc = self.daemons.pop(node, None)
        if proc is not None:
            proc.wait(30.0)
        t = time.monotonic()
        self.start(node)
        self.watcher.wait(*self.joined_pattern(node), t, 60.0)
        steady(t, self.steady_s)

    def daemon_pids(self, node: str) -> list[int]:
        return [pid for pid in netns_pids(self.lab.netns(node)) if _comm(pid) == "keepalived"]

    def joined_pattern(self, node: str) -> tuple[str, str]:
        return node, r"Entering BACKUP STATE"


SYSTEMS: dict[str, type[Cluster]] = {
    "nonstop": NonstopCluster,
    "nonstop-observe": ObservedNonstopCluster,
    "heartbeat": HeartbeatCluster,
    "keepalived": KeepalivedCluster,
}


@contextlib.contextmanager
def running_cluster(key: str, workdir: Path, *, quick: bool = False,
                    system: type[Cluster] | None = None) -> Iterator[Cluster]:
    """A lab with system ``key`` (or the class ``system``, in ``workdir/key``) started on both
    nodes and serving; torn down afterwards.

    After an exception, or always with BENCH_KEEP_LABS=1 in the environment, the lab's work
    directory (logs, configs) is kept for inspection.
    """
    watcher = LogWatcher()
    try:
        with Lab(NODES, workdir=workdir / key, keep_workdir=keep_labs()) as lab, \
                started(lab, (system or SYSTEMS[key])(lab, watcher), quick) as cluster:
            yield cluster
    finally:
        watcher.close()


def keep_labs() -> bool:
    """BENCH_KEEP_LABS=1: keep every lab's work directory (logs, configs) for inspection."""
    return os.environ.get("BENCH_KEEP_LABS") == "1"


@contextlib.contextmanager
def started(lab: Lab, cluster: Cluster, quick: bool) -> Iterator[Cluster]:
    """``cluster`` started on its nodes and serving; closed afterwards. After an exception the
    lab's work directory is kept for inspection."""
    if quick:
        cluster.steady_s = cluster.quick_steady_s
    try:
        cluster.start_all()
        yield cluster
    except BaseException:
        lab.keep_workdir = True
        raise
    finally:
        cluster.close()
