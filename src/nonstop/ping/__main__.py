"""``python -m nonstop.ping``: watch ping nodes as the daemon would, logging Heartbeat's lines.

A diagnostic (is my ping node answering, with this deadping?) and the lab's way to run the real
prober in a namespace. Example::

    python -m nonstop.ping --interval 0.2 --deadping 1 192.168.1.1 --group uplinks=10.0.0.1,10.0.0.2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence

from nonstop.errors import InvalidValue
from nonstop.ping.prober import PingProber
from nonstop.ping.targets import PingTarget, PingTracker

_LEVELS = {logging.INFO: "info", logging.WARNING: "WARN", logging.ERROR: "ERROR",
           logging.CRITICAL: "CRIT",
           logging.DEBUG: "debug"}


def _targets(args: argparse.Namespace) -> list[PingTarget]:
    targets = [PingTarget.node(ip) for ip in args.nodes]
    for text in args.group:
        name, sep, members = text.partition("=")
        if not sep:
            raise InvalidValue(f"--group wants NAME=IP[,IP...], not {text!r}")
        targets.append(PingTarget.ping_group(name, [m for m in members.split(",") if m]))
    if not targets:
        raise InvalidValue("no ping node or group given")
    return targets


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nonstop.ping", description=__doc__)
    parser.add_argument("nodes", nargs="*", help="ping node addresses")
    parser.add_argument("--group", action="append", default=[], metavar="NAME=IP[,IP...]",
                        help="a ping group (up while any member answers)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between pings "
                        "(the keepalive; default 1)")
    parser.add_argument("--deadping", type=float, default=30.0, help="seconds without an "
                        "answer before a ping node is dead (default 30)")
    parser.add_argument("--initdead", type=float, default=None,
                        help="limit before the first answer (default: deadping)")
    parser.add_argument("--deadtime", type=float, default=None, help="the cluster's deadtime "
                        "in seconds: a gap longer than this is a CRIT late answer (default: "
                        "deadping)")
    parser.add_argument("--warntime", type=float, default=None, help="a gap longer than this "
                        "is a late answer (default: deadtime / 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(levelname)s: %(message)s")
    for level, name in _LEVELS.items():
        logging.addLevelName(level, name)
    try:
        targets = _targets(args)
        if args.deadping <= 2 * args.interval:
            raise InvalidValue(f"Ping dead time [{args.deadping:g} s] is too small compared to "
                               f"the interval [{args.interval:g} s]")
    except ValueError as exc:
        parser.error(str(exc))

    async def run() -> None:
        loop = asyncio.get_running_loop()
        tracker = PingTracker(targets, deadping_ms=round(args.deadping * 1000), now=loop.time(),
                              initdead_ms=_ms(args.initdead), deadtime_ms=_ms(args.deadtime),
                              warntime_ms=_ms(args.warntime))
        prober = PingProber(tracker, interval_s=args.interval, clock=loop.time,
                            logger=logging.getLogger("nonstop.ping"))
        await prober.run()

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run())
    except OSError as exc:
        print(f"cannot ping: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
