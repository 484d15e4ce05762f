"""``nonstop sync``: csync2 2.0's command line, so ``csync2 -xv`` becomes ``nonstop sync -xv``.

Every flag of ``csync2 -h`` is either implemented with csync2's meaning or refused with a message
naming the reason (docs/SYNC.md has the table). Exit codes as csync2: 0 ok, 1 error, conflict or
usage error, 2 "empty" (``-H -L -M -S``) or "in sync" (``-T``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import socket
import stat
import string
import sys
import syslog
import time
from collections.abc import Sequence
from typing import Any

import click
from click.core import ParameterSource

from nonstop.config.csync2 import DEFAULT_PORT, Csync2Config, load_csync2
from nonstop.config.errors import ConfigError
from nonstop.sync import quickcli
from nonstop.sync.node import Node, Options, Scope, SyncError, SyncServer
from nonstop.sync.patterns import PathMap
from nonstop.sync.quickcli import (
    DEFAULT_STATE_DIR,
    CommandLineError,
    config_path,
    db_path_for,
    system_dir,
    this_node,
)

KEY_ALPHABET = string.ascii_letters + string.digits + "._"
# A receiver started at the same moment as its client (csync2's test suite starts `-iii` and the
# client together) is not a peer that is down: a refused connection is retried this long.
REFUSED_RETRY = 1.5

# csync2 flags nonstop refuses, with the reason printed when one is given.
REFUSED = {
    "async_db": "-A: nonstop never turns off its database's durability",
}


def make_key(path: str) -> None:
    """csync2 -k: a 64-character random key in a new file (never overwrites)."""
    key = "".join(secrets.choice(KEY_ALPHABET) for _ in range(64))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")


def scopes_for(paths: Sequence[str], recursive: bool, names: PathMap | None = None
               ) -> list[Scope] | None:
    """Command-line files as scopes: ``%prefix%`` names as written, local paths made absolute
    and, where they lie under a ``prefix`` directory of this node, turned into its name."""
    if not paths:
        return None
    out: list[Scope] = []
    for p in paths:
        if p.startswith("%"):
            name = p.rstrip("/")
        else:
            name = os.path.normpath(os.path.abspath(p))
            if names is not None:
                name = names.encode(name)
        out.append((name, recursive))
    return out


def _addresses(items: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, addr = item.partition("=")
        if not sep or not name or not addr:
            raise click.BadParameter(f"expected NAME=ADDRESS, got {item!r}",
                                     param_hint="--peer-address")
        out[name.lower()] = addr
    return out


class _Csync2Command(click.Command):
    """csync2 exits 1 on any usage error; 2 means "in sync", so click's 2 must not leak."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            e.exit_code = 1
            raise


@click.command("sync", cls=_Csync2Command, context_settings={"help_option_names": ["--help"]})
@click.option("-x", "check_update", is_flag=True, help="Check and update (simple mode).")
@click.option("-c", "do_check", is_flag=True, help="Check files, mark changes dirty.")
@click.option("-u", "do_update", is_flag=True, help="Send dirty files to the peers.")
@click.option("-f", "do_force", is_flag=True, help="Force this node's version of PATHS.")
@click.option("-m", "do_mark", is_flag=True, help="Mark PATHS dirty for every peer.")
@click.option("-o", "compare_mode", is_flag=True,
              help="Compare mode: list the files a check of PATHS looks at (for csync2-compare).")
@click.option("-W", "outfd", type=int, metavar="FD",
              help="With -c: write the directories holding included files to FD (NUL-ended).")
@click.option("-h", "do_hint", is_flag=True,
              help="Add hints (accepted: -c without paths checks every include anyway).")
@click.option("-H", "list_hints", is_flag=True, help="List hints (there are none: exit 2).")
@click.option("-L", "list_files", is_flag=True, help="List the file database.")
@click.option("-S", "list_pair", is_flag=True, help="-S MYNAME PEER: the file database for a pair.")
@click.option("-r", "recursive", is_flag=True, help="Recursive (for PATHS).")
@click.option("-T", "compare", count=True,
              help="Compare this node's disk with the peers': [FILE] | MYNAME PEER [FILE].")
@click.option("-M", "list_dirty", is_flag=True, help="List dirty entries.")
@click.option("-R", "remove_stale", is_flag=True, help="Forget stale entries.")
@click.option("-i", "serve", count=True,
              help="-i inetd mode (a socket on stdin; else as -ii), -ii receiver, -iii serve "
                   "one connection and exit.")
@click.option("-I", "init_run", is_flag=True, help="Init run: -c records without dirtying.")
@click.option("-F", "force_new", is_flag=True, help="New dirty entries get the force flag.")
@click.option("-X", "removals", is_flag=True, help="-TI: also mark what only the peer has.")
@click.option("-U", "straight", is_flag=True, help="-TI: mark only for the compared peer.")
@click.option("-G", "groups", metavar="G1,G2", help="Only use these groups.")
@click.option("-P", "peers", metavar="P1,P2",
              help="Only update these peers (all are still marked dirty).")
@click.option("-d", "dry_run", is_flag=True,
              help="Dry run of the update: list what it would send, send nothing.")
@click.option("-B", "no_big_tx", is_flag=True,
              help="Accepted: nonstop's database always lets several processes share it.")
@click.option("-l", "use_syslog", is_flag=True, help="Messages to syslog (LOCAL0).")
@click.option("-t", "timestamps", is_flag=True,
              help="Timestamps in the messages (start, each line, total time).")
@click.option("-s", "tsfile", metavar="FILE", help="Start and total time also to FILE.")
@click.option("-k", "keyfile", metavar="FILE", help="Create a new group key in FILE.")
@click.option("-v", "verbose", count=True, help="More output (repeatable).")
@click.option("-N", "node", metavar="NAME", envvar="NONSTOP_SYNC_NODE",
              help="This node's name (default: $HA_CURHOST, which resource scripts such as the "
              "talk's master get from the daemon, else the host name); -ii/-iii listen on its "
              "address.")
@click.option("-p", "port", type=int, default=DEFAULT_PORT, show_default=True,
              envvar="NONSTOP_SYNC_PORT", help="TCP port.")
@click.option("-C", "cfgname", metavar="NAME",
              help="Config $CSYNC2_SYSTEM_DIR/csync2_NAME.cfg (a path names the file).")
@click.option("-D", "database", metavar="DIR|URL",
              help="Database directory (NAME.db3 in it) or sqlite3:// URL.")
@click.option("--config", "config", default=None, envvar="NONSTOP_SYNC_CONFIG",
              help="csync2.cfg to read (default $CSYNC2_SYSTEM_DIR/csync2.cfg, /etc).")
@click.option("--state-dir", default=DEFAULT_STATE_DIR, show_default=True,
              envvar="NONSTOP_SYNC_STATE_DIR", help="Database and TLS certificate directory.")
@click.option("--db", "db_path", metavar="PATH", help="Database file (default STATE_DIR/NAME.db3).")
@click.option("--root", default="/", show_default=True, envvar="NONSTOP_SYNC_ROOT",
              help="Where this node's files live: names in the config are below it.")
@click.option("--peer-address", "peer_address", multiple=True, metavar="NAME=ADDR",
              envvar="NONSTOP_SYNC_PEER_ADDRESS",
              help="Address of a peer (instead of resolving its name); the environment "
                   "variable takes several, space-separated.")
@click.option("--listen", default=None,
              help="Address -i listens on (default: -N's address when -N is given, else all).")
@click.option("-A", "async_db", is_flag=True, hidden=True)
@click.argument("paths", nargs=-1)
@click.pass_context
def sync_command(ctx: click.Context, /, **kw: Any) -> None:
    """Replicate files between cluster nodes with csync2's semantics (see docs/SYNC.md).

    Scripts written for csync2 run unchanged with the program name changed: csync2's flags,
    CSYNC2_SYSTEM_DIR and exit codes; node identity and paths can also come from NONSTOP_SYNC_*
    environment variables.
    """
    clock = _Timestamps(bool(kw["timestamps"]), kw["tsfile"])
    code = _main(ctx, clock=clock, **kw)
    clock.total()
    sys.exit(code)


class _Timestamps:
    """csync2 ``-t`` / ``-s FILE``: ``TIMESTAMP:`` at the start and end, ``TOTALTIME:`` at the
    end (to stderr with ``-t``, appended to FILE as ``<pid> ...`` with ``-s``), and each message
    prefixed with ``[HH:MM:SS]`` with ``-t``."""

    def __init__(self, on: bool, path: str | None) -> None:
        self.on = on
        self.start = time.time()
        self.file = None
        if path is not None:
            try:
                self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in total)
            except OSError as e:
                click.echo(f"Can't open timestamp file `{path}': {e.strerror}", err=True)
                sys.exit(1)
        self.stamp()

    def _emit(self, line: str) -> None:
        if self.on:
            click.echo(line, err=True)
        if self.file is not None:
            self.file.write(f"<{os.getpid()}> {line}\n")
            self.file.flush()

    def stamp(self) -> None:
        self._emit("TIMESTAMP: " + time.strftime("%Y-%m-%d %H:%M:%S %Z (GMT%z)"))

    def prefix(self) -> str:
        return time.strftime("[%H:%M:%S] ") if self.on else ""

    def total(self) -> None:
        if not (self.on or self.file):
            return
        self.stamp()
        secs = int(time.time() - self.start)
        self._emit(f"TOTALTIME: {secs // 3600}:{secs // 60 % 60:02d}:{secs % 60:02d}")
        if self.file is not None:
            self.file.close()


def _usage(msg: str | None = None) -> int:
    if msg:
        click.echo(msg, err=True)
    click.echo(click.get_current_context().get_help(), err=True)
    return 1


def _main(ctx: click.Context, *, check_update: bool, do_check: bool, do_update: bool,
          do_force: bool, do_mark: bool, do_hint: bool, list_hints: bool, list_files: bool,
          list_pair: bool, recursive: bool, compare: int, list_dirty: bool, remove_stale: bool,
          serve: int, init_run: bool, force_new: bool, removals: bool, straight: bool,
          groups: str | None, peers: str | None, dry_run: bool, no_big_tx: bool,
          use_syslog: bool, keyfile: str | None, verbose: int, node: str | None, port: int,
          cfgname: str | None, database: str | None, config: str | None, state_dir: str,
          db_path: str | None, root: str, peer_address: tuple[str, ...], listen: str | None,
          compare_mode: bool, outfd: int | None, paths: tuple[str, ...], clock: _Timestamps,
          timestamps: bool, tsfile: str | None, **refusable: object) -> int:
    if keyfile is not None:
        try:
            make_key(keyfile)
        except OSError as e:
            click.echo(f"Can't create key file: {e.strerror}", err=True)
            return 1
        return 0
    lock = os.path.join(system_dir(), "csync2.lock")
    if os.path.exists(lock):
        click.echo(f"Found {lock}")
        return 1
    for name, value in refusable.items():
        if value:
            click.echo(f"nonstop sync: {REFUSED[name]}", err=True)
            return 1
    if outfd is not None:
        try:
            os.write(outfd, b"")
        except OSError as e:
            click.echo(f"Invalid dump_dir_fd {outfd}: {e.strerror}", err=True)
            return 1
    modes = {"x": check_update, "cu": do_check or do_update, "f": do_force, "m": do_mark,
             "o": compare_mode, "h": do_hint, "H": list_hints, "L": list_files, "S": list_pair,
             "T": compare, "M": list_dirty, "R": remove_stale, "i": serve}
    chosen = sum(bool(m) for m in modes.values())
    force_then_sync = do_force and (check_update or do_check or do_update)
    if chosen == 0 or (chosen > 1 and not force_then_sync) or serve > 3 or compare > 2:
        return _usage()
    if paths and not (check_update or do_check or do_update or do_force or do_mark or do_hint
                      or list_pair or compare or compare_mode):
        return _usage()
    if (compare and len(paths) > 3) or (list_pair and len(paths) != 2):
        return _usage()
    if (do_force or do_mark or do_hint) and not paths:
        # csync2 does nothing and exits 0 (a script's empty file list is not an error)
        flag = "f" if do_force else "m" if do_mark else "h"
        click.echo(f"nonstop sync -{flag}: no files given, nothing to do", err=True)
        return 0
    if compare > 1:
        click.echo("nonstop sync: -TT (diffs of the peer's files) is not implemented: nonstop's "
                   "protocol has no read-only file request yet; -T lists the files that differ",
                   err=True)
        return 1
    if do_hint:
        return 0  # -c without paths checks every include: a hint would change nothing
    if list_hints:
        return 2

    if use_syslog:
        syslog.openlog("nonstop-sync", syslog.LOG_PID, syslog.LOG_LOCAL0)

    def out(level: int, msg: str) -> None:
        if level <= verbose:
            if use_syslog:
                syslog.syslog(syslog.LOG_WARNING if level <= 0 else syslog.LOG_INFO, msg)
            else:
                click.echo(clock.prefix() + msg, err=True)

    me = this_node(node)
    if listen is None:
        by_flag = ctx.get_parameter_source("node") == ParameterSource.COMMANDLINE
        listen = node if node and serve and by_flag else "0.0.0.0"
    try:
        cfg_file = config_path(config, cfgname, system_dir())
        db_file = db_path_for(db_path, database, state_dir, me, cfgname)
    except CommandLineError as e:
        click.echo(str(e), err=True)
        return 1
    if list_dirty:
        _addresses(peer_address)  # checked as in every other mode
        return quickcli.list_dirty(cfg_file, db_file, me, groups)
    try:
        cfg = _only_groups(load_csync2(cfg_file), groups, remove_stale)
        n = Node(Options(cfg, me, state_dir, db_file, root, port, _addresses(peer_address),
                         listen, refused_retry=REFUSED_RETRY), out)
    except ConfigError as e:
        click.echo(f"Config error: {e}", err=True)
        return 1
    except SyncError as e:
        click.echo(f"ERROR: {e}", err=True)
        return 1
    except OSError as e:  # the database cannot be opened (csync2 -D DIR must exist)
        click.echo(f"Can't open database {db_file}: {e.strerror or e}", err=True)
        return 1
    names = PathMap(root, cfg.prefixes, me)
    try:
        if compare:
            return _compare(n, paths, recursive, names, init_run, removals, straight)
        if list_pair:
            if paths[0].lower() != me:
                click.echo(f"nonstop sync -S: this node is {me}, not {paths[0]}", err=True)
                return 1
            lines = n.file_lines(paths[1].lower())
            for line in lines:
                click.echo(line)
            return 0 if lines else 2
        only = None if peers is None else [p.lower() for p in peers.split(",") if p]
        if compare_mode:
            for name in n.compare_mode_names(scopes_for(paths, recursive, names) or [], only):
                click.echo(name)
            return 0
        scopes = scopes_for(paths, recursive or not paths, names)
        if outfd is not None and (check_update or do_check):
            code = _run(n, scopes, False, True, False, do_force, False, False, False, 0,
                        verbose, init_run, force_new, only, False)
            data = b"".join(os.fsencode(d) + b"\0" for d in n.relevant_dirs(scopes))
            with contextlib.suppress(OSError):
                while data:
                    data = data[os.write(outfd, data):]
            if code or not (check_update or do_update):
                return code
            do_check = check_update = do_force = False
            do_update = True
        return _run(n, scopes, check_update, do_check, do_update, do_force, do_mark, list_files,
                    remove_stale, serve, verbose, init_run, force_new, only, dry_run)
    except ConfigError as e:
        click.echo(f"Config error: {e}", err=True)
        return 1
    except SyncError as e:
        click.echo(f"ERROR: {e}", err=True)
        return 1
    finally:
        n.close()


def _only_groups(cfg: Csync2Config, groups: str | None, remove_stale: bool) -> Csync2Config:
    """csync2 ``-G g1,g2``: only these groups of the configuration."""
    if groups is None:
        return cfg
    if remove_stale:
        raise SyncError("Never run -R with -G!")
    wanted = {g for g in groups.split(",") if g}
    return dataclasses.replace(cfg, groups=tuple(g for g in cfg.groups if g.name in wanted))


def _compare(n: Node, paths: tuple[str, ...], recursive: bool, names: PathMap,
             init_run: bool = False, removals: bool = False, straight: bool = False) -> int:
    """``-T`` / ``-T FILE`` / ``-T MYNAME PEER`` / ``-T MYNAME PEER FILE``; with ``-I`` the
    differences become dirty entries (``-X`` removals too, ``-U`` only for that peer)."""
    peer: str | None = None
    files = list(paths)
    if len(paths) >= 2:
        if paths[0].lower() != n.me:
            click.echo(f"nonstop sync -T: this node is {n.me}, not {paths[0]}", err=True)
            return 1
        peer, files = paths[1].lower(), list(paths[2:])
        if not any(g.group.host(peer) for g in n.groups):
            click.echo(f"nonstop sync -T: {peer} is not a peer of {n.me}", err=True)
            return 1
    scopes = scopes_for(files, recursive, names)
    lines, problems = asyncio.run(n.compare(scopes, peer))
    for line in lines:
        click.echo(line)
    for p in problems:
        click.echo(f"ERROR: {p}", err=True)
    if init_run:
        n.mark_differences(lines, removals, straight)
    return 1 if problems else (0 if lines else 2)


def _run(
    n: Node, scopes: list[Scope] | None, check_update: bool, do_check: bool, do_update: bool,
    do_force: bool, do_mark: bool, list_files: bool, remove_stale: bool,
    serve: int, verbose: int, init_run: bool, force_new: bool, only: list[str] | None,
    dry_run: bool,
) -> int:
    if list_files:
        lines = n.file_lines()
        for line in lines:
            click.echo(line)
        return 0 if lines else 2
    if remove_stale:
        for name in n.remove_stale():
            if verbose:
                click.echo(f"Removing {name} from the database.", err=True)
        return 0
    if serve:
        return asyncio.run(_serve(n, serve))
    if do_mark:
        assert scopes is not None
        for name in n.mark(scopes):
            n.out(1, f"marked dirty: {name}")
        return 0
    if do_force:
        assert scopes is not None
        n.force(scopes)
        if not (check_update or do_update):
            return 0
    if check_update or do_check:
        if init_run:
            n.check_init(scopes)
        else:
            n.check(scopes, force_new)
    if (check_update or do_update) and dry_run:
        for line in n.dry_run_lines(scopes, only):
            click.echo(line)
        return 0
    if check_update or do_update:
        report = asyncio.run(n.update(scopes, only))
        if report.problems:
            click.echo(f"Finished with {len(report.problems)} errors.", err=True)
        return report.exit_code
    return 0


def _stdin_socket() -> socket.socket | None:
    """fd 0 as a connected stream socket (inetd, xinetd, systemd ``Accept=yes``), else None."""
    try:
        if not stat.S_ISSOCK(os.fstat(0).st_mode):
            return None
        sock = socket.socket(fileno=os.dup(0))
    except OSError:
        return None
    try:
        sock.getpeername()
    except OSError:
        sock.close()
        return None
    if sock.type != socket.SOCK_STREAM:
        sock.close()
        return None
    return sock


async def _serve(n: Node, level: int) -> int:
    """``-i`` (inetd; without a socket on stdin, as ``-ii``), ``-ii`` serve until SIGTERM,
    ``-iii`` serve one connection and exit (1 if that session failed)."""
    server = SyncServer(n, once=level == 3)
    sock = _stdin_socket() if level == 1 else None
    if sock is not None:
        await server.serve_socket(sock)
        return 1 if server.stats.get("refused") or server.stats.get("errors") else 0
    await server.start()
    n.out(1, f"{n.me}: listening on {n.opts.listen}:{server.port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(server.done.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for w in waits:
        w.cancel()
    await server.close()
    if server.once and server.done.is_set():
        return 1 if server.stats.get("refused") or server.stats.get("errors") else 0
    return 0
