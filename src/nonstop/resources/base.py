"""The resource-agent port: what the failover engine may ask of any resource.

An agent starts, stops and reports one resource of a haresources line. Real drivers live
beside this module (native IP address, MailTo, heartbeat/LSB/OCF scripts); a recording driver
(`nonstop.resources.recording`) stands in for them in the engine's unit tests. The engine
receives a factory with the signature of `make_agent` and never learns which driver it got.

Agents do one action per call. Group policy (order, retries, what a failed stop means) is the
failover engine's job, not the agents'.
"""

from __future__ import annotations

import abc
import enum
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nonstop.config.model import ResourceSpec
from nonstop.errors import NonstopError

DEFAULT_INIT_DIR = Path("/etc/init.d")
DEFAULT_OCF_ROOT = Path("/usr/lib/ocf")


class ResourceState(enum.Enum):
    """What a status query found."""

    RUNNING = "running"
    STOPPED = "stopped"
    # The agent answered and says the resource is in error (OCF rc other than 0/7,
    # an address configured on another interface than the one asked for).
    FAILED = "failed"
    # No reliable answer: the status action timed out, could not be run, or LSB rc 4.
    UNKNOWN = "unknown"


class ResourceError(NonstopError):
    """An action on a resource failed; the message says which, why, and shows the last output."""

    def __init__(
        self,
        resource: str,
        action: str,
        reason: str,
        *,
        returncode: int | None = None,
        output_tail: tuple[str, ...] = (),
    ) -> None:
        text = f"{resource}: {action} failed: {reason}"
        if output_tail:
            text += "; last output: " + " | ".join(output_tail)
        super().__init__(text)
        self.resource = resource
        self.action = action
        self.reason = reason
        self.returncode = returncode
        self.output_tail = output_tail


@dataclass(frozen=True)
class ActionTimeouts:
    """Seconds each action may take before it is killed (scripts) or abandoned (native)."""

    start: float = 60.0
    stop: float = 60.0
    status: float = 20.0

    def for_action(self, action: str) -> float:
        """The timeout for ``start``, ``stop`` or ``status``/``monitor``."""
        if action == "start":
            return self.start
        if action == "stop":
            return self.stop
        return self.status


@dataclass(frozen=True)
class AgentContext:
    """Everything an agent needs to know about the node it runs on.

    Paths are per node (two nodes share a machine in tests), never global defaults
    except where Heartbeat itself used a fixed system path (init scripts, OCF root).
    """

    node: str
    # The ha.d directory: heartbeat-style scripts are looked up in ``config_dir/resource.d``.
    config_dir: Path
    init_dir: Path = DEFAULT_INIT_DIR
    # Where pseudo-resources keep their state (Heartbeat's HA_RSCTMP); None = memory only.
    state_dir: Path | None = None
    # Extra environment for every script (HA_CURHOST and friends; see `heartbeat_environment`).
    environment: Mapping[str, str] = field(default_factory=dict)
    # More of it, asked as each script starts: what the daemon knows then (the peers its
    # heartbeats declared dead), not when this context was made.
    news: Callable[[], Mapping[str, str]] | None = None
    timeouts: ActionTimeouts = field(default_factory=ActionTimeouts)
    smtp_host: str = "localhost"
    smtp_port: int = 25
    # The local MTA's sendmail interface; when set, MailTo hands its mail to it instead of
    # speaking SMTP (see nonstop.resources.mailto.find_sendmail).
    sendmail: Path | None = None
    # Envelope sender for MailTo; None = root@<node>, as mail(1) run by root would use.
    mail_from: str | None = None
    # Seconds one SMTP attempt may take, and how many attempts MailTo makes.
    smtp_timeout: float = 10.0
    smtp_attempts: int = 3
    # Seconds MailTo waits before starting the process that composes and sends a mail, so
    # that this work does not compete with the resources started or stopped after it in a
    # hand-off; the mail keeps the event's date.
    mail_defer_s: float = 0.0
    # Probe a virtual address with ARP before adding it, listening this many seconds (see
    # nonstop.resources.dad); None = add it without asking the link.
    address_probe_s: float | None = None
    ocf_root: Path = DEFAULT_OCF_ROOT
    # LSB init scripts: True = status from the exit code (0 running, 1-3 stopped, else
    # unknown); False = Heartbeat's stdout rule, for scripts whose exit codes lie.
    lsb_status_by_exit_code: bool = True
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("nonstop.resources"))

    @property
    def resource_dir(self) -> Path:
        """Heartbeat's HA_RESOURCEDIR."""
        return self.config_dir / "resource.d"


def heartbeat_environment(
    node: str,
    config_dir: Path,
    *,
    logfile: str | None = None,
    debugfile: str | None = None,
    logfacility: str | None = None,
    use_logd: bool = False,
    nice_failback: bool = False,
    debug: int = 0,
    rsctmp: Path | None = None,
) -> dict[str, str]:
    """The HA_* variables Heartbeat exports to resource scripts (spec §2.5)."""
    env = {
        "HA_CURHOST": node,
        "HA_DIR": str(config_dir),
        "HA_FUNCS": str(config_dir / "shellfuncs"),
        "HA_RESOURCEDIR": str(config_dir / "resource.d"),
        "HA_LOGD": "yes" if use_logd else "no",
        "HA_DEBUG": str(debug),
    }
    if logfile is not None:
        env["HA_LOGFILE"] = logfile
    if debugfile is not None:
        env["HA_DEBUGLOG"] = debugfile
    if logfacility is not None:
        env["HA_LOGFACILITY"] = logfacility
    if nice_failback:
        env["HA_NICEFAILBACK"] = "yes"
    if rsctmp is not None:
        env["HA_RSCTMP"] = str(rsctmp)
    return env


class Agent(abc.ABC):
    """One resource on this node. Every method may be cancelled by the caller."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start the resource; succeed if it already runs. Raises `ResourceError`."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the resource; succeed if it is already stopped. Raises `ResourceError`."""

    @abc.abstractmethod
    async def status(self) -> ResourceState:
        """Report the resource's state; never raises for an agent that answered badly."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A short human-readable name for logs, e.g. ``IPaddr 198.18.0.10/24/eth0``."""


AgentFactory = Callable[[ResourceSpec, AgentContext], Agent]


def build_agents(specs: Iterable[ResourceSpec], factory: AgentFactory, ctx: AgentContext,
                 ) -> tuple[list[Agent], list[str]]:
    """A group's agents, and why those that could not be built were not (a script that is
    neither in resource.d nor in /etc/init.d: a configuration error of its line)."""
    agents: list[Agent] = []
    missing: list[str] = []
    for spec in specs:
        try:
            agents.append(factory(spec, ctx))
        except ResourceError as e:
            missing.append(e.reason)
    return agents, missing


def make_agent(spec: ResourceSpec, ctx: AgentContext) -> Agent:
    """Choose the real driver for one haresources entry (see `nonstop.resources.factory`)."""
    # Imported here: the drivers import this module for the port itself.
    from nonstop.resources.factory import build_agent

    return build_agent(spec, ctx)
