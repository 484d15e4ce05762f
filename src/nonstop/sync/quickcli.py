"""``nonstop sync -M`` without click and without the replication engine (asyncio, TLS).

csync2 -M answers in a few milliseconds and scripts call it in loops; here it reads the
configuration and the state database and nothing else. The rules for finding the
configuration and the database are csync2's and live here, shared with the full command line
(nonstop.sync.cli), which also hands its own ``-M`` to :func:`list_dirty`.
"""

from __future__ import annotations

import os
import re
import sys

from nonstop.errors import NonstopError
from nonstop.quick import plain_options

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_STATE_DIR = "/var/lib/nonstop/sync"
DEFAULT_SYSTEM_DIR = "/etc"
_CFGNAME_RE = re.compile(r"^[a-z0-9]+$")


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
    from nonstop.sync.statedb import StateDB

    try:
        cfg = load_csync2(cfg_file)
        wanted = None if groups is None else {g for g in groups.split(",") if g}
        mine = [g for g in cfg.groups_for(me) if wanted is None or g.name in wanted]
        if not mine:
            raise ConfigError(Location(cfg.path), f"host '{me}' is not a member of any group")
        db = StateDB(db_file, timeout=float(cfg.lock_timeout))
    except ConfigError as e:
        print(f"Config error: {e}", file=sys.stderr, flush=True)
        return 1
    except OSError as e:  # the database cannot be opened (csync2 -D DIR must exist)
        print(f"Can't open database {db_file}: {e.strerror or e}", file=sys.stderr, flush=True)
        return 1
    try:
        lines = [f"{'force' if r.forced else 'chary'}\t{me}\t{r.peer}\t{r.name}"
                 for r in db.dirty()]
        for g in mine:
            for h in g.peers(me):
                for path, rec in db.forced(h.name):
                    lines.append(f"force\t{me}\t{h.name}\t{path}{'/' if rec else ''}"
                                 " (pending forced sync)")
    finally:
        db.close()
    if lines:
        print("\n".join(lines), flush=True)
    return 0 if lines else 2


# What the full command line would check before listing, and this path cannot: a port or peer
# addresses from the environment are validated there.
_VALIDATED_ENV = ("NONSTOP_SYNC_PORT", "NONSTOP_SYNC_PEER_ADDRESS")


def sync_command(args: Sequence[str]) -> int | None:
    """``nonstop sync -M`` with only -N, -C, -D, --config, --state-dir and --db; None: a command
    line for the full CLI."""
    opts = plain_options(args, ("-M",), ("-N", "-C", "-D", "--config", "--state-dir", "--db"))
    if opts is None or "-M" not in opts or any(os.environ.get(v) for v in _VALIDATED_ENV):
        return None

    def value(key: str, env: str | None = None) -> str | None:
        got = opts.get(key)
        if isinstance(got, str):
            return got
        return (os.environ.get(env) or None) if env else None

    lock = os.path.join(system_dir(), "csync2.lock")
    if os.path.exists(lock):
        print(f"Found {lock}", flush=True)
        return 1
    me = this_node(value("-N", "NONSTOP_SYNC_NODE"))
    cfgname = value("-C")
    try:
        cfg_file = config_path(value("--config", "NONSTOP_SYNC_CONFIG"), cfgname, system_dir())
        state_dir = value("--state-dir", "NONSTOP_SYNC_STATE_DIR")
        db_file = db_path_for(value("--db"), value("-D"),
                              DEFAULT_STATE_DIR if state_dir is None else state_dir, me, cfgname)
    except CommandLineError as e:
        print(e, file=sys.stderr, flush=True)
        return 1
    return list_dirty(cfg_file, db_file, me)
