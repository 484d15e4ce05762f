"""The control socket's request parsing: any line gets a reply, never a traceback (issue 9)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nonstop.api import ApiError, ControlServer, parse_request, request


@pytest.mark.parametrize("line", [b"[" * 20000 + b"]" * 20000,
                                  b'{"cmd": "status", "x": ' + b"[" * 20000 + b"]" * 20000 + b"}",
                                  b'{"cmd": "status", "which": {"a": 1}}',
                                  b'{"cmd": 3}', b"not json", b"\xff\xfe"])
def test_bad_requests_are_value_errors(line: bytes) -> None:
    with pytest.raises(ValueError):
        parse_request(line)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_any_line_is_a_request_or_a_value_error(line: bytes) -> None:
    try:
        req = parse_request(line)
    except ValueError:
        return
    assert isinstance(req["cmd"], str)


async def test_a_20000_deep_request_gets_an_error_reply(tmp_path: Path) -> None:
    async def handler(req: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "cmd": req["cmd"]}

    server = ControlServer(tmp_path, handler)
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        writer.write(b'{"cmd": "status", "x": ' + b"[" * 20000 + b"]" * 20000 + b"}\n")
        reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
        writer.close()
        assert reply == {"ok": False, "error": "request nested too deeply"}
        assert await asyncio.to_thread(request, tmp_path, "status") == {"ok": True,
                                                                         "cmd": "status"}
    finally:
        await server.close()


async def test_a_request_read_after_its_client_gave_up_is_not_carried_out(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    done: list[str] = []

    async def handler(req: dict[str, Any]) -> dict[str, Any]:
        done.append(req["cmd"])
        return {"ok": True}

    server = ControlServer(tmp_path, handler)
    await server.start()

    async def send(req: dict[str, Any]) -> bytes:
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        writer.write(json.dumps(req).encode() + b"\n")
        reply = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return reply

    try:
        late = {"cmd": "standby", "which": "all", "reply_by": time.monotonic() - 2.0}
        assert await send(late) == b""  # no reply: its client is gone
        assert done == []
        assert "dropped a 'standby' request" in caplog.text and "nothing was done" in caplog.text
        for reply_by in (time.monotonic() + 10, None, "soon", 1e400, 10**400):
            assert json.loads(await send({"cmd": "standby", "reply_by": reply_by})) == {
                "ok": True}
        assert done == ["standby"] * 5
    finally:
        await server.close()


_STOPPABLE_SERVER = """
import asyncio, sys
from pathlib import Path
from nonstop.api import ControlServer

async def main() -> None:
    async def handler(req):
        (Path(sys.argv[1]) / f"did-{req['cmd']}").touch()
        return {"ok": True}
    server = ControlServer(Path(sys.argv[1]), handler)
    await server.start()
    print("serving", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_a_command_that_timed_out_on_a_stopped_daemon_stays_undone(tmp_path: Path) -> None:
    """The daemon frozen (SIGSTOP) while `nonstop standby` waits: the command says it failed,
    and the daemon, thawed, must not hand the group over minutes later."""
    proc = subprocess.Popen([sys.executable, "-c", _STOPPABLE_SERVER, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "serving\n"
        proc.send_signal(signal.SIGSTOP)
        with pytest.raises(ApiError, match=r"did not answer within 0.5 s .* 'standby' request "
                                           r"was carried out only if `nonstop history` shows"):
            request(tmp_path, "standby", timeout=0.5, which="all")
        proc.send_signal(signal.SIGCONT)
        assert request(tmp_path, "takeover", timeout=10) == {"ok": True}  # after the late one
        assert sorted(p.name for p in tmp_path.glob("did-*")) == ["did-takeover"]
    finally:
        proc.kill()
        proc.wait()
