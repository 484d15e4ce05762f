"""ha.cf nonstop_etcd: endpoints, prefix and TLS files, with a clear error for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from nonstop.config.etcd import EtcdSettings, parse_etcd
from nonstop.config.hacf import check_hacf
from nonstop.config.model import HaConfig
from nonstop.talk import copy_talk


def test_endpoints_and_options() -> None:
    s = parse_etcd(["https://198.18.0.1:2379", "https://198.18.0.2:2379/", "prefix=/ha/pbx/",
                    "cacert=/etc/nonstop/ca.pem", "cert=/etc/nonstop/n1.pem",
                    "key=/etc/nonstop/n1.key"])
    assert s == EtcdSettings(("https://198.18.0.1:2379", "https://198.18.0.2:2379"),
                             "/ha/pbx/", "/etc/nonstop/ca.pem", "/etc/nonstop/n1.pem",
                             "/etc/nonstop/n1.key")
    assert s.key_prefix("linux-ha") == "/ha/pbx"
    assert parse_etcd(["http://e1:2379"]).key_prefix("vpbx") == "/nonstop/vpbx"


@pytest.mark.parametrize(("args", "words"), [
    ([], "at least one endpoint"),
    (["198.18.0.1:2379"], "is not an etcd endpoint"),
    (["http://e1:2379/v3"], "is not an etcd endpoint"),
    (["http://e1:99999"], "bad port"),
    (["http://e1", "https://e2"], "mix http:// and https://"),
    (["http://e1", "prefix=nonstop"], "prefix= must start with '/'"),
    (["http://e1", "prefix=/"], "prefix= must start with '/'"),
    (["https://e1", "cacert=ca.pem"], "needs an absolute path"),
    (["https://e1", "cert=/c.pem"], "go together"),
    (["http://e1", "cacert=/ca.pem"], "endpoints are http://"),
    (["http://e1", "ttl=3"], "unknown option 'ttl'"),
    (["http://e1", "prefix=/a", "prefix=/b"], "given twice"),
])
def test_mistakes(args: list[str], words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_etcd(args)


def _ha(tmp_path: Path, line: str) -> object:
    ha_cf = copy_talk(tmp_path) / "ha.d" / "ha.cf"
    ha_cf.write_text(ha_cf.read_text() + line + "\n")
    parsed = check_hacf(str(ha_cf))
    return parsed.value if parsed.value is not None else [str(e) for e in parsed.errors]


def test_in_ha_cf(tmp_path: Path) -> None:
    ha = _ha(tmp_path / "a", "nonstop_etcd http://198.18.0.1:2379,http://198.18.0.2:2379 "
             "http://198.18.0.3:2379")
    assert isinstance(ha, HaConfig) and ha.etcd == EtcdSettings(
        ("http://198.18.0.1:2379", "http://198.18.0.2:2379", "http://198.18.0.3:2379"))
    plain = _ha(tmp_path / "b", "debug 0")
    assert isinstance(plain, HaConfig) and plain.etcd is None
    errors = _ha(tmp_path / "c", "nonstop_etcd 198.18.0.1")
    assert isinstance(errors, list) and len(errors) == 1
    assert "ha.cf:" in errors[0] and "'nonstop_etcd': '198.18.0.1' is not an etcd endpoint" \
        in errors[0]


def test_the_shipped_three_node_example_is_valid() -> None:
    """src/nonstop/examples/etcd: the ha.cf parses, and etcd's file names the same nodes."""
    import importlib.resources

    example = importlib.resources.files("nonstop") / "examples" / "etcd"
    ha_cf = Path(str(example / "ha.cf"))
    parsed = check_hacf(str(ha_cf))
    assert parsed.value is not None, [str(e) for e in parsed.errors]
    ha = parsed.value
    assert ha.nodes == ("vpbx1-1", "vpbx1-2", "vpbx1-3")
    assert ha.etcd is not None and len(ha.etcd.endpoints) == 3
    assert ha.etcd.cacert and ha.etcd.cert and ha.etcd.key
    env = dict(line.split("=", 1) for line in (example / "etcd.default").read_text().splitlines()
               if line and not line.startswith("#"))
    members = env["ETCD_INITIAL_CLUSTER"].strip('"').split(",")
    assert [m.split("=")[0] for m in members] == list(ha.nodes)
    assert env["ETCD_ADVERTISE_CLIENT_URLS"].strip('"') == ha.etcd.endpoints[0]
