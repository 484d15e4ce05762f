"""The talk's two-node PBX cluster, built in network namespaces on this one machine.

Each node is a *machine*: the lab's network namespace plus its own mount and UTS namespace
(host name ``vpbx1-1``/``vpbx1-2``, as the talk's nodes), entered through a holder process.
In its mount namespace ``/etc``, ``/var/lib``, ``/var/spool``, ``/var/log`` and ``/var/backups``
are overlays whose upper layers are per-node directories in the lab's work directory, and ``/run``
is empty: the node's programs see the talk's paths (``/etc/ha.d``, ``/etc/csync2.cfg``,
``/etc/asterisk``, ``/var/spool/asterisk`` ...) and every write lands in the node's own copy;
nothing on the machine itself changes. Killing every process of a node's namespace is a power
cut; booting it again mounts the same upper layers, like a disk that survived.

A node runs the nonstop daemon on ``/etc/ha.d``, a mail server on 127.0.0.1:25 (MailTo's takeover
mail), ``ip monitor`` (when the virtual IP comes and goes) and, while the daemon does not replicate
by itself, the talk's replication: ``nonstop sync -i`` (csync2's inetd service) and its cron line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nonstop.api import ApiError, request
from nonstop.config.model import HaConfig
from nonstop.demo.config import (
    CSYNC2_KEY_PATH,
    DEMO_VIP,
    NODE_NAMES,
    Change,
    demo_hacf,
    demo_haresources,
    hosts_file,
    migrate_csync2_calls,
)
from nonstop.errors import InvalidValue
from nonstop.lab import CLIENT, BoxProcess, Lab, LabError, LabProcess, wait_for
from nonstop.lab.kamailio import write_asterisk_service
from nonstop.lab.nsprocs import kill_netns_processes
from nonstop.lab.sipprobe import probe_command
from nonstop.sync.cli import make_key
from nonstop.talk import talk_file

# Directories each node sees through an overlay with its own upper layer.
OVERLAID = ("/etc", "/var/lib", "/var/spool", "/var/log", "/var/backups")
# The talk's csync2.cfg includes these; a node gets them empty, as a fresh Asterisk install.
VOICEMAIL_DIR = "/var/spool/asterisk/voicemail/default/1000/INBOX"
NODE_DIRS = ("/etc/asterisk", "/var/lib/asterisk", VOICEMAIL_DIR, "/var/log/asterisk",
             "/var/backups/csync2", "/var/lib/nonstop/sync")
CRON_INTERVAL_S = 2.0
NODE_PAGE_PORT = 9464  # nonstop_metrics in each node (its own localhost)
# As the bench's hand-off suite: a hand-off's gap of a few tens of ms, seen in 5 ms steps.
PROBE_INTERVAL_S = 0.005
PROBE_TIMEOUT_S = 0.5


def _upper_name(target: str) -> str:
    return target.strip("/").replace("/", "-")


@dataclass(frozen=True)
class DemoFiles:
    """The texts the nodes run with, and every change made to the talk's files."""

    hacf: str
    haresources: str
    authkeys: str
    master: str
    csync2_cfg: str
    cron_command: str
    changes: tuple[Change, ...]


def daemon_can_replicate() -> bool:
    """Whether this nonstop's ha.cf has ``nonstop_sync`` (the daemon replicates by itself)."""
    return any(f.name == "sync_config" for f in dataclasses.fields(HaConfig))


def demo_files(initdead_s: int, *, daemon_sync: bool) -> DemoFiles:
    """The talk's files with the demo's changes (initdead, the VIP, the program name and,
    with ``daemon_sync``, the daemon's own replication of the talk's csync2.cfg)."""
    hacf, c1 = demo_hacf(talk_file("ha.d/ha.cf").read_text(), initdead_s,
                         sync_config="/etc/csync2.cfg" if daemon_sync else None,
                         mail_relay="127.0.0.1:25", page_port=NODE_PAGE_PORT)
    hares, c2 = demo_haresources(talk_file("ha.d/haresources").read_text())
    master, c3 = migrate_csync2_calls(talk_file("ha.d/resource.d/master").read_text(),
                                      "resource.d/master")
    cron, c4 = migrate_csync2_calls(talk_file("crontab").read_text(), "crontab")
    cron_line = next(line for line in cron.splitlines() if line.strip()
                     and not line.startswith("#"))
    # The five time fields of the crontab entry; the rest is the command cron runs.
    command = cron_line.split(None, 5)[5]
    return DemoFiles(hacf=hacf, haresources=hares, authkeys=talk_file("ha.d/authkeys").read_text(),
                     master=master, csync2_cfg=talk_file("csync2.cfg").read_text(),
                     cron_command=command, changes=(*c1, *c2, *c3, *c4))


def _machine_script(name: str, base: Path) -> str:
    """``sh -c`` text that makes the mount/UTS namespace a node's machine, then holds it."""
    q = shlex.quote
    lines = ["set -e", f"hostname {q(name)}",
             "mount -t tmpfs -o mode=0755,size=8m nonstop-demo-run /run"]
    for target in OVERLAID:
        upper = base / "fs" / _upper_name(target)
        work = base / "fs" / ".work" / _upper_name(target)
        lines.append(f"mount -t overlay nonstop-demo -o lowerdir={target},upperdir={q(str(upper))},"
                     f"workdir={q(str(work))} {target}")
    # The overlay on /etc covers the lab's private /etc/logrotate.d: mount it again on top.
    lines.append(f"mount --bind {q(str(base / 'logrotate.d'))} /etc/logrotate.d")
    lines.append("echo machine ready")
    # PID 1 of the machine reaps orphans at once, as a box's init does in the bench: a
    # daemonized kamailio is an orphan, and the asterisk script's stop waits for its pid to go.
    lines.append(f"exec {q(sys.executable)} -m nonstop.lab.boxinit -- sleep infinity")
    return "\n".join(lines) + "\n"


def _only_child(pid: int) -> int | None:
    """The host pid of ``unshare --fork``'s child (the machine's PID 1), once it exists."""
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(found[0]) if found else None


@dataclass
class Machine:
    """One node of the demo cluster and the processes it runs in the current boot."""

    name: str
    base: Path
    holder: LabProcess | None = None
    init_pid: int = 0  # host pid of the machine's PID 1 (it reaps orphans)
    daemon: LabProcess | None = None
    procs: list[LabProcess] = field(default_factory=list)
    boots: int = 0
    powered: bool = False

    @property
    def state_dir(self) -> Path:
        """The daemon's state directory (control socket, generation), on the host's disk."""
        return self.base / "state"

    def path(self, node_path: str) -> Path:
        """Where the node's file ``node_path`` lives on the host (through its overlay's upper
        layer; /tmp is the lab's private /tmp)."""
        if node_path == "/tmp" or node_path.startswith("/tmp/"):
            return self.base / "tmp" / node_path[len("/tmp"):].lstrip("/")
        for target in OVERLAID:
            if node_path == target or node_path.startswith(target + "/"):
                rest = node_path[len(target):].lstrip("/")
                return self.base / "fs" / _upper_name(target) / rest
        raise InvalidValue(f"{node_path} is not private to the node")

    @property
    def logs(self) -> Path:
        """Where this node's process logs go."""
        return self.base / "logs"

    def log(self, kind: str) -> Path:
        """The log file of ``kind`` (daemon, addr, mail ...) for the current boot."""
        return self.logs / f"{kind}-boot{self.boots}.log"

    def all_logs(self, kind: str) -> list[Path]:
        """Logs of ``kind`` of every boot so far, oldest first."""
        return [self.logs / f"{kind}-boot{b}.log" for b in range(1, self.boots + 1)]

    @property
    def mail_log(self) -> Path:
        """The JSON-lines record of mail delivered to this node's mail server."""
        return self.base / "mail.jsonl"


class DemoCluster:
    """Build with ``with DemoCluster(...) as cluster:``; teardown stops every process by pid and
    removes every namespace, also after an error or Ctrl-C."""

    def __init__(self, *, initdead_s: int, cron_interval_s: float = CRON_INTERVAL_S,
                 keep_workdir: bool = False) -> None:
        self.daemon_replicates = daemon_can_replicate()
        self.files = demo_files(initdead_s, daemon_sync=self.daemon_replicates)
        self.cron_interval_s = cron_interval_s
        self.lab = Lab(NODE_NAMES, keep_workdir=keep_workdir)
        self.machines = {name: Machine(name, self.lab.host_dir(name)) for name in NODE_NAMES}
        self.prober: LabProcess | None = None
        # Each node's status page, relayed to this machine's localhost (nonstop.demo.pagebridge).
        self.pages: dict[str, str] = {}
        self._page_relays: list[LabProcess] = []
        self._closed = False

    # -- naming

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node names, in ha.cf order."""
        return NODE_NAMES

    @property
    def vip(self) -> str:
        """The cluster's virtual IP."""
        return DEMO_VIP

    @property
    def probe_record(self) -> Path:
        """The SIP prober's JSON-lines record."""
        return self.lab.host_dir(CLIENT) / "probes.jsonl"

    def other(self, node: str) -> str:
        """The other node."""
        return next(n for n in self.nodes if n != node)

    # -- lifecycle

    def __enter__(self) -> DemoCluster:
        self.lab.start()
        try:
            for m in self.machines.values():
                self._install(m)
            self._same_times()
            self._relay_pages()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the prober and every node (daemons leave gracefully when they can), then tear
        the lab down: namespaces, leftover processes, work directory."""
        if self._closed:
            return
        self._closed = True
        problems: list[str] = []
        for proc in [self.prober, *self._page_relays,
                     *(p for m in self.machines.values() for p in self._all(m))]:
            if proc is None:
                continue
            try:
                proc.stop(timeout=8.0)
            except Exception as exc:  # teardown goes on; the lab kills what is left
                problems.append(f"{proc!r}: {exc}")
        try:
            self.lab.close()
        except LabError as exc:
            problems.append(str(exc))
        if problems:
            raise LabError("demo teardown: " + "; ".join(problems))

    def _relay_pages(self) -> None:
        """This machine's end of each node's page relay, on a free localhost port."""
        for m in self.machines.values():
            port = _free_port()
            argv = [sys.executable, "-m", "nonstop.demo.pagebridge", "host",
                    str(m.base / "page.sock"), str(port)]
            log = m.log("page-host")
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("ab") as out:
                popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env=self.lab.child_env())
            self._page_relays.append(LabProcess(popen, host="local", argv=argv, log_path=log))
            self.pages[m.name] = f"http://127.0.0.1:{port}/"

    @staticmethod
    def _all(m: Machine) -> list[LabProcess]:
        # Daemon first (it releases the resources and needs nothing else), holder last.
        procs = [p for p in [m.daemon, *reversed(m.procs), m.holder] if p is not None]
        return procs

    # -- the node's files

    def _install(self, m: Machine) -> None:
        base = m.base
        for target in OVERLAID:
            (base / "fs" / _upper_name(target)).mkdir(parents=True, exist_ok=True)
            (base / "fs" / ".work" / _upper_name(target)).mkdir(parents=True, exist_ok=True)
        for d in NODE_DIRS:
            m.path(d).mkdir(parents=True, exist_ok=True)
        m.logs.mkdir(parents=True, exist_ok=True)
        m.state_dir.mkdir(parents=True, exist_ok=True)
        ha = m.path("/etc/ha.d")
        (ha / "resource.d").mkdir(parents=True, exist_ok=True)
        f = self.files
        (ha / "ha.cf").write_text(f.hacf)
        (ha / "haresources").write_text(f.haresources)
        (ha / "authkeys").write_text(f.authkeys)
        (ha / "authkeys").chmod(0o600)
        (ha / "resource.d" / "master").write_text(f.master)
        (ha / "resource.d" / "master").chmod(0o755)
        m.path("/etc/csync2.cfg").write_text(f.csync2_cfg)
        m.path("/etc/hosts").write_text(hosts_file({n: self.lab.ip(n) for n in self.nodes}))
        # The talk's logrotate snippet, which master links into /etc/logrotate.d on the active.
        m.path("/etc/asterisk/asterisk.logrotate").write_text(
            "/var/log/asterisk/*log {\n\tweekly\n\tmissingok\n\trotate 4\n}\n")
        # kamailio stands in for Asterisk: an LSB script in /etc/init.d, found as "asterisk".
        write_asterisk_service(m.path("/etc/init.d"), base / "sip", node=m.name,
                               listen_ip=DEMO_VIP)
        # master runs `nonstop sync`: the node's PATH finds this very installation first.
        bindir = base / "bin"
        bindir.mkdir(exist_ok=True)
        shim = bindir / "nonstop"
        shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m nonstop \"$@\"\n")
        shim.chmod(0o755)

    def _same_times(self) -> None:
        """Give both nodes' copies of the installed files one modification time, as copying
        them with ``scp -p`` would: identical files then count as in sync, not as changed on
        both nodes since the last sync (a conflict)."""
        now = time.time_ns()
        for m in self.machines.values():
            fs = m.base / "fs"
            for root, dirs, files in os.walk(fs):
                dirs[:] = [d for d in dirs if not (root == str(fs) and d == ".work")]
                for name in [*dirs, *files]:
                    os.utime(os.path.join(root, name), ns=(now, now), follow_symlinks=False)

    def install_key(self) -> None:
        """One csync2 group key, made by ``nonstop sync -k``, copied to both nodes."""
        first = self.machines[self.nodes[0]]
        key = first.path(CSYNC2_KEY_PATH)
        if not key.exists():
            make_key(str(key))
        for m in self.machines.values():
            dest = m.path(CSYNC2_KEY_PATH)
            if dest != key:
                dest.write_bytes(key.read_bytes())
                dest.chmod(0o600)

    # -- processes in a machine

    def _env(self, m: Machine) -> dict[str, str]:
        return {"PATH": f"{m.base / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "PYTHONUNBUFFERED": "1", "LC_ALL": "C.UTF-8"}

    def _enter(self, m: Machine) -> list[str]:
        if m.holder is None or not m.holder.running:
            raise LabError(f"{m.name} is not running")
        return ["nsenter", "-t", str(m.init_pid), "-m", "-u", "-n", "-p", "--wd=/", "--"]

    def start_in(self, node: str, argv: Sequence[str], kind: str) -> LabProcess:
        """Start a long-running program on the node; its output goes to the node's ``kind`` log."""
        m = self.machines[node]
        log = m.log(kind)
        env = self.lab.child_env(self._env(m))
        with log.open("ab") as out:
            popen = subprocess.Popen([*self._enter(m), *argv], stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        # nsenter forks the program into the machine's PID namespace and only waits for it:
        # signals (a graceful stop) must go to the program itself.
        child = wait_for(lambda: _only_child(popen.pid) or popen.poll() is not None, 10,
                         what=f"{argv[0]} to start on {node}")
        proc = BoxProcess(popen, host=node, argv=argv, log_path=log,
                          init_pid=child if child is not True else popen.pid)
        m.procs.append(proc)
        return proc

    def run_in(self, node: str, argv: Sequence[str], *, input_text: str | None = None,
               timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a short command on the node and capture its output."""
        m = self.machines[node]
        env = self.lab.child_env(self._env(m))
        with subprocess.Popen([*self._enter(m), *argv], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, start_new_session=True) as popen:
            try:
                out, err = popen.communicate(input_text, timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.communicate()
                raise LabError(f"{node}: {' '.join(argv)}: still running after {timeout} s") \
                    from None
        return subprocess.CompletedProcess(list(argv), popen.returncode, out, err)

    # -- boot, crash, cable

    def boot(self, node: str) -> None:
        """Power the node on: its machine, mail server, address monitor, then the daemon."""
        m = self.machines[node]
        if m.powered:
            raise LabError(f"{node} is already running")
        m.boots += 1
        m.procs = []
        m.daemon = None
        holder_log = m.log("machine")
        m.holder = self.lab.spawn(node, ["unshare", "--uts", "--pid", "--fork", "--kill-child",
                                         "--mount-proc", "--propagation", "slave", "sh", "-c",
                                         _machine_script(node, m.base), "machine"],
                                  log_path=holder_log, name="machine")
        m.powered = True
        holder = m.holder
        wait_for(lambda: "machine ready" in holder.read_log() or not holder.running, 15,
                 what=f"{node}'s file system to be mounted")
        if not holder.running:
            # e.g. no overlayfs here, or the work directory itself on an overlay (a container)
            raise LabError(f"{node}: could not set up its file system: "
                           f"{holder.read_log().strip()[-600:]}")
        m.init_pid = wait_for(lambda: _only_child(holder.pid), 10, what=f"{node}'s init")
        self.start_in(node, ["ip", "-ts", "monitor", "address", "dev", "eth0"], "addr")
        smtp = self.start_in(node, [sys.executable, "-m", "aiosmtpd", "-n", "-l",
                                    "127.0.0.1:25", "-c", "nonstop.demo.mailsink.MailLog",
                                    str(m.mail_log)], "smtpd")
        self._wait_port(node, smtp, 25)
        if not self.daemon_replicates:
            self._start_talk_replication(node)
        m.daemon = self.start_in(node, [sys.executable, "-m", "nonstop", "run", "--config-dir",
                                        "/etc/ha.d", "--state-dir", str(m.state_dir), "--node",
                                        node], "daemon")
        m.procs.remove(m.daemon)
        # The node's end of its page relay (nonstop.demo.pagebridge).
        self.start_in(node, [sys.executable, "-m", "nonstop.demo.pagebridge", "node",
                             str(m.base / "page.sock"), str(NODE_PAGE_PORT)], "page")

    def _wait_port(self, node: str, proc: LabProcess, port: int) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not proc.running:
                raise LabError(f"{node}: {' '.join(proc.argv)} exited: {proc.read_log()[-400:]}")
            done = self.run_in(node, ["ss", "-Hltn", f"sport = :{port}"], timeout=10)
            if done.stdout.strip():
                return
            time.sleep(0.05)
        raise LabError(f"{node}: nothing listens on port {port} after 20 s")

    def _start_talk_replication(self, node: str) -> None:
        # csync2 -ii from inetd in the talk; here its replacement, with every default
        # (/etc/csync2.cfg, the host name, port 30865).
        self.start_in(node, ["nonstop", "sync", "-i", "-v"], "sync-receiver")
        # The talk's crontab runs every 5 minutes; the demo runs the same line more often.
        loop = (f"while :; do {self.files.cron_command}; "
                f"sleep {self.cron_interval_s}; done")
        self.start_in(node, ["sh", "-c", loop], "cron")

    def power_off(self, node: str) -> None:
        """The crash: the node's cable goes dead and every process of the node dies at once."""
        m = self.machines[node]
        self.lab.link_down(node)
        kill_netns_processes(self.lab.netns(node))
        for proc in self._all(m):
            with contextlib.suppress(LabError):
                proc.wait(10.0)
        m.powered = False

    def power_on(self, node: str) -> None:
        """Boot a crashed node again: no address survives a reboot, nor /tmp (Debian cleans
        it at boot, and the talk's /tmp/.HB-master must not outlive a crash); the disk does."""
        if self.lab.has_address(node, DEMO_VIP):
            self.lab.del_address(node, DEMO_VIP)
        tmp = self.machines[node].path("/tmp")
        for entry in tmp.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        self.lab.link_up(node)
        self.boot(node)

    def cable_out(self, node: str) -> None:
        """Pull the node's network cable; its programs keep running."""
        self.lab.link_down(node)

    def cable_in(self, node: str) -> None:
        """Plug the cable back in."""
        self.lab.link_up(node)

    # -- the client

    def start_prober(self) -> None:
        """The SIP client: OPTIONS to the virtual IP every PROBE_INTERVAL_S."""
        self.prober = self.lab.spawn(CLIENT, probe_command(DEMO_VIP, self.probe_record,
                                                           interval=PROBE_INTERVAL_S,
                                                           timeout=PROBE_TIMEOUT_S),
                                     name="sipprobe")

    # -- asking the nodes

    def status(self, node: str) -> dict[str, Any] | None:
        """The daemon's status document, or None while it does not answer."""
        m = self.machines[node]
        if not m.powered or m.daemon is None or not m.daemon.running:
            return None
        try:
            reply = request(m.state_dir, "status", timeout=1.0)
        except ApiError:
            return None
        st = reply.get("status") if reply.get("ok") else None
        return st if isinstance(st, dict) else None

    def standby(self, node: str) -> None:
        """``nonstop standby`` on the node: give its resources to the other node."""
        reply = request(self.machines[node].state_dir, "standby", which="all")
        if not reply.get("ok"):
            raise LabError(f"{node}: standby refused: {reply.get('error')}")

    def write_file(self, node: str, path: str, data: str) -> None:
        """Write a file on the node, through its own view of the file system."""
        # Written under a hidden name (csync2.cfg excludes .*), then renamed: a scan never sees
        # half a file.
        script = 'part="$(dirname "$1")/.demo-part" && cat > "$part" && mv "$part" "$1"'
        done = self.run_in(node, ["sh", "-c", script, "write", path], input_text=data)
        if done.returncode != 0:
            raise LabError(f"{node}: cannot write {path}: {done.stderr.strip()}")

    def has_file(self, node: str, path: str, data: str) -> bool:
        """True when the node's copy of ``path`` has content ``data``."""
        try:
            return self.machines[node].path(path).read_text() == data
        except (FileNotFoundError, UnicodeDecodeError):
            return False

    def is_master(self, node: str) -> bool:
        """True when the talk's master flag /tmp/.HB-master exists on the node."""
        return self.machines[node].path("/tmp/.HB-master").exists()


def _free_port() -> int:
    """A port of this machine's localhost that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
