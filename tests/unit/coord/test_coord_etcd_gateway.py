"""The etcd gateway driver against a mock HTTP transport: the requests it sends, the answers
it reads, failing over between endpoints, and CoordError (only) for anything else."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from nonstop.config.etcd import EtcdSettings
from nonstop.coord.etcd import EtcdGateway
from nonstop.coord.port import CoordError, KeyHolder

E1, E2 = "http://198.18.0.1:2379", "http://198.18.0.2:2379"


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


class Fake:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, Any]]] = []
        self.down: set[str] = set()
        self.answers: dict[str, tuple[int, Any]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = f"http://{request.url.host}:{request.url.port}"
        body = json.loads(request.content)
        self.seen.append((host, request.url.path, body))
        if host in self.down:
            raise httpx.ConnectError("refused", request=request)
        status, doc = self.answers[request.url.path]
        if isinstance(doc, str):
            return httpx.Response(status, text=doc)
        return httpx.Response(status, json=doc)


def gateway(fake: Fake) -> EtcdGateway:
    return EtcdGateway(EtcdSettings((E1, E2)), 1.0, transport=httpx.MockTransport(fake))


async def test_requests_and_answers() -> None:
    fake = Fake()
    gw = gateway(fake)
    fake.answers["/v3/lease/grant"] = (200, {"ID": "7587", "TTL": "2"})
    assert await gw.grant(2) == (7587, 2)
    assert fake.seen[-1] == (E1, "/v3/lease/grant", {"TTL": "2"})
    fake.answers["/v3/lease/keepalive"] = (200, {"result": {"ID": "7587", "TTL": "2"}})
    assert await gw.keepalive(7587) == 2
    fake.answers["/v3/lease/keepalive"] = (200, {"result": {"ID": "7587"}})
    assert await gw.keepalive(7587) == 0  # expired: etcd leaves TTL out
    fake.answers["/v3/kv/txn"] = (200, {"succeeded": True})
    assert await gw.create("/p/groups/g", "n1", 7587) is None
    txn: dict[str, Any] = fake.seen[-1][2]
    assert txn["compare"] == [{"target": "CREATE", "result": "EQUAL", "key": b64("/p/groups/g"),
                               "create_revision": "0"}]
    assert txn["success"][0]["request_put"]["lease"] == "7587"
    fake.answers["/v3/kv/txn"] = (200, {"responses": [{"response_range": {"kvs": [
        {"key": b64("/p/groups/g"), "value": b64("n2"), "lease": "99"}]}}]})
    assert await gw.create("/p/groups/g", "n1", 7587) == KeyHolder("n2", 99)
    fake.answers["/v3/kv/range"] = (200, {"kvs": [{"key": b64("/p/groups/g"),
                                                    "value": b64("n2"), "lease": "99"}]})
    assert await gw.read("/p/groups/") == {"g": KeyHolder("n2", 99)}
    assert fake.seen[-1][2] == {"key": b64("/p/groups/"), "range_end": b64("/p/groups0")}
    fake.answers["/v3/lease/revoke"] = (404, {"error": "etcdserver: requested lease not found"})
    await gw.revoke(7587)  # already gone is fine
    await gw.close()


async def test_fails_over_to_the_next_endpoint_and_stays_there() -> None:
    fake = Fake()
    gw = gateway(fake)
    fake.answers["/v3/kv/range"] = (200, {"count": "0"})
    fake.down.add(E1)
    assert await gw.read("/p/") == {}
    assert [h for h, _, _ in fake.seen] == [E1, E2]
    fake.down.clear()
    fake.seen.clear()
    await gw.read("/p/")
    assert [h for h, _, _ in fake.seen] == [E2]
    await gw.close()


@pytest.mark.parametrize(("status", "doc", "words"), [
    (503, {"error": "etcdserver: no leader"}, "no leader"),
    (200, "<html>proxy</html>", "not JSON"),
    (200, {"error": "etcdserver: request timed out"}, "timed out"),
])
async def test_every_endpoint_failing_is_one_coord_error(status: int, doc: Any,
                                                        words: str) -> None:
    fake = Fake()
    gw = gateway(fake)
    fake.answers["/v3/lease/grant"] = (status, doc)
    with pytest.raises(CoordError, match=words) as e:
        await gw.grant(2)
    assert E1 in str(e.value) and E2 in str(e.value)
    await gw.close()


@pytest.mark.parametrize("doc", [{"ID": "x", "TTL": "2"}, {"TTL": "2"}, [1, 2]])
async def test_garbled_answers_are_coord_errors(doc: Any) -> None:
    fake = Fake()
    gw = gateway(fake)
    fake.answers["/v3/lease/grant"] = (200, doc)
    with pytest.raises(CoordError):
        await gw.grant(2)
    fake.answers["/v3/kv/range"] = (200, {"kvs": [{"key": "%%%", "value": b64("n")}]})
    with pytest.raises(CoordError, match="base64"):
        await gw.read("/p/")
    await gw.close()


@pytest.mark.parametrize("error", [
    ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate"),
    ConnectionResetError(104, "Connection reset by peer"),
])
async def test_a_tls_alert_httpx_does_not_wrap_is_a_coord_error(error: OSError) -> None:
    """With TLS 1.3 a server that rejects our client certificate (expired, another CA) says so
    after the handshake: the alert surfaced at the first read as a bare ssl.SSLError, not an
    httpx error, and escaped the gateway (seen in test_etcd_tls_netns, once)."""
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    gw = EtcdGateway(EtcdSettings((E1, E2)), 1.0, transport=httpx.MockTransport(fail))
    with pytest.raises(CoordError, match=type(error).__name__) as e:
        await gw.grant(5)
    assert E1 in str(e.value) and E2 in str(e.value)
    await gw.close()


async def test_a_client_error_is_not_retried_elsewhere() -> None:
    fake = Fake()
    gw = gateway(fake)
    fake.answers["/v3/kv/txn"] = (400, {"error": "etcdserver: requested lease not found"})
    with pytest.raises(CoordError, match="lease not found"):
        await gw.create("/p/groups/g", "n1", 1)
    assert len(fake.seen) == 1
    await gw.close()


def test_unusable_tls_files_are_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "ca.pem")
    with pytest.raises(OSError, match=f"nonstop_etcd cacert={missing}"):
        EtcdGateway(EtcdSettings(("https://e1:2379",), cacert=missing), 1.0)
    garbage = tmp_path / "client.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(OSError, match=r"nonstop_etcd cert=.*client\.pem key="):
        EtcdGateway(EtcdSettings(("https://e1:2379",), cert=str(garbage), key=str(garbage)),
                    1.0)
