"""What ``nonstop sync`` does once its command line is parsed, without click.

The click command (nonstop.sync.cli) and the fast path of the ``nonstop`` program
(nonstop.sync.quickcli, for the lines cron and the master script run: ``-x``, ``-c``, ``-u``,
``-M``) both hand an :class:`Args` to :func:`run`, so the two answer alike. Messages and exit
codes are csync2's (see nonstop.sync.cli). asyncio, TLS and the network code are imported only
by the modes that talk to a peer.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3  # loaded by the state database anyway (nonstop.sync.statedb)
import sys
import syslog
import time

from nonstop.config.csync2 import DEFAULT_PORT, Csync2Config, load_csync2
from nonstop.config.errors import ConfigError
from nonstop.errors import UnknownName
from nonstop.records import field, fields, mutable_record, replace
from nonstop.sync import quickcli
from nonstop.sync.context import DEAD_PEERS_ENV, Out, SyncError
from nonstop.sync.patterns import PathMap, Scope, shown
from nonstop.sync.quickcli import (
    DEFAULT_STATE_DIR,
    CommandLineError,
    config_path,
    db_path_for,
    system_dir,
    this_node,
)
from nonstop.sync.state import is_utf8

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from nonstop.sync.node import Node


# What csync2 -k draws a key from (64 characters of [A-Za-z0-9._]).
KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._"
# A receiver started at the same moment as its client (csync2's test suite starts `-iii` and the
# client together) is not a peer that is down: a refused connection is retried this long.
REFUSED_RETRY = 1.5

# csync2 flags nonstop accepts and ignores, with the reason printed: refused, a cron line
# written for csync2 (the talk's sends its output to /dev/null) would never sync again.
IGNORED = {
    "async_db": "-A ignored: nonstop never turns off its database's durability",
}


class BadAddress(CommandLineError):
    """A ``--peer-address`` that is not NAME=ADDRESS (click's usage error on the full CLI)."""


class BadPath(CommandLineError):
    """A file named on the command line that nonstop cannot replicate (not UTF-8)."""


_ERRORS_TO_SYSLOG = False  # -i under inetd: stderr may be the session's socket


def echo(msg: str, err: bool = False) -> None:
    """One line to stdout (or stderr), flushed, as click.echo writes it."""
    if err and _ERRORS_TO_SYSLOG:
        syslog.syslog(syslog.LOG_ERR, msg)
        return
    stream = sys.stderr if err else sys.stdout
    stream.write(msg + "\n")
    stream.flush()


def make_key(path: str) -> None:
    """csync2 -k: a 64-character random key in a new file (never overwrites)."""
    import secrets

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
        if not is_utf8(p):
            raise BadPath(f"{shown(p)}: the name is not UTF-8, which nonstop cannot store or "
                          "send: rename it to replicate it")
        if p.startswith("%"):
            name = p.rstrip("/")
        else:
            name = os.path.normpath(os.path.abspath(p))
            if names is not None:
                name = names.encode(real_dirs(name) if not names.root else name)
        out.append((name, recursive))
    return out


def real_dirs(path: str) -> str:
    """csync2's getrealfn: the symlinks among the directories of an absolute path resolved,
    its last component kept (a symlink named on the command line stays that symlink). Only
    for a node whose files live at ``/``: under ``--root`` a path may be a config name."""
    head, tail = os.path.split(path)
    return os.path.join(os.path.realpath(head), tail) if tail else path


def addresses(items: Sequence[str]) -> dict[str, str]:
    """``--peer-address NAME=ADDR`` values as a map (names in lower case)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, addr = item.partition("=")
        if not sep or not name or not addr:
            raise BadAddress(f"expected NAME=ADDRESS, got {item!r}")
        out[name.lower()] = addr
    return out


class Timestamps:
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
                echo(f"Can't open timestamp file `{path}': {e.strerror}", err=True)
                sys.exit(1)
        self.stamp()

    def _emit(self, line: str) -> None:
        if self.on:
            echo(line, err=True)
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


@mutable_record
class Args:
    """The command line, parsed (csync2's flags by their meaning); the defaults are the
    options' defaults."""

    check_update: bool = False
    do_check: bool = False
    do_update: bool = False
    do_force: bool = False
    do_mark: bool = False
    do_hint: bool = False
    list_hints: bool = False
    list_files: bool = False
    list_pair: bool = False
    recursive: bool = False
    compare: int = 0
    list_dirty: bool = False
    remove_stale: bool = False
    serve: int = 0
    init_run: bool = False
    force_new: bool = False
    removals: bool = False
    straight: bool = False
    groups: str | None = None
    peers: str | None = None
    dry_run: bool = False
    no_big_tx: bool = False
    use_syslog: bool = False
    keyfile: str | None = None
    verbose: int = 0
    node: str | None = None
    port: int = DEFAULT_PORT
    cfgname: str | None = None
    database: str | None = None
    config: str | None = None
    state_dir: str = DEFAULT_STATE_DIR
    db_path: str | None = None
    root: str = "/"
    peer_address: tuple[str, ...] = ()
    listen: str | None = None
    compare_mode: bool = False
    outfd: int | None = None
    paths: tuple[str, ...] = ()
    timestamps: bool = False
    tsfile: str | None = None
    ignorable: dict[str, object] = field(default_factory=dict)

    @classmethod
    def of(cls, kw: dict[str, Any]) -> Args:
        known = set(fields(cls)) - {"ignorable"}
        return cls(**{k: v for k, v in kw.items() if k in known},
                   ignorable={k: v for k, v in kw.items() if k not in known})


def run(a: Args, usage: Callable[[], int], node_by_flag: bool) -> int:
    """The command's exit code; ``usage`` prints the usage text and gives the exit code of a
    usage error, ``node_by_flag``: the node name came from ``-N`` (not the environment).
    Raises :class:`BadAddress` for a bad ``--peer-address``."""
    clock = Timestamps(a.timestamps, a.tsfile)
    code = _main(a, clock, usage, node_by_flag)
    clock.total()
    return code


def _main(a: Args, clock: Timestamps, usage: Callable[[], int], node_by_flag: bool) -> int:
    code = _side_modes(a)
    if code is None:
        code = _check_modes(a, usage)
    if code is not None:
        return code
    if a.serve == 1 and _under_inetd():
        a.use_syslog = True
    if a.use_syslog:
        syslog.openlog("nonstop-sync", syslog.LOG_PID, syslog.LOG_LOCAL0)
    me = this_node(a.node)
    if a.listen is None:
        a.listen = a.node if a.node and a.serve and node_by_flag else "0.0.0.0"
    try:
        cfg_file = config_path(a.config, a.cfgname, system_dir())
        db_file = db_path_for(a.db_path, a.database, a.state_dir, me, a.cfgname)
    except CommandLineError as e:
        echo(str(e), err=True)
        return 1
    try:
        return _with_database(a, cfg_file, db_file, me, clock)
    except sqlite3.Error as e:  # a read-only, full or broken state directory, in every mode
        echo(_database_error(db_file, e), err=True)
        return 1


def _database_error(db_file: str, e: sqlite3.Error) -> str:
    """The one-line message for a state database that sqlite cannot open or write."""
    if e.sqlite_errorname == "SQLITE_CANTOPEN":
        return f"Can't open database {db_file}: {e}"
    return f"ERROR: state database {db_file}: {e}"


def _with_database(a: Args, cfg_file: str, db_file: str, me: str, clock: Timestamps) -> int:
    """The mode's exit code, once the configuration and the database are named."""
    if a.list_dirty:
        addresses(a.peer_address)  # checked as in every other mode
        return quickcli.list_dirty(cfg_file, db_file, me, a.groups)
    n = _open_node(a, cfg_file, db_file, me, _output(a, clock))
    if isinstance(n, int):
        return n
    try:
        return _dispatch(n, a, PathMap(a.root, n.opts.config.prefixes, me))
    except BadPath as e:
        echo(f"nonstop sync: {e}", err=True)
        return 1
    except ConfigError as e:
        echo(f"Config error: {e}", err=True)
        return 1
    except SyncError as e:
        echo(f"ERROR: {e}", err=True)
        return 1
    finally:
        n.close()


def _side_modes(a: Args) -> int | None:
    """What ends the command before any mode runs: ``-k``, csync2's lock file, a refused
    flag, an unusable ``-W`` descriptor."""
    if a.keyfile is not None:
        try:
            make_key(a.keyfile)
        except OSError as e:
            echo(f"Can't create key file: {e.strerror}", err=True)
            return 1
        return 0
    lock = os.path.join(system_dir(), "csync2.lock")
    if os.path.exists(lock):
        echo(f"Found {lock}")
        return 1
    for name, value in a.ignorable.items():
        if value:
            echo(f"nonstop sync: {IGNORED[name]}", err=True)
    if a.outfd is not None:
        try:
            os.write(a.outfd, b"")
        except OSError as e:
            echo(f"Invalid dump_dir_fd {a.outfd}: {e.strerror}", err=True)
            return 1
    return None


def _check_modes(a: Args, usage: Callable[[], int]) -> int | None:
    """csync2's rules for which modes go together and take paths (usage and exit code)."""
    modes = {"x": a.check_update, "cu": a.do_check or a.do_update, "f": a.do_force,
             "m": a.do_mark, "o": a.compare_mode, "h": a.do_hint, "H": a.list_hints,
             "L": a.list_files, "S": a.list_pair, "T": a.compare, "M": a.list_dirty,
             "R": a.remove_stale, "i": a.serve}
    chosen = sum(bool(m) for m in modes.values())
    force_then_sync = a.do_force and (a.check_update or a.do_check or a.do_update)
    takes_paths = (a.check_update or a.do_check or a.do_update or a.do_force or a.do_mark
                   or a.do_hint or a.list_pair or a.compare or a.compare_mode)
    if (chosen == 0 or (chosen > 1 and not force_then_sync) or a.serve > 3 or a.compare > 2
            or (a.paths and not takes_paths)
            or (a.compare and len(a.paths) > 3) or (a.list_pair and len(a.paths) != 2)):
        return usage()
    if (a.do_force or a.do_mark or a.do_hint) and not a.paths:
        # csync2 does nothing and exits 0 (a script's empty file list is not an error)
        flag = "f" if a.do_force else "m" if a.do_mark else "h"
        echo(f"nonstop sync -{flag}: no files given, nothing to do", err=True)
        return 0
    if a.compare > 1:
        echo("nonstop sync: -TT (diffs of the peer's files) is not implemented: nonstop's "
             "protocol has no read-only file request yet; -T lists the files that differ",
             err=True)
        return 1
    if a.do_hint:
        return 0  # -c without paths checks every include: a hint would change nothing
    if a.list_hints:
        return 2
    return None


def _output(a: Args, clock: Timestamps) -> Out:
    def out(level: int, msg: str) -> None:
        if level <= a.verbose:
            msg = shown(msg)  # a file's name may hold a newline or a terminal escape
            if a.use_syslog:
                syslog.syslog(syslog.LOG_WARNING if level <= 0 else syslog.LOG_INFO, msg)
            else:
                echo(clock.prefix() + msg, err=True)
    return out


def _open_node(a: Args, cfg_file: str, db_file: str, me: str, out: Out) -> Node | int:
    """The sync engine on the configuration and database, or the exit code of why not."""
    from nonstop.sync.node import Node, Options  # not needed by -M

    try:
        whole = load_csync2(cfg_file)
        cfg = _only_groups(whole, a.groups, a.remove_stale)
        node = Node(Options(cfg, me, a.state_dir, db_file, a.root, a.port,
                            addresses(a.peer_address), a.listen or "0.0.0.0",
                            refused_retry=REFUSED_RETRY), out)
        if cfg is not whole:  # -G: the other groups' names are not forgotten by a check
            from nonstop.sync.patterns import Matcher

            others = [Matcher(g.patterns) for g in whole.groups_for(me)
                      if g not in cfg.groups]
            node.kept_beyond = lambda n: any(m.included(n) for m in others)
        # Run by the daemon (its resource scripts): the peers its heartbeats declared dead.
        node.dead_peers = frozenset(os.environ.get(DEAD_PEERS_ENV, "").lower().split())
        if node.dead_peers:
            from nonstop.sync.client import DEAD_PEER_CONNECT_S

            out(1, f"dead to the daemon's heartbeats: {' '.join(sorted(node.dead_peers))} "
                   f"(pushed to last, {DEAD_PEER_CONNECT_S:g} s to connect)")
        return node
    except ConfigError as e:
        echo(f"Config error: {e}", err=True)
    except SyncError as e:
        echo(f"ERROR: {e}", err=True)
    except OSError as e:  # the state directory cannot be made or the database opened
        echo(f"Can't open database {db_file}: {e.strerror or e}", err=True)
    return 1


def _dispatch(n: Node, a: Args, names: PathMap) -> int:
    if a.compare:
        return _compare(n, a.paths, a.recursive, names, a.init_run, a.removals, a.straight)
    if a.list_pair:
        if a.paths[0].lower() != n.me:
            echo(f"nonstop sync -S: this node is {n.me}, not {a.paths[0]}", err=True)
            return 1
        lines = n.file_lines(a.paths[1].lower())
        for line in lines:
            echo(line)
        return 0 if lines else 2
    only = None if a.peers is None else [p.lower() for p in a.peers.split(",") if p]
    if a.compare_mode:
        for name in n.compare_mode_names(scopes_for(a.paths, a.recursive, names) or [], only):
            echo(name)
        return 0
    scopes = scopes_for(a.paths, a.recursive or not a.paths, names)
    _warn_ignored(n, scopes, names)
    if a.outfd is not None and (a.check_update or a.do_check):
        check_only = replace(a, check_update=False, do_check=True, do_update=False,
                                         do_mark=False, list_files=False, remove_stale=False,
                                         serve=0, dry_run=False)
        code = _run(n, scopes, check_only, only)
        data = b"".join(os.fsencode(d) + b"\0" for d in n.relevant_dirs(scopes))
        with contextlib.suppress(OSError):
            while data:
                data = data[os.write(a.outfd, data):]
        if code or not (a.check_update or a.do_update):
            return code
        a = replace(a, do_check=False, check_update=False, do_force=False,
                                do_update=True)
    return _run(n, scopes, a, only)


def _warn_ignored(n: Node, scopes: list[Scope] | None, names: PathMap) -> None:
    """csync2's warning for a path that holds nothing the groups replicate."""
    for name, _rec in n.ignored(scopes or []):
        try:
            local = names.local(name)
        except UnknownName:  # %NAME% of a prefix without a path here: as written
            local = name
        echo(f"WARNING: Parameter will be ignored: {shown(local)}", err=True)


def _only_groups(cfg: Csync2Config, groups: str | None, remove_stale: bool) -> Csync2Config:
    """csync2 ``-G g1,g2``: only these groups of the configuration."""
    if groups is None:
        return cfg
    if remove_stale:
        raise SyncError("Never run -R with -G!")
    wanted = {g for g in groups.split(",") if g}
    return replace(cfg, groups=tuple(g for g in cfg.groups if g.name in wanted))


def _compare(n: Node, paths: tuple[str, ...], recursive: bool, names: PathMap,
             init_run: bool = False, removals: bool = False, straight: bool = False) -> int:
    """``-T`` / ``-T FILE`` / ``-T MYNAME PEER`` / ``-T MYNAME PEER FILE``; with ``-I`` the
    differences become dirty entries (``-X`` removals too, ``-U`` only for that peer)."""
    peer: str | None = None
    files = list(paths)
    if len(paths) >= 2:
        if paths[0].lower() != n.me:
            echo(f"nonstop sync -T: this node is {n.me}, not {paths[0]}", err=True)
            return 1
        peer, files = paths[1].lower(), list(paths[2:])
        if not any(g.group.host(peer) for g in n.groups):
            echo(f"nonstop sync -T: {peer} is not a peer of {n.me}", err=True)
            return 1
    scopes = scopes_for(files, recursive, names)
    _warn_ignored(n, scopes, names)
    import asyncio

    lines, problems = asyncio.run(n.compare(scopes, peer))
    for line in lines:
        *head, name = line.split("\t", 3)  # a newline in a name stays in its line, as with -v
        echo("\t".join((*head, shown(name))))
    for p in problems:
        echo(f"ERROR: {p}", err=True)
    if init_run:
        n.mark_differences(lines, removals, straight)
    _finished(n, len(problems))
    return 1 if problems else (0 if lines else 2)


def _finished(n: Node, errors: int) -> None:
    """csync2's last line of a run with errors, and of any run with ``-v``: scripts grep
    ``csync2 -xv 2>&1`` for it (``Finished with 0 errors.``)."""
    n.out(0 if errors else 1, f"Finished with {errors} errors.")


def _run(n: Node, scopes: list[Scope] | None, a: Args, only: list[str] | None) -> int:
    if a.list_files:
        lines = n.file_lines()
        for line in lines:
            echo(line)
        return 0 if lines else 2
    if a.remove_stale:
        for name in n.remove_stale():
            if a.verbose:
                echo(f"Removing {name} from the database.", err=True)
        return 0
    if a.serve:
        import asyncio

        return asyncio.run(_serve(n, a.serve))
    if a.do_mark:
        assert scopes is not None
        for name in n.mark(scopes):
            n.out(1, f"marked dirty: {name}")
        return 0
    if a.do_force:
        assert scopes is not None
        n.force(scopes)
        if not (a.check_update or a.do_update):
            return 0
    return _check_and_update(n, scopes, a, only)


def _check_and_update(n: Node, scopes: list[Scope] | None, a: Args,
                      only: list[str] | None) -> int:
    if a.check_update or a.do_check:
        if a.init_run:
            n.check_init(scopes)
        else:
            n.check(scopes, a.force_new)
    if not (a.check_update or a.do_update):
        _finished(n, 0)
        return 0
    if a.dry_run:
        for line in n.dry_run_lines(scopes, only):
            echo(line)
        return 0
    if not n.has_pending(scopes, only):
        _finished(n, 0)
        return 0  # nothing to send: no peer is contacted (as csync2 -x)
    import asyncio

    report = asyncio.run(n.update(scopes, only))
    _finished(n, len(report.problems))
    return report.exit_code


def _under_inetd() -> bool:
    """``-i`` with the connection on stdin (inetd, xinetd, systemd ``Accept=yes``): as csync2's
    ``-i`` implies ``-l``, every message goes to syslog (stderr may be that socket)."""
    global _ERRORS_TO_SYSLOG
    from nonstop.sync.inetd import stderr_off_the_socket, stdin_socket

    sock = stdin_socket()
    if sock is None:
        return False
    sock.close()
    _ERRORS_TO_SYSLOG = True
    stderr_off_the_socket()
    return True


async def _serve(n: Node, level: int) -> int:
    """``-i`` (inetd; without a socket on stdin, as ``-ii``), ``-ii`` serve until SIGTERM,
    ``-iii`` serve one connection and exit (1 if that session failed)."""
    import asyncio
    import contextlib
    import signal

    from nonstop.sync.server import SyncServer

    server = SyncServer(n, once=level == 3)
    from nonstop.sync.inetd import stdin_socket

    sock = stdin_socket() if level == 1 else None
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
