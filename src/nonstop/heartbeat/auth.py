"""Heartbeat's message digests: HMAC-SHA1, HMAC-MD5 and its unkeyed ``crc``.

Heartbeat signs a message with ``"<index> <digest>"``; this module computes and checks the
``<digest>`` part exactly as Heartbeat 3.0.6 prints it, so nonstop and Heartbeat nodes can
verify each other. Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import zlib
from typing import Protocol

from nonstop.config.model import AuthMethod


class _Hash(Protocol):
    def copy(self) -> _Hash: ...
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


def _small_hash(module: str, name: str) -> object:
    """CPython's own SHA-1 / MD5 (``_sha1``, ``_md5``), else OpenSSL's through hashlib.

    A heartbeat is signed or checked a few times a second by a process that sleeps in
    between, so what a digest costs is mostly its code coming back into the caches: OpenSSL's
    HMAC (an algorithm fetch and an HMAC context per call) took 60-90 us of CPU per digest
    here, the small built-in hash with the key's pads hashed once ~20 us (docs/BENCHMARKS.md,
    "Idle CPU"). Hot, both take 1-2 us.
    """
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):  # a build without CPython's own hashes
        return getattr(hashlib, name)


_HASHES = {AuthMethod.SHA1: _small_hash("_sha1", "sha1"),
           AuthMethod.MD5: _small_hash("_md5", "md5")}
_BLOCK = 64  # SHA-1 and MD5 block size, bytes
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
# (method, secret) -> the hash states after the key's inner and outer pad (RFC 2104): each
# digest copies them instead of hashing the key again. Keys come from authkeys, so few.
_PADDED: dict[tuple[AuthMethod, bytes], tuple[_Hash, _Hash]] = {}
_PADDED_MAX = 64


def _padded(method: AuthMethod, secret: bytes) -> tuple[_Hash, _Hash]:
    states = _PADDED.get((method, secret))
    if states is None:
        new = _HASHES[method]
        assert callable(new)
        key = new(secret).digest() if len(secret) > _BLOCK else secret
        key = key.ljust(_BLOCK, b"\0")
        states = (new(key.translate(_IPAD)), new(key.translate(_OPAD)))
        if len(_PADDED) >= _PADDED_MAX:
            _PADDED.clear()
        _PADDED[(method, secret)] = states
    return states


def hmac_hex(method: AuthMethod, secret: bytes, data: bytes) -> str:
    """HMAC (RFC 2104) of ``data`` keyed with ``secret``, lowercase hex; sha1 or md5."""
    inner_pad, outer_pad = _padded(method, secret)
    inner = inner_pad.copy()
    inner.update(data)
    outer = outer_pad.copy()
    outer.update(inner.digest())
    return outer.hexdigest()


def _reverse_bits(value: int, width: int) -> int:
    return int(format(value, f"0{width}b")[::-1], 2)


# Each byte with its bits in reverse order, for bytes.translate.
_REVERSED_BYTES = bytes(_reverse_bits(b, 8) for b in range(256))


def crc32_posix(data: bytes) -> int:
    """CRC-32/POSIX of ``data`` without cksum's length suffix (Heartbeat's ``crc`` method).

    Polynomial 0x04C11DB7, most significant bit first, initial register 0, final one's
    complement.
    """
    # zlib computes the same polynomial least significant bit first; feeding it bit-reversed
    # bytes and reversing its register gives the MSB-first register at C speed. zlib
    # complements the start value, so 0xFFFFFFFF starts the register at 0.
    register = zlib.crc32(data.translate(_REVERSED_BYTES), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return _reverse_bits(register, 32) ^ 0xFFFFFFFF


def digest(method: AuthMethod, secret: bytes, data: bytes) -> str:
    """The digest Heartbeat writes after the key index for ``data``.

    sha1/md5: lowercase hex HMAC keyed with ``secret``; crc: ``%lx`` of the CRC (no zero
    padding, ``secret`` ignored).
    """
    if method is AuthMethod.SHA1 or method is AuthMethod.MD5:
        return hmac_hex(method, secret, data)
    return format(crc32_posix(data), "x")


def verify(method: AuthMethod, secret: bytes, data: bytes, claimed: str) -> bool:
    """True if ``claimed`` is the digest of ``data``; constant-time for the keyed methods.

    Heartbeat compares digests as strings, so ``claimed`` must match exactly (lowercase hex,
    no padding): an uppercase or zero-padded digest is rejected as Heartbeat rejects it.
    """
    expected = digest(method, secret, data)
    # compare_digest on str accepts ASCII only; a non-ASCII claim cannot match anyway.
    if not claimed.isascii():
        return False
    return hmac.compare_digest(expected, claimed)
