"""File names (and link targets) that are not UTF-8: a Latin-1 name copied from an old share,
a byte that is no text at all. nonstop stores and sends names as text, so it cannot replicate
them; it says so once per path and replicates everything else. Before, one such name in a
synced directory stopped every scan with a traceback, and with it all replication."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from sync_harness import KEY, free_port, make_node, pair, talk_config
from test_sync_session import synced_view

from nonstop.quick import render_sync
from nonstop.sync.command import BadPath, scopes_for
from nonstop.sync.plan import Op
from nonstop.sync.protocol import Kind, ProtocolError, encode
from nonstop.sync.replicator import Replicator
from nonstop.sync.state import FileState, is_utf8
from nonstop.sync.transport import client_handshake, connect

ODD = (b"caf\xe9-latin1.conf", b"\xff\xfe.conf", b"\x1b[2J\xff-escape.conf")


def _odd_tree(root: Path) -> list[bytes]:
    """Files whose names (or link target) are not UTF-8, beside normal ones; their paths."""
    base = os.fsencode(root / "etc/asterisk")
    made = []
    for name in ODD:
        path = base + b"/" + name
        with open(path, "wb") as f:
            f.write(b"[general]\n")
        made.append(path)
    os.mkdir(base + b"/dir\xff")
    with open(base + b"/dir\xff/inner.conf", "wb") as f:
        f.write(b"x\n")
    made.append(base + b"/dir\xff")
    os.symlink(b"target-\xfe", base + b"/link-to-latin1")
    made.append(base + b"/link-to-latin1")
    return made


def _warned(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "nonstop.sync" and r.getMessage().startswith("not replicated:")]


async def test_they_are_skipped_with_a_warning_and_everything_else_replicates(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "nonstop.sync")
    async with pair(tmp_path) as (n1, n2):
        n1.write("/etc/asterisk/sip.conf", "[general]\n")
        n1.write("/etc/asterisk/ünïcødé-☎.conf", "utf-8 is fine")
        odd = _odd_tree(n1.root)
        assert await n1.sync() == []
        got = synced_view(n2.root)
        assert got["etc/asterisk/sip.conf"][4] == b"[general]\n"
        assert got["etc/asterisk/ünïcødé-☎.conf"][4] == b"utf-8 is fine"
        assert not [k for k in got if not is_utf8(k) or k.endswith("link-to-latin1")]
        warned = _warned(caplog)
        assert len(warned) == len(odd)  # each path once, shown with its bytes escaped
        assert any("caf\\xe9-latin1.conf: its name is not UTF-8" in w for w in warned)
        assert any("link-to-latin1: its link target is not UTF-8" in w for w in warned)
        # Nothing in a name reaches a terminal or a log unescaped.
        assert any("/\\x1b[2J\\xff-escape.conf: its name" in w for w in warned), warned
        assert not [w for w in warned if not w.isprintable()]
        # The next run is quiet about them and still replicates the rest.
        caplog.clear()
        n1.write("/etc/asterisk/later.conf", "later")
        assert await n1.sync() == []
        assert n2.path("/etc/asterisk/later.conf").read_text() == "later"
        assert _warned(caplog) == []
        # Renamed to UTF-8, a file comes in like any other.
        os.rename(odd[0], os.fsencode(n1.path("/etc/asterisk/café-utf8.conf")))
        assert await n1.sync() == []
        assert n2.path("/etc/asterisk/café-utf8.conf").read_text() == "[general]\n"


async def test_a_peer_cannot_send_one(tmp_path: Path) -> None:
    """What a nonstop peer never sends (its scan skips them) is bad remote input from any
    peer: the session is dropped, as for any malformed operation, and the server goes on."""
    async with pair(tmp_path) as (n1, n2):
        chan = await connect("127.0.0.2", n2.node.opts.port)
        await client_handshake(chan, KEY.encode(), "vpbx1", "vpbx1-1", "vpbx1-2")
        state = FileState("reg", 0o644, 0, 0, 1, 0, "d" * 32)
        op = Op("put", "/etc/asterisk/caf\udce9.conf", None, state)
        # As a forger would write it: our own encoder cannot (ensure_ascii=False, then UTF-8).
        chan.send(encode(Kind.OFFER, json.dumps({"b": 0, "ops": [op.to_wire()]}).encode()))
        with pytest.raises(ConnectionError):
            await chan.expect(Kind.VERDICT)
        await chan.close()
        assert any("ended: operation name is not UTF-8" in line for line in n2.log), n2.log
        n1.write("/etc/asterisk/sip.conf", "[general]\n")  # the server still serves
        assert await n1.sync() == []
        assert n2.path("/etc/asterisk/sip.conf").read_text() == "[general]\n"
    wire = json.loads(json.dumps(FileState("lnk", 0o777, 0, 0, target="t\udcfe").to_wire()))
    with pytest.raises(ProtocolError):
        FileState.from_wire(wire)


def test_a_path_on_the_command_line_is_a_clear_error() -> None:
    with pytest.raises(BadPath, match=r"caf\\xe9: the name is not UTF-8"):
        scopes_for([os.fsdecode(b"/etc/asterisk/caf\xe9")], True)
    assert scopes_for(["/etc/asterisk/ünïcødé"], True) == [("/etc/asterisk/ünïcødé", True)]


async def test_the_replicator_goes_on_beside_one_and_status_names_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """inotify reports the odd name too: no hint is made of it, and what changes next to it
    still reaches the standby within the usual time. `nonstop status` names what the last full
    scan left out, and forgets a file once it is renamed."""
    caplog.set_level(logging.WARNING, "nonstop.sync")
    cfg = talk_config(tmp_path)
    port = free_port()
    addrs = {"vpbx1-1": "127.0.0.1", "vpbx1-2": "127.0.0.2"}
    n1, n2 = make_node(tmp_path, "vpbx1-1", cfg, port, addrs), make_node(tmp_path, "vpbx1-2",
                                                                         cfg, port, addrs)
    r1 = Replicator(n1.node, full_scan_interval=0.3)
    r2 = Replicator(n2.node, full_scan_interval=3600)
    await r1.start()
    await r2.start()

    async def until(pred: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 10.0
        while not pred():
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.01)

    def skipped() -> dict[str, Any]:
        return cast(dict[str, Any], r1.status().get("not_replicated") or {"count": 0})

    try:
        r1.set_active(True)
        await until(lambda: r1.status()["syncs"] >= 1)
        assert skipped()["count"] == 0
        odd = _odd_tree(n1.root)
        n1.write("/etc/asterisk/extensions.conf", "[default]\n")
        target = n2.path("/etc/asterisk/extensions.conf")
        await until(target.exists)
        assert target.read_text() == "[default]\n"
        assert r1.status()["last_error"] is None
        assert _warned(caplog)
        await until(lambda: skipped()["count"] == len(odd))
        assert any(p.endswith("caf\\xe9-latin1.conf") for p in skipped()["paths"])
        text = "\n".join(render_sync(r1.status()))
        assert "not replicated, name not UTF-8 (rename to replicate): " in text
        assert "caf\\xe9-latin1.conf" in text
        os.rename(odd[0], os.fsencode(n1.path("/etc/asterisk/renamed.conf")))
        await until(lambda: skipped()["count"] == len(odd) - 1)
        await until(n2.path("/etc/asterisk/renamed.conf").exists)
    finally:
        for r in (r1, r2):
            await r.stop()
        n1.node.close()
        n2.node.close()


async def test_an_excluded_one_is_left_out_without_a_word(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An editor's swap file and backup of a Latin-1 name (``exclude *~ .*``), and what an
    excluded directory holds, are excluded names like any other: no warning, nothing counted
    in the daemon's status. One that would be replicated is still named."""
    caplog.set_level(logging.WARNING, "nonstop.sync")

    def excluded(base: bytes, tag: bytes) -> None:
        for name in (b".caf\xe9%s.conf.swp", b"caf\xe9%s.conf~"):
            with open(base + b"/" + name % tag, "wb") as f:
                f.write(b"x\n")
        os.mkdir(base + b"/.d\xff" + tag)
        with open(base + b"/.d\xff" + tag + b"/inner\xff.conf", "wb") as f:
            f.write(b"x\n")
        os.mkdir(base + b"/old\xff%s~" % tag)

    def warned() -> list[str]:
        return [w.split(": ")[1] for w in _warned(caplog)]

    async with pair(tmp_path) as (n1, _n2):
        base = os.fsencode(n1.root / "etc/asterisk")
        excluded(base, b"")
        n1.write("/etc/asterisk/sip.conf", "[general]\n")
        assert await n1.sync() == []
        assert warned() == []
        with open(base + b"/caf\xe9.conf", "wb") as f:
            f.write(b"x\n")
        assert await n1.sync() == []
        assert warned() == [f"{n1.root}/etc/asterisk/caf\\xe9.conf"]
        # The daemon: inotify's events for them, and its status
        caplog.clear()
        r = Replicator(n1.node, full_scan_interval=3600)
        await r.start()
        try:
            r.set_active(True)
            deadline = time.monotonic() + 10.0
            while r.status()["syncs"] < 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            excluded(base, b"-2")
            os.mkdir(base + b"/new\xff")  # after them: its event comes after theirs
            while not warned():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert warned() == [f"{n1.root}/etc/asterisk/new\\xff"]
            # its start's full scan named caf\xe9.conf again
            assert sorted(r.status()["not_replicated"]["paths"]) == [
                f"{n1.root}/etc/asterisk/caf\\xe9.conf", f"{n1.root}/etc/asterisk/new\\xff"]
        finally:
            await r.stop()
