"""ha.cf nonstop_metrics: the page binds to localhost unless another address is written out
(issue 14: serving another address needs an explicit setting), with a clear error otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from nonstop.config.hacf import check_hacf
from nonstop.config.model import HaConfig
from nonstop.config.settings import metrics_address
from nonstop.talk import copy_talk


@pytest.mark.parametrize(("text", "address"), [
    ("9464", ("127.0.0.1", 9464)),  # a bare port: localhost, never the network
    (":9464", ("127.0.0.1", 9464)),
    ("127.0.0.1:9464", ("127.0.0.1", 9464)),
    ("198.18.0.2:9100", ("198.18.0.2", 9100)),
    ("0.0.0.0:9464", ("0.0.0.0", 9464)),  # every address: only when written out
    ("[::1]:9464", ("::1", 9464)),
    ("[2001:db8::2]:80", ("2001:db8::2", 80)),
])
def test_addresses(text: str, address: tuple[str, int]) -> None:
    assert metrics_address(text) == address


@pytest.mark.parametrize(("text", "words"), [
    ("", "write PORT or ADDRESS:PORT"),
    ("0", "write PORT or ADDRESS:PORT"),
    ("65536", "write PORT or ADDRESS:PORT"),
    ("localhost:9464", "is not an IP address"),  # no name lookups: say the address
    ("eth0:9464", "is not an IP address"),
    ("::1:9464", "in brackets"),  # itself an IPv6 address: the port is ambiguous
    ("2001:db8::2:80", "in brackets"),
    ("[::1:9464", "write PORT or ADDRESS:PORT"),
    ("198.18.0.2:", "write PORT or ADDRESS:PORT"),
])
def test_mistakes(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        metrics_address(text)


def _ha(tmp_path: Path, line: str) -> HaConfig | list[str]:
    ha_cf = copy_talk(tmp_path) / "ha.d" / "ha.cf"
    ha_cf.write_text(ha_cf.read_text() + line + "\n")
    parsed = check_hacf(str(ha_cf))
    return parsed.value if parsed.value is not None else [str(e) for e in parsed.errors]


def test_in_ha_cf(tmp_path: Path) -> None:
    ha = _ha(tmp_path / "a", "nonstop_metrics 9464")
    assert isinstance(ha, HaConfig) and ha.metrics_address == ("127.0.0.1", 9464)
    plain = _ha(tmp_path / "b", "debug 0")
    assert isinstance(plain, HaConfig) and plain.metrics_address is None  # not served
    errors = _ha(tmp_path / "c", "nonstop_metrics www.example.com:9464")
    assert isinstance(errors, list) and len(errors) == 1
    ha_cf = tmp_path / "c" / "ha.d" / "ha.cf"
    line = len(ha_cf.read_text().splitlines())
    assert f"{ha_cf}:{line}" in errors[0] and "not an IP address" in errors[0]
