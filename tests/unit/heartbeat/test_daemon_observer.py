"""The daemon's wiring of the recorder (issue 14): membership events reach the history from the
heartbeat path, and a command through the control socket is recorded with the kernel's word
for who asked (SO_PEERCRED), whatever the client claims."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from daemon_harness import talk_daemon

from nonstop.api import request
from nonstop.heartbeat.events import NodeDied, Transmit
from nonstop.observe.store import history_dir, read_records


async def test_heartbeat_events_and_commands_reach_the_history(tmp_path: Path) -> None:
    daemon, _cfg = talk_daemon(tmp_path)
    daemon.state_dir.mkdir(parents=True, exist_ok=True)
    await daemon.api.start()
    await daemon.observer.start(daemon.status)
    try:
        daemon._handle([Transmit(b"status message", "status"),
                        NodeDied("vpbx1-2", "timeout", 2004, 2000)], daemon._now())
        reply: dict[str, Any] = await asyncio.to_thread(
            request, daemon.state_dir, "standby", which="all", peer="someone else")
        assert reply["ok"] is False  # no haresources here: refused, but recorded as asked
    finally:
        await daemon.observer.close()
        await daemon.api.close()
    records = read_records(history_dir(daemon.state_dir))
    kinds = [r.kind for r in records]
    assert kinds == ["daemon_start", "node_dead", "command", "daemon_stop"]
    dead, command = records[1], records[2]
    assert dead.node == "vpbx1-2" and "2004 ms" in dead.reason
    assert command.reason == "standby all requested"
    who = str(command.data["who"])
    assert who.startswith(f"uid {os.getuid()} (") and f"pid {os.getpid()} (" in who
