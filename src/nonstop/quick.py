"""Commands answered without loading click: what monitors, scripts and cron run often.

``nonstop status`` and ``nonstop sync -M`` are called every few seconds by monitoring and by
scripts written for Heartbeat and csync2, whose own tools start in a few milliseconds. The
click CLI (nonstop.cli) with asyncio behind it costs a hundred; these paths load only what
they use. ``nonstop run`` starts without click too (nonstop.runcommand): the daemon would
keep it in memory for as long as it runs. A command line they do not recognise exactly
(``--help``, a typo, an option they do not know) goes to the click CLI, which then gives its
usual answer or message."""

from __future__ import annotations

import math
import os
import sys

# typing and collections cost more than the rest of a fast path: for mypy only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

DEFAULT_STATE_DIR = "/var/lib/nonstop"


def plain_options(args: Sequence[str], flags: Sequence[str], valued: Sequence[str]
                  ) -> dict[str, str | int] | None:
    """``args`` as options when every one is in ``flags`` (no value; its value is how many
    times it was given) or ``valued`` (one value: ``--name V``, ``--name=V``, ``-x V`` or
    ``-xV``; the last of a repeated one counts). None for anything else (a positional
    argument, a combined ``-ab``, ``--``, an unknown option, a missing value): such a line is
    the click CLI's to answer."""
    out: dict[str, str | int] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg in flags:
            out[arg] = int(out.get(arg, 0)) + 1
            continue
        if arg in valued:
            if i == len(args):
                return None
            out[arg] = args[i]
            i += 1
            continue
        name, sep, value = arg.partition("=")
        if sep and name.startswith("--") and name in valued:
            out[name] = value
        elif not arg.startswith("--") and arg[:2] in valued and len(arg) > 2:
            out[arg[:2]] = arg[2:]
        else:
            return None
    return out


def usable_dir(value: str) -> bool:
    """What click.Path(file_okay=False) accepts without a word: not empty, not a file."""
    return bool(value) and not os.path.isfile(value)


def _as_path(value: str) -> str:
    """``str(pathlib.PurePosixPath(value))``, as the click CLI shows a path it was given
    (``a//b/./`` is ``a/b``), without importing pathlib."""
    parts = [p for p in value.split("/") if p not in ("", ".")]
    root = "//" if value[:2] == "//" and value[:3] != "///" else "/" * value.startswith("/")
    return root + "/".join(parts) if root or parts else "."


def status_command(args: Sequence[str]) -> int | None:
    """``nonstop status [--state-dir DIR] [--json]``; None: not a line for the fast path."""
    opts = plain_options(args, ("--json",), ("--state-dir",))
    if opts is None:
        return None
    state_dir = str(opts.get("--state-dir", DEFAULT_STATE_DIR))
    if not usable_dir(state_dir):
        return None
    return show_status(_as_path(state_dir), bool(opts.get("--json")))


def show_status(state_dir: str | os.PathLike[str], as_json: bool) -> int:
    """Ask the daemon of ``state_dir`` for its status and print it; the exit code (3: LSB
    status "not running", 1: the daemon refused)."""
    import json

    from nonstop.apiclient import ApiError, request

    try:
        reply = request(state_dir, "status")
    except ApiError as e:
        if as_json:
            print(json.dumps({"ok": False, "error": str(e)}), flush=True)
        else:
            print(f"nonstop: {e}", file=sys.stderr, flush=True)
        return 3  # LSB status: not running
    if not reply.get("ok"):
        print(f"nonstop: {reply.get('error')}", file=sys.stderr, flush=True)
        return 1
    st: dict[str, Any] = reply["status"]
    if as_json:
        print(json.dumps(st, indent=2, sort_keys=True), flush=True)
    else:
        print(render_status(st), flush=True)
    return 0


def _ago(ms: int | None) -> str:
    if ms is None:
        return "never"
    if ms < 1000:
        return f"{ms} ms ago"
    return f"{ms / 1000:.1f} s ago"


def _recent(at: float | None, within_s: float = 3600.0) -> bool:
    import time

    return at is not None and time.time() - at < within_s


def _clock(at: float) -> str:
    import time

    return time.strftime("%H:%M:%S", time.localtime(at))


def render_status(st: dict[str, Any]) -> str:
    """The at-a-glance text form of the status document."""
    t = st["timing"]
    lines = [
        f"nonstop {st['node']}: {st['status']}  (cluster {st['cluster']}, generation "
        f"{st['generation']}, up {st['uptime_s']:.0f} s)",
        f"timing: keepalive {t['keepalive_ms']} ms, deadtime {t['deadtime_ms']} ms, "
        f"warntime {t['warntime_ms']} ms, initdead {t['initdead_ms']} ms",
        "",
        f"  {'NODE':<16} {'STATUS':<8} {'LAST HEARD':<14} LINKS",
    ]
    for n in st["nodes"]:
        name = n["name"] + (" (me)" if n["local"] else "")
        heard = "-" if n["local"] else _ago(n["last_heard_ms_ago"])
        links = " ".join(f"{k}:{v}" for k, v in n["links"].items()) or "-"
        lines.append(f"  {name:<16} {n['status']:<8} {heard:<14} {links}")
    lines.extend(_initdead_lines(st))
    for g in st.get("groups", []):
        lines.append("")
        lines.extend(render_group(g))
    lines.extend(_render_guards(st))
    sync = st.get("sync")
    if st.get("sync_error"):  # configured but not running: not the same as not configured
        lines.append("")
        lines.append(f"replication: OFF: {st['sync_error']}")
    if sync:
        lines.append("")
        dead = [n["name"] for n in st["nodes"] if not n["local"] and n["status"] == "dead"]
        starting = any(g["local_state"] == "starting" for g in st.get("groups", []))
        lines.extend(render_sync(sync, dead, starting))
    # Duplicates (copies on several media, a notice sent 3 times) are not drops: printed as
    # such, every clean stop of a peer left "dropped packets: duplicate 2" (a user trial).
    counters = st["packets"]["dropped"]
    dropped = {k: v for k, v in counters.items() if k not in ("duplicate", "lost")}
    if dropped or counters.get("lost"):
        lines.append("")
    if dropped:
        lines.append("dropped packets: " + ", ".join(f"{k} {v}" for k, v in dropped.items()))
    if counters.get("lost"):
        lines.append(f"lost packets (sent by peers, never arrived): {counters['lost']}")
    return "\n".join(lines)


def _initdead_lines(st: dict[str, Any]) -> list[str]:
    """While comm is not up, when each peer never heard is declared dead (the talk's initdead
    is 120 s: a node started alone otherwise seems to do nothing for two minutes)."""
    if st.get("comm_up", True):
        return []
    initdead = st["timing"]["initdead_ms"] / 1000
    return [f"  waiting for {n['name']} (initdead {initdead:g} s): declared dead in "
            f"{math.ceil(n['dead_in_ms'] / 1000)} s unless heard"
            for n in st["nodes"]  # dead_in_ms: null for us and for a node already dead
            if n.get("last_heard_ms_ago") is None and n.get("dead_in_ms") is not None]


def render_sync(sync: dict[str, Any], dead: Sequence[str] = (), starting: bool = False
                ) -> list[str]:
    """The replication lines of the text form; ``dead``: the peers dead to the heartbeats;
    ``starting``: this node is starting a group (its force-sync marks what it will push)."""
    lines: list[str] = []
    role = "active (pushing)" if sync.get("active") else "standby (receiving)"
    last = sync.get("last_sync")
    ok = sync.get("last_sync_ok")
    lines.append(
        f"replication: {role}, dirty {sync.get('dirty', 0)}, lag {sync.get('lag_s', 0):.2f} s"
        + (f", last sync {'ok' if ok else 'with problems'}" if last is not None and ok is not None
           else "")
    )
    if sync.get("active") and dead:
        # A push skips a dead peer and still says "last sync ok": a split brain's holder read
        # "dirty 2, lag 6.67 s, last sync ok" with nothing reaching its peer (a user trial).
        lines.append(f"    not replicating to {', '.join(dead)} (dead): changes wait until it "
                     "is back")
    if not sync.get("active") and sync.get("dirty") and not starting:
        # Its last changes before a crash, say: they stay here until it holds a group again.
        lines.append("    changed here, never sent (a standby does not push): "
                     "`nonstop sync -M` lists them")
    if sync.get("watch_error"):
        lines.append(f"    {sync['watch_error']}")
    if sync.get("last_error"):
        lines.append(f"    last error: {sync['last_error']}")
        if sync.get("active") and sync.get("dirty", 0) > 1:  # one shown of several conflicts
            lines.append(f"    {sync['dirty']} names wait: `nonstop sync -M` lists them all")
    elif (problem := sync.get("last_problem")) and _recent(problem.get("at")):
        # A standby's own trouble (its replica full) shows here; once over, for an hour.
        lines.append(f"    last problem at {_clock(problem['at'])}: {problem['text']}")
    if (refused := sync.get("standby_refused")) and _recent(refused.get("at")):
        # `nonstop standby` answered before its push failed: the group stayed, say so.
        lines.append(f"    standby refused at {_clock(refused['at'])}, the groups stayed here: "
                     f"{refused['text']}")
    skipped = sync.get("not_replicated") or {}
    if skipped.get("count"):
        more = skipped["count"] - len(skipped["paths"])
        lines.append("    not replicated, name not UTF-8 (rename to replicate): "
                     + ", ".join(skipped["paths"]) + (f" and {more} more" if more > 0 else ""))
    return lines


def render_group(g: dict[str, Any]) -> list[str]:
    """One group of the status document: where it is, its resources, the last decision and,
    while that decision waits on other nodes, on whom and for how long (issue 13 item 3)."""
    lines = [
        f"group {g['key']}: held by {g.get('holder') or 'nobody'} "
        f"(preferred {g['preferred_node']}, here {g['local_state']}, epoch {g['epoch']})"
    ]
    for r in g.get("resources", []):
        lines.append(f"    {r['resource']:<44} {r['state']}")
    if g.get("reason"):
        action = f" ({g['action']})" if g.get("action") else ""
        lines.append(f"    why{action}: {g['reason']}")
    waiting = g.get("waiting")
    if waiting:
        lines.append(f"    waiting {waiting['since_s']:.1f} s for {', '.join(waiting['on'])}")
    return lines


def _render_guards(st: dict[str, Any]) -> list[str]:
    """Ping nodes, ipfail, respawn clients, fencing and the own-key verdict (issue 12)."""
    lines: list[str] = []
    if st.get("ping_nodes"):
        ipfail = st.get("ipfail") or {}
        lines += ["", f"ping nodes: {st['ping_reachable']} of {st['ping_total']} answer"
                  + (f" (ipfail on, settled count {ipfail.get('settled')})"
                     if ipfail.get("on") else "")]
        lines += [f"    {p['name']:<20} {p['status']:<5} {' '.join(p['members'])}"
                  for p in st["ping_nodes"]]
    for r in st.get("respawn") or []:
        lines.append(f"respawn {r['command']} (as {r['user']}): {r['state']}, {r['starts']} "
                     f"start(s)" + (f", last: {r['last_exit']}" if r.get("last_exit") else ""))
    fencing = st.get("fencing") or {}
    if fencing.get("device"):
        last = fencing.get("last")
        lines.append(f"fencing: {fencing['device']}"
                     + (f"; last: {last['reason']}" if last else "; never used")
                     + (f"; fencing now: {', '.join(fencing['pending'])}"
                        if fencing.get("pending") else ""))
    if st.get("own_key_suspect"):
        lines += ["", f"OWN KEY SUSPECT: {st.get('own_key_reason')}"]
    for c in st.get("address_conflicts") or []:
        if c.get("conflict"):
            who = ", ".join(f"{x['mac']} ({x['how']})" for x in c["claimants"])
            lines += ["", f"ADDRESS CONFLICT: {c['ip']} on {c['iface']}, which this node "
                      f"holds, is also claimed by {who}"]
    return lines


def closed_outputs() -> list[int]:
    """stdout and stderr, those of them that are pipes nobody reads any more (``nonstop
    sync -M | head -3`` once head is done): poll says POLLERR for such a pipe."""
    import select

    closed = []
    for fd in (1, 2):
        poller = select.poll()
        try:
            poller.register(fd, 0)  # errors and hang-ups are always reported
            if any(ev & select.POLLERR for _fd, ev in poller.poll(0)):
                closed.append(fd)
        except (OSError, ValueError):
            continue
    return closed


def main() -> None:
    """The ``nonstop`` program: a fast path for a command line that is one, else the click
    CLI (which also gives ``--help`` and every error message)."""
    args = sys.argv[1:]
    # Installed as csync2 (a symlink or copy of the program named ``csync2``, docs/SYNC.md's
    # drop-in): the whole command line is ``nonstop sync``'s, as csync2's scripts write it.
    as_csync2 = os.path.basename(sys.argv[0]) == "csync2"
    if as_csync2:
        args = ["sync", *args]
    code: int | None = None
    try:
        if args[:1] == ["status"]:
            code = status_command(args[1:])
        elif args[:1] == ["sync"]:
            from nonstop.sync.quickcli import sync_command

            code = sync_command(args[1:])
        elif args[:1] == ["run"]:
            from nonstop.runcommand import run_command

            code = run_command(args[1:])
    except BrokenPipeError:
        # The reader of our output went away: end quietly with 1, as click's commands do
        # (-L, -T), not with a traceback. Any other broken pipe is a bug to show.
        closed = closed_outputs()
        if not closed:
            raise
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in closed:  # what is still buffered for them is flushed at exit
            os.dup2(devnull, fd)
        code = 1
    if code is not None:
        sys.exit(code)
    if as_csync2:
        from nonstop.sync.cli import sync_command as click_sync

        click_sync(args=args[1:], prog_name="csync2")
    from nonstop.cli import cli

    cli()
