"""The real coordination driver: etcd's v3 API through its JSON gateway, over httpx.

Every etcd 3.x member serves the gateway on its client port (``/v3/...``, base64 keys and
values, 64-bit numbers as strings), with the same TLS as gRPC; docs/ETCD.md says why this and
not a gRPC client. Requests go to the endpoint that answered last; one that fails (refused,
timed out, no quorum behind it) sends the same request to the next, each try bounded by an
equal share of the request's time.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Mapping
from typing import Any

import httpx

from nonstop.config.etcd import EtcdSettings
from nonstop.coord.port import CoordError, KeyHolder
from nonstop.errors import MachineError


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: object) -> str:
    if not isinstance(text, str):
        raise CoordError(f"etcd answered a non-string where base64 was expected: {text!r:.80}")
    try:
        return base64.b64decode(text, validate=True).decode()
    except ValueError as e:
        raise CoordError(f"etcd answered bad base64: {e}") from None


def _int(value: object) -> int:
    try:
        return int(str(value)) if value is not None else 0
    except ValueError:
        raise CoordError(f"etcd answered a non-number: {value!r:.80}") from None


def _prefix_end(prefix: str) -> bytes:
    raw = bytearray(prefix.encode())
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return b"\0"
    raw[-1] += 1
    return bytes(raw)


def tls_context(settings: EtcdSettings) -> ssl.SSLContext | None:
    """The client TLS context for https endpoints (None for http); OSError naming the file
    that cannot be used."""
    if not settings.endpoints[0].startswith("https://"):
        return None
    try:
        ctx = ssl.create_default_context(cafile=settings.cacert)
    except OSError as e:
        raise MachineError(f"nonstop_etcd cacert={settings.cacert}: {e.strerror or e}") from None
    if settings.cert and settings.key:
        try:
            ctx.load_cert_chain(settings.cert, settings.key)
        except OSError as e:
            raise MachineError(f"nonstop_etcd cert={settings.cert} key={settings.key}: "
                               f"{e.strerror or e}") from None
    return ctx


class EtcdGateway:
    """A ``Coordinator`` on an etcd cluster; ``timeout_s`` bounds one request."""

    def __init__(self, settings: EtcdSettings, timeout_s: float,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.endpoints = settings.endpoints
        self.timeout_s = timeout_s
        self._current = 0
        tls = tls_context(settings)
        self._http = httpx.AsyncClient(verify=tls if tls is not None else True,
                                       trust_env=False, transport=transport)

    async def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        n = len(self.endpoints)
        per_try = self.timeout_s / n
        problems: list[str] = []
        for i in range(n):
            k = (self._current + i) % n
            url = self.endpoints[k] + path
            try:
                r = await self._http.post(url, json=body, timeout=per_try)
            except (httpx.HTTPError, OSError) as e:
                # OSError: what httpx does not wrap, e.g. the ssl.SSLError of a TLS 1.3 server
                # that rejects our client certificate after the handshake, at the first read.
                problems.append(f"{self.endpoints[k]}: {type(e).__name__} {e}".strip())
                continue
            try:
                doc = r.json()
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                problems.append(f"{self.endpoints[k]}: HTTP {r.status_code}, not JSON")
                continue
            err = doc.get("error") or doc.get("message")
            if r.status_code >= 500 or (err and r.status_code == 200):
                problems.append(f"{self.endpoints[k]}: {err or f'HTTP {r.status_code}'}")
                continue
            self._current = k
            if r.status_code != 200:
                raise CoordError(f"{path}: {err or f'HTTP {r.status_code}'}")
            return doc
        raise CoordError(f"{path}: " + "; ".join(problems))

    async def grant(self, ttl_s: int) -> tuple[int, int]:
        doc = await self._post("/v3/lease/grant", {"TTL": str(ttl_s)})
        lease, ttl = _int(doc.get("ID")), _int(doc.get("TTL"))
        if lease == 0 or ttl <= 0:
            raise CoordError(f"lease grant answered without a lease: {doc!r:.120}")
        return lease, ttl

    async def keepalive(self, lease: int) -> int:
        doc = await self._post("/v3/lease/keepalive", {"ID": str(lease)})
        result = doc.get("result", doc)
        return _int(result.get("TTL")) if isinstance(result, dict) else 0

    async def revoke(self, lease: int) -> None:
        try:
            await self._post("/v3/lease/revoke", {"ID": str(lease)})
        except CoordError as e:
            if "not found" not in str(e):
                raise

    async def create(self, key: str, value: str, lease: int) -> KeyHolder | None:
        k = _b64(key)
        doc = await self._post("/v3/kv/txn", {
            "compare": [{"target": "CREATE", "result": "EQUAL", "key": k,
                         "create_revision": "0"}],
            "success": [{"request_put": {"key": k, "value": _b64(value), "lease": str(lease)}}],
            "failure": [{"request_range": {"key": k}}],
        })
        if doc.get("succeeded"):
            return None
        for resp in doc.get("responses") or []:
            rng = resp.get("response_range") or resp.get("responseRange") or {}
            for kv in rng.get("kvs") or []:
                return KeyHolder(_unb64(kv.get("value", "")), _int(kv.get("lease")))
        return KeyHolder("", 0)  # deleted between compare and read: not ours; next round

    async def delete_if(self, key: str, value: str, lease: int) -> None:
        k = _b64(key)
        await self._post("/v3/kv/txn", {
            "compare": [
                {"target": "VALUE", "result": "EQUAL", "key": k, "value": _b64(value)},
                {"target": "LEASE", "result": "EQUAL", "key": k, "lease": str(lease)},
            ],
            "success": [{"request_delete_range": {"key": k}}],
        })

    async def read(self, prefix: str) -> Mapping[str, KeyHolder]:
        doc = await self._post("/v3/kv/range", {"key": _b64(prefix),
                                                "range_end": _b64(_prefix_end(prefix))})
        out: dict[str, KeyHolder] = {}
        for kv in doc.get("kvs") or []:
            name = _unb64(kv.get("key", ""))
            if name.startswith(prefix):
                out[name[len(prefix):]] = KeyHolder(_unb64(kv.get("value", "")),
                                                    _int(kv.get("lease")))
        return out

    async def close(self) -> None:
        await self._http.aclose()
