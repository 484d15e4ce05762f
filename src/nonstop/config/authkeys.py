"""Parse ``authkeys``: which key signs our packets, and every key that may verify a peer's.

Format (Heartbeat's ``auth.c``)::

    auth <n>            # the index that signs outgoing packets; must precede key line <n>
    <n> crc             # no key
    <n> md5 <secret>
    <n> sha1 <secret>

Indexes are 0..15. Several key lines may coexist for a key rollover: an incoming packet is
verified with the index it names. A file readable by group or others is refused, as Heartbeat
refuses it. Secrets stay bytes, exactly as written in the file.
"""

from __future__ import annotations

import stat

from nonstop.config.errors import ConfigError, Location
from nonstop.config.model import AuthKey, AuthKeys, AuthMethod, Parsed
from nonstop.config.reading import read_config_bytes

MAXAUTH = 16  # indexes 0..15


def check_authkeys(path: str) -> Parsed[AuthKeys]:
    """Read authkeys: the AuthKeys (None if any error) and every error, each with file:line."""
    whole = Location(path)
    content, read_errors = read_config_bytes(path)
    if content is None:
        return Parsed(None, tuple(read_errors))
    data = content.data
    errors = _permission_errors(path, content.mode)

    active: int | None = None
    active_loc = whole
    bound = False  # Heartbeat binds the signing key only when its line follows 'auth n'
    keys: dict[int, AuthKey] = {}
    key_lines: dict[int, int] = {}
    broken: set[int] = set()  # indexes of key lines already reported as wrong
    for n, raw_line in enumerate(data.split(b"\n"), start=1):
        loc = Location(path, n)
        words = raw_line.split()
        if not words or words[0].startswith(b"#"):
            continue
        shown = raw_line.strip().decode("utf-8", "replace")
        if words[0].startswith(b"a"):
            index = _auth_line(words, shown, loc, active_loc if active is not None else None)
            if isinstance(index, ConfigError):
                errors.append(index)
            else:
                active, active_loc = index, loc
            continue
        err = _key_line(words, shown, loc, keys, key_lines)
        if err is not None:
            errors.append(err)
            if words[0].isdigit():
                broken.add(int(words[0]))
        elif active is not None and int(words[0]) == active:
            bound = True

    if active is None:
        errors.append(ConfigError(whole, f"Missing auth directive in keyfile [{path}]"))
    elif not bound and active not in broken:
        errors.append(_unbound_key_error(path, active, active_loc, key_lines.get(active)))
    if errors:
        return Parsed(None, tuple(errors))
    assert active is not None
    return Parsed(AuthKeys(active=active, keys=keys, loc=whole))


def parse_authkeys(path: str) -> AuthKeys:
    """Read authkeys; raise ConfigErrors naming every problem (permissions included)."""
    return check_authkeys(path).unwrap()


def _auth_line(
    words: list[bytes], shown: str, loc: Location, first: Location | None
) -> int | ConfigError:
    """The index an ``auth n`` line names, or what is wrong with it (``first``: the line of
    an earlier auth line, if there was one)."""
    ok = len(words) >= 2 and words[0] == b"auth" and _is_comment(words[2:])
    index = _index(words[1]) if ok else None
    if index is None:
        return ConfigError(loc, f"Invalid auth line [{shown}]: write 'auth <n>', n in 0..15")
    if first is not None:
        return ConfigError(loc, f"a second auth line; the first is at line {first.line}")
    return index


def _permission_errors(path: str, mode: int) -> list[ConfigError]:
    """Heartbeat refuses keys that group or others can read; write bits are not checked."""
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return []
    return [
        ConfigError(
            Location(path),
            f"Bad permissions on keyfile [{path}], 600 recommended. The keys would be "
            f"readable by other users; fix with: chmod 600 {path}",
        )
    ]


def _unbound_key_error(path: str, active: int, loc: Location, later: int | None) -> ConfigError:
    """'auth n' names no key line after it (``later``: the line of one before it, if any)."""
    hint = (
        f": the key line is at line {later}, before 'auth {active}'; move it after"
        if later is not None
        else f": add a line '{active} sha1 <secret>'"
    )
    return ConfigError(loc, f"Auth Key [{active}] not found in keyfile [{path}]{hint}")


def _is_comment(words: list[bytes]) -> bool:
    """True if nothing follows the values, or only a comment."""
    return not words or words[0].startswith(b"#")


def _index(word: bytes) -> int | None:
    if not word.isdigit():
        return None
    n = int(word)
    return n if n < MAXAUTH else None


def _key_line(
    words: list[bytes],
    shown: str,
    loc: Location,
    keys: dict[int, AuthKey],
    key_lines: dict[int, int],
) -> ConfigError | None:
    """Add one ``<n> <method> [secret]`` line to ``keys``, or say what is wrong with it."""
    if not words[0].isdigit():
        return ConfigError(loc, f"Invalid key line [{shown}]: write '<n> <method> [secret]'")
    index = _index(words[0])
    if index is None:
        return ConfigError(loc, f"Invalid authnum [{words[0].decode()}]: must be 0..15")
    if len(words) < 2:
        return ConfigError(loc, f"key {index} has no method (crc, md5 or sha1)")
    method_s = words[1].decode("utf-8", "replace")
    try:
        method = AuthMethod(method_s)
    except ValueError:
        return ConfigError(loc, f"Invalid authtype [{method_s}]: use sha1, md5 or crc")
    rest = words[2:]
    if method is AuthMethod.CRC:
        secret, after = b"", rest
        if not _is_comment(after):
            return ConfigError(loc, "Auth method [crc] doesn't use a key")
    else:
        if not rest:
            return ConfigError(loc, f"Auth method [{method.value}] requires a key")
        # The secret is the third word even if it starts with '#', as in Heartbeat.
        secret, after = rest[0], rest[1:]
        if not _is_comment(after):
            return ConfigError(
                loc,
                f"key {index}: the secret must be one word without spaces (Heartbeat would "
                f"use only '{secret.decode('utf-8', 'replace')}' and ignore the rest)",
            )
    if index in keys:
        return ConfigError(
            loc, f"key {index} is defined twice; the first is at line {key_lines[index]}"
        )
    keys[index] = AuthKey(index, method, secret)
    key_lines[index] = loc.line
    return None
