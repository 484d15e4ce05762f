"""``respawn <user> <command>``: which programs nonstop runs, and the supervisor that does.

Heartbeat 3.0.6, as observed in the lab (spec §1.3 ``respawn``): once comm is up it starts
each client as the named user through ``/bin/sh -c <command>``, logs
``Starting child client "<cmd>" (uid,gid)`` and ``Starting "<cmd>" as uid U  gid G (pid P)``;
when the client ends it logs ``Managed <cmd> process P exited with return code N.`` (WARN
unless 0) or ``... killed by signal N [SIGNAME - description].``, then
``Respawning client "<cmd>":`` (ERROR) and starts it again about 1 s later; exit code 100 is
not restarted; the 11th death in a row within 30 s of its start gives
``Client <cmd> "respawning too fast"`` and the client stays dead. At shutdown clients get SIGTERM
in reverse start order. Heartbeat discards a client's output; nonstop logs it (capped lines).

Many respawn lines name programs that talk to Heartbeat's client API, which nonstop does not
serve. :func:`classify` sorts a line into: run it (no API needed), built in (ipfail), or refused
with what to use instead. :class:`RespawnThrottle` is the pure restart rule;
:class:`Respawner` the asyncio shell around one program.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import pwd
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from nonstop.config.errors import Location
from nonstop.errors import NonstopError

#: Heartbeat's limits (heartbeat.c): deaths sooner than this after the start count as "fast"...
FAST_DEATH_S = 30.0
#: ...and more than this many fast deaths in a row end the respawning.
MAX_FAST_DEATHS = 10
#: A client exiting with this code asks not to be restarted.
NO_RESPAWN_EXIT = 100
#: Seconds between a client's death and its restart (Heartbeat: about 1 s, seen in the lab).
RESTART_DELAY_S = 1.0
SHELL = "/bin/sh"
OUTPUT_LINE_CAP = 512  # characters of one line of a client's output that reach the log


class RespawnError(NonstopError):
    """A respawn line cannot be run (bad syntax, unknown user, refused program)."""


@dataclass(frozen=True)
class RespawnSpec:
    """One ``respawn`` line: the user and the command (a ``/bin/sh -c`` command line)."""

    user: str
    command: str
    # Where ha.cf gives it (for `check`'s file:line); not part of what the client is.
    loc: Location | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, rest: str, loc: Location | None = None) -> RespawnSpec:
        """The text after ``respawn``; RespawnError for a missing user or command."""
        words = rest.split(None, 1)
        if len(words) < 2 or not words[1].strip():
            raise RespawnError("respawn needs a user and a program: respawn <user> <path> [args]")
        return cls(words[0], words[1].strip(), loc)

    @property
    def argv(self) -> tuple[str, ...]:
        """What is executed: the command line through the shell, as Heartbeat does."""
        return (SHELL, "-c", self.command)

    @property
    def path(self) -> str:
        """The program the command runs, as written (``/usr/lib/heartbeat/ipfail``)."""
        try:
            return shlex.split(self.command)[0]
        except (ValueError, IndexError):
            return self.command.split()[0]

    @property
    def program(self) -> str:
        """The file name of the program the command runs (``ipfail``, ``dopd``...)."""
        return PurePosixPath(self.path).name


def client_environment(env_lines: Iterable[str]) -> dict[str, str]:
    """The environment Heartbeat's ``env NAME=value`` lines add for respawn clients: each as
    ``HA_NAME=value``. RespawnError for a line that is not ``NAME=value``."""
    env: dict[str, str] = {}
    for text in env_lines:
        name, sep, value = text.strip().partition("=")
        if not sep or not name or not (name.replace("_", "a").isalnum() and name.isascii()):
            raise RespawnError(f"env wants NAME=value, not {text.strip()!r}")
        env[f"HA_{name}"] = value
    return env


class RespawnKind(enum.Enum):
    RUN = "run"  # nonstop starts and supervises it
    BUILTIN = "builtin"  # nonstop does the job itself; the line switches it on
    REFUSED = "refused"  # needs Heartbeat's client API: refused, with what to use instead


@dataclass(frozen=True)
class RespawnClass:
    kind: RespawnKind
    message: str


_PACEMAKER = ("is a Pacemaker/CRM daemon that needs Heartbeat's client API, which nonstop does "
              "not serve; nonstop manages haresources itself (crm off). For a CRM cluster, "
              "use Pacemaker with Corosync")
#: Programs of the Heartbeat/Pacemaker/DRBD family that connect to Heartbeat's API socket.
_API_CLIENTS: dict[str, str] = {
    "ccm": _PACEMAKER, "cib": _PACEMAKER, "crmd": _PACEMAKER, "lrmd": _PACEMAKER,
    "stonithd": _PACEMAKER, "attrd": _PACEMAKER, "mgmtd": _PACEMAKER, "pengine": _PACEMAKER,
    "tengine": _PACEMAKER,
    "pingd": ("feeds ping reachability to Pacemaker through Heartbeat's client API; nonstop's "
              "own ping/ping_group nodes with its built-in ipfail do that job"),
    "dopd": ("is DRBD's outdate-peer daemon, a Heartbeat API client; configure DRBD's "
             "fence-peer handler without dopd (e.g. fencing through stonith_host), or drop "
             "the line"),
    "hbagent": ("is the SNMP agent of Heartbeat's API; read `nonstop status --json` (or its "
                "API) instead"),
    "lha-snmpagent": ("is the SNMP agent of Heartbeat's API; read `nonstop status --json` "
                      "(or its API) instead"),
    "cl_status": "queries Heartbeat's API; use `nonstop status` instead",
}


def classify(spec: RespawnSpec) -> RespawnClass:
    """Whether nonstop runs the program of a respawn line, has it built in, or refuses it."""
    name = spec.program
    if name == "ipfail":
        return RespawnClass(RespawnKind.BUILTIN, (
            "ipfail is built into nonstop: the ping/ping_group nodes decide failover; no "
            "separate program is started"))
    reason = _API_CLIENTS.get(name)
    if reason is not None:
        return RespawnClass(RespawnKind.REFUSED, f"respawn {spec.command}: {name} {reason}")
    return RespawnClass(RespawnKind.RUN, f"{spec.command} is started as {spec.user} and "
                        "restarted when it exits")


# ------------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class RestartDecision:
    restart: bool
    reason: str


class RespawnThrottle:
    """Heartbeat's restart rule for one client (pure: the caller passes the times)."""

    def __init__(self, *, fast_s: float = FAST_DEATH_S, max_fast: int = MAX_FAST_DEATHS) -> None:
        self.fast_s = fast_s
        self.max_fast = max_fast
        self.fast_deaths = 0

    def exited(self, started: float, now: float, returncode: int | None) -> RestartDecision:
        """The client started at ``started`` ended at ``now``; ``returncode`` None = no exec."""
        if returncode == NO_RESPAWN_EXIT:
            return RestartDecision(False, f"exit code {NO_RESPAWN_EXIT} asks not to be respawned")
        if now - started < self.fast_s:
            self.fast_deaths += 1
        else:
            self.fast_deaths = 0
        if self.fast_deaths > self.max_fast:
            return RestartDecision(False, (
                f"respawning too fast: {self.fast_deaths} deaths in a row, each within "
                f"{self.fast_s:g} s of its start"))
        return RestartDecision(True, "restarted")


# ------------------------------------------------------------------------------- the shell


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]


def lookup_user(user: str) -> Identity:
    """uid, primary gid and supplementary groups of ``user``; RespawnError if unknown."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise RespawnError(f"respawn: no such user {user!r}") from None
    return Identity(entry.pw_uid, entry.pw_gid,
                    tuple(os.getgrouplist(entry.pw_name, entry.pw_gid)))


class RespawnState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    EXITED = "exited"  # between an exit and the restart
    GAVE_UP = "gave up"  # respawning too fast
    DONE = "done"  # exit 100, or stopped


#: Heartbeat's own descriptions of the signals a client dies of (seen in the lab); others fall
#: back to the C library's.
_SIGNAL_TEXT = {
    signal.SIGHUP: "Hangup", signal.SIGQUIT: "Quit", signal.SIGABRT: "Abort",
    signal.SIGKILL: "Kill, unblockable", signal.SIGUSR1: "User-defined signal 1",
    signal.SIGSEGV: "Segmentation violation", signal.SIGTERM: "Termination (ANSI)",
}


def describe_exit(command: str, pid: int, rc: int) -> tuple[int, str]:
    """(level, Heartbeat's line) for a client that ended with ``rc`` (negative: a signal)."""
    if rc < 0:
        try:
            sig = signal.Signals(-rc)
        except ValueError:
            return logging.WARNING, f"Managed {command} process {pid} killed by signal {-rc}."
        text = _SIGNAL_TEXT.get(sig) or signal.strsignal(sig) or "unknown"
        return (logging.WARNING,
                f"Managed {command} process {pid} killed by signal {-rc} [{sig.name} - {text}].")
    level = logging.INFO if rc == 0 else logging.WARNING
    return level, f"Managed {command} process {pid} exited with return code {rc}."


class Respawner:
    """Runs one respawn client until it must not be restarted, or :meth:`stop`.

    Heartbeat's lines go to ``logger``; the client's own output is logged line by line (each
    capped). ``env`` is added to the environment (Heartbeat's ``env`` directive gives HA_*).
    """

    def __init__(self, spec: RespawnSpec, *, logger: logging.Logger,
                 env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 throttle: RespawnThrottle | None = None,
                 identity: Identity | None = None,
                 restart_delay_s: float = RESTART_DELAY_S) -> None:
        self.spec = spec
        self._logger = logger
        self._env = {**os.environ, **(env or {})}
        self._clock = clock
        self.throttle = throttle or RespawnThrottle()
        self.restart_delay_s = restart_delay_s
        self.identity = identity or lookup_user(spec.user)
        self.state = RespawnState.STARTING
        self.pid: int | None = None
        self.starts = 0
        self.last_exit: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._stop_requested = asyncio.Event()

    def as_dict(self) -> dict[str, Any]:
        """Status keys of one client: command, user, state, pid, starts, last_exit."""
        return {"command": self.spec.command, "user": self.spec.user, "state": self.state.value,
                "pid": self.pid, "starts": self.starts, "last_exit": self.last_exit}

    def _preexec_kwargs(self) -> dict[str, Any]:
        ident = self.identity
        if os.geteuid() != 0 and ident.uid == os.geteuid():
            return {}  # already that user: nothing to switch (tests as an ordinary user)
        return {"user": ident.uid, "group": ident.gid, "extra_groups": list(ident.groups)}

    async def _log_output(self, stream: asyncio.StreamReader, pid: int) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the stream limit: skip its rest
                with contextlib.suppress(ValueError):
                    await stream.read(1 << 16)
                continue
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\n")[:OUTPUT_LINE_CAP]
            self._logger.info("%s[%d]: %s", self.spec.program, pid, text)

    async def _output_reader(self, read_fd: int) -> tuple[asyncio.StreamReader,
                                                         asyncio.BaseTransport]:
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader(limit=1 << 16)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(read_fd, "rb", buffering=0))
        return stream, transport

    async def _run_once(self) -> tuple[float, int | None]:
        started = self._clock()
        self.starts += 1
        self._logger.info('Starting child client "%s" (%d,%d)', self.spec.command,
                          self.identity.uid, self.identity.gid)
        # Output through a pipe of our own, not the Process's: a grandchild that keeps it open
        # must not delay noticing that the client itself exited.
        read_fd, write_fd = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.spec.argv, stdin=asyncio.subprocess.DEVNULL, stdout=write_fd,
                stderr=write_fd, env=self._env, start_new_session=True,
                **self._preexec_kwargs())
        except (OSError, subprocess.SubprocessError) as exc:
            os.close(read_fd)
            self.last_exit = f"could not start: {exc}"
            self._logger.error("Could not start \"%s\" as %s: %s", self.spec.command,
                               self.spec.user, exc)
            return started, None
        finally:
            os.close(write_fd)
        self._proc = proc
        self.pid = proc.pid
        self.state = RespawnState.RUNNING
        self._logger.info('Starting "%s" as uid %d  gid %d (pid %d)', self.spec.command,
                          self.identity.uid, self.identity.gid, proc.pid)
        stream, transport = await self._output_reader(read_fd)
        reader = asyncio.create_task(self._log_output(stream, proc.pid))
        try:
            rc = await proc.wait()
            # What it wrote just before exiting still reaches the log; a child holding the
            # pipe open does not hold us up for long.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), 0.5)
        finally:
            reader.cancel()
            transport.close()
        level, self.last_exit = describe_exit(self.spec.command, proc.pid, rc)
        self._logger.log(level, "%s", self.last_exit)
        self.state = RespawnState.EXITED
        self._proc = None
        return started, rc

    async def run(self) -> RespawnState:
        """Start and restart the client; returns GAVE_UP or DONE."""
        while not self._stopping:
            started, rc = await self._run_once()
            if self._stopping:
                break
            decision = self.throttle.exited(started, self._clock(), rc)
            if not decision.restart:
                if rc == NO_RESPAWN_EXIT:
                    self._logger.info("%s: %s", self.spec.command, decision.reason)
                    self.state = RespawnState.DONE
                else:
                    self._logger.error('Client %s "respawning too fast"', self.spec.command)
                    self.state = RespawnState.GAVE_UP
                return self.state
            self._logger.error('Respawning client "%s":', self.spec.command)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), self.restart_delay_s)
        self.state = RespawnState.DONE
        return self.state

    async def stop(self, timeout: float = 10.0) -> None:
        """No more restarts; SIGTERM the client, SIGKILL its process group after ``timeout``."""
        self._stopping = True
        self._stop_requested.set()
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        # Helpers it forked share its process group (start_new_session): none may outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


async def stop_all(respawners: Sequence[Respawner], timeout: float = 10.0) -> None:
    """Stop clients in reverse start order, as Heartbeat's shutdown does."""
    for r in reversed(respawners):
        await r.stop(timeout)
