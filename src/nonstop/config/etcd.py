"""ha.cf ``nonstop_etcd``: where the etcd cluster that decides who may hold a group is.

    nonstop_etcd http://198.18.0.1:2379,http://198.18.0.2:2379,http://198.18.0.3:2379

Endpoints are ``http://`` or ``https://`` URLs (commas or spaces between them); options are
``prefix=`` (the key prefix of this cluster, default ``/nonstop/<cluster>``), ``cacert=``,
``cert=`` and ``key=`` (absolute paths of PEM files: the CA that signed etcd's certificate, and
this node's client certificate and key when etcd asks for one). See docs/ETCD.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from nonstop.errors import InvalidValue

_FILES = ("cacert", "cert", "key")


@dataclass(frozen=True)
class EtcdSettings:
    endpoints: tuple[str, ...]
    prefix: str | None = None  # None: /nonstop/<cluster name>
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None

    def key_prefix(self, cluster: str) -> str:
        return (self.prefix or f"/nonstop/{cluster}").rstrip("/")


def parse_etcd(args: list[str]) -> EtcdSettings:
    """The directive's words, or ValueError saying what is wrong with them."""
    endpoints: list[str] = []
    opts: dict[str, str] = {}
    for arg in args:
        name, eq, value = arg.partition("=")
        if eq:
            _option(opts, name, value)
        else:
            endpoints.append(_endpoint(arg))
    if not endpoints:
        raise InvalidValue("needs at least one endpoint (e.g. http://198.18.0.1:2379)")
    if ("cert" in opts) != ("key" in opts):
        raise InvalidValue("cert= and key= go together (the client certificate and its key)")
    if len({e.split(":", 1)[0] for e in endpoints}) > 1:
        raise InvalidValue("endpoints mix http:// and https://")
    if ("cacert" in opts or "cert" in opts) and not endpoints[0].startswith("https://"):
        raise InvalidValue("TLS files are given but the endpoints are http://")
    return EtcdSettings(tuple(endpoints), opts.get("prefix"), opts.get("cacert"),
                        opts.get("cert"), opts.get("key"))


def _option(opts: dict[str, str], name: str, value: str) -> None:
    if name not in ("prefix", *_FILES):
        raise InvalidValue(f"unknown option {name!r} (use prefix=, cacert=, cert=, key=)")
    if name in opts:
        raise InvalidValue(f"{name}= is given twice")
    if name in _FILES and not value.startswith("/"):
        raise InvalidValue(f"{name}= needs an absolute path, not {value!r}")
    if name == "prefix" and (not value.startswith("/") or value.rstrip("/") == ""):
        raise InvalidValue(f"prefix= must start with '/' and name something, not {value!r}")
    opts[name] = value


def _endpoint(arg: str) -> str:
    url = urlsplit(arg)
    if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
        raise InvalidValue(f"{arg!r} is not an etcd endpoint (write http://host:2379)")
    try:
        url.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        raise InvalidValue(f"{arg!r} has a bad port") from None
    return f"{url.scheme}://{url.netloc}"
