"""``nonstop history``: the node's recorded events, read from its state directory (no daemon
needed, so it also tells what happened before a crash)."""

from __future__ import annotations

import datetime
import json
import re
import sys
import time
from pathlib import Path

import click

from nonstop.errors import InvalidValue
from nonstop.observe.events import Timeline
from nonstop.observe.store import follow, history_dir, read_records

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float) -> float:
    """``--since``: an age (``90s``, ``10m``, ``2h``, ``1d``) or a local date/time
    (``2026-12-04``, ``2026-12-04 22:15``, ISO 8601 with a zone) -> wall-clock seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidValue(f"{text!r} is neither an age (90s, 10m, 2h, 1d) nor a date/time "
                           "(2026-12-04 22:15)") from None
    if when.tzinfo is None:
        when = when.astimezone()  # a time without a zone is local time, as people write it
    return when.timestamp()


@click.command("history")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              default="/var/lib/nonstop", show_default=True,
              help="The node's state directory (the history is in its history/ folder).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line (keys documented in docs/OBSERVE.md).")
@click.option("--since", metavar="WHEN",
              help="Only events from then on: an age (10m, 2h, 1d) or a date/time "
              "(2026-12-04 22:15).")
@click.option("--after", "after_seq", type=click.IntRange(min=0), default=0,
              help="Only events with a sequence number above this one.")
@click.option("-f", "--follow", "follow_on", is_flag=True,
              help="Keep printing events as they happen (until interrupted).")
def history_command(state_dir: Path, as_json: bool, since: str | None, after_seq: int,
                    follow_on: bool) -> None:
    """Print what this node recorded: node and link changes, decisions with their reasons,
    resource actions with durations, takeovers, replication, reloads and commands.

    Read from the state directory, not from the daemon: it works while the daemon is stopped
    or after it crashed. The history keeps the last 2,500 to 5,000 events (1 MiB at most).
    """
    try:
        start = None if since is None else parse_since(since, time.time())
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--since") from None
    directory = history_dir(state_dir)
    if not directory.is_dir():
        click.echo(f"nonstop: no history in {directory} (has a nonstop daemon run with this "
                   "state directory?)", err=True)
        sys.exit(1)
    timeline = Timeline()
    try:
        records = follow(directory, after_seq) if follow_on else iter(read_records(directory,
                                                                                   after_seq))
        for rec in records:
            if start is not None and rec.time < start:
                continue
            if as_json:
                click.echo(json.dumps(rec.to_json(), sort_keys=True))
            else:
                for line in timeline.lines(rec):
                    click.echo(line)
            if follow_on:
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `nonstop history | head`: click ends quietly, as for any command
        raise
    except OSError as e:  # not readable by this user (the files are root's, mode 0640)
        click.echo(f"nonstop: cannot read the history in {directory}: {e.strerror or e}"
                   f"{f': {e.filename}' if e.filename else ''}", err=True)
        sys.exit(1)
