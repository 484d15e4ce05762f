"""Heartbeat's message digests: HMAC-SHA1, HMAC-MD5 and its unkeyed ``crc``.

Heartbeat signs a message with ``"<index> <digest>"``; this module computes and checks the
``<digest>`` part exactly as Heartbeat 3.0.6 prints it, so nonstop and Heartbeat nodes can
verify each other. Pure functions, no I/O.
"""

from __future__ import annotations

import hmac
import zlib

from nonstop.config.model import AuthMethod


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
    if method is AuthMethod.SHA1:
        return hmac.digest(secret, data, "sha1").hex()
    if method is AuthMethod.MD5:
        return hmac.digest(secret, data, "md5").hex()
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
