"""The ``nonstop`` command: run a node, ask it how things stand, check a configuration."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import click

from nonstop import __version__
from nonstop.apiclient import ApiError, request
from nonstop.quick import DEFAULT_STATE_DIR, show_status
from nonstop.quick import render_status as render_status
from nonstop.runcommand import DEFAULT_CONFIG_DIR, default_node, run_node

if TYPE_CHECKING:
    from nonstop.config.errors import ConfigError
    from nonstop.config.model import ConfigWarning

# Each command imports what it needs (the configuration parser, asyncio) when it runs: a
# command line pays only for its own command (nonstop.quick answers the frequent ones, and
# starts `nonstop run`, without loading click at all).

config_dir_option = click.option(
    "--config-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_CONFIG_DIR,
    show_default=True,
    help="Directory holding ha.cf, authkeys and haresources.",
)
state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE_DIR,
    show_default=True,
    help="This node's state directory (generation, control socket).",
)
node_option = click.option(
    "--node",
    default=None,
    help="This node's name (default: nodeinfo in the config dir, else uname -n).",
)


class LazyGroup(click.Group):
    """Commands from other subsystems are imported only when used: `nonstop sync`, run by
    the master script and cron, must not pay for importing the demo."""

    LAZY: ClassVar[dict[str, tuple[str, str]]] = {
        "demo": ("nonstop.demo.cli", "demo_command"),
        "history": ("nonstop.observe.cli", "history_command"),
        "sync": ("nonstop.sync.cli", "sync_command"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY:
            module, attr = self.LAZY[cmd_name]
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="nonstop")
def cli() -> None:
    """nonstop: high availability for a service on two or more Linux nodes."""


def _file_order(items: list[ConfigError | ConfigWarning]) -> list[ConfigError | ConfigWarning]:
    order = {name: i for i, name in enumerate(("ha.cf", "authkeys", "haresources"))}
    return sorted(items, key=lambda it: (order.get(os.path.basename(it.loc.file), 9),
                                         it.loc.line))


@cli.command()
@config_dir_option
@node_option
@click.option("--offline", is_flag=True,
              help="Check the files only, not this machine (interfaces, scripts, csync2.cfg): "
              "for a configuration made for another machine.")
def check(config_dir: Path, node: str | None, offline: bool) -> None:
    """Validate a configuration directory as `nonstop run` would, and against this machine.

    Applies exactly the rules `run` applies (the same default node: --node, else nodeinfo,
    else uname -n) and, unless --offline, this machine's facts: heartbeat interfaces exist,
    IPaddr interfaces or a covering subnet exist, every resource script is found and
    executable, the nonstop_sync csync2.cfg loads. Every error and warning of every file, as
    file:line, in one pass. Exit 0 if `run` would start, 1 otherwise.
    """
    from nonstop.config.errors import ConfigError
    from nonstop.config.loader import check_cluster_config
    from nonstop.preflight import check_example_key, check_machine

    name = (node or default_node(config_dir)).lower()
    parsed = check_cluster_config(str(config_dir), name)
    items: list[ConfigError | ConfigWarning] = [*parsed.errors, *parsed.warnings]
    if parsed.value is not None:
        items += check_example_key(parsed.value)
        if not offline:
            items += check_machine(parsed.value)
    items = _file_order(items)
    errors = [i for i in items if isinstance(i, ConfigError)]
    for item in items:
        click.echo(str(item), err=isinstance(item, ConfigError))
    if errors:
        click.echo(f"{len(errors)} error(s) in {config_dir} (node {name})", err=True)
        sys.exit(1)
    facts = "files only (--offline)" if offline else "files and this machine"
    click.echo(f"{config_dir}: configuration OK for node {name} ({facts})")


@cli.command()
@config_dir_option
@state_dir_option
@node_option
@click.option("-v", "--verbose", count=True, help="Also log debug messages to stderr.")
@click.option(
    "--sync-root",
    default="/",
    show_default=True,
    help="With nonstop_sync: where this node's replicated files live (paths in csync2.cfg "
    "are below it); lets several nodes share one machine.",
)
def run(config_dir: Path, state_dir: Path, node: str | None, verbose: int, sync_root: str) -> None:
    """Run one node in the foreground until SIGTERM (which leaves the cluster gracefully)."""
    sys.exit(run_node(config_dir, state_dir, node, verbose, sync_root))


@cli.command()
@state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (stable keys).")
def status(state_dir: Path, as_json: bool) -> None:
    """Show this node, every node's state and how long ago each was last heard."""
    sys.exit(show_status(state_dir, as_json))


@cli.command()
@state_dir_option
def reload(state_dir: Path) -> None:
    """Re-read ha.cf, haresources, authkeys and csync2.cfg in the running node (as SIGHUP does).

    What can change live does (authkeys, keepalive/deadtime/warntime, logging, nonstop_monitor,
    nonstop_sync, csync2.cfg and its keys: replication restarts); the rest is named and applied
    at the next start. A configuration with any error is refused as a whole: the node keeps
    running on the previous one (exit 1).
    """
    try:
        reply = request(state_dir, "reload", timeout=60.0)
    except ApiError as e:
        click.echo(f"nonstop: {e}", err=True)
        sys.exit(3)  # LSB: not running
    for line in reply.get("errors") or []:
        click.echo(str(line), err=True)
    if not reply.get("ok"):
        click.echo(f"nonstop: reload refused: {reply.get('error')}", err=True)
        sys.exit(1)
    for line in reply.get("applied") or []:
        click.echo(f"applied: {line}")
    for line in reply.get("deferred") or []:
        click.echo(f"at the next start: {line}")
    if not reply.get("applied") and not reply.get("deferred"):
        click.echo("reloaded: no change")


def _move(cmd: str, state_dir: Path, which: str) -> None:
    try:
        reply = request(state_dir, cmd, which=which)
    except ApiError as e:
        click.echo(f"nonstop: {e}", err=True)
        sys.exit(3)
    if not reply.get("ok"):
        click.echo(f"nonstop: {reply.get('error')}", err=True)
        sys.exit(1)
    groups = reply.get("groups") or []
    held = reply.get("held")
    if held is None:  # a daemon of before "held": every selected group, as it said then
        held = groups if cmd == "standby" else []
    moving = held if cmd == "standby" else [g for g in groups if g not in held]
    verb = "giving away" if cmd == "standby" else "asking for"
    # The move follows the answer (a standby first pushes what replication has not sent,
    # and is refused if that fails): status says how it ended.
    after = " (`nonstop status` shows how it ends)" if moving else ""
    click.echo(f"{cmd} [{which}]: {verb} {', '.join(moving) if moving else 'no groups'}{after}")
    if cmd == "standby" and len(moving) < len(groups):
        click.echo(f"not held here: {', '.join(g for g in groups if g not in moving)} (this node "
                   f"now takes them only if no other node can)")
    elif cmd == "takeover" and held:
        click.echo(f"already held here: {', '.join(held)}")


WHICH = click.Choice(["all", "local", "foreign", "failback"])


@cli.command()
@state_dir_option
@click.argument("which", type=WHICH, default="all")
def standby(state_dir: Path, which: str) -> None:
    """Give this node's groups to another node (hb_standby): all, local or foreign."""
    _move("standby", state_dir, which)


@cli.command()
@state_dir_option
@click.argument("which", type=WHICH, default="all")
def takeover(state_dir: Path, which: str) -> None:
    """Take groups from the other node (hb_takeover): all, local or foreign."""
    _move("takeover", state_dir, which)


def main() -> None:
    """The entry point of installs made before nonstop.quick:main (same behaviour)."""
    from nonstop.quick import main as program

    program()
