"""What the parts of one node's replication engine share: options, groups, run reports, errors."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping

from nonstop.config.csync2 import DEFAULT_PORT, Csync2Config, Group, load_key
from nonstop.errors import NonstopError
from nonstop.records import field, mutable_record, record
from nonstop.sync.patterns import Matcher, PathMap, Scope, in_scope, shown

ALL: list[Scope] = [("/", True)]
# The daemon tells the `nonstop sync` its scripts run which peers its heartbeats declared dead
# (space-separated names): those are tried last, with a short connection timeout.
DEAD_PEERS_ENV = "NONSTOP_SYNC_DEAD_PEERS"
Out = Callable[[int, str], None]


class SyncError(NonstopError):
    """A local problem that stops a run (not a per-file result)."""


@record
class Options:
    """How one node runs: identity, files, network."""

    config: Csync2Config
    me: str
    state_dir: str
    db_path: str | None = None
    root: str = "/"
    port: int = DEFAULT_PORT
    addresses: Mapping[str, str] = field(default_factory=dict)
    listen: str = "0.0.0.0"
    # A cluster peer on the LAN that does not accept a connection within 3 s is down; a
    # takeover must not sit in the master script waiting for it (forced scopes stay pending
    # and are pushed when it returns).
    connect_timeout: float = 3.0
    # How long a refused connection is retried: the CLI waits for a receiver started at the
    # same moment (csync2's test suite does that); the daemon fails at once and retries later.
    refused_retry: float = 0.0
    # The most KiB of the state database sqlite's page cache may hold (its default: 2000);
    # the daemon's is smaller (nonstop.sync.node.DAEMON_CACHE_KIB).
    cache_kib: int = 2000


@mutable_record
class Report:
    """What one update run did; ``exit_code`` follows csync2 (0 ok, 1 any error or conflict)."""

    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # the problems that are conflicts
    # The problems that are files not sent because they changed or went while read: the run
    # their own change brings sends them (the daemon counts no failure for them).
    changing: list[str] = field(default_factory=list)
    # The problems that are one file the peer could not write (its disk, an immutable file): as
    # a conflict, that file is offered again later and no other change waits for it.
    file_errors: list[str] = field(default_factory=list)
    sent_names: list[str] = field(default_factory=list)
    bytes_sent: int = 0  # frame bytes to the peers (before TLS)
    bytes_received: int = 0
    unreached: list[str] = field(default_factory=list)  # peers no connection reached

    def count(self, status: str, n: int = 1) -> None:
        self.counts[status] = self.counts.get(status, 0) + n

    def merge(self, run: Report) -> None:
        """Add another run's outcome to this one."""
        for k, v in run.counts.items():
            self.count(k, v)
        self.problems += run.problems
        self.conflicts += run.conflicts
        self.changing += run.changing
        self.file_errors += run.file_errors
        self.sent_names += run.sent_names
        self.bytes_sent += run.bytes_sent
        self.bytes_received += run.bytes_received
        self.unreached += run.unreached

    def failures(self) -> list[str]:
        """The problems that make a failed run: not the conflicts (left alone until resolved),
        the files that changed while read (their own change brings them) nor the files the peer
        could not write (offered again with the conflicts)."""
        settled = set(self.conflicts) | set(self.changing) | set(self.file_errors)
        return [p for p in self.problems if p not in settled]

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0


@mutable_record
class GroupCtx:
    """One csync2 group this node is in, with its matcher and path map."""

    group: Group
    matcher: Matcher
    paths: PathMap
    _key: bytes | None = None

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = load_key(self.group)
        return self._key


def quiet(_level: int, _msg: str) -> None:
    return None


# Errors that are the state of a whole file system, not of one file: every file written there
# fails with the same reason until space is freed or the mount is writable again.
VOLUME_WIDE = tuple(os.strerror(e) for e in (errno.ENOSPC, errno.EDQUOT, errno.EROFS))
_ERROR = ": error: "


def volume_cause(msg: str) -> str | None:
    """For a file's error whose reason is a whole file system's (``PEER: error: PATH: write
    failed on NODE: No space left on device``), the same text without the path: one key for
    every file that fails the same way. None for any other message."""
    head, sep, rest = msg.partition(_ERROR)
    if not sep:
        return None
    for reason in VOLUME_WIDE:
        if rest.endswith(reason):
            return f"{head}{sep}files: {reason}"
    return None


class QuietRepeats:
    """An :data:`Out` that says a warning (level 0) again only after ``window_s``: a push
    retried every 5 s met the same conflict or error each time and logged every file again,
    so one unresolved conflict filled the log. A repeat after the window says how many were
    left out. At most ``max_kept`` messages are remembered (the oldest are forgotten).

    Distinct warnings are capped too: at most ``burst`` in ``burst_window_s``; the rest are
    counted and said as one line at the next warning or :meth:`flush` after the window (a
    full replica disk gave a warning per file, 100 lines in 30 s on each node).

    A file's error that is its whole file system's (full, over quota, read-only: see
    :func:`volume_cause`) counts as a repeat of the first such error of that peer, whatever the
    file: a replica disk that stays full for minutes is one line per window, not a line per
    voicemail, and the next line says how many more files failed the same way."""

    def __init__(self, out: Out, window_s: float = 300.0, max_kept: int = 1000,
                 clock: Callable[[], float] | None = None, burst: int = 20,
                 burst_window_s: float = 60.0) -> None:
        import time

        self._out = out
        self.window_s = window_s
        self._max = max_kept
        self._clock = clock or time.monotonic
        self._said: dict[str, tuple[float, int]] = {}  # message -> (when said, left out since)
        self.burst, self.burst_window_s = burst, burst_window_s
        self._burst_start = self._clock()
        self._burst_said = 0
        self._burst_held = 0

    def __call__(self, level: int, msg: str) -> None:
        if level > 0:
            self._out(level, msg)
            return
        now = self._clock()
        cause = volume_cause(msg)
        key = cause or msg
        said = self._said.get(key)
        if said is not None and now - said[0] < self.window_s:
            self._said[key] = (said[0], said[1] + 1)
            return
        if said is not None and said[1]:
            what = "file(s) failed the same way" if cause else "time(s)"
            msg_out = (f"{msg} (and {said[1]} more {what} after it was last logged, "
                       f"{now - said[0]:.0f} s ago)")
        elif cause:
            msg_out = (f"{msg} (other files failing the same way are counted, not logged, for "
                       f"{self.window_s:.0f} s)")
        else:
            msg_out = msg
        self._said.pop(key, None)
        self._said[key] = (now, 0)
        while len(self._said) > self._max:
            del self._said[next(iter(self._said))]
        self.flush()
        if self._burst_said >= self.burst:
            self._burst_held += 1
            return
        self._burst_said += 1
        self._out(level, msg_out)

    def flush(self) -> None:
        """Once ``burst_window_s`` has passed: say how many warnings the cap left out."""
        now = self._clock()
        if now - self._burst_start < self.burst_window_s:
            return
        if self._burst_held:
            self._out(0, f"{self._burst_held} more warning(s) left out of the log in "
                         f"{now - self._burst_start:.0f} s (`nonstop status` shows the last)")
        self._burst_start, self._burst_said, self._burst_held = now, 0, 0


def as_logged(msg: str) -> str:
    """A warning as the daemon logs it (and status repeats it): csync2's "ERROR: " marks the
    command's output, while in the log the line's level says it ("WARN: ERROR: connection ...
    failed" set off watchers of Heartbeat's "ERROR:" lines)."""
    return msg.removeprefix("ERROR: ")


def log_out(level: int, msg: str) -> None:
    """Output to the ``nonstop.sync`` logger: level 0 (conflicts, errors, overwritten changes)
    as warnings, the rest as debug. Progress (level 1: a line per file sent, per batch received,
    per connection) was info, about 500,000 lines a day into syslog on a live PBX; the
    replicator logs a summary a minute instead."""
    import logging  # here: the command line never logs, and logging costs its start-up

    _log = logging.getLogger("nonstop.sync")
    msg = shown(msg)  # a file's name may hold a newline: one message, one log line
    if level <= 0:
        _log.warning("%s", as_logged(msg))
    else:
        _log.debug("%s", msg)


def overlaps(a: Scope, b: Scope) -> bool:
    """One scope holds the other."""
    return in_scope(a[0], b[0], b[1]) or in_scope(b[0], a[0], a[1])
