"""A standby whose box dies in the middle of a push, in a three-node cluster.

vpbx1-1 pushes to vpbx1-2 and vpbx1-3. vpbx1-2's box dies while a session with it is open:
its machine answers nothing more, not even TCP (a relay between vpbx1-1 and vpbx1-2 stops
passing bytes and takes no new connection). When the heartbeats declare vpbx1-2 dead, the
push must let go of it: vpbx1-3 must not wait for the kernel's dead-peer timeout (a user trial
of three nodes: a write took 31 s to reach the live standby).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from sync_harness import free_port, make_node, talk_config

from nonstop.sync.replicator import Replicator

HOSTS = ("vpbx1-1", "vpbx1-2", "vpbx1-3")


class Relay:
    """TCP between ``listen`` and ``target`` on one port; :meth:`die` stops it the way a
    crashed box stops: open connections go silent (nothing passes, nothing is closed) and new
    ones are not accepted."""

    def __init__(self, listen: str, target: str, port: int) -> None:
        self.listen, self.target, self.port = listen, target, port
        self.dead = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, self.listen, self.port)

    async def _accept(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        tr, tw = await asyncio.open_connection(self.target, self.port)
        self.writers += [w, tw]
        for src, dst in ((r, tw), (tr, w)):
            task = asyncio.create_task(self._pipe(src, dst))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while not self.dead.is_set() and (data := await src.read(65536)):
            if self.dead.is_set():
                return  # the box died with these bytes: they never arrive
            dst.write(data)
            await dst.drain()

    def die(self) -> None:
        self.dead.set()
        if self.server is not None:
            self.server.close()

    async def close(self) -> None:
        self.die()
        for t in list(self.tasks):
            t.cancel()
        for w in self.writers:
            w.close()
        for t in list(self.tasks):
            with contextlib.suppress(BaseException):
                await t


async def _wait(pred: object, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if callable(pred) and pred():
            return time.monotonic() - start
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not reached in {timeout} s")


async def test_a_standby_dead_mid_push_holds_up_the_other_standby_no_longer_than_deadtime(
        tmp_path: Path) -> None:
    cfg = talk_config(tmp_path, extra="host vpbx1-3;")
    port = free_port()
    real = {"vpbx1-1": "127.0.0.1", "vpbx1-2": "127.0.0.2", "vpbx1-3": "127.0.0.3"}
    # vpbx1-1 reaches vpbx1-2 through the relay on 127.0.0.4; everyone else directly.
    n1 = make_node(tmp_path, "vpbx1-1", cfg, port, {**real, "vpbx1-2": "127.0.0.4"})
    n2 = make_node(tmp_path, "vpbx1-2", cfg, port, real)
    n3 = make_node(tmp_path, "vpbx1-3", cfg, port, real)
    relay = Relay("127.0.0.4", "127.0.0.2", port)
    await relay.start()
    r1 = Replicator(n1.node, full_scan_interval=3600, serve=False)
    r2 = Replicator(n2.node, full_scan_interval=3600)
    r3 = Replicator(n3.node, full_scan_interval=3600)
    for r in (r2, r3, r1):
        await r.start()
    try:
        r1.set_active(True)
        n1.write("/etc/asterisk/first.conf", "both standbys up\n")
        await _wait(lambda: all(n.path("/etc/asterisk/first.conf").exists() for n in (n2, n3)),
                    10.0)
        relay.die()  # vpbx1-2's box is gone; its session with vpbx1-1 is still open
        n1.write("/etc/asterisk/second.conf", "vpbx1-2 is dead\n")
        # The push meets the dead box first (host-line order), on the session kept from the
        # first write: vpbx1-3 waits behind it until the heartbeats declare vpbx1-2 dead.
        await asyncio.sleep(0.5)
        assert not n3.path("/etc/asterisk/second.conf").exists()
        declared = time.monotonic()
        r1.set_dead(frozenset({"vpbx1-2"}))
        await _wait(lambda: n3.path("/etc/asterisk/second.conf").exists(), 3.0)
        assert time.monotonic() - declared < 3.0
        # Later writes reach the live standby at once; the dead one's names stay dirty.
        n1.write("/etc/asterisk/third.conf", "still without vpbx1-2\n")
        assert await _wait(lambda: n3.path("/etc/asterisk/third.conf").exists(), 2.0) < 2.0
        assert not n2.path("/etc/asterisk/second.conf").exists()
        await _wait(lambda: r1.status()["dirty"] >= 2, 2.0)
    finally:
        for r in (r1, r2, r3):
            await r.stop()
        await relay.close()
        for n in (n1, n2, n3):
            n.node.close()
