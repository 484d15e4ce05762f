"""``nonstop sync``: csync2's command line, so ``csync2 -xv`` becomes ``nonstop sync -xv``.

Modes: ``-x`` check and update, ``-c`` check, ``-u`` update, ``-f`` force, ``-T`` compare,
``-M`` list dirty, ``-R`` remove stale entries, ``-k FILE`` make a key, ``-i`` run the receiver.
Exit codes as csync2: 0 ok, 1 error or conflict, 2 "empty" (``-M``) or "in sync" (``-T``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import string
import sys

import click

from nonstop.config.csync2 import DEFAULT_PORT, load_csync2
from nonstop.config.errors import ConfigError
from nonstop.sync.node import Node, Options, Scope, SyncError, SyncServer

KEY_ALPHABET = string.ascii_letters + string.digits + "._"
DEFAULT_STATE_DIR = "/var/lib/nonstop/sync"


def make_key(path: str) -> None:
    """csync2 -k: a 64-character random key in a new file (never overwrites)."""
    key = "".join(secrets.choice(KEY_ALPHABET) for _ in range(64))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")


def _scopes(paths: tuple[str, ...], recursive: bool) -> list[Scope] | None:
    if not paths:
        return None
    return [(os.path.normpath(os.path.abspath(p)) if not p.startswith("%") else p.rstrip("/"),
             recursive) for p in paths]


def _addresses(items: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, addr = item.partition("=")
        if not sep or not name or not addr:
            raise click.BadParameter(f"expected NAME=ADDRESS, got {item!r}",
                                     param_hint="--peer-address")
        out[name.lower()] = addr
    return out


@click.command("sync", context_settings={"help_option_names": ["--help"]})
@click.option("-x", "check_update", is_flag=True, help="Check and update (csync2 -x).")
@click.option("-c", "do_check", is_flag=True, help="Check files, mark changes dirty.")
@click.option("-u", "do_update", is_flag=True, help="Send dirty files to the peers.")
@click.option("-f", "do_force", is_flag=True, help="Force this node's version of PATHS.")
@click.option("-r", "recursive", is_flag=True, help="Recursive (for PATHS).")
@click.option("-T", "compare", is_flag=True, help="Compare this node's disk with the peers'.")
@click.option("-M", "list_dirty", is_flag=True, help="List dirty entries.")
@click.option("-R", "remove_stale", is_flag=True, help="Forget stale entries.")
@click.option("-i", "serve", is_flag=True, help="Run the receiver in the foreground (csync2 -ii).")
@click.option("-k", "keyfile", metavar="FILE", help="Create a new group key in FILE.")
@click.option("-v", "verbose", count=True, help="More output (repeatable).")
@click.option("-N", "node", metavar="NAME", envvar="NONSTOP_SYNC_NODE",
              help="This node's name (default: $HA_CURHOST, which resource scripts such as the "
              "talk's master get from the daemon, else the host name).")
@click.option("-p", "port", type=int, default=DEFAULT_PORT, show_default=True,
              envvar="NONSTOP_SYNC_PORT", help="TCP port.")
@click.option("--config", "-C", "config", default="/etc/csync2.cfg", show_default=True,
              envvar="NONSTOP_SYNC_CONFIG", help="csync2.cfg to read.")
@click.option("--state-dir", default=DEFAULT_STATE_DIR, show_default=True,
              envvar="NONSTOP_SYNC_STATE_DIR", help="Database and TLS certificate directory.")
@click.option("--db", "db_path", metavar="PATH", help="Database file (default STATE_DIR/NAME.db3).")
@click.option("--root", default="/", show_default=True, envvar="NONSTOP_SYNC_ROOT",
              help="Where this node's files live: names in the config are below it.")
@click.option("--peer-address", "peer_address", multiple=True, metavar="NAME=ADDR",
              envvar="NONSTOP_SYNC_PEER_ADDRESS",
              help="Address of a peer (instead of resolving its name); the environment "
                   "variable takes several, space-separated.")
@click.option("--listen", default="0.0.0.0", show_default=True, help="Address -i listens on.")
@click.argument("paths", nargs=-1)
def sync_command(
    check_update: bool, do_check: bool, do_update: bool, do_force: bool, recursive: bool,
    compare: bool, list_dirty: bool, remove_stale: bool, serve: bool, keyfile: str | None,
    verbose: int, node: str | None, port: int, config: str, state_dir: str,
    db_path: str | None, root: str, peer_address: tuple[str, ...], listen: str,
    paths: tuple[str, ...],
) -> None:
    """Replicate files between cluster nodes with csync2's semantics (see docs/SYNC.md).

    Scripts written for csync2 run unchanged with the program name changed; node identity and
    paths can also come from NONSTOP_SYNC_* environment variables (like CSYNC2_SYSTEM_DIR).
    """
    if keyfile is not None:
        try:
            make_key(keyfile)
        except OSError as e:
            click.echo(f"Can't create key file: {e.strerror}", err=True)
            sys.exit(1)
        return
    modes = [check_update, do_check or do_update, do_force, compare, list_dirty, remove_stale,
             serve]
    chosen = sum(bool(m) for m in modes)
    force_then_sync = do_force and (check_update or do_check or do_update)
    if chosen == 0 or (chosen > 1 and not force_then_sync):
        click.echo(click.get_current_context().get_help(), err=True)
        sys.exit(1)
    if do_force and not paths:
        click.echo("nonstop sync -f needs the files or directories to force", err=True)
        sys.exit(1)

    def out(level: int, msg: str) -> None:
        if level <= verbose:
            click.echo(msg, err=True)

    me = (node or os.environ.get("HA_CURHOST") or socket.gethostname()).lower()
    try:
        cfg = load_csync2(config)
        n = Node(Options(cfg, me, state_dir, db_path, root, port, _addresses(peer_address),
                         listen), out)
    except ConfigError as e:
        click.echo(f"Config error: {e}", err=True)
        sys.exit(1)
    scopes = _scopes(paths, recursive or not paths)
    try:
        sys.exit(_run(n, scopes, check_update, do_check, do_update, do_force, compare,
                      list_dirty, remove_stale, serve, verbose))
    except ConfigError as e:
        click.echo(f"Config error: {e}", err=True)
        sys.exit(1)
    except SyncError as e:
        click.echo(f"ERROR: {e}", err=True)
        sys.exit(1)
    finally:
        n.close()


def _run(
    n: Node, scopes: list[Scope] | None, check_update: bool, do_check: bool, do_update: bool,
    do_force: bool, compare: bool, list_dirty: bool, remove_stale: bool, serve: bool,
    verbose: int,
) -> int:
    if list_dirty:
        lines = n.dirty_lines()
        for line in lines:
            click.echo(line)
        return 0 if lines else 2
    if remove_stale:
        for name in n.remove_stale():
            if verbose:
                click.echo(f"Removing {name} from the database.", err=True)
        return 0
    if serve:
        asyncio.run(_serve(n))
        return 0
    if compare:
        lines, problems = asyncio.run(n.compare(scopes))
        for line in lines:
            click.echo(line)
        for p in problems:
            click.echo(f"ERROR: {p}", err=True)
        return 1 if problems else (0 if lines else 2)
    if do_force:
        assert scopes is not None
        n.force(scopes)
        if not (check_update or do_update):
            return 0
    if check_update or do_check:
        n.check(scopes)
    if check_update or do_update:
        report = asyncio.run(n.update(scopes))
        if report.problems:
            click.echo(f"Finished with {len(report.problems)} errors.", err=True)
        return report.exit_code
    return 0


async def _serve(n: Node) -> None:
    server = SyncServer(n)
    await server.start()
    n.out(1, f"{n.me}: listening on {n.opts.listen}:{server.port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()
