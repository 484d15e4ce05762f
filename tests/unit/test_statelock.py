"""One daemon per state directory: a second `nonstop run` on the same directory is refused
before it touches anything there (its generation, its socket, the groups' record)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nonstop.errors import MachineError
from nonstop.lab.hbconfig import set_directives
from nonstop.runcommand import EXIT_MACHINE
from nonstop.statelock import PID_FILE, StateLock
from nonstop.talk import copy_talk


def test_a_second_lock_is_refused_and_names_the_holder(tmp_path: Path) -> None:
    first = StateLock(tmp_path)
    first.acquire()
    assert (tmp_path / PID_FILE).read_text() == f"{os.getpid()}\n"
    with pytest.raises(MachineError, match=rf"\(pid {os.getpid()}\) is already running"):
        StateLock(tmp_path).acquire()
    first.release()
    assert (tmp_path / PID_FILE).read_text() == ""  # a clean exit leaves no number behind
    again = StateLock(tmp_path)
    again.acquire()
    again.release()


def test_a_killed_holder_leaves_no_lock_behind(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from nonstop.statelock import StateLock;"
            "StateLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(MachineError, match=rf"pid {holder.pid}\)"):
            StateLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = StateLock(tmp_path)  # the stale number is still in the file; the lock is gone
    lock.acquire()
    assert (tmp_path / PID_FILE).read_text() == f"{os.getpid()}\n"
    lock.release()


def test_run_on_a_state_dir_in_use_is_refused_before_touching_it(tmp_path: Path) -> None:
    d = copy_talk(tmp_path) / "ha.d"
    (d / "ha.cf").write_text(set_directives((d / "ha.cf").read_text(), {"bcast": "lo"}))
    (d / "haresources").write_text("")
    state = tmp_path / "state"
    state.mkdir()
    held = StateLock(state)
    held.acquire()
    try:
        done = subprocess.run([sys.executable, "-m", "nonstop", "run", "--config-dir", str(d),
                               "--state-dir", str(state), "--node", "vpbx1-1"],
                              capture_output=True, text=True, timeout=60)
    finally:
        held.release()
    assert done.returncode == EXIT_MACHINE, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith("nonstop: cannot run: a nonstop daemon (pid ") and str(state) in last
    # Nothing of the running daemon's was replaced: no new generation, no socket of its own.
    assert sorted(p.name for p in state.iterdir()) == [PID_FILE]


def test_a_state_dir_too_long_for_its_socket_is_refused_before_anything(tmp_path: Path) -> None:
    """The daemon found it only once it had said it was up, with 'AF_UNIX path too long'."""
    deep = tmp_path / ("d" * (120 - len(str(tmp_path))))
    deep.mkdir()
    with pytest.raises(MachineError, match=r"too long a path for its control socket \(\d+ "
                                           r"bytes, at most 107\)"):
        StateLock(deep).acquire()
    assert list(deep.iterdir()) == []
    fits = tmp_path / ("d" * (107 - len(str(tmp_path)) - len("/nonstop.sock") - 1))
    fits.mkdir()
    lock = StateLock(fits)
    lock.acquire()
    lock.release()


def test_a_daemon_of_a_release_without_the_lock_is_found_by_its_socket(tmp_path: Path) -> None:
    """A rolling upgrade: the running daemon predates the lock; its socket answers."""
    import socket

    from nonstop.apiclient import SOCKET_NAME

    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / SOCKET_NAME))
    stale.close()  # a socket file nobody listens on (a daemon that died): no obstacle
    lock = StateLock(tmp_path)
    lock.acquire()
    lock.release()
    (tmp_path / SOCKET_NAME).unlink()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listening:
        listening.bind(str(tmp_path / SOCKET_NAME))
        listening.listen()
        with pytest.raises(MachineError, match=r"already running .* \(it answers on "
                                               r"nonstop.sock\)"):
            StateLock(tmp_path).acquire()


def _unlistening_daemon(state_dir: Path) -> subprocess.Popen[str]:
    """A process holding ``state_dir``'s lock with a control socket bound but not listening
    (what a killed daemon leaves, while it still lives), once it is up."""
    code = ("import socket, sys, time; from pathlib import Path; "
            "from nonstop.statelock import StateLock; d = Path(sys.argv[1]); "
            "StateLock(d).acquire(); s = socket.socket(socket.AF_UNIX); "
            "s.bind(str(d / 'nonstop.sock')); print('up', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(state_dir)],
                              stdout=subprocess.PIPE, text=True)
    if holder.stdout is None or holder.stdout.readline() != "up\n":
        holder.kill()
        holder.wait()
        raise AssertionError("the stand-in daemon did not start")
    return holder


def test_status_after_a_crash_says_no_daemon_runs_not_that_it_refuses(tmp_path: Path) -> None:
    """A daemon killed (a box crash, kill -9) leaves its control socket and its pid behind.
    `nonstop status` said "the nonstop daemon of ... is not accepting requests", and the admin
    woken at 3 am looked for a hung daemon that did not exist (a user trial): it says none
    runs, why it may have ended, and where its last moments are. A live daemon that does not
    listen is still named as one."""
    from nonstop.apiclient import SOCKET_NAME, ApiError, request

    holder = _unlistening_daemon(tmp_path)
    try:
        with pytest.raises(ApiError, match=rf"daemon of .* \(pid {holder.pid}\) is not "
                                           r"accepting requests"):
            request(tmp_path, "status", timeout=2)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / SOCKET_NAME).exists() and (tmp_path / PID_FILE).read_text().strip()
    with pytest.raises(ApiError) as e:
        request(tmp_path, "status", timeout=2)
    assert str(e.value).startswith(f"no nonstop daemon is running with state directory "
                                   f"{tmp_path}: the one that ran there (pid {holder.pid}) "
                                   "did not stop cleanly")
    assert "nonstop history" in str(e.value) and "not accepting" not in str(e.value)
    out = subprocess.run([sys.executable, "-m", "nonstop", "status", "--state-dir",
                          str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 3 and "did not stop cleanly" in out.stderr


def test_a_killed_daemon_not_reaped_yet_is_not_running_either(tmp_path: Path) -> None:
    """In the trial's lab the crashed daemon was a zombie its parent had not reaped: the pid
    still answered kill(0), and status said it was "not accepting requests"."""
    from nonstop.apiclient import ApiError, request

    holder = _unlistening_daemon(tmp_path)
    try:
        holder.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # dead but not reaped: a zombie
            stat = Path(f"/proc/{holder.pid}/stat").read_bytes()
            if stat.rsplit(b")", 1)[-1].split()[0] == b"Z":
                break
            time.sleep(0.01)
        with pytest.raises(ApiError, match=rf"no nonstop daemon is running .* \(pid "
                                           rf"{holder.pid}\) did not stop cleanly"):
            request(tmp_path, "status", timeout=2)
    finally:
        holder.kill()
        holder.wait()
