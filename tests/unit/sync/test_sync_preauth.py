"""The sync port before authentication (issue 9): small frames, a deadline, connection limits,
escaped log lines, and one line (no traceback) when the process runs out of descriptors.

Real TLS servers on 127.0.0.x, as the other sync tests run them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sync_harness import free_port, pair

from nonstop.sync import protocol as p
from nonstop.sync import transport
from nonstop.sync.limits import Limits
from nonstop.sync.protocol import Kind
from nonstop.sync.transport import client_context

HERE = Path(__file__).resolve().parent


async def stranger(port: int, host: str = "127.0.0.2", local: str = "127.0.0.1"
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port, ssl=client_context(),
                                         server_hostname=None, local_addr=(local, 0))


async def closed_by_server(reader: asyncio.StreamReader, within: float = 5.0) -> bool:
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except (ConnectionError, OSError):
        pass
    return True


def test_limits_per_source_and_strangers_pushed_out_oldest_first() -> None:
    lim = Limits(per_source=2, max_unauthenticated=3, max_connections=4)
    a1, _, _ = lim.admit("a")
    a2, _, _ = lim.admit("a")
    assert a1 and a2
    refused, _, why = lim.admit("a")
    assert refused is None and "one address" in why
    b1, evict, _ = lim.admit("b")
    assert b1 and evict is None
    a2.authenticated = True  # proved the key: never pushed out
    c1, evict, _ = lim.admit("c")
    assert c1 and evict is None  # 3 strangers: a1, b1, c1
    d1, evict, _ = lim.admit("d")
    assert d1 and evict is a1  # the oldest stranger makes room
    e1, evict, _ = lim.admit("e")
    assert e1 and evict is b1
    assert len(lim.slots) == 4 and lim.by_source == {"a": 1, "c": 1, "d": 1, "e": 1}
    for s in list(lim.slots):
        lim.release(s)
        lim.release(s)
    assert lim.slots == [] and lim.by_source == {}


async def test_an_oversized_first_frame_is_refused_unread(tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        assert n2.server is not None
        reader, writer = await stranger(n2.server.port)
        # The attack: an 8 MB HELLO. Only its header is read.
        writer.write(p.HEADER.pack(p.MAX_FRAME, int(Kind.HELLO)) + b"{" * 65536)
        assert await closed_by_server(reader)
        writer.close()
        assert n2.server.stats["refused"] == 1
        assert any(f"over the limit of {p.PREAUTH_MAX_FRAME}" in line for line in n2.log)
        assert await n1.sync() == []  # the real peer still gets in


async def test_a_silent_client_is_dropped_at_the_preauth_deadline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "PREAUTH_TIMEOUT", 0.5)
    async with pair(tmp_path) as (_n1, n2):
        assert n2.server is not None
        reader, writer = await stranger(n2.server.port)
        writer.write(p.HEADER.pack(100, int(Kind.HELLO)) + b"{")  # a frame that never ends
        assert await closed_by_server(reader, within=5.0)
        writer.close()
        assert any("did not authenticate within" in line for line in n2.log)


async def test_a_handshake_that_never_comes_says_why_in_words(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A bare TimeoutError has no text: the log said 'TLS handshake with X failed: '."""
    from nonstop.sync import limits

    monkeypatch.setattr(limits, "TLS_HANDSHAKE_TIMEOUT", 0.3)
    caplog.set_level(logging.WARNING, logger=limits.log.name)
    async with pair(tmp_path) as (_n1, n2):
        assert n2.server is not None
        reader, writer = await asyncio.open_connection("127.0.0.2", n2.server.port,
                                                       local_addr=("127.0.0.1", 0))
        assert await closed_by_server(reader, within=5.0)  # no ClientHello: dropped
        writer.close()
    said = [r.getMessage() for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("sync: TLS handshake with 127.0.0.1 failed: ")
    assert "0.3 seconds" in said[0]
    # The same failure as a bare TimeoutError (no text), as a lossy link gave it:
    assert limits.handshake_failure(TimeoutError()) == "no handshake within 0.3 s"
    assert limits.handshake_failure(ConnectionResetError()) == "ConnectionResetError"


async def test_refused_fields_cannot_forge_log_lines(tmp_path: Path) -> None:
    async with pair(tmp_path) as (_n1, n2):
        assert n2.server is not None
        reader, writer = await stranger(n2.server.port)
        forged = "x\nnonstop[1]: 2026/01/01_00:00:00 WARN: node vpbx1-1: is dead\x1b[2J"
        writer.write(p.encode_obj(Kind.HELLO, {"v": 1, "group": "vpbx1", "node": forged,
                                               "to": "vpbx1-2", "nonce": "00"}))
        assert await closed_by_server(reader)
        writer.close()
        line = next(line for line in n2.log if "WARN: node vpbx1-1" in line)
        assert "\n" not in line and "\x1b" not in line and "\\n" in line


async def test_idle_strangers_cannot_lock_a_peer_out(tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        assert n2.server is not None
        port = n2.server.port
        held = []

        async def hold(local: str) -> None:
            with contextlib.suppress(ConnectionError, OSError):  # refused: closed in TLS
                held.append(await stranger(port, local=local))

        # 10 connections from one stranger address: 8 admitted, 2 refused at once.
        for _ in range(10):
            await hold("127.0.0.9")
        # 60 more from 30 other addresses: the oldest strangers are pushed out.
        for i in range(60):
            await hold(f"127.0.1.{i // 2 + 1}")
        for _ in range(100):
            if n2.server.stats.get("refused_limit", 0) >= 2:
                break
            await asyncio.sleep(0.05)
        assert n2.server.stats["refused_limit"] == 2
        assert n2.server.stats["evicted_unauthenticated"] >= 30
        lim = n2.server._server.limits  # type: ignore[union-attr]
        assert len(lim.slots) <= lim.max_unauthenticated
        assert await n1.sync() == []  # the real peer gets in past them
        for _, w in held:
            w.close()


def test_out_of_descriptors_is_one_line_and_no_traceback(tmp_path: Path) -> None:
    """A server limited to 64 open files, 150 connections: accepting pauses, says so once
    (it may recover and pause again within the 4 s: the warning is not repeated for a minute)."""
    port = free_port()
    script = textwrap.dedent(f"""
        import asyncio, logging, resource, sys
        from pathlib import Path
        sys.path.insert(0, {str(HERE)!r})
        from sync_harness import make_node, talk_config
        from nonstop.sync import limits
        from nonstop.sync.server import SyncServer
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        limits.MAX_UNAUTHENTICATED = limits.MAX_CONNECTIONS = 200  # reach the fd limit first
        limits.PER_SOURCE = 200
        async def main():
            tmp = Path({str(tmp_path)!r})
            node = make_node(tmp, "vpbx1-2", talk_config(tmp), {port},
                             {{"vpbx1-1": "127.0.0.1", "vpbx1-2": "127.0.0.2"}})
            server = SyncServer(node.node)
            await server.start()
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
            print("ready", flush=True)
            await asyncio.sleep(4)
            print("stats", server.stats, flush=True)
            await server.close()  # as the daemon does at exit: no handshake left pending
        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        import socket

        socks = []
        for _ in range(150):
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect(("127.0.0.2", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        out, err = proc.communicate(timeout=30)
        for s in socks:
            s.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "accept_paused" in out, out + err
    assert err.count("cannot accept connections") == 1, err
    assert "Traceback" not in err, err


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "0.0.0.0"])
def test_the_listening_socket_follows_the_address_family(host: str) -> None:
    from nonstop.sync.limits import listen

    with listen(host, 0) as sock:
        assert sock.getsockname()[0] == host
