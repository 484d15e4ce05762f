"""The blocking client of the daemon's control socket (see nonstop.api for the server).

Kept apart from the server so a command that only asks the daemon (``nonstop status``) loads
``socket`` and ``json``, not asyncio.
"""

from __future__ import annotations

import json
import os
import socket
import time

from nonstop.errors import NonstopError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SOCKET_NAME = "nonstop.sock"
PID_FILE = "nonstop.pid"  # the daemon's lock and pid (nonstop.statelock)
REPLY_BY = "reply_by"  # the client's deadline: CLOCK_MONOTONIC seconds, shared by the machine


class ApiError(NonstopError):
    """The daemon could not be reached or refused a request."""


def request(state_dir: str | os.PathLike[str], cmd: str, timeout: float = 10.0,
            **args: Any) -> dict[str, Any]:
    """Send one request to the daemon of ``state_dir`` and return its reply (blocking client)."""
    path = os.path.join(state_dir, SOCKET_NAME)
    # The daemon carries out no request it reads after we gave up (a daemon stopped by SIGSTOP
    # finds it queued on its socket when it resumes): a command said to have failed stays undone.
    reply_by = round(time.monotonic() + timeout, 3)
    payload = json.dumps({"cmd": cmd, **args, REPLY_BY: reply_by}).encode() + b"\n"
    sent = False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(payload)
            sent = True
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except FileNotFoundError as e:
        raise ApiError(f"no nonstop daemon is running with state directory {state_dir}") from e
    except ConnectionRefusedError as e:
        raise ApiError(_refused(state_dir)) from e
    except TimeoutError as e:
        if not sent:
            raise ApiError(f"cannot talk to the nonstop daemon at {path}: {e}") from e
        raise ApiError(
            f"the nonstop daemon of {state_dir} did not answer within {timeout:g} s (stopped or "
            f"busy); it drops a request it reads later, so the {cmd!r} request was carried out "
            f"only if `nonstop history` shows it") from e
    except OSError as e:
        raise ApiError(f"cannot talk to the nonstop daemon at {path}: {e}") from e
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError as e:
        raise ApiError(f"the daemon sent an unreadable reply: {e}") from e
    if not isinstance(reply, dict):
        raise ApiError("the daemon sent an unreadable reply")
    return reply


def _refused(state_dir: str | os.PathLike[str]) -> str:
    """Why nobody listens on the socket: a daemon that ended without cleaning up, or one that
    is not accepting requests. After a crash this said "the nonstop daemon ... is not accepting
    requests", and an admin looked for a hung daemon that did not exist (a user trial)."""
    try:  # the pid file keeps the pid of a run that did not end cleanly (a clean exit empties it)
        with open(os.path.join(state_dir, PID_FILE), "rb") as fh:
            pid = int(fh.read(32).strip() or b"0")
    except (OSError, ValueError):
        pid = 0
    if pid > 0 and not _alive(pid):
        return (f"no nonstop daemon is running with state directory {state_dir}: the one "
                f"that ran there (pid {pid}) did not stop cleanly (killed, crashed, or the "
                f"machine lost power); `nonstop history --state-dir {state_dir}` shows its "
                f"last moments")
    who = f" (pid {pid})" if pid > 0 else ""
    return f"the nonstop daemon of {state_dir}{who} is not accepting requests"


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live nonstop process: not gone, not a zombie its parent has not
    reaped yet, not a number another program got after a reboot."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # another user's process: it exists
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            if fh.read().rsplit(b")", 1)[-1].split()[:1] in ([b"Z"], [b"X"]):
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"nonstop" in fh.read()
    except OSError:  # no /proc, or not ours to read: take it as alive, as before
        return True
