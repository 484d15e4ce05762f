"""Two nonstop sync nodes in one process, talking TLS over 127.0.0.x (shared by the sync tests)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nonstop.config.csync2 import Csync2Config, parse_csync2_text
from nonstop.logs import BAD_INPUT
from nonstop.sync.node import Node, Options
from nonstop.sync.replicator import Replicator
from nonstop.sync.server import SyncServer
from nonstop.talk import talk_path

TALK_CFG = talk_path("csync2.cfg").read_text()
KEY = "K" * 64


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a program a test started: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def talk_config(tmp: Path, key_text: str = KEY, name: str = "key", extra: str = "",
                auto: str = "none", generations: int = 5) -> Csync2Config:
    """The talk's csync2.cfg with only the key path (and optional knobs) changed."""
    key = tmp / name
    if not key.exists():
        key.write_text(key_text + "\n")
    text = TALK_CFG.replace("/etc/csync2.key_vpbx1", str(key))
    text = text.replace("auto none;", f"auto {auto};")
    text = text.replace("backup-generations 5;", f"backup-generations {generations};")
    if extra:
        text = text.replace("host vpbx1-1 vpbx1-2;", "host vpbx1-1 vpbx1-2;\n" + extra)
    return parse_csync2_text(text, "/etc/csync2.cfg")


@dataclass
class TestNode:
    node: Node
    root: Path
    log: list[str] = field(default_factory=list)
    server: SyncServer | None = None

    def path(self, name: str) -> Path:
        return self.root / name.lstrip("/")

    def write(self, name: str, data: bytes | str, mode: int | None = None) -> Path:
        p = self.path(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        if mode is not None:
            os.chmod(p, mode)
        return p

    async def sync(self, *scopes: str) -> list[str]:
        """``-x`` for the scopes (or everything); returns the run's problems."""
        sc = [(s, True) for s in scopes] or None
        self.node.check(sc)
        report = await self.node.update(sc)
        return report.problems


def make_node(tmp: Path, name: str, cfg: Csync2Config, port: int,
              addresses: dict[str, str]) -> TestNode:
    root = tmp / name
    for d in ("etc/asterisk", "var/log/asterisk", "var/lib/asterisk", "var/spool/asterisk"):
        (root / d).mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    node = Node(
        Options(cfg, name, str(tmp / f"{name}-state"), root=str(root), port=port,
                addresses=addresses, listen=addresses[name]),
        lambda _lvl, msg: log.append(msg),
    )
    return TestNode(node, root, log)


@asynccontextmanager
async def pair(tmp: Path, cfg1: Csync2Config | None = None, cfg2: Csync2Config | None = None,
               serve1: bool = False) -> AsyncIterator[tuple[TestNode, TestNode]]:
    """vpbx1-1 (pushes) and vpbx1-2 (serving) with separate roots, databases and addresses."""
    BAD_INPUT.reset()  # the log budget is per process: tests must not spend it for each other
    port = free_port()
    addresses = {"vpbx1-1": "127.0.0.1", "vpbx1-2": "127.0.0.2"}
    cfg1 = cfg1 or talk_config(tmp)
    n1 = make_node(tmp, "vpbx1-1", cfg1, port, addresses)
    n2 = make_node(tmp, "vpbx1-2", cfg2 or cfg1, port, addresses)
    n2.server = SyncServer(n2.node)
    await n2.server.start()
    if serve1:
        n1.server = SyncServer(n1.node)
        await n1.server.start()
    try:
        yield n1, n2
    finally:
        for n in (n1, n2):
            if n.server is not None:
                await n.server.close()
            n.node.close()


async def replicating(tmp: Path, **active: Any,
                      ) -> tuple[TestNode, TestNode, Replicator, Replicator]:
    """vpbx1-1 and vpbx1-2 (the talk's csync2.cfg on 127.0.0.1 and 127.0.0.2) with their
    replicators started, both standby; vpbx1-1's with ``active``'s settings."""
    cfg = talk_config(tmp)
    port = free_port()
    addrs = {"vpbx1-1": "127.0.0.1", "vpbx1-2": "127.0.0.2"}
    n1 = make_node(tmp, "vpbx1-1", cfg, port, addrs)
    n2 = make_node(tmp, "vpbx1-2", cfg, port, addrs)
    r1 = Replicator(n1.node, full_scan_interval=3600, **active)
    r2 = Replicator(n2.node, full_scan_interval=3600)
    await r1.start()
    await r2.start()
    return n1, n2, r1, r2


def tree(root: Path) -> dict[str, tuple[str, int, int, int, bytes | str]]:
    """Everything under the synced dirs of a root: kind, mode, uid, gid, content/target."""
    out: dict[str, tuple[str, int, int, int, bytes | str]] = {}
    for top in ("etc", "var/log", "var/lib", "var/spool", "usr"):
        base = root / top
        if not base.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            for n in dirnames + filenames:
                p = Path(dirpath) / n
                rel = str(p.relative_to(root))
                st = p.lstat()
                if p.is_symlink():
                    out[rel] = ("lnk", 0, st.st_uid, st.st_gid, os.readlink(p))
                elif p.is_dir():
                    out[rel] = ("dir", st.st_mode & 0o7777, st.st_uid, st.st_gid, "")
                elif p.is_fifo():
                    out[rel] = ("fifo", st.st_mode & 0o7777, st.st_uid, st.st_gid, "")
                else:
                    out[rel] = ("reg", st.st_mode & 0o7777, st.st_uid, st.st_gid, p.read_bytes())
    return out
