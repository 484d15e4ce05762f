"""A lab: a switch, N nodes and a client, each in its own network namespace.

Layout (all inside namespaces; nothing touches the host's interfaces)::

    <prefix>-sw   bridge br0; port pK per node K (p1, p2 ...), port pc for the client
    <prefix>-nK   eth0 = 198.18.0.K/24           (node K, 1-based, at most 8 nodes)
    <prefix>-cl   eth0 = 198.18.0.100/24         (the client that probes the virtual IP)

198.18.0.10 (:data:`VIP`) is left free for the cluster's virtual IP, as the talk's 10.0.10.10.
Every program runs with a private ``/tmp`` and ``/etc/logrotate.d`` (per host directories under
the lab's work directory), so the talk's ``master`` script works per node, and with an
``/etc/hosts`` that also names every lab host (``n1`` -> 198.18.0.1, ``client`` -> .100).
Plain node processes keep the machine's host name: nonstop must take its identity from flags.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType

from nonstop.errors import InvalidValue
from nonstop.lab.box import (
    HEARTBEAT_BINARY,
    HEARTBEAT_PIDFILE,
    READY_MARKER,
    box_bin,
    install_ha_config,
    prepare_box,
)
from nonstop.lab.commands import run_checked
from nonstop.lab.errors import LabError
from nonstop.lab.faults import FaultState
from nonstop.lab.fence import (
    PLUGIN_TYPE,
    LabFenceDevice,
    PowerSwitch,
    install_plugin,
    stonith_binds,
)
from nonstop.lab.mounts import Bind, prologue
from nonstop.lab.names import LabPrefix, new_prefix
from nonstop.lab.nsprocs import box_init, kill_netns_processes
from nonstop.lab.process import BoxProcess, LabProcess
from nonstop.lab.switchfaults import SwitchFaults
from nonstop.lab.wait import wait_for

CLIENT = "client"
PREFIXLEN = 24
VIP = "198.18.0.10"
CLIENT_IP = "198.18.0.100"
MAX_NODES = 8
BRIDGE = "br0"
DEFAULT_WORK_ROOT = Path("/var/tmp/nonstop-lab")
# Paths a lab host sees privately; a work directory under one of them would vanish from view.
PRIVATE_PATHS = ("/tmp", "/run", "/etc/ha.d", "/etc/logrotate.d", "/etc/hosts", "/var/log",
                 "/var/lib/heartbeat")
# The directory nonstop is imported from (a checkout's src/, or site-packages). A checkout under
# a path a lab host sees privately (/tmp, or /srv when a bench mounts a node's disk there) would
# vanish from the view of the programs the lab starts: it is mounted again, in their mount
# namespace only, at a visible place in the work directory that PYTHONPATH names first.
CODE_ROOT = Path(__file__).resolve().parents[2]


class Lab(SwitchFaults):
    """Network-namespace test hosts: build with ``with Lab(("n1", "n2")) as lab:``.

    Methods are synchronous and quick (each runs a few ``ip``/``nft`` commands), so asyncio code
    may call them directly. Teardown stops every process the lab started, kills anything left in
    its namespaces, deletes the namespaces and the work directory, even after an exception.
    """

    def __init__(self, nodes: Sequence[str] = ("n1", "n2"), *, workdir: Path | None = None,
                 keep_workdir: bool = False) -> None:
        if not 1 <= len(nodes) <= MAX_NODES:
            raise InvalidValue(f"a lab has 1..{MAX_NODES} nodes, not {len(nodes)}")
        if len(set(nodes)) != len(nodes) or CLIENT in nodes:
            raise InvalidValue(f"node names must be distinct and not {CLIENT!r}: {nodes}")
        for name in nodes:
            if not name or len(name) > 63 or not all(c.isalnum() or c in "-_." for c in name):
                raise InvalidValue(f"node name {name!r} is not a valid host name")
        self._prefix: LabPrefix = new_prefix()
        self.nodes: tuple[str, ...] = tuple(nodes)
        self.keep_workdir = keep_workdir
        self.workdir = (workdir or DEFAULT_WORK_ROOT / self._prefix.text).resolve()
        for private in PRIVATE_PATHS:
            if PurePosixPath(self.workdir).is_relative_to(private):
                raise InvalidValue(f"work directory {self.workdir} is under {private}, which "
                                   "lab hosts see privately")
            if PurePosixPath(sys.prefix).is_relative_to(private):
                raise InvalidValue(f"Python ({sys.prefix}) is under {private}, which lab hosts see "
                                   "privately: use a Python (or virtualenv) installed elsewhere")
        self._created_workdir = False
        self._namespaces: list[str] = []
        self._processes: list[LabProcess] = []
        self._boxes: dict[str, BoxProcess] = {}
        self._faults = FaultState()
        self._power_switch: PowerSwitch | None = None
        self._started = False
        self._closed = False

    # -- naming ---------------------------------------------------------------------------------

    @property
    def prefix(self) -> str:
        """The per-run prefix every namespace name of this lab starts with (``nl<pid>x<n>``)."""
        return self._prefix.text

    @property
    def hosts(self) -> tuple[str, ...]:
        """The nodes, then :data:`CLIENT`."""
        return (*self.nodes, CLIENT)

    @property
    def switch_netns(self) -> str:
        """Name of the switch's namespace."""
        return self._prefix.name("sw")

    def _index(self, host: str) -> int:
        try:
            return self.nodes.index(host) + 1
        except ValueError:
            if host == CLIENT:
                return 0
            raise LabError(f"no host {host!r} in this lab (hosts: {self.hosts})") from None

    def _node(self, node: str) -> str:
        if node == CLIENT or node not in self.nodes:
            raise LabError(f"{node!r} is not a node of this lab (nodes: {self.nodes})")
        return node

    def netns(self, host: str) -> str:
        """Name of the network namespace of a node or of the client."""
        index = self._index(host)
        return self._prefix.name(f"n{index}" if index else "cl")

    def port(self, host: str) -> str:
        """Name of the host's port on the switch (in the switch namespace)."""
        index = self._index(host)
        return f"p{index}" if index else "pc"

    def ip(self, host: str) -> str:
        """The host's address on eth0 (prefix length :data:`PREFIXLEN`)."""
        index = self._index(host)
        return f"198.18.0.{index}" if index else CLIENT_IP

    def host_dir(self, host: str) -> Path:
        """The host's directory in the work directory (its private /tmp, logs, box files)."""
        self._index(host)
        return self.workdir / host

    def _binds(self, host: str) -> list[Bind]:
        base = self.host_dir(host)
        return [Bind(str(self.workdir / "hosts"), "/etc/hosts"),
                Bind(str(base / "logrotate.d"), "/etc/logrotate.d"),
                Bind(str(base / "tmp"), "/tmp")]

    @property
    def code_dir(self) -> Path:
        """Where lab programs find nonstop's code when its own place is hidden from them."""
        return self.workdir / "code"

    def code_binds(self, targets: Iterable[str]) -> dict[str, Path]:
        """The bind (target -> source) that keeps :data:`CODE_ROOT` importable, at
        :attr:`code_dir`, for a program that sees other directories mounted over ``targets``;
        empty when none of them hides it. Mount it before those."""
        if any(PurePosixPath(CODE_ROOT).is_relative_to(t) for t in targets):
            return {str(self.code_dir): CODE_ROOT}
        return {}

    def _with_code(self, binds: list[Bind]) -> list[Bind]:
        extra = self.code_binds(b.target for b in binds)
        return [*binds, *(Bind(str(src), target) for target, src in extra.items())]

    def child_env(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """This process's environment plus ``env``, for a program started in a lab host:
        PYTHONPATH names :attr:`code_dir` first (empty, so harmless, unless the code is hidden
        at its own place)."""
        merged = dict(os.environ)
        merged.update(env or {})
        rest = merged.get("PYTHONPATH", "")
        merged["PYTHONPATH"] = str(self.code_dir) + (os.pathsep + rest if rest else "")
        return merged

    def _box_binds(self, host: str) -> list[Bind]:
        return prepare_box(self.host_dir(host) / "box")

    def host_path(self, host: str, path: str) -> Path:
        """Where a host's private path (``/tmp/.HB-master``, a box's ``/var/log/ha-log``) is on
        the machine; paths that are not private map to themselves."""
        box = self.host_dir(host) / "box"
        table = {
            "/etc/hosts": self.workdir / "hosts",
            "/tmp": self.host_dir(host) / "tmp",
            "/etc/logrotate.d": self.host_dir(host) / "logrotate.d",
            "/run": box / "run",
            "/var/run": box / "run",
            "/etc/ha.d": box / "etc-ha.d",
            "/var/lib/heartbeat": box / "var-lib-heartbeat",
            "/var/log": box / "var-log",
        }
        pure = PurePosixPath(path)
        for target, source in sorted(table.items(), key=lambda item: -len(item[0])):
            if pure.is_relative_to(target):
                return source / pure.relative_to(target)
        return Path(path)

    # -- build and teardown --------------------------------------------------------------------

    def __enter__(self) -> Lab:
        return self.start()

    async def __aenter__(self) -> Lab:
        return self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> Lab:
        """Build the namespaces, the switch and the links; on failure undo what was built."""
        if self._started:
            raise LabError("lab already started")
        self._started = True
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _ip(self, *args: str) -> str:
        return run_checked(["ip", *args])

    def _add_netns(self, name: str) -> None:
        self._ip("netns", "add", name)
        self._namespaces.append(name)
        # Per-namespace sysctls: no IPv6 chatter (router solicitations, DAD) on lab links.
        run_checked(["ip", "netns", "exec", name, "sysctl", "-q", "-w",
                     "net.ipv6.conf.all.disable_ipv6=1",
                     "net.ipv6.conf.default.disable_ipv6=1"])
        self._ip("-n", name, "link", "set", "lo", "up")

    def _build(self) -> None:
        if not self.workdir.exists():
            self.workdir.mkdir(parents=True)
            self._created_workdir = True  # only a directory we made is removed at teardown
        self._write_hosts_file()
        self.code_dir.mkdir(exist_ok=True)
        for host in self.hosts:
            base = self.host_dir(host)
            for sub in ("logrotate.d", "logs", "tmp"):
                (base / sub).mkdir(parents=True, exist_ok=True)
            (base / "tmp").chmod(0o1777)
        sw = self.switch_netns
        self._add_netns(sw)
        self._ip("-n", sw, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0",
                 "mcast_snooping", "0")
        self._ip("-n", sw, "link", "set", BRIDGE, "up")
        for host in self.hosts:
            ns = self.netns(host)
            port = self.port(host)
            self._add_netns(ns)
            # Both ends are created directly in lab namespaces: no name ever exists on the host.
            self._ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                     "netns", ns)
            self._ip("-n", sw, "link", "set", port, "master", BRIDGE, "up")
            self._ip("-n", ns, "addr", "add", f"{self.ip(host)}/{PREFIXLEN}", "broadcast", "+",
                     "dev", "eth0")
            self._ip("-n", ns, "link", "set", "eth0", "up")
        self._apply_faults()

    def _write_hosts_file(self) -> None:
        # Host names resolve in every lab host (csync2 names its peers), on top of the machine's
        # own entries so that local names keep resolving.
        try:
            base = Path("/etc/hosts").read_text()
        except OSError:
            base = "127.0.0.1 localhost\n"
        lines = [f"{self.ip(host)} {host}" for host in self.hosts]
        (self.workdir / "hosts").write_text(
            base.rstrip("\n") + "\n# nonstop lab " + self.prefix + "\n" + "\n".join(lines) + "\n")

    def logs_saying(self, text: str) -> list[str]:
        """The processes whose log (so far) has ``text``: a check before teardown."""
        return [repr(proc) for proc in self._processes if text in proc.read_log()]

    def close(self) -> None:
        """Tear everything down; safe to call twice. Raises LabError after a complete teardown
        if any step failed."""
        if self._closed:
            return
        self._closed = True
        problems: list[str] = []
        if self._power_switch is not None:
            self._power_switch.close()
        # All at once first: a Heartbeat that stops alone sees its peer take over its resources,
        # which the peer then has to give up again when its own turn comes.
        for proc in self._processes:
            proc.signal(signal.SIGTERM)
        for proc in reversed(self._processes):
            try:
                proc.stop(timeout=10.0)
            except Exception as exc:  # teardown goes on; the failure is reported at the end
                problems.append(f"stop {proc!r}: {exc}")
        for name in reversed(self._namespaces):
            try:
                kill_netns_processes(name)
            except Exception as exc:
                problems.append(f"kill processes in {name}: {exc}")
            try:
                self._ip("netns", "del", name)
            except Exception as exc:
                problems.append(f"remove namespace {name}: {exc}")
        self._namespaces.clear()
        if self._created_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if problems:
            raise LabError("lab teardown: " + "; ".join(problems))

    # -- processes -----------------------------------------------------------------------------

    def _command(self, host: str, argv: Sequence[str], binds: Mapping[str, str | Path] | None,
                 ) -> list[str]:
        if not argv:
            raise LabError("empty command")
        all_binds = self._binds(host)
        all_binds.extend(Bind(str(src), target) for target, src in (binds or {}).items())
        all_binds = self._with_code(all_binds)
        # ip netns exec already gives a mount namespace that is a slave of the host's; unshare
        # makes our own one (slave again, so host umounts of lab namespaces still reach it and
        # no mount of ours reaches the host).
        return ["ip", "netns", "exec", self.netns(host), "unshare", "--mount", "--propagation",
                "slave", "sh", "-c", prologue(all_binds), "lab-prologue", *argv]

    def _env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        return self.child_env(env)

    def _log_path(self, host: str, argv: Sequence[str], log_path: Path | None,
                  name: str | None = None) -> Path:
        if log_path is not None:
            return log_path
        stem = name or Path(argv[0]).name or "proc"
        count = sum(1 for p in self._processes if p.host == host)
        return self.host_dir(host) / "logs" / f"{count:02d}-{stem}.log"

    def _popen(self, host: str, cmd: list[str], argv: Sequence[str], env: Mapping[str, str] | None,
               log_path: Path | None, cwd: Path | None, name: str | None = None,
               ) -> tuple[subprocess.Popen[bytes], Path]:
        if self._closed or not self._started:
            raise LabError("lab is not running")
        path = self._log_path(host, argv, log_path, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as log:
            popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=self._env(env), cwd=cwd,
                                     start_new_session=True)
        return popen, path

    def spawn(self, host: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              log_path: Path | None = None, binds: Mapping[str, str | Path] | None = None,
              cwd: Path | None = None, name: str | None = None) -> LabProcess:
        """Start ``argv`` in the host's namespace with its private /tmp and /etc/logrotate.d.

        ``env`` is added to this process's environment; ``binds`` maps further target paths to
        host directories to mount over them; stdout and stderr go to ``log_path`` (default:
        ``<host dir>/logs/<n>-<name or program>.log``). The lab stops the process at teardown.
        """
        popen, path = self._popen(host, self._command(host, argv, binds), argv, env, log_path, cwd,
                                  name)
        proc = LabProcess(popen, host=host, argv=argv, log_path=path)
        self._processes.append(proc)
        return proc

    def run(self, host: str, argv: Sequence[str], *, timeout: float = 15.0, check: bool = False,
            env: Mapping[str, str] | None = None, binds: Mapping[str, str | Path] | None = None,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a short command on the host (same view as :meth:`spawn`) and capture its output.

        A command still running at ``timeout`` is killed with its process group: LabError.
        """
        return self._run(self._command(host, argv, binds), argv, timeout=timeout, check=check,
                         env=env, input_text=input_text)

    def _run(self, cmd: list[str], argv: Sequence[str], *, timeout: float, check: bool,
             env: Mapping[str, str] | None, input_text: str | None,
             ) -> subprocess.CompletedProcess[str]:
        if self._closed or not self._started:
            raise LabError("lab is not running")
        with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=self._env(env),
                              start_new_session=True) as popen:
            try:
                out, err = popen.communicate(input_text, timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.communicate()
                raise LabError(f"{' '.join(argv)}: still running after {timeout} s") from None
        done = subprocess.CompletedProcess(list(argv), popen.returncode, out, err)
        if check and done.returncode != 0:
            raise LabError(f"{' '.join(argv)}: exit {done.returncode}: {err.strip()}")
        return done

    def addresses(self, host: str) -> list[str]:
        """IPv4 addresses on the host's interfaces, as ``a.b.c.d`` (loopback excluded)."""
        out = self._ip("-n", self.netns(host), "-j", "-4", "addr", "show")
        found: list[str] = []
        for link in json.loads(out):
            for info in link.get("addr_info", []):
                local = info.get("local")
                if isinstance(local, str) and not local.startswith("127."):
                    found.append(local)
        return found

    def has_address(self, host: str, ip: str) -> bool:
        """True when ``ip`` is configured on one of the host's interfaces."""
        return ip in self.addresses(host)

    def add_address(self, host: str, ip: str, prefixlen: int = PREFIXLEN,
                    dev: str = "eth0") -> None:
        """Add an address by hand (tests standing in for an IPaddr resource)."""
        self._ip("-n", self.netns(host), "addr", "add", f"{ip}/{prefixlen}", "broadcast", "+",
                 "dev", dev)

    def del_address(self, host: str, ip: str, prefixlen: int = PREFIXLEN,
                    dev: str = "eth0") -> None:
        """Remove an address added by :meth:`add_address`."""
        self._ip("-n", self.netns(host), "addr", "del", f"{ip}/{prefixlen}", "dev", dev)

    # -- boxes: the real Heartbeat --------------------------------------------------------------

    def start_box(self, node: str, argv: Sequence[str], *, pidfile: str | None = None,
                  log_path: Path | None = None, env: Mapping[str, str] | None = None,
                  ready_timeout: float = 15.0,
                  binds: Mapping[str, str | Path] | None = None) -> BoxProcess:
        """Start ``argv`` as the program of a box: the node's network namespace plus its own
        mount, UTS (hostname = node name) and PID namespace, with private /run, /tmp, /etc/ha.d,
        /etc/logrotate.d, /var/lib/heartbeat, /var/log and stubs over reboot and systemctl.

        ``pidfile`` (a path inside the box) says the program daemonizes and writes its pid there.
        The box's PATH starts with a directory holding a ``mail`` stand-in that appends messages
        to the box's ``/var/log/lab-mail.log`` (Heartbeat's MailTo needs mail(1)).
        A node has at most one box at a time; :meth:`box_run` enters it. ``binds`` maps further
        target paths to host directories (e.g. :meth:`stonith_device`'s plugin directory).
        """
        node = self._node(node)
        current = self._boxes.get(node)
        if current is not None and current.running:
            raise LabError(f"{node} already runs a box: {current!r}")
        extra = [Bind(str(src), target) for target, src in (binds or {}).items()]
        all_binds = self._with_code(self._binds(node) + self._box_binds(node) + extra)
        init = [sys.executable, "-m", "nonstop.lab.boxinit"]
        if pidfile is not None:
            init += ["--pidfile", pidfile]
        cmd = ["ip", "netns", "exec", self.netns(node), "unshare", "--mount", "--propagation",
               "slave", "--uts", "--pid", "--fork", "--kill-child", "--mount-proc",
               "sh", "-c", prologue(all_binds, hostname=node, ready_marker=READY_MARKER),
               "lab-box", *init, "--", *argv]
        path_dirs = [str(box_bin(self.host_dir(node) / "box")), os.environ.get("PATH", "")]
        box_env = {"PATH": ":".join(path_dirs)}
        box_env.update(env or {})
        popen, path = self._popen(node, cmd, argv, box_env, log_path, None)
        ready = self.host_path(node, READY_MARKER)
        try:
            wait_for(lambda: ready.exists() or popen.poll() is not None, ready_timeout,
                     what=f"box of {node} to mount its file system")
            if popen.poll() is not None:
                raise LabError(f"box of {node} exited with {popen.returncode}: see {path}")
            init_pid = box_init(popen, f"box of {node}, see {path}")
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(10.0)
            raise
        proc = BoxProcess(popen, host=node, argv=argv, log_path=path, init_pid=init_pid)
        self._processes.append(proc)
        self._boxes[node] = proc
        return proc

    # -- fencing: a power switch for boxes -----------------------------------------------------

    def power_off(self, node: str) -> str:
        """Power a node's box off as a power switch would (its init killed, so everything in
        it); returns what happened. A node without a running box is already off."""
        node = self._node(node)
        box = self._boxes.get(node)
        if box is None or not box.running:
            return f"{node} is already off"
        box.kill()
        return f"powered {node} off"

    def stonith_device(self, nodes: Iterable[str]) -> LabFenceDevice:
        """A STONITH device that powers off the boxes of ``nodes`` (see lab/fence.py): starts
        the lab's power switch on first use. Give ``.binds`` to the program that fences."""
        names = tuple(self._node(n) for n in nodes)
        if self._power_switch is None:
            if self._closed or not self._started:
                raise LabError("lab is not running")
            self._power_switch = PowerSwitch(self.workdir / "power-switch.sock",
                                             self.power_off).start()
        plugin_dir = self.workdir / "stonith-plugins"
        install_plugin(plugin_dir)
        return LabFenceDevice(PLUGIN_TYPE, names, self._power_switch.path,
                              stonith_binds(plugin_dir))

    def start_heartbeat(self, node: str, config_dir: Path, *, log_path: Path | None = None,
                        binds: Mapping[str, str | Path] | None = None) -> BoxProcess:
        """Run the real Heartbeat 3.0.6 in a box on ``node`` with a copy of ``config_dir`` as
        /etc/ha.d (over the packaged harc, rc.d, resource.d, shellfuncs; authkeys made 600)."""
        node = self._node(node)
        install_ha_config(config_dir, self.host_dir(node) / "box" / "etc-ha.d")
        return self.start_box(node, [HEARTBEAT_BINARY], pidfile=HEARTBEAT_PIDFILE,
                              log_path=log_path, binds=binds)

    def box(self, node: str) -> BoxProcess:
        """The node's running box."""
        proc = self._boxes.get(self._node(node))
        if proc is None or not proc.running:
            raise LabError(f"{node} has no running box")
        return proc

    def box_run(self, node: str, argv: Sequence[str], *, timeout: float = 15.0,
                check: bool = False, input_text: str | None = None,
                ) -> subprocess.CompletedProcess[str]:
        """Run a short command inside the node's box (all of its namespaces), e.g. cl_status."""
        init_pid = self.box(node).init_pid
        cmd = ["nsenter", "-t", str(init_pid), "-n", "-m", "-u", "-p", "--wd=/", "--", *argv]
        return self._run(cmd, argv, timeout=timeout, check=check, env=None,
                         input_text=input_text)

