"""``nonstop run``: one node in the foreground, started without click.

The daemon is the one long-lived process of the ``nonstop`` program, and whatever its command
line imports stays in its memory for as long as it runs: click (with gettext, locale and its
types) is ~0.9 MB of heap that an idle node never uses again (issue 15: under 25 MB PSS per
node). So ``nonstop.quick`` sends a plain ``run`` line here; ``--help``, an unknown option or
anything else unusual still goes to the click CLI, which calls :func:`run_node` the same way.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from nonstop.quick import DEFAULT_STATE_DIR, plain_options, usable_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_CONFIG_DIR = "/etc/ha.d"
# `nonstop run` exit codes (LSB's, as Heartbeat's init script reports them): 0 after a clean
# stop, 1 a machine problem at start (a socket, a directory), 6 a configuration error.
EXIT_MACHINE = 1
EXIT_NOT_CONFIGURED = 6

_VERBOSE = ("-v", "--verbose")


def default_node(config_dir: Path) -> str:
    """Heartbeat's rule: the first line of ``nodeinfo`` if present, else ``uname -n``."""
    try:
        # Bytes that are not UTF-8 are shown escaped (no node is named so): a clear "not in
        # configuration" later, not a traceback here.
        raw = (config_dir / "nodeinfo").read_bytes()
        first = raw.decode("utf-8", "backslashreplace").splitlines()[0].strip()
        if first:
            return first.lower()
    except (OSError, IndexError):
        pass
    return os.uname().nodename.lower()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)  # as click.echo(text, err=True)


def run_command(args: Sequence[str]) -> int | None:
    """``nonstop run [--config-dir D] [--state-dir D] [--node N] [-v]... [--sync-root R]``:
    the exit code, or None for a line the click CLI must answer (its usage errors, --help)."""
    opts = plain_options(args, _VERBOSE, ("--config-dir", "--state-dir", "--node",
                                          "--sync-root"))
    if opts is None:
        return None
    config_dir = str(opts.get("--config-dir", DEFAULT_CONFIG_DIR))
    state_dir = str(opts.get("--state-dir", DEFAULT_STATE_DIR))
    if not (usable_dir(config_dir) and usable_dir(state_dir)):
        return None  # click's message for a path that is a file
    node = opts.get("--node")
    verbose = int(opts.get("-v", 0)) + int(opts.get("--verbose", 0))
    try:
        return run_node(Path(config_dir), Path(state_dir), node if isinstance(node, str) else None,
                        verbose, str(opts.get("--sync-root", "/")))
    except KeyboardInterrupt:  # before the daemon's own handler: click's answer
        _say("")
        _say("Aborted!")
        return 1


def run_node(config_dir: Path, state_dir: Path, node: str | None, verbose: int,
             sync_root: str) -> int:
    """Load the configuration, then run the node until it stops; the exit code."""
    import asyncio

    from nonstop.config.errors import ConfigErrors
    from nonstop.config.loader import load_config_dir
    from nonstop.daemon import run_daemon
    from nonstop.logs import setup_logging, stop_logging
    from nonstop.preflight import start_refuses
    from nonstop.process import limit_malloc_arenas
    from nonstop.statelock import StateLock

    limit_malloc_arenas()  # before logging starts the first thread
    name = (node or default_node(config_dir)).lower()
    try:
        cfg = load_config_dir(str(config_dir), name)
        # Without its heartbeat interfaces, fencing or respawn clients: as check says.
        ConfigErrors.raise_if_any(start_refuses(cfg))
    except ConfigErrors as e:
        for err in e.errors:
            _say(str(err))
        _say("Configuration error, nonstop not started.")
        return EXIT_NOT_CONFIGURED
    setup_logging(cfg.ha, verbose=verbose)
    lock = StateLock(state_dir)
    try:
        for w in cfg.warnings:
            _say(str(w))
        # One daemon per state directory, before anything in it is touched (nonstop.statelock).
        state_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire()
        code = asyncio.run(run_daemon(cfg, name, state_dir, sync_root))
    except ConfigErrors as e:  # found once the resources are built (a script not there)
        stop_logging()
        for err in e.errors:
            _say(str(err))
        _say("Configuration error, nonstop not started.")
        code = EXIT_NOT_CONFIGURED
    except OSError as e:
        # A machine problem at start (a socket that cannot be opened, a state directory that
        # cannot be written): one line, not a traceback, and the last one: the log lines
        # still queued (a syslog warning...) are written first.
        stop_logging()
        _say(f"nonstop: cannot run: {e}")
        code = EXIT_MACHINE
    finally:
        lock.release()
        stop_logging()
    return code
