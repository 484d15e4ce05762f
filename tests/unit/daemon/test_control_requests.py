"""The control socket's request parsing: any line gets a reply, never a traceback (issue 9)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nonstop.api import ControlServer, parse_request, request


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
