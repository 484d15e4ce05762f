"""The private file-system view of a lab host, as a shell prologue run in its mount namespace.

``ip netns exec`` gives each command a mount namespace whose mounts do not reach the host; the
prologue bind-mounts per-node directories over the global paths a node's programs write (``/tmp``,
``/etc/logrotate.d``, in a box also ``/run``, ``/etc/ha.d`` ...), then execs the program.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from nonstop.errors import InvalidValue


@dataclass(frozen=True)
class Bind:
    """Mount ``source`` (a host path) over ``target`` (the path programs use)."""

    source: str
    target: str


def _under(path: str, directory: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(directory))


def order_binds(binds: Iterable[Bind]) -> list[Bind]:
    """Order binds so that no mount hides the source of a later one.

    Mounting over ``/tmp`` first would hide a source under ``/tmp`` (pytest's tmp_path); such
    sources are mounted before their shadowing target. Among the rest the given order is kept.
    """
    pending = list(binds)
    ordered: list[Bind] = []
    while pending:
        for bind in pending:
            # bind may go now if no still-pending bind has its source under bind's target.
            if not any(o is not bind and _under(o.source, bind.target) for o in pending):
                ordered.append(bind)
                pending.remove(bind)
                break
        else:
            names = ", ".join(f"{b.source} -> {b.target}" for b in pending)
            raise InvalidValue(f"bind mounts hide each other's sources: {names}")
    return ordered


def prologue(binds: Sequence[Bind], *, hostname: str | None = None,
             ready_marker: str | None = None) -> str:
    """A ``sh -c`` script: set the hostname, mount ``binds``, touch the marker, exec ``"$@"``."""
    lines = ["set -e"]
    if hostname is not None:
        lines.append(f"hostname {shlex.quote(hostname)}")
    for bind in order_binds(binds):
        lines.append(f"mount --bind {shlex.quote(bind.source)} {shlex.quote(bind.target)}")
    if ready_marker is not None:
        lines.append(f": > {shlex.quote(ready_marker)}")
    lines.append('exec "$@"')
    return "\n".join(lines) + "\n"
