"""Configuration files are read as bytes (issue 10): any byte in a comment, as Heartbeat and
csync2 accept it; a non-UTF-8 byte elsewhere, a NUL byte, a huge file or a path that is not a
regular file are file:line errors, never a traceback or a hang."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nonstop.config.authkeys import check_authkeys
from nonstop.config.hacf import check_hacf
from nonstop.config.haresources import check_haresources
from nonstop.config.loader import check_config_dir
from nonstop.config.reading import MAX_CONFIG_BYTES, decode_line
from nonstop.talk import copy_talk

LATIN1_COMMENT = "# Configuré par Stéphane\n".encode("latin-1")


def _talk(tmp_path: Path) -> Path:
    return copy_talk(tmp_path) / "ha.d"


def test_decode_line_keeps_the_text_before_a_foreign_comment() -> None:
    assert decode_line(b"keepalive 2 # d\xe9lai") == "keepalive 2 #"
    assert decode_line("keepalive 2 # délai".encode()) == "keepalive 2 # délai"
    assert decode_line(b"node caf\xe9") is None
    assert decode_line(b"node caf\xe9 # comment") is None


@pytest.mark.parametrize("name", ["ha.cf", "haresources", "authkeys"])
def test_a_latin1_comment_is_accepted_in_every_file(tmp_path: Path, name: str) -> None:
    d = _talk(tmp_path)
    path = d / name
    path.write_bytes(LATIN1_COMMENT + path.read_bytes() + b"  # fin \xe0 la ligne\n")
    assert check_config_dir(str(d), "vpbx1-1") == []


def test_a_latin1_byte_in_a_value_is_a_file_line_error(tmp_path: Path) -> None:
    d = _talk(tmp_path)
    ha_cf = d / "ha.cf"
    ha_cf.write_bytes(ha_cf.read_bytes() + b"cluster caf\xe9\n")
    line = ha_cf.read_bytes().count(b"\n")
    res = check_hacf(str(ha_cf))
    assert [(e.loc.line, e.message) for e in res.errors] == [
        (line, "byte 0xe9 at column 12 is not UTF-8: only a comment may use another encoding")]
    res_path = d / "haresources"
    res_path.write_bytes(b"vpbx1-1 caf\xe9\n")
    assert [str(e) for e in check_haresources(str(res_path), ("vpbx1-1",)).errors] == [
        f"{res_path}:1: byte 0xe9 at column 12 is not UTF-8: only a comment may use another "
        "encoding"]


@pytest.mark.parametrize("name", ["ha.cf", "haresources", "authkeys"])
def test_a_nul_byte_is_an_error_with_its_line(tmp_path: Path, name: str) -> None:
    d = _talk(tmp_path)
    path = d / name
    path.write_bytes(b"# one\n# two\nnode\0x\n")
    items = [str(i) for i in check_config_dir(str(d), "vpbx1-1")]
    assert f"{path}:3: NUL byte in the file: Heartbeat would read the line only up to it; " \
           "remove it" in items


@pytest.mark.parametrize("name", ["ha.cf", "haresources", "authkeys", "csync2.cfg"])
def test_a_byte_order_mark_is_named_as_such(tmp_path: Path, name: str) -> None:
    """An editor's BOM made ha.cf say "directive 'use_logd' is unknown (did you mean
    'use_logd'?)", authkeys "Missing auth directive", haresources "Bad nodename"."""
    from nonstop.config.csync2 import load_csync2
    from nonstop.config.errors import ConfigError

    d = _talk(tmp_path)
    path = d.parent / name if name == "csync2.cfg" else d / name
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    if name == "csync2.cfg":
        with pytest.raises(ConfigError) as caught:
            load_csync2(str(path))
        items = [str(caught.value)]
    else:
        items = [str(i) for i in check_config_dir(str(d), "vpbx1-1")]
    assert items == [f"{path}:1: the file starts with a UTF-8 byte-order mark (bytes EF BB BF, "
                     "added by some editors), which would be read as part of its first word; "
                     "remove it"], items


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    d = _talk(tmp_path)
    ha_cf = d / "ha.cf"
    with ha_cf.open("ab") as fh:
        fh.write(b"#" * (MAX_CONFIG_BYTES + 10) + b"\n")
    res = check_hacf(str(ha_cf))
    assert [str(e) for e in res.errors] == [f"{ha_cf}: larger than 1024 KiB: not a "
                                            "configuration file"]


def test_a_fifo_or_a_directory_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "authkeys"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    assert [str(e) for e in check_authkeys(str(fifo)).errors] == [
        f"{fifo}: cannot read: not a regular file"]
    (tmp_path / "ha.cf").mkdir()
    assert [e.message for e in check_hacf(str(tmp_path / "ha.cf")).errors] == [
        "cannot read: a directory"]
