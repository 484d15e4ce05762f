"""Each peer's generation and last sequence number, kept across our restarts (adapter: files).

Heartbeat keeps its own generation in ``hb_generation``; nonstop also keeps what it last heard
from each peer, so that packets captured before our restart stay replays after it (issue 9).
The file ``hb_peers`` holds one ``<node> <generation> <seq or ->`` line per peer.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from nonstop.errors import InvalidValue
from nonstop.heartbeat.identity import _write_durably

log = logging.getLogger("nonstop")

PEERS_FILE = "hb_peers"
MAX_SIZE = 64 * 1024

State = dict[str, tuple[int, int | None]]


def load(state_dir: Path) -> State:
    """The recorded state, or an empty one (with a warning) if the file is unusable."""
    path = state_dir / PEERS_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return {}
    except OSError as e:
        log.warning("ignoring %s: %s", path, e.strerror)
        return {}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            log.warning("ignoring %s: not a regular file", path)
            return {}
        raw = os.read(fd, MAX_SIZE + 1)
    finally:
        os.close(fd)
    state: State = {}
    try:
        if len(raw) > MAX_SIZE:
            raise InvalidValue(f"larger than {MAX_SIZE} bytes")
        for n, line in enumerate(raw.decode("ascii").splitlines(), 1):
            parts = line.split()
            if len(parts) != 3:
                raise InvalidValue(f"line {n}: expected '<node> <generation> <seq>'")
            state[parts[0]] = (int(parts[1]), None if parts[2] == "-" else int(parts[2]))
    except (ValueError, UnicodeDecodeError) as e:
        log.warning("ignoring %s (peers' packets are checked as after a first start): %s",
                    path, e)
        return {}
    return state


def save(state_dir: Path, state: Mapping[str, tuple[int, int | None]]) -> None:
    """Write the state durably (blocking: call it from a worker thread)."""
    lines = (f"{node} {gen} {'-' if seq is None else seq}\n" for node, (gen, seq) in state.items())
    text = "".join(sorted(lines))
    _write_durably(state_dir / PEERS_FILE, text.encode("ascii"))
