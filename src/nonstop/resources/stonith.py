"""Fencing (STONITH) through cluster-glue's ``stonith`` command, as Heartbeat configures it.

Two ha.cf forms (spec §1.3):

* ``stonith <type> <configfile>``: one device, its parameters in a file (``stonith -F``);
* ``stonith_host <fromhost|*> <type> <params...>``: only lines whose host is ``*`` or the local
  node apply, and the last one that applies wins. The parameters are positional, as the plugin
  lists its config names (``stonith -p``), or all ``name=value`` (passed as such; external
  plugins read them from their environment).

:class:`StonithFencer` runs ``stonith -t <type> ... -T reset|off <node>`` with a timeout and turns
every outcome into a :class:`FenceResult` whose ``reason`` says what happened; it never raises for
a failed fence. :class:`RecordingFencer` is the test double with scripted results.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import shlex
import shutil
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nonstop.config.errors import Location
from nonstop.errors import NonstopError

STONITH_COMMAND = "stonith"
DEFAULT_TIMEOUT_S = 60.0
OUTPUT_CAP = 2048  # bytes of the command's output kept for the reason
#: Heartbeat retries a failed STONITH every 5 s (``STONITH of X failed.  Retrying...``) and does
#: not take over until one succeeds; the caller's loop should do the same.
RETRY_INTERVAL_S = 5.0


class StonithConfigError(NonstopError, ValueError):
    """A ``stonith``/``stonith_host`` line that cannot describe a device."""


class FenceAction(enum.Enum):
    RESET = "reset"
    OFF = "off"
    ON = "on"


@dataclass(frozen=True)
class StonithDevice:
    """One configured device: plugin type and either positional params, name=value pairs, or
    a parameter file."""

    plugin: str
    params: tuple[str, ...] = ()
    config_file: Path | None = None
    loc: Location | None = field(default=None, compare=False, repr=False)  # its ha.cf line

    def __post_init__(self) -> None:
        if not self.plugin or any(c.isspace() for c in self.plugin):
            raise StonithConfigError(f"bad stonith device type {self.plugin!r}")
        if self.config_file is not None and self.params:
            raise StonithConfigError("a stonith device has a config file or parameters, not both")

    @property
    def named(self) -> bool:
        """True when every parameter is ``name=value``."""
        return bool(self.params) and all("=" in p and not p.startswith("=") for p in self.params)

    def argv(self, command: str = STONITH_COMMAND) -> list[str]:
        """``stonith -t <type>`` and the parameter arguments (without the action)."""
        args = [command, "-t", self.plugin]
        if self.config_file is not None:
            args += ["-F", str(self.config_file)]
        elif self.named:
            args += list(self.params)
        elif self.params:
            args += ["-p", " ".join(self.params)]
        return args

    def describe(self) -> str:
        """For logs and status; parameters are left out (they often hold a password)."""
        return f"{self.plugin}" + (f" ({self.config_file})" if self.config_file else "")


def parse_stonith_line(rest: str) -> StonithDevice:
    """The words after ``stonith``: ``<type> <configfile>``."""
    words = rest.split()
    if len(words) != 2:
        raise StonithConfigError("stonith needs exactly: <type> <configfile>")
    return StonithDevice(words[0], config_file=Path(words[1]))


def parse_stonith_host_line(rest: str) -> tuple[str, StonithDevice]:
    """The words after ``stonith_host``: ``(fromhost, device)``; fromhost is ``*`` or a node."""
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise StonithConfigError(f"stonith_host: {exc}") from None
    if len(words) < 2:
        raise StonithConfigError("stonith_host needs: <fromhost|*> <type> [<params>...]")
    return words[0].lower(), StonithDevice(words[1], tuple(words[2:]))


def device_for(local_node: str, lines: Iterable[tuple[str, StonithDevice]]) -> StonithDevice | None:
    """The device this node fences with: the last ``stonith_host`` line for ``*`` or it."""
    chosen: StonithDevice | None = None
    for host, device in lines:
        if host in ("*", local_node.lower()):
            chosen = device
    return chosen


@dataclass(frozen=True)
class FenceResult:
    """The outcome of one fencing request; ``reason`` is the sentence for status and the log."""

    node: str
    action: FenceAction
    ok: bool
    reason: str
    returncode: int | None = None
    output: str = ""
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Status keys of the last fencing: node, action, ok, reason, rc, duration_s."""
        return {"node": self.node, "action": self.action.value, "ok": self.ok,
                "reason": self.reason, "rc": self.returncode,
                "duration_s": round(self.duration_s, 3)}


class Fencer(Protocol):
    """Powers a node off (or resets it); the daemon fences a dead peer before taking over."""

    async def fence(self, node: str, action: FenceAction = FenceAction.RESET) -> FenceResult: ...


def _tail(data: bytes) -> str:
    text = data[-OUTPUT_CAP:].decode(errors="replace").strip()
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


class StonithFencer:
    """The real fencer: one ``stonith`` process per request, killed at ``timeout_s``."""

    def __init__(self, device: StonithDevice, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 command: str = STONITH_COMMAND, logger: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if timeout_s <= 0:
            raise StonithConfigError("stonith timeout must be > 0")
        self._logger = logger
        self.device = device
        self.timeout_s = timeout_s
        self.command = command
        self._clock = clock

    async def _run(self, argv: Sequence[str]) -> tuple[int | None, bytes, str | None]:
        """(returncode, output, problem); problem is set when it could not run or timed out."""
        if shutil.which(argv[0]) is None:
            return None, b"", (f"the {argv[0]!r} command is not installed (Debian package "
                               "cluster-glue)")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            return None, b"", f"could not run {argv[0]}: {exc}"
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            return None, b"", f"no answer within {self.timeout_s:g} s (killed)"
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        return proc.returncode, out, None

    async def fence(self, node: str, action: FenceAction = FenceAction.RESET) -> FenceResult:
        """Fence ``node``; a FenceResult in every case (ok only on exit status 0).

        With a logger, Heartbeat's lines: ``Resetting node <n> with [<device>]`` before, and
        ``node <n> now reset.`` after a reset that worked; a failure is logged as its reason.
        """
        start = self._clock()
        if self._logger is not None and action is FenceAction.RESET:
            self._logger.info("Resetting node %s with [%s]", node, self.device.describe())
        argv = [*self.device.argv(self.command), "-T", action.value, node]
        rc, out, problem = await self._run(argv)
        took = self._clock() - start
        what = f"STONITH {action.value} of {node} with {self.device.describe()}"
        output = _tail(out)
        if problem is not None:
            result = FenceResult(node, action, False, f"{what} failed: {problem}", rc, output,
                                 took)
        elif rc == 0:
            result = FenceResult(node, action, True, f"{what} succeeded", rc, output, took)
        else:
            detail = f": {output}" if output else ""
            result = FenceResult(node, action, False, f"{what} failed (exit {rc}){detail}", rc,
                                 output, took)
        if self._logger is not None:
            if not result.ok:
                self._logger.error("%s", result.reason)
            elif action is FenceAction.RESET:
                self._logger.info("node %s now reset.", node)
            else:
                self._logger.info("%s", result.reason)
        return result

    async def hosts(self) -> list[str]:
        """The nodes the device says it controls (``stonith -l``); StonithConfigError if the
        device cannot be queried."""
        rc, out, problem = await self._run([*self.device.argv(self.command), "-l"])
        if problem is not None or rc != 0:
            raise StonithConfigError(
                f"stonith device {self.device.describe()}: cannot list its hosts: "
                f"{problem or _tail(out) or f'exit {rc}'}")
        return [line.strip().lower() for line in out.decode(errors="replace").splitlines()
                if line.strip()]


@dataclass
class RecordingFencer:
    """Test double: records each request and answers from ``results`` (default: success)."""

    results: dict[str, list[bool]] = field(default_factory=dict)
    calls: list[tuple[str, FenceAction]] = field(default_factory=list)

    async def fence(self, node: str, action: FenceAction = FenceAction.RESET) -> FenceResult:
        self.calls.append((node, action))
        queue = self.results.get(node)
        ok = queue.pop(0) if queue else True
        verdict = "succeeded" if ok else "failed (scripted)"
        return FenceResult(node, action, ok, f"STONITH {action.value} of {node} {verdict}",
                           0 if ok else 1)
