"""The "live PBX" replication workload (issue 8): a big Asterisk ``full`` log replicated first,
then, for a fixed time, appended at 20 lines/s while voicemail arrives at 5 files/s and a
config file is edited every 10 s. Every system meets the same workload in the same lab, one
after the other:

* nonstop: the talk's cluster of two ``nonstop run`` daemons replicating continuously
  (bench.sync_latency's ReplicatingCluster), vpbx1-1 holding the group;
* csync2 2.0 as the talk runs it: ``csync2 -x`` from cron every 5 minutes. A workload shorter
  than the period never reaches a cron run, so one run is made at the end of the workload and
  the delays say so;
* lsyncd 2.2 (Debian's package) with its default rsync settings (``default.rsync``), pushing to
  an ``rsync --daemon`` on vpbx1-2.

Measured per system (see :class:`LiveResult`): for every change the delay until the standby
holds it, whether the standby's log is at every poll a prefix of the source's, bytes through the
standby's switch port, CPU of the replication processes and the growth of the backup directory.
Every wait has a deadline: a change that never arrives is reported as not delivered.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.framework import Cell, Table
from bench.measure import LogWatcher
from bench.sync_latency import ReplicatingCluster
from bench.sync_systems import (
    N1,
    N2,
    NODES,
    Csync2,
    PrivateFilesystems,
    Rsync,
    SyncLab,
    clear,
    prepare_tree,
)
from bench.systems import other
from nonstop.lab import Lab, LabError, LabProcess, wait_for
from nonstop.lab.lab import VIP

LOG = "var/log/asterisk/full"
VOICEMAIL = "var/spool/asterisk/voicemail/default/1000/INBOX"
CONFIG = "etc/asterisk/extensions_custom.conf"
POLL_S = 0.05
CPU_SAMPLE_S = 0.1
TAIL = 64 * 1024  # bytes before the last verified end re-read at every poll
SAMPLE_BLOCK = 4096
SAMPLE_BLOCKS = 4  # random blocks of older content checked when the replica is a new file
CRON_PERIOD_S = 300
CHUNK = 8 << 20


@dataclass(frozen=True)
class Workload:
    """Sizes and rates of the live-PBX workload."""

    log_bytes: int
    duration_s: float
    drain_s: float  # how long after the workload a change may still arrive
    initial_timeout_s: float  # for the first replication of the log
    line_rate: float = 20.0
    voicemail_rate: float = 5.0
    voicemail_bytes: tuple[int, int] = (2_000, 50_000)
    config_period_s: float = 10.0
    config_first_s: float = 5.0


FULL = Workload(log_bytes=2 << 30, duration_s=180.0, drain_s=60.0, initial_timeout_s=1200.0)
QUICK = Workload(log_bytes=8 << 20, duration_s=4.0, drain_s=15.0, initial_timeout_s=60.0,
                 config_period_s=2.0, config_first_s=1.0)


# -- pure helpers ------------------------------------------------------------------------------

_MESSAGES = (
    'pbx.c: Executing [{ext}@from-internal:{n}] Dial("SIP/{ext}-{ch:08x}", '
    '"SIP/{peer},20,tTr") in new stack',
    'pbx.c: Executing [{ext}@macro-dial-one:{n}] Set("SIP/{ext}-{ch:08x}", '
    '"DIALSTATUS=ANSWER") in new stack',
    'app_dial.c: SIP/{peer}-{ch:08x} is ringing',
    'app_dial.c: SIP/{peer}-{ch:08x} answered SIP/{ext}-{ch:08x}',
    'app_voicemail.c: Saving voicemail for {ext}@default, msg{n:04d}.wav ({peer} bytes)',
    'chan_sip.c: Registered SIP \'{ext}\' at 198.18.{n}.{peer} port 5060 expires 3600',
    'res_rtp_asterisk.c: Got  RTP packet from 198.18.{n}.{peer}:{ch} (type 00, seq {n:06d})',
    'bridge_channel.c: Channel SIP/{ext}-{ch:08x} left \'simple_bridge\' basic-bridge <{ch:x}>',
)


def log_line(rng: random.Random, when: float, seq: int) -> bytes:
    """One Asterisk-like ``full`` log line (about 130-200 bytes, newline included)."""
    msg = rng.choice(_MESSAGES).format(ext=1000 + rng.randrange(200), n=rng.randrange(1, 255),
                                       peer=rng.randrange(1000, 99999), ch=rng.getrandbits(32))
    stamp = time.strftime("%b %d %H:%M:%S", time.gmtime(when))
    return (f"[{stamp}] VERBOSE[{2000 + seq % 9000}][C-{seq:08x}] {msg}\n").encode()


def log_text(seed: int, size: int, start: float = 1_700_000_000.0) -> Iterable[bytes]:
    """``size`` bytes of log lines in chunks of about :data:`CHUNK` (the last line cut to fit,
    with a newline). Seeded, so every run writes the same bytes."""
    rng = random.Random(seed)
    # A pool of formatted lines recombined with fresh sequence numbers: real text, written at
    # disk speed rather than at the speed of Python formatting one line at a time.
    pool = [log_line(rng, start + i, i)[:-1] for i in range(4096)]
    written = 0
    seq = 0
    while written < size:
        parts: list[bytes] = []
        length = 0
        while length < CHUNK and written + length < size:
            line = b"%08x %s\n" % (seq, pool[rng.getrandbits(12)])
            seq += 1
            parts.append(line)
            length += len(line)
        chunk = b"".join(parts)
        if written + len(chunk) > size:
            chunk = chunk[:size - written - 1] + b"\n"
        written += len(chunk)
        yield chunk


def lines_arrived(ends: Sequence[int], size: int) -> int:
    """How many of the lines ending at offsets ``ends`` (ascending) a replica of ``size``
    bytes holds completely."""
    return bisect_right(ends, size)


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (NaN for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class Delays:
    """Delays of one kind of change: how many were made, which arrived, how late."""

    made: int
    delays: tuple[float, ...]

    @property
    def missing(self) -> int:
        return self.made - len(self.delays)

    def describe(self) -> str:
        """'p50 / p95 / max s' of the delivered ones, and how many never arrived."""
        if self.made == 0:
            return "-"
        if not self.delays:
            return f"not delivered (0 of {self.made})"
        text = (f"{_fmt(percentile(self.delays, 50))} / {_fmt(percentile(self.delays, 95))} / "
                f"{_fmt(max(self.delays))} s")
        if self.missing:
            text += f"; {self.missing} of {self.made} not delivered"
        return text


def _fmt(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


@dataclass(frozen=True)
class ProcStat:
    """The CPU fields of /proc/PID/stat, in clock ticks."""

    pid: int
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int
    starttime: int = 0


def parse_proc_stat(text: str) -> ProcStat:
    """Parse /proc/PID/stat (the command name may hold spaces and parentheses)."""
    head, _, rest = text.rpartition(")")
    fields = rest.split()
    pid = int(head.split("(", 1)[0])
    # rest starts at field 3 (state): ppid is field 4, utime..cstime fields 14-17, starttime 22.
    return ProcStat(pid, int(fields[1]), int(fields[11]), int(fields[12]), int(fields[13]),
                    int(fields[14]), int(fields[19]))


def tree_ticks(stats: Iterable[ProcStat], roots: Iterable[int]) -> int:
    """CPU ticks of ``roots`` and their living descendants, with every reaped child each of
    them waited for (cutime/cstime): what the replication processes cost so far."""
    by_parent: dict[int, list[ProcStat]] = {}
    by_pid: dict[int, ProcStat] = {}
    for st in stats:
        by_pid[st.pid] = st
        by_parent.setdefault(st.ppid, []).append(st)
    total = 0
    seen: set[int] = set()
    todo = [by_pid[r] for r in roots if r in by_pid]
    while todo:
        st = todo.pop()
        if st.pid in seen:
            continue
        seen.add(st.pid)
        total += st.utime + st.stime + st.cutime + st.cstime
        todo.extend(by_parent.get(st.pid, []))
    return total


def parse_times(text: str) -> float:
    """Children's CPU seconds from the output of the shell's ``times`` (its second line,
    ``0m1.250s 0m0.500s``); 0.0 when there is none."""
    found = re.findall(r"^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$", text, re.M)
    if len(found) < 2:
        return 0.0
    um, us, sm, ss = found[-1]
    return int(um) * 60 + float(us) + int(sm) * 60 + float(ss)


def link_bytes(ip_json: str) -> int:
    """Received plus sent bytes of the one link in ``ip -s -j link show dev X`` output."""
    links = json.loads(ip_json)
    stats = links[0]["stats64"]
    return int(stats["rx"]["bytes"]) + int(stats["tx"]["bytes"])


class PrefixCheck:
    """Whether a replica of an append-only source is, at each poll, a prefix of it.

    The source only grows during the run, so the replica is compared with the source file at
    the same offsets: every byte past the last verified end, the :data:`TAIL` bytes before it,
    and, whenever the replica is a different file (a new inode after a rename) or got shorter,
    :data:`SAMPLE_BLOCKS` random blocks of the older content as well. The whole file is
    compared by :meth:`full_compare` at the start and the end of a run.
    """

    def __init__(self, source: Path, replica: Path, verified: int, seed: int = 1) -> None:
        self.source = source
        self.replica = replica
        self.verified = verified
        self.inode: int | None = None
        self.violations: list[str] = []
        self.shrank = 0
        self.polls = 0
        self._rng = random.Random(seed)

    def poll(self) -> int | None:
        """The replica's size when it is a valid prefix now, None when it is missing or is
        not (a violation, recorded)."""
        self.polls += 1
        try:
            with open(self.replica, "rb") as rep:
                st = os.fstat(rep.fileno())
                size = st.st_size
                with open(self.source, "rb") as src:
                    src_size = os.fstat(src.fileno()).st_size
                    if size > src_size:
                        return self._violation(f"replica {size} bytes, source {src_size}")
                    renewed = st.st_ino != self.inode
                    if size < self.verified:
                        self.shrank += 1
                        renewed = True
                    start = max(0, min(size, self.verified) - TAIL)
                    regions = [(start, size - start)]
                    if renewed and start > 0:
                        regions += [(self._rng.randrange(0, max(1, start - SAMPLE_BLOCK)),
                                     SAMPLE_BLOCK) for _ in range(SAMPLE_BLOCKS)]
                    for offset, length in regions:
                        if (os.pread(rep.fileno(), length, offset)
                                != os.pread(src.fileno(), length, offset)):
                            return self._violation(f"{length} bytes at offset {offset} differ "
                                                   f"(replica {size} bytes)")
        except FileNotFoundError:
            return None
        self.inode = st.st_ino
        self.verified = size
        return size

    def _violation(self, what: str) -> int | None:
        self.violations.append(what)
        return None

    def full_compare(self) -> str | None:
        """None when the replica equals the source byte for byte now, else why not."""
        return compare_files(self.source, self.replica)


def compare_files(a: Path, b: Path) -> str | None:
    """None when ``a`` and ``b`` hold the same bytes, else the first difference."""
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            offset = 0
            while True:
                ca, cb = fa.read(CHUNK), fb.read(CHUNK)
                if ca != cb:
                    return (f"{b} differs from the source from around offset {offset} "
                            f"({os.fstat(fb.fileno()).st_size} vs "
                            f"{os.fstat(fa.fileno()).st_size} bytes)")
                if not ca:
                    return None
                offset += len(ca)
    except FileNotFoundError as exc:
        return f"missing: {exc.filename}"


def disk_usage(root: Path) -> int:
    """Bytes allocated under ``root`` (each inode once: hard-linked backups count once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    if not root.exists():
        return 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


# -- the result --------------------------------------------------------------------------------

@dataclass
class LiveResult:
    """What one system did with the workload."""

    system: str
    initial_s: float | None = None
    lines: Delays = Delays(0, ())
    voicemail: Delays = Delays(0, ())
    config: Delays = Delays(0, ())
    prefix_polls: int = 0
    prefix_violations: int = 0
    shrank: int = 0
    end_equal: bool | None = None
    wire_bytes: int | None = None
    changed_bytes: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # node -> CPU seconds
    workload_s: float = 0.0
    backup_before: int = 0
    backup_after: int = 0
    end_run_s: float | None = None  # csync2's run at the end
    failures: list[str] = field(default_factory=list)

    @property
    def all_delays(self) -> Delays:
        return Delays(self.lines.made + self.voicemail.made + self.config.made,
                      self.lines.delays + self.voicemail.delays + self.config.delays)


# -- the systems -------------------------------------------------------------------------------

class LiveSystem(abc.ABC):
    """One replicating system over the shared source and replica trees."""

    key = ""
    name = ""

    def __init__(self, s: SyncLab, root: dict[str, Path]) -> None:
        self.s = s
        self.root = root  # node -> the directory that is /srv's parent (a sync root)
        self.extra_cpu: dict[str, float] = {}

    def tree(self, node: str) -> Path:
        return self.root[node] / "srv"

    @property
    def source(self) -> str:
        return N1

    @property
    def standby(self) -> str:
        return other(self.source)

    @abc.abstractmethod
    def start(self) -> None:
        """Start replicating (the source tree holds the base log already)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop every process this system started."""

    @abc.abstractmethod
    def cpu_roots(self) -> dict[str, list[int]]:
        """Node -> pids whose process trees are the replication."""

    @abc.abstractmethod
    def backup_dir(self) -> Path | None:
        """The standby's backup directory (None: the system keeps no backups)."""

    def kick(self) -> None:  # noqa: B027 - daemons replicate without being asked
        """Make the first replication happen (push systems push; daemons do it alone)."""

    def end_of_workload(self, timeout: float) -> float | None:
        """What runs when the workload ends (csync2's cron job); its seconds, if any."""
        return None

    def log_tails(self) -> str:
        return ""

    def state_note(self) -> str:
        return ""


class LiveNonstop(LiveSystem):
    """The talk's two-daemon nonstop cluster with continuous replication; vpbx1-1 is started
    first and takes the group, so it is the source."""

    key = "nonstop"
    name = "nonstop (daemon)"

    def __init__(self, s: SyncLab, root: dict[str, Path]) -> None:
        super().__init__(s, root)
        self.watcher = LogWatcher()
        live_root = root

        class Cluster(ReplicatingCluster):
            def sync_root(self, node: str) -> Path:
                return live_root[node]

        self.cluster = Cluster(s, self.watcher)

    def start(self) -> None:
        self.cluster.start(N1)
        wait_for(lambda: self.s.lab.has_address(N1, VIP), 60.0,
                 what=f"{N1} taking the group", interval=0.1)
        self.cluster.start(N2)

    def stop(self) -> None:
        self.cluster.close()
        for node in NODES:
            self.cluster.stop(node)
        self.watcher.close()

    def cpu_roots(self) -> dict[str, list[int]]:
        return {node: self.cluster.daemon_pids(node) for node in NODES}

    def backup_dir(self) -> Path:
        return self.root[self.standby] / "var" / "backups" / "csync2"

    def log_tails(self) -> str:
        return self.cluster.log_tails(15)


class LiveCsync2(LiveSystem):
    """csync2 2.0: ``csync2 -ii`` on vpbx1-2, ``csync2 -x`` on vpbx1-1 (the talk's cron job)."""

    key = "csync2"
    name = "csync2 2.0 (cron)"

    def __init__(self, s: SyncLab, root: dict[str, Path]) -> None:
        super().__init__(s, root)
        self.impl = Csync2(s)
        self.receiver: LabProcess | None = None

    def start(self) -> None:
        for node in NODES:
            clear(self.impl.state[node])
        self.receiver = self.s.spawn(N2, self.impl.receiver_argv(), self.tree(N2),
                                     env=self.impl.env(N2), name="live-csync2-receiver")
        self.s.wait_listening(N2, self.impl.port, self.receiver)

    def _push(self, timeout: float) -> float:
        argv = ["sh", "-c", '"$@"; rc=$?; times >&2; exit $rc', "cron", *self.impl.push_argv()]
        done = self.s.timed(N1, argv, self.tree(N1), timeout=timeout, env=self.impl.env(N1))
        self.extra_cpu[N1] = self.extra_cpu.get(N1, 0.0) + parse_times(done.output)
        if done.returncode != 0:
            raise LabError(f"csync2 -x: exit {done.returncode}: {done.output[-800:]}")
        return done.seconds

    def kick(self) -> None:
        self._push(FULL.initial_timeout_s)
        self.extra_cpu.clear()  # the initial sync is not the workload's

    def end_of_workload(self, timeout: float) -> float | None:
        return self._push(timeout)

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.stop(timeout=15.0)
            self.receiver = None

    def cpu_roots(self) -> dict[str, list[int]]:
        return {N2: [self.receiver.pid] if self.receiver else []}

    def backup_dir(self) -> Path:
        return self.s.backups[N2] / "csync2"

    def log_tails(self) -> str:
        return self.receiver.read_log()[-1500:] if self.receiver else ""


LSYNCD_CONF = """\
-- bench: lsyncd with its default rsync settings, pushing to vpbx1-2's rsync daemon
settings {{
    nodaemon = true,
    logfile = "{log}",
    statusFile = "{status}",
    insist = true,
}}
sync {{
    default.rsync,
    source = "/srv/",
    target = "rsync://{ip}:{port}/srv/",
}}
"""


class LiveLsyncd(LiveSystem):
    """lsyncd 2.2 on vpbx1-1 (inotify, then ``rsync`` of what changed, its defaults: 15 s of
    aggregation delay), ``rsync --daemon`` on vpbx1-2."""

    key = "lsyncd"
    name = "lsyncd 2.2 + rsync"

    def __init__(self, s: SyncLab, root: dict[str, Path]) -> None:
        super().__init__(s, root)
        self.impl = Rsync(s)
        self.receiver: LabProcess | None = None
        self.lsyncd: LabProcess | None = None

    def start(self) -> None:
        self.receiver = self.s.spawn(N2, self.impl.receiver_argv(), self.tree(N2),
                                     name="live-rsyncd")
        self.s.wait_listening(N2, self.impl.port, self.receiver)
        state = self.s.fs[N1] / "state" / "lsyncd"
        clear(state)
        inner = self.s.inner(N1, state)
        conf = state / "lsyncd.conf.lua"
        conf.write_text(LSYNCD_CONF.format(log=f"{inner}/lsyncd.log",
                                           status=f"{inner}/lsyncd.status",
                                           ip=self.s.lab.ip(N2), port=self.impl.port))
        self.lsyncd = self.s.spawn(N1, ["lsyncd", str(inner / "lsyncd.conf.lua")], self.tree(N1),
                                   name="live-lsyncd")

    def stop(self) -> None:
        for proc in (self.lsyncd, self.receiver):
            if proc is not None:
                proc.stop(timeout=15.0)
        self.lsyncd = self.receiver = None

    def cpu_roots(self) -> dict[str, list[int]]:
        return {N1: [self.lsyncd.pid] if self.lsyncd else [],
                N2: [self.receiver.pid] if self.receiver else []}

    def backup_dir(self) -> None:
        return None

    def log_tails(self) -> str:
        return "\n".join(p.read_log()[-1500:] for p in (self.lsyncd, self.receiver) if p)


LIVE_SYSTEMS: dict[str, type[LiveSystem]] = {"csync2": LiveCsync2, "lsyncd": LiveLsyncd,
                                            "nonstop": LiveNonstop}


class PlainDirectories(PrivateFilesystems):
    """Per-node directories on the work file system: the daemons run in boxes with their own
    /proc, where the loop-device file systems' holder namespace is out of sight, so the live
    workload keeps every system's trees on the machine's disk instead, alike for all."""

    def _open(self) -> None:
        for node in self.nodes:
            self.path(node).mkdir(parents=True, exist_ok=True)
        self.description = "plain directories on the work file system"


# -- the run -----------------------------------------------------------------------------------

class CpuMeter:
    """CPU ticks of process trees over a window, counted two ways, the larger kept.

    * reaped: each tree's utime + stime plus the cutime + cstime of everything its processes
      waited for (/proc/PID/stat), at the start and the end (:func:`tree_ticks`). A program
      that ignores SIGCHLD has its children reaped by the kernel, whose time then counts
      nowhere;
    * sampled: every process of the trees seen at a sample (a thread takes one every
      :data:`CPU_SAMPLE_S`), its own ticks at the last sample minus those at its first (0 when
      born in the window). A child that lives shorter than the sampling period is missed.

    Both are lower bounds of the true cost.
    """

    def __init__(self, roots: Callable[[], dict[str, list[int]]]) -> None:
        self.roots = roots
        self.first: dict[tuple[str, int, int], int] = {}
        self.last: dict[tuple[str, int, int], int] = {}
        self.base: dict[tuple[str, int, int], int] = {}
        self.reaped0: dict[str, int] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _trees(self) -> dict[str, list[ProcStat]]:
        out: dict[str, list[ProcStat]] = {}
        for node, pids in self.roots().items():
            todo, found = list(pids), []
            while todo:
                pid = todo.pop()
                with contextlib.suppress(OSError, ValueError, IndexError):
                    found.append(parse_proc_stat(Path(f"/proc/{pid}/stat").read_text()))
                    for task in os.scandir(f"/proc/{pid}/task"):
                        todo.extend(int(c) for c in
                                    Path(task.path, "children").read_text().split())
            out[node] = found
        return out

    def start(self) -> None:
        """Take the baseline and sample every :data:`CPU_SAMPLE_S` in a thread until
        :meth:`stop` (blocking runs, such as csync2's at the end, are sampled too)."""
        for node, stats in self._trees().items():
            self.reaped0[node] = tree_ticks(stats, [s.pid for s in stats])
            for st in stats:
                self.base[(node, st.pid, st.starttime)] = st.utime + st.stime
        self.sample()
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(CPU_SAMPLE_S):
            self.sample()

    def sample(self) -> None:
        for node, stats in self._trees().items():
            for st in stats:
                key = (node, st.pid, st.starttime)
                self.first.setdefault(key, self.base.get(key, 0))
                self.last[key] = st.utime + st.stime

    def stop(self) -> dict[str, int]:
        """Ticks per node over the window (the larger of the two counts)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30.0)
        self.sample()
        out: dict[str, int] = {}
        for node, stats in self._trees().items():
            reaped = tree_ticks(stats, [s.pid for s in stats]) - self.reaped0.get(node, 0)
            sampled = sum(self.last[k] - self.first[k] for k in self.last if k[0] == node)
            out[node] = max(reaped, sampled)
        return out


def standby_port_bytes(system: LiveSystem) -> int:
    """Bytes received plus sent by the standby's port on the lab's switch so far."""
    return port_bytes(system.s.lab, system.standby)


def port_bytes(lab: Lab, host: str) -> int:
    """Bytes received plus sent by ``host``'s port on the lab's switch so far."""
    out = subprocess.run(["ip", "-n", lab.switch_netns, "-s", "-j", "link", "show", "dev",
                          lab.port(host)], capture_output=True, text=True, check=True,
                         timeout=10)
    return link_bytes(out.stdout)


def write_base(path: Path, size: int, seed: int = 8) -> float:
    """The base ``full`` log; returns the seconds it took."""
    t = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for chunk in log_text(seed, size):
            fh.write(chunk)
    return time.monotonic() - t


def _config_text(edit: int, rng: random.Random) -> bytes:
    lines = ["; extensions_custom.conf, edited by the bench", f"; edit {edit}",
             "[from-internal-custom]"]
    for ext in range(1000, 1000 + 40 + rng.randrange(10)):
        lines.append(f"exten => {ext},1,Dial(SIP/{ext},{15 + rng.randrange(30)},tTr)")
    return ("\n".join(lines) + "\n").encode()


def reset_trees(root: dict[str, Path], base_size: int, base_config: bytes) -> None:
    """The source back to the base log and config only; the standby's tree empty."""
    src = root[N1] / "srv"
    log = src / LOG
    with open(log, "r+b") as fh:
        fh.truncate(base_size)
    vm = src / VOICEMAIL
    if vm.exists():
        shutil.rmtree(vm)
    (src / CONFIG).write_bytes(base_config)
    for node in (N2,):
        for child in ("srv", "var"):
            path = root[node] / child
            if path.exists():
                shutil.rmtree(path)
        prepare_tree(root[node] / "srv")


class _Streams:
    """The workload's three writers on the source and what of each has reached the standby.

    One generator per stream: the same lines, voicemail and edits for every system."""

    def __init__(self, system: LiveSystem, w: Workload, base_size: int, seed: int) -> None:
        src_root, dst_root = system.tree(system.source), system.tree(system.standby)
        self.w = w
        self.rng_lines, self.rng_vm, self.rng_cfg = (random.Random(seed + i) for i in range(3))
        self.vm_src, self.vm_dst = src_root / VOICEMAIL, dst_root / VOICEMAIL
        self.vm_src.mkdir(parents=True, exist_ok=True)
        self.cfg_src, self.cfg_dst = src_root / CONFIG, dst_root / CONFIG
        self.size = base_size
        self.ends: list[int] = []
        self.line_times: list[float] = []
        self.line_delays: list[float] = []
        self.vm_pending: dict[str, tuple[float, bytes]] = {}
        self.vm_delays: list[float] = []
        self.vm_made = 0
        self.cfg_versions: list[tuple[float, bytes]] = []
        self.cfg_delays: list[float] = []
        self.cfg_done = 0
        self.changed = 0
        self.n_lines = int(w.duration_s * w.line_rate)
        self.n_vm = int(w.duration_s * w.voicemail_rate)

    def write_due(self, fd: int, elapsed: float) -> None:
        """The writes that are due (lines, voicemail, config edits)."""
        w = self.w
        while len(self.ends) < min(self.n_lines, int(elapsed * w.line_rate) + 1):
            line = log_line(self.rng_lines, time.time(), len(self.ends))
            t = time.monotonic()
            os.write(fd, line)
            self.size += len(line)
            self.ends.append(self.size)
            self.line_times.append(t)
            self.changed += len(line)
        while self.vm_made < min(self.n_vm, int(elapsed * w.voicemail_rate) + 1):
            data = self.rng_vm.randbytes(self.rng_vm.randint(*w.voicemail_bytes))
            name = f"msg{self.vm_made:04d}.wav"
            t = time.monotonic()
            (self.vm_src / name).write_bytes(data)
            self.vm_pending[name] = (t, data)
            self.vm_made += 1
            self.changed += len(data)
        due = int((elapsed - w.config_first_s) // w.config_period_s) + 1 \
            if elapsed >= w.config_first_s else 0
        while len(self.cfg_versions) < due and elapsed < w.duration_s:
            data = _config_text(len(self.cfg_versions) + 1, self.rng_cfg)
            t = time.monotonic()
            with open(self.cfg_src, "r+b") as fh:
                fh.truncate(0)
                fh.write(data)
            self.cfg_versions.append((t, data))
            self.changed += len(data)

    def poll(self, check: PrefixCheck) -> None:
        """What has arrived on the standby by now."""
        polled = time.monotonic()
        valid = check.poll()
        if valid is not None:
            arrived = lines_arrived(self.ends, valid)
            while len(self.line_delays) < arrived:
                self.line_delays.append(polled - self.line_times[len(self.line_delays)])
        if self.vm_pending:
            self._poll_voicemail(polled)
        if self.cfg_done < len(self.cfg_versions):
            self._poll_config(polled)

    def _poll_voicemail(self, polled: float) -> None:
        with contextlib.suppress(FileNotFoundError):
            present = {e.name: e.stat().st_size for e in os.scandir(self.vm_dst)
                       if e.name in self.vm_pending}
            for name, st_size in present.items():
                t, data = self.vm_pending[name]
                if st_size == len(data) and (self.vm_dst / name).read_bytes() == data:
                    self.vm_delays.append(polled - t)
                    del self.vm_pending[name]

    def _poll_config(self, polled: float) -> None:
        """A config edit has arrived when the standby has that version or a later one."""
        with contextlib.suppress(OSError):
            now_cfg = self.cfg_dst.read_bytes()
            for j in range(len(self.cfg_versions) - 1, self.cfg_done - 1, -1):
                if self.cfg_versions[j][1] == now_cfg:
                    while self.cfg_done <= j:
                        self.cfg_delays.append(polled - self.cfg_versions[self.cfg_done][0])
                        self.cfg_done += 1
                    break

    def all_in(self) -> bool:
        return (len(self.line_delays) == len(self.ends) and not self.vm_pending
                and self.cfg_done == len(self.cfg_versions))

    def next_line_at(self, start: float) -> float:
        return start + (len(self.ends) + 1) / self.w.line_rate


def _initial(system: LiveSystem, w: Workload, base_size: int, seed: int,
             out: LiveResult, progress: Callable[[str], None]) -> bool:
    """Start ``system`` and wait until the base log is on the standby; False on a timeout."""
    src_log, dst_log = system.tree(system.source) / LOG, system.tree(system.standby) / LOG
    t0 = time.monotonic()
    system.start()
    system.kick()
    check = PrefixCheck(src_log, dst_log, 0, seed)
    deadline = t0 + w.initial_timeout_s
    while check.poll() != base_size or compare_files(src_log, dst_log) is not None:
        if time.monotonic() > deadline:
            out.failures.append(f"{system.name}: the base log did not reach {system.standby} "
                                f"within {w.initial_timeout_s:.0f} s\n{system.log_tails()}")
            return False
        time.sleep(0.2)
    out.initial_s = time.monotonic() - t0
    progress(f"live {system.key}: initial replication of {base_size / 1e6:.0f} MB "
             f"{out.initial_s:.1f} s")
    return True


def _end_of_workload(system: LiveSystem, w: Workload, out: LiveResult, elapsed: float,
                     progress: Callable[[str], None]) -> float:
    """The workload's writes are over: csync2's run at the end; returns the drain deadline."""
    out.workload_s = elapsed
    try:
        out.end_run_s = system.end_of_workload(w.drain_s + 600.0)
    except LabError as exc:
        out.failures.append(f"{system.name}, run at the end: {exc}")
    if out.end_run_s is not None:
        progress(f"live {system.key}: run at the end took {out.end_run_s:.1f} s")
    return time.monotonic() + w.drain_s


def run_workload(system: LiveSystem, w: Workload, base_size: int, progress: Callable[[str], None],
                 seed: int) -> LiveResult:
    """Start ``system``, wait for the first replication, run the workload, drain, measure."""
    out = LiveResult(system.name)
    src_log, dst_log = system.tree(system.source) / LOG, system.tree(system.standby) / LOG
    if not _initial(system, w, base_size, seed, out, progress):
        return out
    check = PrefixCheck(src_log, dst_log, base_size, seed)
    backup = system.backup_dir()
    out.backup_before = disk_usage(backup) if backup else 0
    streams = _Streams(system, w, base_size, seed)
    meter = CpuMeter(system.cpu_roots)
    meter.start()
    wire0 = standby_port_bytes(system)
    fd = os.open(src_log, os.O_WRONLY | os.O_APPEND)
    start = time.monotonic()
    next_poll = start
    drain_deadline: float | None = None
    try:
        while True:
            now = time.monotonic()
            elapsed = now - start
            streams.write_due(fd, elapsed)
            if elapsed >= w.duration_s and drain_deadline is None:
                os.close(fd)
                fd = -1
                drain_deadline = _end_of_workload(system, w, out, elapsed, progress)
            if now >= next_poll:
                next_poll = now + POLL_S
                streams.poll(check)
            if drain_deadline is not None and (
                    streams.all_in() or time.monotonic() > drain_deadline):
                break
            time.sleep(max(0.0, min(next_poll, streams.next_line_at(start))
                           - time.monotonic()))
    finally:
        if fd >= 0:
            os.close(fd)
        ticks = meter.stop()
    _finish(system, out, streams, check, ticks, standby_port_bytes(system) - wire0, backup,
            progress)
    return out


def _finish(system: LiveSystem, out: LiveResult, streams: _Streams, check: PrefixCheck,
            ticks: dict[str, int], wire: int, backup: Path | None,
            progress: Callable[[str], None]) -> None:
    hz = os.sysconf("SC_CLK_TCK")
    out.cpu = {node: ticks.get(node, 0) / hz + system.extra_cpu.get(node, 0)
               for node in NODES if node in ticks or node in system.extra_cpu}
    out.wire_bytes = wire
    out.changed_bytes = streams.changed
    out.lines = Delays(len(streams.ends), tuple(streams.line_delays))
    out.voicemail = Delays(streams.vm_made, tuple(streams.vm_delays))
    out.config = Delays(len(streams.cfg_versions), tuple(streams.cfg_delays))
    out.prefix_polls = check.polls
    out.prefix_violations = len(check.violations)
    out.shrank = check.shrank
    if check.violations:
        out.failures.append(f"{system.name}: the standby's log was not a prefix of the source's "
                            f"at {len(check.violations)} of {check.polls} polls, first: "
                            f"{check.violations[0]}")
    out.end_equal = compare_files(system.tree(system.source) / LOG,
                                  system.tree(system.standby) / LOG) is None
    out.backup_after = disk_usage(backup) if backup else 0
    progress(f"live {system.key}: lines {out.lines.describe()}, voicemail "
             f"{out.voicemail.describe()}, config {out.config.describe()}, "
             f"wire {out.wire_bytes / 1e6:.2f} MB for {streams.changed / 1e6:.2f} MB changed, "
             f"CPU {', '.join(f'{n} {v:.1f} s' for n, v in out.cpu.items())}")


def measure_live(workdir: Path, w: Workload, systems: Sequence[str],
                 progress: Callable[[str], None]) -> tuple[list[LiveResult], list[str]]:
    """Every system in ``systems`` (keys of :data:`LIVE_SYSTEMS`) on the same workload, in a
    lab of its own; returns the results and failures outside any one system."""
    results: list[LiveResult] = []
    failures: list[str] = []
    with PlainDirectories(workdir / "live", NODES, 0) as fs, \
            Lab(NODES, workdir=workdir / "live-lab") as lab:
        s = SyncLab(lab, fs)
        root = {node: fs.path(node) / "live" for node in NODES}
        for node in NODES:
            prepare_tree(root[node] / "srv")
        base_log = root[N1] / "srv" / LOG
        took = write_base(base_log, w.log_bytes)
        progress(f"live: wrote the {w.log_bytes / 1e6:.0f} MB base log in {took:.1f} s")
        base_config = _config_text(0, random.Random(0))
        for key in systems:
            reset_trees(root, w.log_bytes, base_config)
            system = LIVE_SYSTEMS[key](s, root)
            try:
                results.append(run_workload(system, w, w.log_bytes, progress, seed=100))
            except (LabError, OSError, subprocess.SubprocessError) as exc:
                failures.append(f"live {system.name}: {exc}\n{system.log_tails()}")
                progress(f"FAILED live {key}: {str(exc).splitlines()[0]}")
            finally:
                system.stop()
    return results, failures


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:.2f} MB"


def _cpu(r: LiveResult, node: str) -> str:
    if node not in r.cpu or not r.workload_s:
        return "-"
    seconds = r.cpu[node]
    return f"{seconds:.2f} s ({100 * seconds / r.workload_s:.1f} %)"


def live_table(results: Sequence[LiveResult], w: Workload) -> Table:
    """One column per system, one row per measurement, and the issue's target."""
    def row(what: str, target: str, cell: Callable[[LiveResult], str]) -> list[Cell]:
        return [what, *(cell(r) for r in results), target]

    def prefix(r: LiveResult) -> str:
        if not r.prefix_polls:
            return "-"
        text = ("yes" if not r.prefix_violations
                else f"NO at {r.prefix_violations}") + f" ({r.prefix_polls} polls)"
        if r.shrank:
            text += f"; shorter than before at {r.shrank}"
        return text

    def ratio(r: LiveResult) -> str:
        if r.wire_bytes is None or not r.changed_bytes:
            return "-"
        return f"{r.wire_bytes / r.changed_bytes:.2f}×"

    def alls(r: LiveResult) -> str:
        d = r.all_delays
        if not d.made:
            return "-"
        if d.missing:
            return f"not delivered: {d.missing} of {d.made}"
        return f"{_fmt(max(d.delays))} s"

    rows = [
        row(f"first replication of the {w.log_bytes / 1e6:.0f} MB log", "-",
            lambda r: "-" if r.initial_s is None else f"{r.initial_s:.1f} s"),
        row(f"log lines ({w.line_rate:g}/s): delay p50 / p95 / max", "max <= 1 s",
            lambda r: r.lines.describe()),
        row(f"voicemail ({w.voicemail_rate:g}/s, {w.voicemail_bytes[0] // 1000}-"
            f"{w.voicemail_bytes[1] // 1000} KB): delay p50 / p95 / max", "max <= 1 s",
            lambda r: r.voicemail.describe()),
        row(f"config edits (every {w.config_period_s:g} s): delay p50 / p95 / max",
            "max <= 1 s", lambda r: r.config.describe()),
        row("every change: max delay", "<= 1 s", alls),
        row("standby's log a prefix of the source's at every poll", "yes", prefix),
        row("standby's log equal to the source's at the end", "yes",
            lambda r: "-" if r.end_equal is None else ("yes" if r.end_equal else "NO")),
        row("bytes changed (appended + voicemail + config)", "-",
            lambda r: _mb(r.changed_bytes)),
        row("bytes through the standby's switch port (both ways)", "-",
            lambda r: _mb(r.wire_bytes)),
        row("wire / changed", "<= 1.2× (+ heartbeats)", ratio),
        row(f"CPU on {N1} (source), % of one core over the workload", "< 10 %",
            lambda r: _cpu(r, N1)),
        row(f"CPU on {N2} (standby), % of one core over the workload", "< 10 %",
            lambda r: _cpu(r, N2)),
        row("standby's backup directory: before -> after", "bounded",
            lambda r: f"{r.backup_before / 1e6:.1f} -> {r.backup_after / 1e6:.1f} MB"),
        row("the run at the end of the workload", "-",
            lambda r: "-" if r.end_run_s is None else f"{r.end_run_s:.2f} s"),
    ]
    note = (
        f"A {w.log_bytes / 1e6:,.0f} MB `full` log (seeded Asterisk-like text) replicated first "
        "(timed from the system's start until the standby's copy is equal: nonstop's includes "
        "the cluster's start and takeover, csync2's is one `csync2 -x`, lsyncd's its start-up "
        "rsync), "
        f"then for {w.duration_s:g} s: one line of about 200 bytes appended every "
        f"{1 / w.line_rate:g} s (O_APPEND, as Asterisk writes), a voicemail file of random "
        f"size and content created every {1 / w.voicemail_rate:g} s under {VOICEMAIL}, and "
        f"{CONFIG} rewritten in place every {w.config_period_s:g} s (first after "
        f"{w.config_first_s:g} s). The standby's copies are polled every {POLL_S * 1000:.0f} ms "
        "from outside: a log line has arrived when the standby's log holds it and is a valid "
        "prefix, a voicemail file when it has the same bytes, a config edit when the standby "
        "has that version or a later one. Delays are from just before the write to the first "
        f"poll that sees it (so up to {POLL_S * 1000:.0f} ms too long); the numbers are "
        "nearest-rank percentiles. After the workload a change may still arrive for "
        f"{w.drain_s:g} s; later ones are 'not delivered'. Prefix check: at every poll the "
        f"standby's log must be no longer than the source's and equal to it over every byte "
        f"past the last verified end and the {TAIL // 1024} KiB before it, plus "
        f"{SAMPLE_BLOCKS} random {SAMPLE_BLOCK // 1024} KiB blocks of older content whenever "
        "it is a new file (a rename) or got shorter; the whole file is compared at the start "
        "and at the end. Bytes on the wire: the standby's veth port on the lab's switch, "
        "received plus sent, from the start of the workload until every change arrived (or "
        "the deadline): nothing is subtracted, so nonstop's heartbeats (the talk's keepalive "
        "200ms, both ways) and ARP are included; csync2 and lsyncd run without any cluster "
        "manager beside them. Bytes changed count each config edit as the whole file "
        "rewritten. CPU: utime + stime of the replication processes and every child they "
        "reaped (/proc/PID/stat), over the same window, divided by the workload's duration: "
        "nonstop: the `nonstop run` daemon of each node (replication is in the daemon, "
        "heartbeat included); csync2: `csync2 -ii` on the standby and the `csync2 -x` run at "
        "the end on the source (shell `times`); lsyncd: lsyncd and its rsync children on the "
        "source, `rsync --daemon` and its children on the standby. Backup directory: disk "
        "blocks under it, each inode once (a hard link to a replaced file costs its data). "
        "Systems: nonstop = the talk's two-daemon cluster with `nonstop_sync` (vpbx1-1 started "
        "first so it holds the group and is the source); csync2 2.0 with the talk's csync2.cfg "
        f"(backup-generations 5) from cron every {CRON_PERIOD_S // 60} minutes as the talk "
        f"does: a {w.duration_s:g} s workload reaches no cron run, so `csync2 -x` runs once "
        "when the workload ends and its delays are those of a change made just before a run "
        f"(with cron, add up to {CRON_PERIOD_S} s); lsyncd 2.2 (Debian) with its defaults "
        "(`default.rsync`: 15 s aggregation delay, rsync -lts, --delete) pushing to "
        "`rsync --daemon` on vpbx1-2, no backups. All trees live on the work file system "
        "(the daemons' boxes cannot see the loop-device file systems above).")
    return Table(f"Live PBX: {w.log_bytes / 1e6:,.0f} MB log growing, voicemail and config "
                 f"edits for {w.duration_s:g} s",
                 ["measurement", *(r.system for r in results), "target (issue 8)"], rows,
                 note=note)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the live workload alone: ``python3 -m bench.sync_live [--quick] [--systems ...]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python3 -m bench.sync_live")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--systems", default=",".join(LIVE_SYSTEMS))
    parser.add_argument("--log-mb", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None)
    ns = parser.parse_args(argv)
    w = QUICK if ns.quick else FULL
    if ns.log_mb is not None:
        w = Workload(**{**w.__dict__, "log_bytes": ns.log_mb << 20})
    if ns.duration is not None:
        w = Workload(**{**w.__dict__, "duration_s": ns.duration})
    workdir = Path("/var/tmp/nonstop-bench") / f"live-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        results, failures = measure_live(
            workdir, w, [k.strip() for k in ns.systems.split(",")],
            lambda msg: print(msg, file=sys.stderr, flush=True))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for r in results:
        print(r)
    for f in failures:
        print("FAILURE:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

