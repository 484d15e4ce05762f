"""``nonstop demo``: the failover drill a newcomer runs (the lead registers the command)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import sys
from types import FrameType

import click

from nonstop.demo.drill import FAULTS, Drill
from nonstop.demo.render import Screen

REQUIRED_TOOLS = ("ip", "nft", "unshare", "nsenter", "ss", "kamailio")


def _missing_tools() -> list[str]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [t for t in REQUIRED_TOOLS if shutil.which(t, path=path) is None]


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    # A SIGTERM (a CI timeout, `kill`) cleans up like Ctrl-C does.
    raise KeyboardInterrupt


@click.command("demo")
@click.option("--fault", type=click.Choice(FAULTS), default="crash", show_default=True,
              help="What happens to the active node: a crash (power cut), a pulled cable, "
                   "or a planned `nonstop standby`.")
@click.option("--rounds", type=click.IntRange(1, 20), default=1, show_default=True,
              help="How many faults in a row (the active node alternates).")
@click.option("--quick", is_flag=True, help="Shortest waits (CI): about 15 seconds a round.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the results as JSON on stdout; the screen goes to stderr.")
@click.option("--keep-going", is_flag=True,
              help="Run the remaining rounds after a round failed its checks.")
def demo_command(fault: str, rounds: int, quick: bool, as_json: bool, keep_going: bool) -> None:
    """Build the talk's two-node PBX cluster in namespaces, kill its active node, and show
    it survive: timeline, downtime, detection time and replication lag. Needs root;
    everything it builds is removed at the end, also on Ctrl-C."""
    if os.geteuid() != 0:
        raise click.ClickException("the demo builds network namespaces: run it as root")
    missing = _missing_tools()
    if importlib.util.find_spec("aiosmtpd") is None:
        missing.append("aiosmtpd (pip install aiosmtpd: the nodes' mail server)")
    if missing:
        raise click.ClickException(
            "missing programs: " + ", ".join(missing)
            + " (Debian 12: apt-get install iproute2 nftables util-linux kamailio)")
    out = sys.stderr if as_json else sys.stdout
    live = out.isatty() and os.environ.get("TERM", "dumb") != "dumb"
    screen = Screen(out, live=live, width=shutil.get_terminal_size().columns if live else 0)
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        drill = Drill(screen, fault=fault, rounds=rounds, quick=quick,  # type: ignore[arg-type]
                      keep_going=keep_going)
        result = drill.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    sys.exit(0 if result.ok else 1)


def main() -> None:
    """``python3 -m nonstop.demo``: the demo without the ``nonstop`` command around it."""
    demo_command(prog_name="nonstop demo")
