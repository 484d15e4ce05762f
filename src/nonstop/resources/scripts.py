"""Script agents: heartbeat-style (resource.d), LSB init scripts and OCF resource agents.

How each kind answers ``status``:
* heartbeat-style: Heartbeat's stdout rule (spec §2.3), exit code ignored;
* LSB init script: the exit code by default (0 running, 1-3 stopped, 4 and others unknown).
  Heartbeat ignored it because old init scripts lied; today's (``status_of_proc``) do not, and
  they also print "is running"/"is not running", so both rules agree on well-behaved scripts.
  ``AgentContext.lsb_status_by_exit_code=False`` restores Heartbeat's rule;
* OCF agent: ``monitor`` exit code (0 running, 7 not running, anything else failed).
"""

from __future__ import annotations

import enum
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from nonstop.resources.base import Agent, AgentContext, ResourceError, ResourceState
from nonstop.resources.runner import RunResult, run_script

_NOT_RUNNING = re.compile(r"[Nn][Oo][Tt] .*[Rr]unning", re.DOTALL)
_RUNNING = re.compile(r"[Rr]unning|OK")

OCF_SUCCESS = 0
OCF_NOT_RUNNING = 7
LSB_STATUS_RUNNING = 0
LSB_STATUS_STOPPED = (1, 2, 3)  # dead with pid file, dead with lock file, stopped


class ScriptKind(enum.Enum):
    HEARTBEAT = "heartbeat"
    LSB = "lsb"


def classify_status_output(output: str) -> ResourceState:
    """Heartbeat's ``we_own_resource``: "not ... running" is stopped, else "running"/"OK"
    anywhere is running, else stopped (including no output)."""
    if _NOT_RUNNING.search(output):
        return ResourceState.STOPPED
    if _RUNNING.search(output):
        return ResourceState.RUNNING
    return ResourceState.STOPPED


def classify_lsb_status(returncode: int) -> ResourceState:
    """LSB status exit codes: 0 running, 1-3 not running, 4 (unknown) and the rest unknown."""
    if returncode == LSB_STATUS_RUNNING:
        return ResourceState.RUNNING
    if returncode in LSB_STATUS_STOPPED:
        return ResourceState.STOPPED
    return ResourceState.UNKNOWN


def classify_ocf_monitor(returncode: int) -> ResourceState:
    """OCF monitor exit codes: 0 running, 7 not running, anything else failed."""
    if returncode == OCF_SUCCESS:
        return ResourceState.RUNNING
    if returncode == OCF_NOT_RUNNING:
        return ResourceState.STOPPED
    return ResourceState.FAILED


def is_file(path: Path) -> bool:
    """``Path.is_file`` that is False for any path the system refuses to look up (a name
    longer than NAME_MAX raises ENAMETOOLONG there): a bad name is a script not found."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _is_executable_file(path: Path) -> bool:
    return is_file(path) and os.access(path, os.X_OK)


def locate_script(name: str, ctx: AgentContext) -> tuple[Path, ScriptKind]:
    """Heartbeat's ``scriptpath``: resource.d first, then the init directory; the first
    regular executable file wins. Raises ResourceError ``Cannot locate resource script X``."""
    if "/" in name or name in ("", ".", ".."):
        raise ResourceError(name, "locate", f"Cannot locate resource script {name}")
    places = ((ctx.resource_dir, ScriptKind.HEARTBEAT), (ctx.init_dir, ScriptKind.LSB))
    for directory, kind in places:
        candidate = directory / name
        if _is_executable_file(candidate):
            return candidate, kind
    raise ResourceError(name, "locate", f"Cannot locate resource script {name}")


def _script_env(ctx: AgentContext, extra: Mapping[str, str] = {}) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ctx.environment)
    if ctx.news is not None:
        env.update(ctx.news())
    env.update(extra)
    return env


class _ScriptAgentBase(Agent):
    def __init__(self, raw: str, ctx: AgentContext) -> None:
        self._raw = raw
        self._ctx = ctx

    def describe(self) -> str:
        return self._raw

    def _argv(self, action: str) -> list[str]:
        raise NotImplementedError

    def _env(self, action: str) -> dict[str, str]:
        return _script_env(self._ctx)

    async def _run(self, action: str) -> RunResult:
        argv = self._argv(action)
        try:
            return await run_script(
                argv,
                env=self._env(action),
                timeout_s=self._ctx.timeouts.for_action(action),
                logger=self._ctx.logger,
                log_prefix=f"{self._raw} {action}",
            )
        except OSError as exc:
            raise ResourceError(self._raw, action, f"cannot run {argv[0]}: {exc}") from None

    async def _act(self, action: str) -> None:
        result = await self._run(action)
        if result.timed_out:
            raise ResourceError(
                self._raw,
                action,
                f"timed out after {self._ctx.timeouts.for_action(action):.1f}s and was killed",
                output_tail=result.tail(),
            )
        if result.returncode != 0:
            raise ResourceError(
                self._raw,
                action,
                f"Return code {result.returncode} from {result.argv[0]}",
                returncode=result.returncode,
                output_tail=result.tail(),
            )

    async def start(self) -> None:
        await self._act("start")

    async def stop(self) -> None:
        await self._act("stop")


class ScriptAgent(_ScriptAgentBase):
    """A heartbeat-style or LSB script: ``<path> [args...] <action>``, HA_* environment."""

    def __init__(
        self, raw: str, path: Path, args: tuple[str, ...], kind: ScriptKind, ctx: AgentContext
    ) -> None:
        super().__init__(raw, ctx)
        self.path = path
        self.args = args
        self.kind = kind

    def _argv(self, action: str) -> list[str]:
        # Heartbeat puts the arguments before the action.
        return [str(self.path), *self.args, action]

    async def status(self) -> ResourceState:
        try:
            result = await self._run("status")
        except ResourceError as exc:
            self._ctx.logger.error("%s", exc)
            return ResourceState.UNKNOWN
        if result.timed_out:
            return ResourceState.UNKNOWN
        if self.kind is ScriptKind.LSB and self._ctx.lsb_status_by_exit_code:
            assert result.returncode is not None
            return classify_lsb_status(result.returncode)
        return classify_status_output(result.output)


class OcfAgent(_ScriptAgentBase):
    """``ocf:<provider>:<type>::name=value...``: an OCF resource agent; status is ``monitor``."""

    def __init__(
        self,
        raw: str,
        provider: str,
        rtype: str,
        params: Mapping[str, str],
        ctx: AgentContext,
    ) -> None:
        super().__init__(raw, ctx)
        self.provider = provider
        self.rtype = rtype
        self.params = dict(params)
        self.path = ctx.ocf_root / "resource.d" / provider / rtype
        if not _is_executable_file(self.path):
            raise ResourceError(raw, "locate", f"Cannot locate resource script {self.path}")
        self.instance = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{rtype}_{'_'.join(self.params.values())}")

    def _argv(self, action: str) -> list[str]:
        return [str(self.path), action]

    def _env(self, action: str) -> dict[str, str]:
        timeout_ms = int(self._ctx.timeouts.for_action(action) * 1000)
        extra = {
            "OCF_ROOT": str(self._ctx.ocf_root),
            "OCF_FUNCTIONS_DIR": str(self._ctx.ocf_root / "lib" / "heartbeat"),
            "OCF_RA_VERSION_MAJOR": "1",
            "OCF_RA_VERSION_MINOR": "0",
            "OCF_RESOURCE_TYPE": self.rtype,
            "OCF_RESOURCE_PROVIDER": self.provider,
            "OCF_RESOURCE_INSTANCE": self.instance,
            "OCF_RESKEY_CRM_meta_timeout": str(timeout_ms),
        }
        extra.update({f"OCF_RESKEY_{k}": v for k, v in self.params.items()})
        return _script_env(self._ctx, extra)

    async def status(self) -> ResourceState:
        try:
            result = await self._run("monitor")
        except ResourceError as exc:
            self._ctx.logger.error("%s", exc)
            return ResourceState.UNKNOWN
        if result.timed_out or result.returncode is None:
            return ResourceState.UNKNOWN
        return classify_ocf_monitor(result.returncode)


def parse_ocf_name(name: str) -> tuple[str, str] | None:
    """``ocf:<provider>:<type>`` to (provider, type); None if ``name`` is not an OCF name."""
    parts = name.split(":")
    if len(parts) != 3 or parts[0] != "ocf":
        return None
    provider, rtype = parts[1], parts[2]
    if not provider or not rtype or "/" in provider + rtype or provider in ("..", "."):
        return None
    return provider, rtype


def parse_ocf_params(raw: str, args: tuple[str, ...]) -> dict[str, str]:
    """``name=value`` arguments; anything else is a configuration error."""
    params: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ResourceError(raw, "configure", f"OCF parameter must be name=value, got {arg!r}")
        params[key] = value
    return params
