"""The talk's configuration files, byte for byte, as package data.

``ha.d/ha.cf``, ``ha.d/haresources``, ``ha.d/authkeys``, ``ha.d/resource.d/master``,
``csync2.cfg`` and ``crontab``, from the talk "Asterisk redundancy using Heartbeat"; beside
them nonstop's own examples (:data:`EXAMPLES`), e.g. ``subsecond/ha.cf``. Tests, the
demo and the benchmarks start from these files, never from a path of a development machine.
Packaging does not keep file modes, so use :func:`copy_talk` to get a usable directory
(authkeys 0600, master executable).
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
from importlib.resources.abc import Traversable
from pathlib import Path

from nonstop.errors import Misuse, UnknownName

FILES: tuple[str, ...] = (
    "ha.d/ha.cf",
    "ha.d/haresources",
    "ha.d/authkeys",
    "ha.d/resource.d/master",
    "csync2.cfg",
    "crontab",
)

# nonstop's own example configurations, shipped beside the talk's files (not from the talk).
EXAMPLES: tuple[str, ...] = (
    "subsecond/ha.cf",  # the sub-second failover profile (docs/CONFIG.md, "Sub-second")
)


def talk_file(name: str) -> Traversable:
    """One of :data:`FILES`, e.g. ``talk_file("ha.d/ha.cf").read_bytes()``."""
    if name not in FILES + EXAMPLES:
        raise UnknownName(f"{name!r} is not one of the talk's files or examples: "
                          f"{', '.join(FILES + EXAMPLES)}")
    node = importlib.resources.files(__name__)
    for part in name.split("/"):
        node = node / part
    return node


def talk_path(name: str) -> Path:
    """One of :data:`FILES` as a file-system path (the package is always unpacked: a checkout,
    a wheel or a Debian package), for APIs that open a path themselves."""
    node = talk_file(name)
    if not isinstance(node, Path):
        raise Misuse(f"the talk's {name} is not a file on disk here ({node!r})")
    return node


def copy_talk(dest: str | os.PathLike[str]) -> Path:
    """Copy every talk file under ``dest`` (created if needed) with the modes a node has:
    ``authkeys`` 0600 (Heartbeat and nonstop refuse a readable one), ``master`` 0755, the
    rest 0644. Returns ``dest`` as a Path; the configuration directory is ``dest/"ha.d"``."""
    root = Path(dest)
    for name in FILES:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with talk_file(name).open("rb") as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
        mode = 0o600 if name.endswith("authkeys") else 0o755 if name.endswith("master") else 0o644
        target.chmod(mode)
    return root
