"""kamailio as the cluster's managed "asterisk" service (Debian 12 ships no Asterisk).

:func:`write_asterisk_service` writes, for one node, a kamailio.cfg that listens on the service
address (the VIP) and answers OPTIONS with ``200 OK <node>`` plus an ``X-Lab-Node: <node>`` header,
so a client can tell who answered; and an LSB-style init script ``asterisk`` (start, stop, status,
restart) that Heartbeat's ResourceManager or nonstop can run from resource.d or an init.d directory.

The script is per node: it names the node and its state directory (config, pid file, log).
kamailio must bind the VIP, which exists only after the IPaddr resource ran, so the script belongs
after the address in the resource group, as in the talk's ``haresources`` line.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from nonstop.errors import InvalidValue

KAMAILIO = "/usr/sbin/kamailio"
MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"
NODE_HEADER = "X-Lab-Node"
SIP_PORT = 5060


@dataclass(frozen=True)
class AsteriskService:
    """Where :func:`write_asterisk_service` put a node's service files."""

    script: Path
    config: Path
    pidfile: Path
    log: Path


def kamailio_config(*, node: str, listen_ip: str, port: int = SIP_PORT,
                    modules: str = MODULES) -> str:
    """The text of a minimal kamailio.cfg: UDP on ``listen_ip:port``; OPTIONS get ``200 OK
    <node>`` with a ``X-Lab-Node`` header; other requests get 501 (ACKs nothing)."""
    if not node or any(c in node for c in '"\\\r\n '):
        raise InvalidValue(f"node name {node!r} cannot go into a SIP reason phrase")
    return f"""#!KAMAILIO
# lab stand-in for Asterisk on {node}: only answers OPTIONS, naming the node.
debug=1
log_stderror=yes
fork=yes
children=1
disable_tcp=yes
auto_aliases=no
listen=udp:{listen_ip}:{port}
mpath="{modules}"
loadmodule "sl.so"
loadmodule "textops.so"

request_route {{
    if (is_method("OPTIONS")) {{
        append_to_reply("{NODE_HEADER}: {node}\\r\\n");
        sl_send_reply("200", "OK {node}");
        exit;
    }}
    if (is_method("ACK")) {{
        exit;
    }}
    sl_send_reply("501", "Not Implemented");
}}
"""


def init_script(*, node: str, config: Path, pidfile: Path, log: Path,
                kamailio: str = KAMAILIO) -> str:
    """An LSB init script running kamailio in the background with ``config``.

    start waits for the pid file in 10 ms steps (up to 5 s), stop for the process to end in
    2 ms steps (up to 10 s): a hand-off's clients wait for the stop, and 50 ms steps added up
    to 50 ms to every measured switchover, 10 ms steps up to 10 ms (5 on average), the same
    for every system that runs this script.

    start: 0 when running afterwards (also when it already was); stop: 0 when stopped afterwards
    (also when it already was); status: prints "... is running" (0) or "... is not running" (3),
    the words Heartbeat's ResourceManager looks for.
    """
    q = shlex.quote
    return f"""#!/bin/sh
# asterisk: kamailio standing in for Asterisk on lab node {node}.
NAME="asterisk (kamailio on {node})"
KAMAILIO={q(kamailio)}
CFG={q(str(config))}
PIDFILE={q(str(pidfile))}
LOG={q(str(log))}

pid_of() {{
    [ -f "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE" 2>/dev/null)
    case "$pid" in ''|*[!0-9]*) return 1;; esac
    # A stale pid file may name a pid reused by another program: check the name too.
    [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = kamailio ] || return 1
    echo "$pid"
}}

start() {{
    pid_of >/dev/null && return 0
    rm -f "$PIDFILE"
    # kamailio's own stdio goes to the log: the caller's pipes must not stay open.
    "$KAMAILIO" -f "$CFG" -P "$PIDFILE" -m 16 -M 4 </dev/null >>"$LOG" 2>&1 || return 1
    i=0
    while [ $i -lt 500 ]; do
        pid_of >/dev/null && return 0
        sleep 0.01
        i=$((i + 1))
    done
    return 1
}}

stop() {{
    pid=$(pid_of) || {{ rm -f "$PIDFILE"; return 0; }}
    kill -TERM "$pid" 2>/dev/null
    i=0
    while [ $i -lt 5000 ]; do
        kill -0 "$pid" 2>/dev/null || {{ rm -f "$PIDFILE"; return 0; }}
        sleep 0.002
        i=$((i + 1))
    done
    # kamailio's workers share the main process's group: kill them all.
    kill -KILL -- "-$pid" 2>/dev/null
    kill -KILL "$pid" 2>/dev/null
    rm -f "$PIDFILE"
    return 0
}}

case "$1" in
    start) start || {{ echo "$NAME failed to start, see $LOG"; exit 1; }} ;;
    stop) stop ;;
    restart|force-reload) stop; start || exit 1 ;;
    status)
        if pid_of >/dev/null; then echo "$NAME is running"; exit 0; fi
        echo "$NAME is not running"
        exit 3
        ;;
    *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
exit 0
"""


def write_asterisk_service(script_dir: Path, state_dir: Path, *, node: str, listen_ip: str,
                           port: int = SIP_PORT, name: str = "asterisk") -> AsteriskService:
    """Write ``script_dir/<name>`` (the init script) and kamailio.cfg into ``state_dir``.

    ``state_dir`` also receives the pid file and kamailio's log; use a per-node directory that
    the node's programs can see (the lab's host directory is visible in nodes and boxes).
    """
    script_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    service = AsteriskService(
        script=script_dir / name,
        config=state_dir / "kamailio.cfg",
        pidfile=state_dir / "kamailio.pid",
        log=state_dir / "kamailio.log",
    )
    service.config.write_text(kamailio_config(node=node, listen_ip=listen_ip, port=port))
    service.script.write_text(init_script(node=node, config=service.config,
                                          pidfile=service.pidfile, log=service.log))
    service.script.chmod(0o755)
    return service
