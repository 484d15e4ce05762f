"""respawn beside the real Heartbeat 3.0.6: the same clients, the same log lines, the same end."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from nonstop.lab import Lab, wait_for
from nonstop.lab.box import HEARTBEAT_BINARY

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not Path(HEARTBEAT_BINARY).exists(),
                                 reason="heartbeat 3.0.6 not installed")]

COMMANDS = ('/bin/sh -c "kill -9 $$"', '/bin/sh -c "sleep 0.3; exit 100"')

OURS = """
import asyncio, logging, sys
from nonstop.resources.respawn import Respawner, RespawnSpec
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(levelname)s: %(message)s")
for level, name in ((logging.WARNING, "WARN"), (logging.CRITICAL, "CRIT")):
    logging.addLevelName(level, name)
log = logging.getLogger("respawn")
async def main():
    clients = [Respawner(RespawnSpec("nobody", c), logger=log) for c in sys.argv[1:]]
    print([str(s.value) for s in await asyncio.gather(*(c.run() for c in clients))], flush=True)
asyncio.run(main())
"""

LINE = re.compile(r"(?P<level>info|INFO|WARN|ERROR): (?P<text>(?:Starting|Managed|Respawning "
                  r"client|Client) .*)$", re.MULTILINE)


def client_lines(log: str, command: str) -> list[str]:
    """The lines about one client, in order, with process ids as P."""
    out = []
    for m in LINE.finditer(log):
        text = m["text"]
        if command in text:
            text = re.sub(r"process \d+", "process P", re.sub(r"\(pid \d+\)", "(pid P)", text))
            out.append(f"{m['level'].lower()}: {text}")
    return out


def test_same_clients_same_lines_as_heartbeat(make_lab: Callable[[Sequence[str]], Lab],
                                              tmp_path: Path) -> None:
    lab = make_lab(("n1", "n2"))
    config = tmp_path / "ha.d"
    config.mkdir()
    respawns = "".join(f"respawn nobody {c}\n" for c in COMMANDS)
    (config / "ha.cf").write_text(
        "keepalive 200ms\ndeadtime 2\ninitdead 4\nbcast eth0\nnode n1\n" + respawns
        + "use_logd no\nlogfile /var/log/ha-log\ncrm off\nauto_failback off\n")
    (config / "authkeys").write_text("auth 1\n1 crc\n")
    (config / "haresources").write_text("")
    lab.start_heartbeat("n1", config)
    hb_log = lab.host_path("n1", "/var/log/ha-log")
    ours = lab.spawn("n2", [sys.executable, "-c", OURS, *COMMANDS])

    ours.wait_for_log(r"\['gave up', 'done'\]", 40)
    wait_for(lambda: hb_log.exists() and "respawning too fast" in hb_log.read_text(), 40,
             what="Heartbeat to give the client up")
    theirs = hb_log.read_text()
    mine = ours.read_log()
    for command in COMMANDS:
        assert client_lines(mine, command) == client_lines(theirs, command), command
    killed = client_lines(theirs, COMMANDS[0])
    assert killed[-1] == f'error: Client {COMMANDS[0]} "respawning too fast"'
    assert sum(line.startswith("info: Starting child client") for line in killed) == 11
    assert client_lines(theirs, COMMANDS[1]) == [
        f'info: Starting child client "{COMMANDS[1]}" (65534,65534)',
        f'info: Starting "{COMMANDS[1]}" as uid 65534  gid 65534 (pid P)',
        f"warn: Managed {COMMANDS[1]} process P exited with return code 100.",
    ]
