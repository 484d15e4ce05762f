"""The page server: read-only (GET/HEAD only), bounded requests, the status document as
``status --json`` prints it, recent history, and metrics that agree with the document."""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import urllib.parse
from pathlib import Path

import pytest
from test_observe_notify import talk_config
from test_observe_recorder import SAMPLE_STATUS

from nonstop.observe.metrics import parse
from nonstop.observe.recorder import Recorder
from nonstop.observe.web import MAX_HEAD, WebServer


async def get(url: str, method: str = "GET", raw: bytes | None = None) -> tuple[int, bytes]:
    u = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    path = u.path + (f"?{u.query}" if u.query else "")
    try:
        writer.write(raw or f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:  # closed while we were still sending (a refused request)
        data = b""
    writer.close()
    if not data:
        return 0, b""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def serving(tmp_path: Path) -> tuple[Recorder, WebServer, str]:
    rec = Recorder(talk_config(tmp_path), "vpbx1-1", tmp_path / "state", metrics=True)
    await rec.start()
    assert rec.metrics is not None
    web = WebServer(("127.0.0.1", 0), rec, rec.metrics, lambda: dict(SAMPLE_STATUS))
    await web.start()
    return rec, web, web.url


async def test_page_documents_and_metrics(tmp_path: Path) -> None:
    rec, web, url = await serving(tmp_path)
    try:
        code, page = await get(url)
        assert code == 200 and b"<script>" in page and b"status.json" in page
        assert b"http://" not in page and b"https://" not in page  # nothing from elsewhere
        assert b"<form" not in page and b"method=" not in page.lower()
        code, body = await get(url + "status.json")
        assert code == 200 and json.loads(body) == SAMPLE_STATUS
        code, body = await get(url + "history.json?after=0")
        records = json.loads(body)["records"]
        assert [r["kind"] for r in records] == ["daemon_start"]
        code, body = await get(url + f"history.json?after={records[-1]['seq']}")
        assert json.loads(body)["records"] == []
        code, body = await get(url + "metrics")
        assert code == 200
        samples = parse(body.decode())[1]
        assert samples[("nonstop_node_status", (("node", "vpbx1-2"), ("status", "dead")))] == 1
        assert samples[("nonstop_node_status", (("node", "vpbx1-2"), ("status", "active")))] == 0
        assert samples[("nonstop_node_last_heard_age_seconds", (("node", "vpbx1-2"),))] == 2.5
        assert samples[("nonstop_link_up", (("link", "eth0"), ("node", "vpbx1-2")))] == 0
        assert samples[("nonstop_link_up", (("link", "eth1"), ("node", "vpbx1-2")))] == 1
        assert samples[("nonstop_packets_sent_total", ())] == 100
        assert samples[("nonstop_packets_dropped_total", (("reason", "bad_auth"),))] == 4
        assert samples[("nonstop_group_holder", (("group", "IPaddr::198.18.0.10"),
                                                  ("node", "vpbx1-1")))] == 1
        assert samples[("nonstop_group_holder", (("group", "IPaddr::198.18.0.10"),
                                                  ("node", "vpbx1-2")))] == 0
        assert samples[("nonstop_group_local_state", (("group", "IPaddr::198.18.0.10"),
                                                       ("state", "held")))] == 1
        assert samples[("nonstop_sync_lag_seconds", ())] == 0.25
        assert samples[("nonstop_sync_pending_hints", ())] == 1
        assert samples[("nonstop_sync_not_replicated_files", ())] == 2
        assert samples[("nonstop_sync_server_changes_received_total", ())] == 5
        assert samples[("nonstop_deadtime_seconds", ())] == 2.0
    finally:
        await web.close()
        await rec.close()


async def test_read_only_and_bounded(tmp_path: Path) -> None:
    rec, web, url = await serving(tmp_path)
    try:
        assert (await get(url, "POST"))[0] == 405
        assert (await get(url, "DELETE"))[0] == 405
        assert (await get(url + "nothing"))[0] == 404
        assert (await get(url + "history.json?after=x"))[0] == 400
        assert (await get(url, raw=b"garbage\r\n\r\n"))[0] == 400
        huge = b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD * 2) + b"\r\n\r\n"
        assert await get(url, raw=huge) == (0, b"")  # closed without an answer
        code, body = await get(url, "HEAD")
        assert code == 200 and body == b""
    finally:
        await web.close()
        await rec.close()


def test_every_metric_is_documented(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[3] / "docs" / "METRICS.md").read_text()
    rec = Recorder(talk_config(tmp_path), "vpbx1-1", tmp_path / "state", metrics=True)
    m = rec.metrics
    assert m is not None
    m.takeover_seconds.labels("g").observe(1)
    for metric in (m.takeovers, m.group_failures, m.action_failures, m.notify_delivered,
                   m.notify_failures, m.events, m.node_changes):
        metric.labels(*["x"] * len(metric.labelnames)).inc()
    m.action_seconds.labels("r", "start").observe(0.1)
    m.notify_pending.labels("p").set(1)
    m.sync_conflicts.inc()
    types = parse(m.render(SAMPLE_STATUS).decode())[0]
    names = {name + ("_total" if kind == "counter" else "") for name, kind in types.items()
             if not name.endswith("_created")}
    missing = sorted(n for n in names if f"`{n}`" not in doc)
    assert not missing, f"not in docs/METRICS.md: {missing}"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
async def test_the_page_counts_initdead_down(tmp_path: Path) -> None:
    """Rendered by a real browser: a peer never heard while comm is not up shows when it will
    be declared dead, as the text form does."""
    st = copy.deepcopy(SAMPLE_STATUS)
    st["comm_up"] = False
    nodes = st["nodes"]
    assert isinstance(nodes, list)
    nodes[1].update(status="init", last_heard_ms_ago=None, dead_in_ms=93_400, links={})
    rec = Recorder(talk_config(tmp_path), "vpbx1-1", tmp_path / "state", metrics=True)
    await rec.start()
    assert rec.metrics is not None
    web = WebServer(("127.0.0.1", 0), rec, rec.metrics, lambda: st)
    await web.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=3000",
            "--dump-dom", web.url, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        dom, _ = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        await web.close()
        await rec.close()
    assert b"never (declared dead in 94 s unless heard)" in dom
    assert b"waiting for peers" in dom
