"""``nonstop sync``: csync2 2.0's command line, so ``csync2 -xv`` becomes ``nonstop sync -xv``.

Every flag of ``csync2 -h`` is either implemented with csync2's meaning or refused with a message
naming the reason (docs/SYNC.md has the table). Exit codes as csync2: 0 ok, 1 error, conflict or
usage error, 2 "empty" (``-H -L -M -S``) or "in sync" (``-T``). This module is the click parser
and help; what the command does is in nonstop.sync.command, shared with the fast path
(nonstop.sync.quickcli) that answers the common command lines without loading click.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from click.core import ParameterSource

from nonstop.config.csync2 import DEFAULT_PORT
from nonstop.sync.command import Args, BadAddress, make_key, run
from nonstop.sync.quickcli import DEFAULT_STATE_DIR, MAX_PORT, MIN_PORT

__all__ = ["make_key", "sync_command"]


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
@click.option("-p", "port", type=click.IntRange(MIN_PORT, MAX_PORT), default=DEFAULT_PORT,
              show_default=True,
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
@click.option("-A", "async_db", is_flag=True,
              help="Accepted and ignored: nonstop never turns off its database's durability.")
@click.argument("paths", nargs=-1)
@click.pass_context
def sync_command(ctx: click.Context, /, **kw: Any) -> None:
    """Replicate files between cluster nodes with csync2's semantics (see docs/SYNC.md).

    Scripts written for csync2 run unchanged with the program name changed: csync2's flags,
    CSYNC2_SYSTEM_DIR and exit codes; node identity and paths can also come from NONSTOP_SYNC_*
    environment variables.
    """
    by_flag = ctx.get_parameter_source("node") == ParameterSource.COMMANDLINE
    try:
        code = run(Args.of(kw), _usage, by_flag)
    except BadAddress as e:
        raise click.BadParameter(str(e), param_hint="--peer-address") from None
    sys.exit(code)


def _usage() -> int:
    click.echo(click.get_current_context().get_help(), err=True)
    return 1
