"""authkeys: the talk's file, Heartbeat's format rules and messages, permissions, rollover."""

from __future__ import annotations

from pathlib import Path

import pytest

from nonstop.config.authkeys import check_authkeys, parse_authkeys
from nonstop.config.errors import ConfigErrors
from nonstop.config.model import AuthMethod
from nonstop.talk import copy_talk, talk_file


def write(tmp_path: Path, text: str | bytes, mode: int = 0o600) -> str:
    p = tmp_path / "authkeys"
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    p.chmod(mode)
    return str(p)


def errors(tmp_path: Path, text: str | bytes) -> list[str]:
    res = check_authkeys(write(tmp_path, text))
    assert res.value is None
    return [f"{e.loc.line}: {e.message}" for e in res.errors]


def test_talk_file(tmp_path: Path) -> None:
    keys = parse_authkeys(str(copy_talk(tmp_path) / "ha.d" / "authkeys"))
    assert keys.active == 1
    assert keys.signing_key.method is AuthMethod.SHA1
    assert keys.signing_key.secret == b"ThisIsTheAuthkeyForTheCluster"
    assert set(keys.keys) == {1}


def test_secret_kept_out_of_repr(tmp_path: Path) -> None:
    keys = parse_authkeys(write(tmp_path, talk_file("ha.d/authkeys").read_bytes()))
    assert b"ThisIsThe".decode() not in repr(keys)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o444])
def test_readable_by_others_refused(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path, "auth 1\n1 sha1 secret\n", mode)
    with pytest.raises(ConfigErrors) as info:
        parse_authkeys(path)
    (err,) = info.value.errors
    assert err.loc.line == 0 and err.loc.file == path
    assert err.message.startswith(f"Bad permissions on keyfile [{path}], 600 recommended.")
    assert f"chmod 600 {path}" in err.message


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o620, 0o602])
def test_write_bits_not_checked(tmp_path: Path, mode: int) -> None:
    assert parse_authkeys(write(tmp_path, "auth 1\n1 sha1 secret\n", mode)).active == 1


def test_methods_comments_and_rollover(tmp_path: Path) -> None:
    keys = parse_authkeys(
        write(
            tmp_path,
            "# keys\n\n  auth 2   # the new one\n"
            "1 sha1 oldsecret\n2 md5 newsecret # comment\n0 crc\n15 sha1 #starts-with-hash\n",
        )
    )
    assert keys.active == 2
    assert {i: k.method for i, k in keys.keys.items()} == {
        1: AuthMethod.SHA1,
        2: AuthMethod.MD5,
        0: AuthMethod.CRC,
        15: AuthMethod.SHA1,
    }
    assert keys.keys[1].secret == b"oldsecret" and keys.keys[0].secret == b""
    assert keys.keys[15].secret == b"#starts-with-hash"


def test_secret_is_raw_bytes(tmp_path: Path) -> None:
    keys = parse_authkeys(write(tmp_path, b"auth 1\n1 sha1 s\xc3\xa9cret\xff\r\n"))
    assert keys.signing_key.secret == b"s\xc3\xa9cret\xff"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("auth x\n1 crc\n", "1: Invalid auth line [auth x]: write 'auth <n>', n in 0..15"),
        ("auth 16\n", "1: Invalid auth line [auth 16]: write 'auth <n>', n in 0..15"),
        ("auth 1\n16 crc\n", "2: Invalid authnum [16]: must be 0..15"),
        ("auth 1\n1 sha256 k\n", "2: Invalid authtype [sha256]: use sha1, md5 or crc"),
        ("auth 1\n1 SHA1 k\n", "2: Invalid authtype [SHA1]: use sha1, md5 or crc"),
        ("auth 1\n1 crc key\n", "2: Auth method [crc] doesn't use a key"),
        ("auth 1\n1 md5\n", "2: Auth method [md5] requires a key"),
        ("auth 1\n1 sha1\n", "2: Auth method [sha1] requires a key"),
        ("auth 1\n1\n", "2: key 1 has no method (crc, md5 or sha1)"),
        ("auth 1\nx sha1 k\n", "2: Invalid key line [x sha1 k]: write '<n> <method> [secret]'"),
    ],
)
def test_line_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in errors(tmp_path, text)


def test_secret_with_spaces(tmp_path: Path) -> None:
    # the broken key line is the one error: no second "Auth Key [1] not found" for it
    (err,) = errors(tmp_path, "auth 1\n1 sha1 my secret phrase\n")
    assert err.startswith("2: key 1: the secret must be one word without spaces")
    assert "only 'my'" in err


def test_missing_auth(tmp_path: Path) -> None:
    path = write(tmp_path, "1 sha1 k\n")
    assert errors(tmp_path, "1 sha1 k\n") == [f"0: Missing auth directive in keyfile [{path}]"]
    assert errors(tmp_path, "") == [f"0: Missing auth directive in keyfile [{path}]"]


def test_auth_must_precede_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert errors(tmp_path, "1 sha1 k\nauth 1\n") == [
        f"2: Auth Key [1] not found in keyfile [{path}]: the key line is at line 1, "
        "before 'auth 1'; move it after"
    ]
    assert errors(tmp_path, "auth 2\n1 sha1 k\n") == [
        f"1: Auth Key [2] not found in keyfile [{path}]: add a line '2 sha1 <secret>'"
    ]


def test_duplicates(tmp_path: Path) -> None:
    assert errors(tmp_path, "auth 1\n1 sha1 a\n1 sha1 b\n") == [
        "3: key 1 is defined twice; the first is at line 2"
    ]
    assert errors(tmp_path, "auth 1\n1 sha1 a\nauth 1\n") == [
        "3: a second auth line; the first is at line 1"
    ]


def test_many_errors_at_once(tmp_path: Path) -> None:
    text = "auth 1\n1 sha1 a\n2 crc x\n3 foo k\n20 md5 k\n4 md5\n"
    assert [e.split(":")[0] for e in errors(tmp_path, text)] == ["3", "4", "5", "6"]
    res = check_authkeys(write(tmp_path, text, 0o644))
    assert [e.loc.line for e in res.errors] == [0, 3, 4, 5, 6]


def test_unreadable(tmp_path: Path) -> None:
    res = check_authkeys(str(tmp_path / "nope"))
    assert res.value is None and res.errors[0].message.startswith("cannot read")
