"""Whatever bytes a configuration file holds, the parsers report errors; they never crash."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from nonstop.config.authkeys import check_authkeys
from nonstop.config.hacf import DIRECTIVES, check_hacf
from nonstop.config.haresources import check_haresources

# Lines built from real directive names and value-like words reach deep into the handlers;
# raw bytes cover decoding and lexing.
_word = st.one_of(
    st.sampled_from([*DIRECTIVES, "auth", "1", "sha1", "crc", "md5", "#", "\\", "::", "/24"]),
    st.from_regex(r"[0-9a-zA-Z.:/,#_=-]{0,12}", fullmatch=True),
)
_line = st.lists(_word, max_size=7).map(" ".join)
_text = st.one_of(
    st.lists(_line, max_size=12).map(lambda ls: "\n".join(ls).encode()),
    st.binary(max_size=300),
)


@contextmanager
def _file(data: bytes) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="nonstop-fuzz-") as d:
        p = Path(d) / "f"
        p.write_bytes(data)
        p.chmod(0o600)
        yield str(p)


@settings(max_examples=150, deadline=None)
@given(_text)
def test_hacf_never_crashes(data: bytes) -> None:
    with _file(data) as path:
        res = check_hacf(path)
    assert (res.value is None) == bool(res.errors)
    assert all(e.loc.file == path and e.loc.line >= 0 for e in res.errors)


@settings(max_examples=150, deadline=None)
@given(_text)
def test_authkeys_never_crashes(data: bytes) -> None:
    with _file(data) as path:
        res = check_authkeys(path)
    assert (res.value is None) == bool(res.errors)
    if res.value is not None:
        assert res.value.active in res.value.keys


@settings(max_examples=150, deadline=None)
@given(_text)
def test_haresources_never_crashes(data: bytes) -> None:
    with _file(data) as path:
        res = check_haresources(path, ("a", "b"))
    assert (res.value is None) == bool(res.errors)
    if res.value is not None:
        assert len({g.key for g in res.value}) == len(res.value)
