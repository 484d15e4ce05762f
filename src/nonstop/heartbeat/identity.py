"""The node's persistent wire identity: its UUID and its generation number (adapter: files)."""

from __future__ import annotations

import os
import time
import uuid as uuidlib
from pathlib import Path

from nonstop.config.model import HbGenMethod, UuidFrom

GENERATION_FILE = "hb_generation"
UUID_FILE = "hb_uuid"


def load_uuid(state_dir: Path, uuidfrom: UuidFrom = UuidFrom.FILE, node: str = "") -> bytes:
    """Our 16-byte node UUID: ``uuidfrom nodename`` derives it from the node name (the same on
    every start and every reinstall); ``file`` creates it once in ``state_dir/hb_uuid``."""
    if uuidfrom is UuidFrom.NODENAME:
        return uuidlib.uuid5(uuidlib.NAMESPACE_DNS, node).bytes
    path = state_dir / UUID_FILE
    try:
        data = path.read_bytes()
        if len(data) == 16:
            return data
    except FileNotFoundError:
        pass
    data = uuidlib.uuid4().bytes
    _write_durably(path, data)
    return data


def next_generation(state_dir: Path, method: HbGenMethod = HbGenMethod.FILE) -> int:
    """Increment and persist the generation, as Heartbeat does at every daemon start.

    Peers drop packets of a lower generation as replays, and take a higher one for a restart.
    The file holds a 16-character right-aligned decimal number, like Heartbeat's. A missing or
    unreadable file starts from the wall clock, so a node whose state was lost still comes
    back with a generation above the one its peers remember (Heartbeat restarts from 1 then).
    """
    path = state_dir / GENERATION_FILE
    if method is HbGenMethod.TIME:  # ``hbgenmethod time``: the wall clock, never below the last one
        try:
            last = int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            last = 0
        gen = max(int(time.time()), last + 1)
        _write_durably(path, f"{gen:>16d}\n".encode())
        return gen
    try:
        current = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        current = int(time.time())
    gen = current + 1
    _write_durably(path, f"{gen:>16d}\n".encode())
    return gen


def _write_durably(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
