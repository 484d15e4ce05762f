"""Heartbeat's digests: HMAC-SHA1/MD5 against published vectors, crc against its definition."""

from __future__ import annotations

import hmac
import shutil
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nonstop.config.model import AuthMethod
from nonstop.heartbeat.auth import crc32_posix, digest, verify


def crc_by_definition(data: bytes) -> int:
    """CRC-32/POSIX without length, one bit at a time: polynomial division of the message."""
    reg = 0
    for byte in data:
        for bit in range(7, -1, -1):
            top = (reg >> 31) ^ ((byte >> bit) & 1)
            reg = (reg << 1) & 0xFFFFFFFF
            if top:
                reg ^= 0x04C11DB7
    return reg ^ 0xFFFFFFFF


def test_hmac_sha1_rfc2202_vector() -> None:
    got = digest(AuthMethod.SHA1, b"Jefe", b"what do ya want for nothing?")
    assert got == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"


def test_hmac_md5_rfc2104_vector() -> None:
    got = digest(AuthMethod.MD5, b"Jefe", b"what do ya want for nothing?")
    assert got == "750c783e6ab0b503eaa86e310a5db738"


def test_hmac_sha1_long_key_is_hashed_first() -> None:
    # RFC 2202 test case 6: an 80-byte key is longer than SHA-1's 64-byte block.
    got = digest(
        AuthMethod.SHA1, b"\xaa" * 80, b"Test Using Larger Than Block-Size Key - Hash Key First"
    )
    assert got == "aa4ae5e15272d00e95705637ce8a3b55ed402112"


@given(st.sampled_from([AuthMethod.SHA1, AuthMethod.MD5]), st.binary(max_size=150),
       st.lists(st.binary(max_size=300), min_size=1, max_size=4))
def test_hmac_matches_the_standard_library_for_any_key_and_repeated_use(
    method: AuthMethod, secret: bytes, messages: list[bytes]
) -> None:
    # The key's pads are hashed once and copied for each digest: every later digest with the
    # same key must still be the HMAC of its own data alone.
    name = "sha1" if method is AuthMethod.SHA1 else "md5"
    for data in messages:
        assert digest(method, secret, data) == hmac.new(secret, data, name).hexdigest()


def test_crc_check_value_of_the_crc_catalogue() -> None:
    # CRC-32/CKSUM's catalogue check value is for "123456789" without the length suffix.
    assert crc32_posix(b"123456789") == 0x765E7680
    assert digest(AuthMethod.CRC, b"", b"123456789") == "765e7680"


@given(st.binary(max_size=2000))
def test_crc_matches_bitwise_definition(data: bytes) -> None:
    assert crc32_posix(data) == crc_by_definition(data)


@pytest.mark.skipif(shutil.which("cksum") is None, reason="coreutils cksum not installed")
def test_crc_matches_cksum_once_the_length_is_appended() -> None:
    data = b"t=status\nst=active\nsrc=vpbx1-1\n"
    # cksum appends the length, least significant byte first, without trailing zero bytes.
    length = len(data).to_bytes(4, "little").rstrip(b"\0")
    out = subprocess.run(["cksum"], input=data, capture_output=True, check=True).stdout
    assert crc32_posix(data + length) == int(out.split()[0])


def input_with_short_crc() -> bytes:
    """An input whose CRC has a leading zero nibble (about one in sixteen has)."""
    return next(d for d in (str(i).encode() for i in range(1000)) if crc32_posix(d) < 1 << 28)


def test_crc_is_printed_without_zero_padding() -> None:
    # Heartbeat prints the CRC with %lx.
    data = input_with_short_crc()
    text = digest(AuthMethod.CRC, b"", data)
    assert len(text) < 8
    assert int(text, 16) == crc32_posix(data)


def test_crc_ignores_the_secret() -> None:
    assert digest(AuthMethod.CRC, b"anything", b"x") == digest(AuthMethod.CRC, b"", b"x")


@pytest.mark.parametrize("method", list(AuthMethod))
def test_verify_accepts_own_digest_and_rejects_others(method: AuthMethod) -> None:
    good = digest(method, b"secret", b"payload")
    assert verify(method, b"secret", b"payload", good)
    assert not verify(method, b"secret", b"payload!", good)
    assert not verify(method, b"secret", b"payload", good + "0")
    assert not verify(method, b"secret", b"payload", "é" + good)
    if method is not AuthMethod.CRC:
        assert not verify(method, b"other", b"payload", good)


def test_verify_rejects_zero_padded_crc() -> None:
    data = input_with_short_crc()
    assert not verify(AuthMethod.CRC, b"", data, f"{crc32_posix(data):08x}")
