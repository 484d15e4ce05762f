"""``nonstop sync -x``, ``-c``, ``-u`` and ``-M`` without click, and without asyncio and TLS
until a peer is contacted.

csync2 answers in a few milliseconds and scripts call it from cron and in loops: ``-M`` reads
the configuration and the state database and nothing else, a ``-x`` or ``-cr`` that finds
nothing to send never loads the network code. This module parses those command lines (any
other goes to the click CLI, nonstop.sync.cli, which gives its usual answer or message) and
hands them to nonstop.sync.command, as the click CLI does. The rules for finding the
configuration and the database are csync2's and live here, shared with the full command line.
"""

from __future__ import annotations

import errno
import os
import re
import sys

from nonstop.errors import NonstopError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from typing import Any

    from nonstop.sync.statedb import StateDB

DEFAULT_STATE_DIR = "/var/lib/nonstop/sync"
DEFAULT_SYSTEM_DIR = "/etc"
_CFGNAME_RE = re.compile(r"^[a-z0-9]+$")
# -p: a TCP port (the click CLI refuses anything else with its usage error)
MIN_PORT, MAX_PORT = 1, 65535


class CommandLineError(NonstopError):
    """A file or database named on the command line cannot be used (csync2's message)."""


def config_path(explicit: str | None, cfgname: str | None, system_dir: str) -> str:
    """csync2's rule: ``$CSYNC2_SYSTEM_DIR/csync2.cfg``, ``-C NAME`` -> ``csync2_NAME.cfg``
    (``[a-z0-9]+``); ``--config`` or a ``-C`` that is a path name the file itself."""
    if explicit:
        return explicit
    if cfgname is None:
        return os.path.join(system_dir, "csync2.cfg")
    if _CFGNAME_RE.match(cfgname):
        return os.path.join(system_dir, f"csync2_{cfgname}.cfg")
    if "/" in cfgname or cfgname.endswith(".cfg"):
        return cfgname
    raise CommandLineError("Config names are limited to [a-z0-9]+.")


def db_path_for(explicit: str | None, database: str | None, state_dir: str, me: str,
                cfgname: str | None) -> str:
    """The state database: ``--db``, else csync2's ``-D DIR`` (or ``sqlite3://DIR``, or a file
    URL) with ``NAME.db3`` (``NAME_CFGNAME.db3`` with ``-C``), else STATE_DIR/NAME.db3."""
    if explicit:
        return explicit
    base = f"{me}_{cfgname}" if cfgname and _CFGNAME_RE.match(cfgname) else me
    if database is None:
        return os.path.join(state_dir, f"{base}.db3")
    path = database
    for scheme in ("sqlite3://", "sqlite://"):
        if path.startswith(scheme):
            path = path[len(scheme):]
            break
    else:
        if "://" in path:
            raise CommandLineError(
                f"-D {database}: nonstop keeps its state in sqlite3 only (a directory, or "
                "sqlite3:///path)")
    if not path.startswith("/"):
        raise CommandLineError(f"-D {database}: needs an absolute directory or sqlite3:// URL")
    if path == database:
        # csync2: -D names a directory, which must exist (no database file in its place)
        if not os.path.isdir(path):
            reason = errno.ENOTDIR if os.path.lexists(path) else errno.ENOENT
            raise CommandLineError(
                f"Can't open database directory {path}: {os.strerror(reason)}")
        return os.path.join(path, f"{base}.db3")
    if os.path.isdir(path) or path.endswith("/"):
        return os.path.join(path, f"{base}.db3")
    return path


def system_dir() -> str:
    return os.environ.get("CSYNC2_SYSTEM_DIR") or DEFAULT_SYSTEM_DIR


def this_node(node: str | None) -> str:
    """``-N``, else $HA_CURHOST (set for resource scripts), else the host name; lower case."""
    # uname's node name is what gethostname(2) returns on Linux, without importing socket.
    return (node or os.environ.get("HA_CURHOST") or os.uname().nodename).lower()


def list_dirty(cfg_file: str, db_file: str, me: str, groups: str | None = None) -> int:
    """``-M``: ``force|chary  me  peer  name`` per dirty entry and pending forced scope, on
    stdout; csync2's exit code (0 listed, 2 nothing dirty, 1 error)."""
    from nonstop.config.csync2 import load_csync2
    from nonstop.config.errors import ConfigError, Location
    from nonstop.sync import csync2db
    from nonstop.sync.statedb import StateDB

    try:
        cfg = load_csync2(cfg_file)
        wanted = None if groups is None else {g for g in groups.split(",") if g}
        mine = [g for g in cfg.groups_for(me) if wanted is None or g.name in wanted]
        if not mine:
            raise ConfigError(Location(cfg.path), f"host '{me}' is not a member of any group")
        aside = csync2db.set_aside(db_file)
        if aside is not None:
            print(csync2db.notice(db_file, aside), file=sys.stderr, flush=True)
        db = StateDB(db_file, timeout=float(cfg.lock_timeout))
    except ConfigError as e:
        print(f"Config error: {e}", file=sys.stderr, flush=True)
        return 1
    except OSError as e:  # the state directory cannot be made or the database opened
        print(f"Can't open database {db_file}: {e.strerror or e}", file=sys.stderr, flush=True)
        return 1
    try:
        lines = dirty_listing(db, me, [h.name for g in mine for h in g.peers(me)])
    finally:
        db.close()
    if lines:
        print("\n".join(lines), flush=True)
    return 0 if lines else 2


def scope_shown(path: str, recursive: bool) -> str:
    """A forced scope as ``-M`` and ``-d`` show it: a recursive one ends with ``/`` (``/``
    itself stays ``/``)."""
    return path + "/" if recursive and not path.endswith("/") else path


def dirty_listing(db: StateDB, me: str, peers: Iterable[str]) -> list[str]:
    """``-M``'s lines: each dirty entry, then each peer's pending forced scopes; a peer that
    several groups share (``peers`` names it once per group) is listed once."""
    lines = [f"{'force' if r.forced else 'chary'}\t{me}\t{r.peer}\t{r.name}"
             for r in db.dirty()]
    for peer in dict.fromkeys(peers):
        lines += [f"force\t{me}\t{peer}\t{scope_shown(path, rec)} (pending forced sync)"
                  for path, rec in db.forced(peer)]
    return lines


# The options the fast path knows: csync2's short flags (combinable, ``-xv``, ``-cr``), the short
# options with a value, and the long ones (``--name V`` or ``--name=V``), by the click CLI's
# parameter names; every other option sends the line to the click CLI.
_FLAGS = {"x": "check_update", "c": "do_check", "u": "do_update", "r": "recursive",
          "M": "list_dirty", "v": "verbose"}
_SHORT_VALUED = {"N": "node", "C": "cfgname", "D": "database", "p": "port"}
_LONG_VALUED = {"--config": "config", "--state-dir": "state_dir", "--db": "db_path",
                "--root": "root", "--peer-address": "peer_address"}
# Options the click CLI also takes from the environment (an empty variable is not set).
_ENV = {"node": "NONSTOP_SYNC_NODE", "port": "NONSTOP_SYNC_PORT", "config": "NONSTOP_SYNC_CONFIG",
        "state_dir": "NONSTOP_SYNC_STATE_DIR", "root": "NONSTOP_SYNC_ROOT",
        "peer_address": "NONSTOP_SYNC_PEER_ADDRESS"}


def parse_sync_line(args: Sequence[str]) -> dict[str, Any] | None:
    """``args`` as the click CLI's parameters (flags True, ``v`` counted, ``peer_address`` a
    list, ``paths`` the rest) when every option is one :data:`_FLAGS`, :data:`_SHORT_VALUED`
    or :data:`_LONG_VALUED` names; None for anything else (``--``, ``-`` alone, an unknown
    option, a missing value): such a line is the click CLI's to answer."""
    out: dict[str, Any] = {"paths": [], "peer_address": [], "verbose": 0}
    rest = iter(args)
    for arg in rest:
        if not arg.startswith("-"):
            out["paths"].append(arg)
            continue
        if arg.startswith("--"):
            name, sep, value = arg.partition("=")
            got = _put(out, _LONG_VALUED.get(name), value if sep else next(rest, None))
        else:
            got = arg != "-" and _short(out, arg[1:], rest)
        if not got:
            return None
    return out


def _short(out: dict[str, Any], chars: str, rest: Iterator[str]) -> bool:
    """One group of short options (``-xv``, ``-Nname``, ``-p PORT``) into ``out``."""
    for j, ch in enumerate(chars):
        if ch == "v":
            out["verbose"] += 1
        elif ch in _FLAGS:
            out[_FLAGS[ch]] = True
        else:
            return _put(out, _SHORT_VALUED.get(ch), chars[j + 1:] or next(rest, None))
    return True


def _put(out: dict[str, Any], name: str | None, value: str | None) -> bool:
    """An option's value into ``out``; False for an unknown option or a missing value."""
    if name is None or value is None:
        return False
    if name == "peer_address":
        out[name].append(value)
    else:
        out[name] = value
    return True


def _with_environment(opts: dict[str, Any]) -> bool:
    """Fill in what the environment gives (as the click CLI does); False when a value is one
    the click CLI would refuse (its message is the one to give)."""
    for name, var in _ENV.items():
        env = os.environ.get(var)
        if env and name not in opts and name != "peer_address":
            opts[name] = env
        elif env and name == "peer_address" and not opts[name]:
            opts[name] = env.split()
    if "port" in opts:
        try:
            opts["port"] = int(opts["port"])
        except ValueError:
            return False
        if not MIN_PORT <= opts["port"] <= MAX_PORT:
            return False
    return True


def sync_command(args: Sequence[str]) -> int | None:
    """``nonstop sync`` for the lines cron, monitoring and the master script run: one of
    ``-x``, ``-c``, ``-u``, ``-cu`` (with ``-r``, ``-v`` and paths) or ``-M``, with the node,
    configuration, database, port, root and peer address options; None: a command line for
    the full CLI."""
    opts = parse_sync_line(args)
    if opts is None:
        return None
    by_flag = "node" in opts
    if not _with_environment(opts):
        return None
    modes = [bool(opts.get("check_update")),
             bool(opts.get("do_check") or opts.get("do_update")), bool(opts.get("list_dirty"))]
    if sum(modes) != 1 or (opts.get("list_dirty") and opts["paths"]):
        return None
    from nonstop.sync.command import Args, BadAddress, addresses, run

    try:
        addresses(opts["peer_address"])
    except BadAddress:
        return None
    opts["paths"] = tuple(opts["paths"])
    opts["peer_address"] = tuple(opts["peer_address"])
    return run(Args(**opts), _usage, node_by_flag=by_flag)


def _usage() -> int:
    """The click CLI's usage text (never needed on the lines the fast path accepts)."""
    import click

    from nonstop.sync.cli import sync_command as command

    with click.Context(command, info_name="nonstop sync") as ctx:
        click.echo(ctx.get_help(), err=True)
    return 1
