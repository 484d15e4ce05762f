"""Reading a configuration file as Heartbeat does: bytes, from a regular file of sane size
(csync2.cfg and its key files are read the same way, with their own message for a NUL byte).

Heartbeat reads ha.cf, haresources and authkeys as bytes, so a comment written in Latin-1 (an
accented name in a French comment) is fine there; nonstop accepts any byte in a comment and
asks for UTF-8 only where a value is read. A NUL byte (C's end of string: Heartbeat would read
a different line than the file shows), a file larger than :data:`MAX_CONFIG_BYTES`, or a path
that is not a regular file (a FIFO would block the reader, a device never end) and a leading
UTF-8 byte-order mark are errors that name the file, and the line where there is one.
"""

from __future__ import annotations

import os
import stat

from nonstop.config.errors import ConfigError, Location
from nonstop.records import record

MAX_CONFIG_BYTES = 1 << 20  # the talk's files are a few KB; a bigger one is a mistake


@record
class ConfigBytes:
    """A configuration file's bytes and its permission bits."""

    data: bytes
    mode: int


# Why a NUL byte is refused, by the program whose file it is: Heartbeat's C reader stops at it.
HEARTBEAT_NUL = "NUL byte in the file: Heartbeat would read the line only up to it; remove it"


# A UTF-8 byte-order mark, which some editors put at the start of a file. Heartbeat and csync2
# read it as part of the first word: "directive 'use_logd' is unknown (did you mean
# 'use_logd'?)" was all a user saw of it.
BOM = b"\xef\xbb\xbf"
BOM_REASON = ("the file starts with a UTF-8 byte-order mark (bytes EF BB BF, added by some "
              "editors), which would be read as part of its first word; remove it")


def read_config_bytes(path: str, nul_reason: str = HEARTBEAT_NUL,
                      ) -> tuple[ConfigBytes | None, list[ConfigError]]:
    """The file's bytes, or the errors that make it unreadable as a configuration file;
    ``nul_reason`` is the message for a NUL byte (at its line)."""
    whole = Location(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as e:
        return None, [ConfigError(whole, f"cannot read: {e.strerror or e}")]
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            return None, [ConfigError(whole, f"cannot read: {kind}")]
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        return None, [ConfigError(whole, f"cannot read: {e.strerror or e}")]
    finally:
        os.close(fd)
    if size > MAX_CONFIG_BYTES:
        return None, [ConfigError(whole, f"larger than {MAX_CONFIG_BYTES // 1024} KiB: not a "
                                         "configuration file")]
    data = b"".join(chunks)
    if data.startswith(BOM):
        return None, [ConfigError(Location(path, 1), BOM_REASON)]
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        return None, [ConfigError(Location(path, line), nul_reason)]
    return ConfigBytes(data, stat.S_IMODE(st.st_mode)), []


def decode_line(raw: bytes) -> str | None:
    """A line as text: UTF-8, except that a comment (from the first ``#``) may hold any byte
    and is then kept as ``#`` alone. None when a byte outside a comment is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    head, sharp, _comment = raw.partition(b"#")
    if not sharp:
        return None
    try:
        return head.decode("utf-8") + "#"
    except UnicodeDecodeError:
        return None


def bad_byte_message(raw: bytes) -> str:
    """Where the first non-UTF-8 byte outside a comment is, for the error message."""
    head = raw.partition(b"#")[0]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return (f"byte 0x{head[e.start]:02x} at column {e.start + 1} is not UTF-8: only a "
                "comment may use another encoding")
    return "line is not valid UTF-8"


def read_config_lines(path: str) -> tuple[list[str] | None, list[ConfigError]]:
    """The lines of a configuration file (CR and LF stripped), or the errors that stopped
    reading it (see :func:`read_config_bytes`: bytes, regular file, size cap, no NUL).

    Any byte may stand in a comment, as Heartbeat reads bytes; a line with a non-UTF-8 byte
    elsewhere is replaced by an empty line and reported, so the other line numbers stay right.
    """
    content, errors = read_config_bytes(path)
    if content is None:
        return None, errors
    lines: list[str] = []
    for n, raw in enumerate(content.data.split(b"\n"), start=1):
        text = decode_line(raw)
        if text is None:
            errors.append(ConfigError(Location(path, n), bad_byte_message(raw)))
            text = ""
        lines.append(text.replace("\r", ""))
    if lines and lines[-1] == "":
        lines.pop()  # the text after the final newline
    return lines, errors
