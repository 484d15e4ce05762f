"""The three replication systems side by side in one lab: nonstop sync, csync2 2.0, rsync.

Layout: a lab with nodes ``vpbx1-1`` (198.18.0.1, the pushing node) and ``vpbx1-2`` (.2, the
receiver); the lab's /etc/hosts names both, so csync2's name checks pass. Each node has its own
freshly made ext4 file system on a loop device (:func:`loop_filesystem`), mounted under the
bench's work directory. Every program sees the synced tree at ``/srv`` in its private mount
namespace (a bind mount of the node's directory: ``/etc/asterisk`` does not exist on this
machine to mount over) and its own ``/var/backups``; the same csync2.cfg (the talk's, with the
include list moved under /srv) drives csync2 and nonstop.

Every timed command runs inside the node's namespace and is timed there, around the program
only (``date +%s%N`` before and after), so entering the namespace is not counted.
"""

from __future__ import annotations

import abc
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nonstop.lab import Lab, LabError, LabProcess, wait_for
from nonstop.talk import talk_file

N1, N2 = "vpbx1-1", "vpbx1-2"
NODES = (N1, N2)
SRV = "/srv"
INCLUDES = ("etc/asterisk", "var/lib/asterisk", "var/spool/asterisk", "var/log/asterisk")
KEY = "nonstopBenchSyncKey." + "k" * 44  # 64 characters of [A-Za-z0-9._] as csync2 -k makes
CSYNC2_PORT = 30865
NONSTOP_PORT = 30866
RSYNC_PORT = 873
TIMER = ('s=$(date +%s%N); "$@"; rc=$?; e=$(date +%s%N); '
         'echo "BENCH-ELAPSED-NS $((e - s)) $rc" >&2; exit $rc')
_ELAPSED = re.compile(r"BENCH-ELAPSED-NS (\d+) (\d+)")


_HOLDER = """set -e
while [ $# -ge 2 ]; do mount -t ext4 "$1" "$2"; shift 2; done
echo ready
exec sleep 2147483647
"""
_VIEW = """set -e
while [ $# -ge 1 ] && [ "$1" != "--" ]; do mount --bind "$1" "$2"; shift 2; done
shift
exec "$@"
"""


class PrivateFilesystems:
    """A fresh ext4 per node on a sparse file attached to a loop device, mounted only in a
    private mount namespace (a holder process), never on the machine itself.

    Mounted on the host, the file systems would be copied into every mount namespace other
    people create meanwhile (each ``ip netns exec`` copies the host's mounts), keeping the loop
    devices busy after our unmount. Here the bench reaches the files through
    ``/proc/<holder>/root/...`` and lab programs enter the holder's namespace with nsenter
    (:meth:`wrap`). The holder's namespace, like a lab's, is a slave of the host's: our mounts
    stay ours, while the host's unmounts (``ip netns del`` of other people's namespaces) still
    reach our copies, so we never keep someone else's namespace alive. Without loop devices
    the directories are plain ones on the work file system and :attr:`description` says so.
    Everything is undone by :meth:`close`.
    """

    def __init__(self, workdir: Path, nodes: tuple[str, ...], size_mb: int) -> None:
        self.workdir = workdir
        self.nodes = nodes
        self.size_mb = size_mb
        self.devices: list[str] = []
        self.images: list[Path] = []
        self.holder: subprocess.Popen[str] | None = None
        self.description = ""
        self._mounts = {n: workdir / "fs" / n for n in nodes}

    def __enter__(self) -> PrivateFilesystems:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        for mnt in self._mounts.values():
            mnt.mkdir(parents=True, exist_ok=True)
        try:
            pairs: list[str] = []
            for node, mnt in self._mounts.items():
                image = self.workdir / "images" / f"{node}.img"
                image.parent.mkdir(parents=True, exist_ok=True)
                self.images.append(image)
                with image.open("wb") as fh:
                    fh.truncate(self.size_mb * 1024 * 1024)
                # Inode tables and journal written now, not by a kernel thread during the runs.
                subprocess.run(["mkfs.ext4", "-q", "-F", "-E",
                                "lazy_itable_init=0,lazy_journal_init=0", str(image)],
                               check=True, capture_output=True, timeout=300)
                device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                                        capture_output=True, text=True, timeout=30).stdout.strip()
                self.devices.append(device)
                pairs += [device, str(mnt)]
        except (OSError, subprocess.SubprocessError) as exc:
            self._detach()
            self.description = (f"plain directories on the work file system (no loop device: "
                                f"{exc})")
            return
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "slave", "sh", "-c", _HOLDER,
             "bench-fs", *pairs], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        assert self.holder.stdout is not None
        line = self.holder.stdout.readline()  # "ready", or EOF when a mount failed
        if line.strip() != "ready":
            err = self.holder.stderr.read() if self.holder.stderr else ""
            raise LabError(f"mounting the bench file systems failed: {err.strip()}")
        self.description = (f"a fresh journaled ext4 of {self.size_mb} MB per node on a loop "
                            f"device ({', '.join(self.devices)}), mounted in a private mount "
                            "namespace")

    def path(self, node: str) -> Path:
        """Where the bench process reaches ``node``'s file system."""
        mnt = self._mounts[node]
        if self.holder is None:
            return mnt
        return Path(f"/proc/{self.holder.pid}/root") / mnt.relative_to("/")

    def wrap(self, binds: dict[str, Path], argv: list[str]) -> list[str]:
        """``argv`` run in the holder's mount namespace (a copy of it) with ``binds``
        (target -> source, sources named as the host sees them) mounted first."""
        pairs = [str(x) for target, source in binds.items() for x in (source, target)]
        inner = ["sh", "-c", _VIEW, "bench-view", *pairs, "--", *argv]
        if self.holder is None:
            return ["unshare", "--mount", "--propagation", "slave", *inner]
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--", "unshare", "--mount",
                "--propagation", "slave", *inner]

    def inner(self, node: str, path: Path) -> Path:
        """A path on ``node``'s file system (as :meth:`path` names it) as named inside the
        holder's namespace, for bind mounts there."""
        return self._mounts[node] / path.relative_to(self.path(node))

    def close(self) -> None:
        """Unmount, stop the holder, detach the loop devices, remove the images."""
        if self.holder is not None:
            if self.holder.poll() is None:
                for mnt in self._mounts.values():
                    subprocess.run(["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--",
                                    "umount", str(mnt)], check=False, capture_output=True,
                                   timeout=120)
                self.holder.terminate()
            try:
                self.holder.wait(30)
            except subprocess.TimeoutExpired:
                self.holder.kill()
                self.holder.wait(30)
            for stream in (self.holder.stdout, self.holder.stderr):
                if stream is not None:
                    stream.close()
            self.holder = None
        self._detach()

    def _detach(self) -> None:
        for device in self.devices:
            subprocess.run(["losetup", "-d", device], check=False, capture_output=True,
                           timeout=30)
        self.devices.clear()
        for image in self.images:
            image.unlink(missing_ok=True)
        self.images.clear()


def flush(path: Path) -> None:
    """Write back everything dirty on ``path``'s file system (outside any timed window)."""
    subprocess.run(["sync", "-f", str(path)], check=True, timeout=300)


def clear(directory: Path) -> None:
    """Empty ``directory`` but keep it (it is the source of a bind mount)."""
    directory.mkdir(parents=True, exist_ok=True)
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def prepare_tree(root: Path) -> None:
    """The include roots exist on every node, as on a machine with Asterisk installed (csync2
    and nonstop both refuse to create a missing parent of an included directory)."""
    for inc in INCLUDES:
        path = root / inc
        path.mkdir(parents=True, exist_ok=True)
        for p in (path, *path.relative_to(root).parents):
            (root / p).chmod(0o755)


def bench_csync2_cfg(key_file: Path) -> str:
    """The talk's csync2.cfg with the include list moved under /srv (only the replicated
    Asterisk trees; the talk's /etc/hosts, /etc/aliases ... are this machine's own files) and
    the key in the node's own directory."""
    out: list[str] = []
    placed = False
    for line in talk_file("csync2.cfg").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("include "):
            if not placed:
                out.extend(f"    include {SRV}/{inc};" for inc in INCLUDES)
                placed = True
            continue
        if stripped.startswith("key "):
            line = f"    key {key_file};"
        out.append(line)
    if not placed:
        raise ValueError("the talk's csync2.cfg has no include lines")
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Timed:
    """One timed push: wall time inside the node, exit code and output."""

    seconds: float
    returncode: int
    output: str


class SyncLab:
    """The lab, the per-node file systems and directories shared by the three systems."""

    def __init__(self, lab: Lab, filesystems: PrivateFilesystems) -> None:
        self.lab = lab
        self.filesystems = filesystems
        self.fs = {n: filesystems.path(n) for n in NODES}
        self.cfg_dir = {n: lab.host_dir(n) / "sync-cfg" for n in NODES}
        self.backups = {n: self.fs[n] / "backups" for n in NODES}
        self.dst = self.fs[N2] / "dst"
        for node in NODES:
            self.cfg_dir[node].mkdir(parents=True, exist_ok=True)
            self.backups[node].mkdir(parents=True, exist_ok=True)
            key = self.cfg_dir[node] / "csync2.key_vpbx1"
            key.write_text(KEY + "\n")
            key.chmod(0o600)
            (self.cfg_dir[node] / "csync2.cfg").write_text(bench_csync2_cfg(key))
        self.dst.mkdir(parents=True, exist_ok=True)
        prepare_tree(self.dst)

    def source(self, key: str) -> Path:
        """The pushing node's tree of data set ``key`` (seen as /srv when it is pushed)."""
        return self.fs[N1] / "src" / key

    def inner(self, node: str, path: Path) -> Path:
        """``path`` on ``node``'s file system as programs in the lab name it."""
        return self.filesystems.inner(node, path)

    def command(self, node: str, argv: list[str], tree: Path) -> list[str]:
        """``argv`` on ``node`` seeing ``tree`` as /srv and its own /var/backups (and the lab's
        /etc/hosts and private /tmp, which entering the file systems' namespace drops)."""
        binds: dict[str, Path] = {
            "/etc/hosts": self.lab.host_path(node, "/etc/hosts"),
            "/tmp": self.lab.host_path(node, "/tmp"),
            SRV: self.inner(node, tree),
            "/var/backups": self.inner(node, self.backups[node]),
        }
        # A checkout under /srv or /tmp stays importable (mounted first, before it is hidden).
        # Without a holder namespace the wrapper runs inside the lab's own view, where /tmp is
        # already private and the lab has put the code at its code_dir: nothing to add for it.
        lab_hides = {"/tmp"} if self.filesystems.holder is None else set()
        code = self.lab.code_binds(t for t in binds if t not in lab_hides)
        return self.filesystems.wrap({**code, **binds}, argv)

    def spawn(self, node: str, argv: list[str], tree: Path, *, name: str,
              env: dict[str, str] | None = None) -> LabProcess:
        """Start a program on ``node`` (see :meth:`command`)."""
        return self.lab.spawn(node, self.command(node, argv, tree), env=env, name=name)

    def run(self, node: str, argv: list[str], tree: Path, *, timeout: float = 15.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a short command on ``node`` (see :meth:`command`)."""
        return self.lab.run(node, self.command(node, argv, tree), timeout=timeout, env=env)

    def timed(self, node: str, argv: list[str], tree: Path, *, timeout: float,
              env: dict[str, str] | None = None) -> Timed:
        """Run ``argv`` on ``node`` with ``tree`` as /srv; time it inside the namespace."""
        done = self.run(node, ["sh", "-c", TIMER, "bench-timer", *argv], tree,
                        timeout=timeout, env=env)
        found = _ELAPSED.findall(done.stderr)
        if not found:
            raise LabError(f"{argv[0]}: no timing from the wrapper (exit {done.returncode}): "
                           f"{done.stderr[-800:]}")
        ns, rc = found[-1]
        return Timed(int(ns) / 1e9, int(rc), (done.stdout + done.stderr)[-2000:])

    def wait_listening(self, node: str, port: int, proc: LabProcess, timeout: float = 30.0) -> None:
        """Wait until something listens on TCP ``port`` in ``node``'s namespace."""
        def listening() -> bool:
            if not proc.running:
                raise LabError(f"{proc!r} exited: {proc.read_log()[-800:]}")
            out = self.lab.run(node, ["ss", "-Hltn", f"sport = :{port}"], timeout=10.0)
            return bool(out.stdout.strip())

        wait_for(listening, timeout, what=f"a listener on port {port} of {node}", interval=0.05)


class System(abc.ABC):
    """One replication program: a receiver on vpbx1-2 and a push from vpbx1-1."""

    key: str = ""
    name: str = ""
    port: int = 0

    def __init__(self, s: SyncLab) -> None:
        self.s = s
        self.receiver: LabProcess | None = None
        self.state = {n: s.fs[n] / "state" / self.key for n in NODES}
        # The same directories as the programs name them.
        self.arg = {n: str(s.inner(n, self.state[n])) for n in NODES}

    def reset(self) -> None:
        """Forget every earlier sync: receiver stopped, its tree emptied, databases removed."""
        self.stop()
        for node in NODES:
            clear(self.state[node])
            clear(self.s.backups[node])
        clear(self.s.dst)
        prepare_tree(self.s.dst)
        for node in NODES:
            flush(self.s.fs[node])

    def start(self) -> None:
        """Start the receiver on vpbx1-2 and wait until it listens."""
        self.receiver = self.s.spawn(N2, self.receiver_argv(), self.s.dst, env=self.env(N2),
                                     name=f"{self.key}-receiver")
        self.s.wait_listening(N2, self.port, self.receiver)

    def stop(self) -> None:
        """Stop the receiver (by its pid)."""
        if self.receiver is not None:
            self.receiver.stop(timeout=15.0)
            self.receiver = None

    def push(self, source: Path, timeout: float) -> Timed:
        """One run of the push command on vpbx1-1 with ``source`` as /srv, timed."""
        for node in NODES:
            flush(self.s.fs[node])
        return self.s.timed(N1, self.push_argv(), source, timeout=timeout, env=self.env(N1))

    def flush_replica(self) -> float:
        """Seconds until everything vpbx1-2 received is on its disk (``sync -f``), timed
        from here right after a push: what a push that did not flush left to write."""
        t = time.monotonic()
        flush(self.s.fs[N2])
        return time.monotonic() - t

    def startup(self, source: Path) -> Timed | None:
        """The program's fixed cost on vpbx1-1: start, read the config, open the database,
        list nothing (``-M``, run once untimed first so that the database exists); None where
        there is no such mode."""
        argv = self.startup_argv()
        if argv is None:
            return None
        self.s.timed(N1, argv, source, timeout=60.0, env=self.env(N1))
        return self.s.timed(N1, argv, source, timeout=60.0, env=self.env(N1))

    def startup_argv(self) -> list[str] | None:
        """The command :meth:`startup` times."""
        return None

    def check_argv(self) -> list[str] | None:
        """A local no-change check of the whole tree on vpbx1-1 (no peer contacted); None
        where the program has no such mode."""
        return None

    def env(self, node: str) -> dict[str, str] | None:
        """Extra environment of this system's programs on ``node``."""
        return None

    @abc.abstractmethod
    def receiver_argv(self) -> list[str]:
        """The receiving daemon on vpbx1-2, in the foreground."""

    @abc.abstractmethod
    def push_argv(self) -> list[str]:
        """The command that makes vpbx1-2's tree equal to vpbx1-1's."""


class NonstopSync(System):
    """``nonstop sync -i`` on vpbx1-2, ``nonstop sync -x`` on vpbx1-1 (a new process per push,
    as from cron or the master script; the daemon's continuous mode is measured apart)."""

    key = "nonstop"
    name = "nonstop sync"
    port = NONSTOP_PORT

    def _common(self, node: str) -> list[str]:
        lab = self.s.lab
        return ["-N", node, "-p", str(self.port), "--config",
                str(self.s.cfg_dir[node] / "csync2.cfg"), "--state-dir", self.arg[node],
                *(f"--peer-address={n}={lab.ip(n)}" for n in NODES)]

    def receiver_argv(self) -> list[str]:
        return [sys.executable, "-m", "nonstop", "sync", "-i", "--listen", self.s.lab.ip(N2),
                *self._common(N2)]

    def push_argv(self) -> list[str]:
        return [sys.executable, "-m", "nonstop", "sync", "-x", *self._common(N1)]

    def startup_argv(self) -> list[str] | None:
        return [sys.executable, "-m", "nonstop", "sync", "-M", *self._common(N1)]

    def check_argv(self) -> list[str] | None:
        return [sys.executable, "-m", "nonstop", "sync", "-cr", SRV, *self._common(N1)]


class Csync2(System):
    """The Debian csync2 2.0: ``csync2 -ii`` on vpbx1-2, ``csync2 -x`` on vpbx1-1, each with its
    own config directory (CSYNC2_SYSTEM_DIR) and database directory (-D)."""

    key = "csync2"
    name = "csync2 2.0"
    port = CSYNC2_PORT

    def env(self, node: str) -> dict[str, str] | None:
        return {"CSYNC2_SYSTEM_DIR": str(self.s.cfg_dir[node])}

    def receiver_argv(self) -> list[str]:
        return ["csync2", "-ii", "-N", N2, "-D", self.arg[N2], "-p", str(self.port)]

    def push_argv(self) -> list[str]:
        return ["csync2", "-x", "-N", N1, "-D", self.arg[N1], "-p", str(self.port)]

    def startup_argv(self) -> list[str] | None:
        return ["csync2", "-M", "-N", N1, "-D", self.arg[N1]]

    def check_argv(self) -> list[str] | None:
        return ["csync2", "-cr", SRV, "-N", N1, "-D", self.arg[N1]]


RSYNCD_CONF = """\
# bench: the receiving node's rsync daemon; the module is the synced tree
use chroot = yes
log file = {log}
pid file = {pid}

[srv]
    path = {srv}
    read only = false
    uid = root
    gid = root
"""


class Rsync(System):
    """rsync 3.2 in daemon mode as the spec measured it: ``rsync --daemon`` on vpbx1-2,
    ``rsync -a --delete /srv/ rsync://vpbx1-2/srv/`` from vpbx1-1 (no state, no conflicts)."""

    key = "rsync"
    name = "rsync (daemon)"
    port = RSYNC_PORT

    def _conf(self) -> str:
        conf = self.state[N2] / "rsyncd.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(RSYNCD_CONF.format(log=f"{self.arg[N2]}/rsyncd.log",
                                           pid=f"{self.arg[N2]}/rsyncd.pid", srv=SRV))
        return f"{self.arg[N2]}/rsyncd.conf"

    def receiver_argv(self) -> list[str]:
        return ["rsync", "--daemon", "--no-detach", f"--config={self._conf()}",
                f"--address={self.s.lab.ip(N2)}", f"--port={self.port}"]

    def push_argv(self) -> list[str]:
        return ["rsync", "-a", "--delete", f"{SRV}/",
                f"rsync://{self.s.lab.ip(N2)}:{self.port}/srv/"]


class RsyncFsync(Rsync):
    """The same rsync push with ``--fsync``: the receiver fsyncs every file it writes, as
    nonstop does, so the two are compared at the same durability."""

    key = "rsync_fsync"
    name = "rsync --fsync (daemon)"

    def push_argv(self) -> list[str]:
        return ["rsync", "-a", "--delete", "--fsync", f"{SRV}/",
                f"rsync://{self.s.lab.ip(N2)}:{self.port}/srv/"]


SYSTEMS: dict[str, type[System]] = {"nonstop": NonstopSync, "csync2": Csync2, "rsync": Rsync,
                                    "rsync_fsync": RsyncFsync}


def same_view_check(s: SyncLab) -> None:
    """Fail early if a node does not see its own tree at /srv (the bind mounts are the
    premise of every number)."""
    marker = s.dst / ".bench-view"
    marker.write_text(N2)
    try:
        done = s.run(N2, ["cat", f"{SRV}/.bench-view"], s.dst)
        if done.stdout != N2:
            raise LabError(f"{N2} does not see its tree at {SRV}: {done.stderr.strip()}")
    finally:
        os.unlink(marker)
