"""The demo's page relay (nonstop.demo.pagebridge), as the demo runs it: two relay processes
joined by a Unix socket, in front of a node's real page server. The demo prints these URLs
while it runs (issue 14: "the demo prints where its page is"); this checks that what it prints
serves the page, the status document and the metrics, and says so when the node is off."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nonstop.config.loader import load_config_dir
from nonstop.observe.recorder import Recorder
from nonstop.observe.web import WebServer
from nonstop.talk import copy_talk

STATUS: dict[str, object] = {
    "version": 1, "node": "vpbx1-1", "cluster": "linux-ha", "status": "active",
    "comm_up": True, "pid": 1, "generation": 7, "uptime_s": 12.5,
    "timing": {"keepalive_ms": 200, "deadtime_ms": 2000, "warntime_ms": 1000,
               "initdead_ms": 10000},
    "nodes": [{"name": "vpbx1-1", "local": True, "status": "active", "last_heard_ms_ago": 0,
               "deadtime_ms": 2000, "generation": None, "links": {}}],
    "groups": [], "sync": None,
    "packets": {"sent": 100, "received": 210, "send_errors": 0, "kernel_dropped": 0,
                "rexmit": {}, "dropped": {}},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(url: str, method: str = "GET") -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Relays:
    def __init__(self, sock: Path, node_port: int, host_port: int) -> None:
        argv = [sys.executable, "-m", "nonstop.demo.pagebridge"]
        self.procs = [
            subprocess.Popen([*argv, "node", str(sock), str(node_port)]),
            subprocess.Popen([*argv, "host", str(sock), str(host_port)]),
        ]

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@pytest.fixture
def relays(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(the node's page port, the relayed port on this machine's localhost)."""
    node_port, host_port = free_port(), free_port()
    r = Relays(tmp_path / "page.sock", node_port, host_port)
    try:
        yield node_port, host_port
    finally:
        r.stop()


async def wait_answer(url: str, status: int, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            code, body = await asyncio.to_thread(get, url)
            if code == status:
                return body
        except (OSError, urllib.error.URLError):
            pass
        assert time.monotonic() < deadline, f"no {status} from {url}"
        await asyncio.sleep(0.05)


async def test_the_printed_url_serves_the_node_page(tmp_path: Path,
                                                    relays: tuple[int, int]) -> None:
    node_port, host_port = relays
    url = f"http://127.0.0.1:{host_port}/"
    # Before the node's daemon listens, the relay says so instead of hanging.
    body = await wait_answer(url, 502)
    assert b"powered off or its daemon is not running" in body

    copy_talk(tmp_path / "talk")
    cfg = load_config_dir(str(tmp_path / "talk" / "ha.d"), "vpbx1-1")
    rec = Recorder(cfg, "vpbx1-1", tmp_path / "state", metrics=True)
    await rec.start()
    assert rec.metrics is not None
    web = WebServer(("127.0.0.1", node_port), rec, rec.metrics, lambda: dict(STATUS))
    await web.start()
    try:
        page = await wait_answer(url, 200)
        assert b"status.json" in page and b"<script>" in page
        assert json.loads(await wait_answer(url + "status.json", 200)) == STATUS
        records = json.loads(await wait_answer(url + "history.json?after=0", 200))["records"]
        assert [r["kind"] for r in records] == ["daemon_start"]
        metrics = await wait_answer(url + "metrics", 200)
        assert b'nonstop_node_status{node="vpbx1-1",status="active"} 1.0' in metrics
        code, _ = await asyncio.to_thread(get, url, "POST")
        assert code == 405  # still read-only through the relay
    finally:
        await web.close()
        await rec.close()
    body = await wait_answer(url, 502)  # the node went off: said, not hung
    assert b"powered off" in body

