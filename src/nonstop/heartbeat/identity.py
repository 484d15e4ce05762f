"""The node's persistent wire identity: its UUID and its generation number (adapter: files)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path

from nonstop.config.model import UuidFrom
from nonstop.errors import MachineError

GENERATION_FILE = "hb_generation"
UUID_FILE = "hb_uuid"
# RFC 4122's name space for DNS names (uuid.NAMESPACE_DNS). The two UUIDs are made here, not
# with the uuid module: it loads platform too, ~0.2 MB that every daemon kept for one call.
NAMESPACE_DNS = bytes.fromhex("6ba7b8109dad11d180b400c04fd430c8")


def _with_version(raw: bytes, version: int) -> bytes:
    """RFC 4122: the version in the high nibble of byte 6, the variant 10 in byte 8."""
    b = bytearray(raw[:16])
    b[6] = (b[6] & 0x0F) | version << 4
    b[8] = (b[8] & 0x3F) | 0x80
    return bytes(b)


def uuid4() -> bytes:
    """A random UUID's 16 bytes (uuid.uuid4().bytes)."""
    return _with_version(os.urandom(16), 4)


def uuid5(name: str, namespace: bytes = NAMESPACE_DNS) -> bytes:
    """A name-based (SHA-1) UUID's 16 bytes (uuid.uuid5(namespace, name).bytes)."""
    return _with_version(hashlib.sha1(namespace + name.encode(), usedforsecurity=False)
                         .digest(), 5)


def load_uuid(state_dir: Path, uuidfrom: UuidFrom = UuidFrom.FILE, node: str = "") -> bytes:
    """Our 16-byte node UUID: ``uuidfrom nodename`` derives it from the node name (the same on
    every start and every reinstall); ``file`` creates it once in ``state_dir/hb_uuid``."""
    if uuidfrom is UuidFrom.NODENAME:
        return uuid5(node)
    path = state_dir / UUID_FILE
    try:
        data = path.read_bytes()
        if len(data) == 16:
            return data
    except FileNotFoundError:
        pass
    data = uuid4()
    _write_durably(path, data)
    return data


def next_generation(state_dir: Path) -> int:
    """Increment and persist the generation, as Heartbeat does at every daemon start.

    Peers drop packets of a lower generation as replays, and take a higher one for a restart.
    The file holds a 16-character right-aligned decimal number, like Heartbeat's. Whatever
    ``hbgenmethod`` says, the generation is the last one plus one, or the wall clock (seconds)
    when that is higher:
    * against ``file`` (Heartbeat counts by one): a state directory restored from a backup or cloned
      from another node, or lost, still comes back above the generation the peers remember,
      as long as the clock is right. Heartbeat's peers dropped such a node's every packet as
      an "attempted replay attack" until it had restarted past the old number (or from 1,
      for an unreadable file);
    * against ``time`` (Heartbeat takes the clock alone): a clock set back still comes back above
      the last start, as long as the file is there. Heartbeat's node could not rejoin then.
    Only a restored file and a clock set back together leave a node below its old number.
    """
    path = state_dir / GENERATION_FILE
    try:
        last = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        last = 0
    gen = max(int(time.time()), last + 1)
    _write_durably(path, f"{gen:>16d}\n".encode())
    return gen


def _write_durably(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all; an error names the file (a full disk raised from
    write or fsync, which name none: "cannot run: [Errno 28] No space left on device")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise MachineError(e.errno, e.strerror, str(tmp)) from e
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
