"""A STONITH device for lab boxes: a power switch, and a real external plugin of cluster-glue.

cluster-glue's ``stonith -t external/<name>`` runs ``/usr/lib/stonith/plugins/external/<name>``
with the action as its argument and the device's parameters in its environment. Our plugin,
``nonstop-lab``, talks to the lab's power switch the way plugins for real power switches talk to
theirs over the network: it connects to the switch's Unix socket and asks ``off <node>``.

The switch (:class:`PowerSwitch`) runs in the test process, outside every box. That matters: a
fencing program usually runs inside a box (a Heartbeat node), whose own PID namespace cannot see,
let alone signal, another box's processes. The switch answers ``ok ...`` once the box is off
(the lab kills its init; the kernel kills everything in the box's PID namespace), and
``error ...`` otherwise; a box that is already off counts as fenced, as with real power. ``reset``
and ``off`` both leave the box off (the test starts it again); ``on`` is refused.

Parameters: ``hostlist`` (the nodes it controls, blanks or commas between them) and ``switch``
(the socket). The plugin directory is bound over cluster-glue's (:func:`stonith_binds`) only in
the mount namespaces of the lab programs that fence.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nonstop.lab.errors import LabError

PLUGIN_NAME = "nonstop-lab"
PLUGIN_TYPE = f"external/{PLUGIN_NAME}"
EXTERNAL_PLUGIN_DIR = "/usr/lib/stonith/plugins/external"
REQUEST_CAP = 256  # bytes of one request line
CLIENT_TIMEOUT_S = 30.0

_PLUGIN = r'''#!{python} -I
"""nonstop lab STONITH plugin (cluster-glue external plugin framework): asks the lab's power
switch to power a box off. Installed by nonstop.lab.fence; parameters: hostlist, switch."""
import os
import socket
import sys

HOSTS = os.environ.get("hostlist", "").replace(",", " ").lower().split()
SWITCH = os.environ.get("switch", "")
XML = """<parameters>
<parameter name="hostlist" unique="1" required="1">
<content type="string" />
<shortdesc lang="en">Nodes this device controls</shortdesc>
<longdesc lang="en">Lab node names, separated by blanks or commas.</longdesc>
</parameter>
<parameter name="switch" unique="0" required="1">
<content type="string" />
<shortdesc lang="en">The lab power switch</shortdesc>
<longdesc lang="en">Path of the Unix socket of the lab's power switch.</longdesc>
</parameter>
</parameters>"""
INFO = {{
    "getinfo-devid": "nonstop lab box power",
    "getinfo-devname": "nonstop lab box power switch",
    "getinfo-devdescr": "Powers a nonstop lab box off through the lab's power switch.",
    "getinfo-devurl": "https://example.invalid/nonstop/lab",
    "getinfo-xml": XML,
}}


def ask(request):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout({timeout})
        sock.connect(SWITCH)
        sock.sendall(request.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(1024)
            if not chunk:
                break
            reply += chunk
    return reply.decode(errors="replace").strip()


def main(argv):
    action = argv[1] if len(argv) > 1 else ""
    if action == "gethosts":
        print("\n".join(HOSTS))
        return 0
    if action == "getconfignames":
        print("hostlist\nswitch")
        return 0
    if action in INFO:
        print(INFO[action])
        return 0
    if action == "on":
        print("nonstop-lab: cannot power a box on; the lab starts boxes", file=sys.stderr)
        return 1
    if action not in ("off", "reset", "status"):
        return 1
    if action != "status":
        node = argv[2].lower() if len(argv) > 2 else ""
        if node not in HOSTS:
            print(f"nonstop-lab: {{node!r}} is not in hostlist {{HOSTS}}", file=sys.stderr)
            return 1
    try:
        reply = ask("status" if action == "status" else f"off {{node}}")
    except OSError as exc:
        print(f"nonstop-lab: power switch {{SWITCH!r}}: {{exc}}", file=sys.stderr)
        return 1
    ok = reply.startswith("ok")
    print(f"nonstop-lab: {{reply}}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


sys.exit(main(sys.argv))
'''


def install_plugin(plugin_dir: Path, *, python: str = sys.executable) -> Path:
    """Write the plugin into ``plugin_dir`` (mode 755: cluster-glue ignores a plugin that is
    writable by group or others); returns its path."""
    plugin_dir.mkdir(parents=True, exist_ok=True)
    path = plugin_dir / PLUGIN_NAME
    path.write_text(_PLUGIN.format(python=python, timeout=CLIENT_TIMEOUT_S))
    path.chmod(0o755)
    return path


def stonith_binds(plugin_dir: Path) -> dict[str, Path]:
    """The bind (target -> source) that shows ``plugin_dir`` as cluster-glue's external plugin
    directory, for ``Lab.spawn``/``Lab.run``/``Lab.start_box``."""
    return {EXTERNAL_PLUGIN_DIR: plugin_dir}


class PowerSwitch:
    """The lab's power switch: a Unix-socket server thread that powers nodes off.

    One request per connection, one line each way: ``off <node>`` -> ``ok <what happened>`` or
    ``error <why>``; ``status`` -> ``ok``. ``power_off(node)`` does the work and returns what
    happened, raising LabError when it cannot.
    """

    def __init__(self, path: Path, power_off: Callable[[str], str]) -> None:
        self.path = path
        self._power_off = power_off
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.requests: list[str] = []

    def start(self) -> PowerSwitch:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        sock.listen(8)
        sock.settimeout(0.1)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="lab-power-switch",
                                        daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5.0)
                try:
                    reply = self._answer(self._read_line(conn))
                    conn.sendall(reply.encode() + b"\n")
                except OSError:
                    continue

    @staticmethod
    def _read_line(conn: socket.socket) -> str:
        data = b""
        while b"\n" not in data and len(data) < REQUEST_CAP:
            chunk = conn.recv(REQUEST_CAP)
            if not chunk:
                break
            data += chunk
        return data.split(b"\n", 1)[0].decode(errors="replace").strip()

    def _answer(self, request: str) -> str:
        self.requests.append(request)
        words = request.split()
        if words == ["status"]:
            return "ok"
        if len(words) == 2 and words[0] == "off":
            try:
                return "ok " + self._power_off(words[1])
            except LabError as exc:
                return f"error {exc}"
        return f"error bad request {request[:60]!r}"

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._sock is not None:
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@dataclass(frozen=True)
class LabFenceDevice:
    """The lab's STONITH device for some nodes, in the forms a configuration needs."""

    plugin: str
    hostlist: tuple[str, ...]
    switch: Path
    binds: dict[str, Path]

    @property
    def named_params(self) -> list[str]:
        """``name=value`` parameters, for ``stonith`` and a ``stonith_host`` line."""
        return [f"hostlist={','.join(self.hostlist)}", f"switch={self.switch}"]

    @property
    def positional_params(self) -> str:
        """The parameters in the plugin's config-name order, as Heartbeat's ``stonith_host``
        lines give them (``stonith -p``)."""
        return f"{','.join(self.hostlist)} {self.switch}"
