"""Every exception class of the package derives from exactly one of the two roots."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import nonstop
from nonstop.errors import NonstopError, RemoteInputError

ROOTS = (NonstopError, RemoteInputError)

# Classes that may derive from neither root, each with the reason. Empty today: add one here
# only with a reason a reader would accept.
UNROOTED: dict[str, str] = {}

# What each class is, so that moving one to the other root is a visible decision.
REMOTE = {
    "nonstop.heartbeat.message.BadPacket",
    "nonstop.sync.protocol.ProtocolError",
    "nonstop.sync.protocol.AuthError",
    "nonstop.sync.protocol.RemoteError",
    "nonstop.sync.rdiff.RdiffError",
    "nonstop.coord.port.CoordError",
    "nonstop.ping.icmp.NotOurReply",
}


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for mod_info in pkgutil.walk_packages(nonstop.__path__, "nonstop."):
        if mod_info.name.rpartition(".")[2] == "__main__":
            continue  # running it is the CLI; it defines nothing
        module = importlib.import_module(mod_info.name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_the_walk_finds_the_known_classes() -> None:
    """A walk that found nothing would make the next test pass vacuously."""
    found = _exception_classes()
    assert set(found) >= REMOTE
    assert {"nonstop.config.errors.ConfigError", "nonstop.apiclient.ApiError"} <= set(found)
    assert set(ROOTS) <= set(found.values())


def test_each_exception_has_exactly_one_root() -> None:
    wrong: list[str] = []
    for name, cls in _exception_classes().items():
        if cls in ROOTS or name in UNROOTED:
            continue
        roots = [r for r in ROOTS if issubclass(cls, r)]
        if len(roots) != 1:
            wrong.append(f"{name}: derives from {[r.__name__ for r in roots] or 'no root'}")
        elif (roots[0] is RemoteInputError) != (name in REMOTE):
            wrong.append(f"{name}: derives from {roots[0].__name__}, listed otherwise here")
    assert wrong == []


def test_the_roots_are_unrelated() -> None:
    assert not issubclass(NonstopError, RemoteInputError)
    assert not issubclass(RemoteInputError, NonstopError)
