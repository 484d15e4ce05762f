"""Every exception class of the package derives from exactly one of the two roots."""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import pkgutil
from pathlib import Path

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
    "nonstop.sync.protocol.PeerClosed",
    "nonstop.sync.transport.PeerSilent",
    "nonstop.sync.transport.PeerGone",
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


# Where the package may raise a builtin exception itself, because a Python protocol (or the OS)
# demands exactly that builtin. Keyed by (file under src/nonstop, enclosing function).
BUILTIN_ALLOWED: dict[tuple[str, str], tuple[str, str]] = {
    ("demo/cli.py", "_sigterm_as_interrupt"):
        ("KeyboardInterrupt", "a SIGTERM is taken as Ctrl-C, which Python spells so"),
    ("demo/drill.py", "_signals_deferred"):
        ("KeyboardInterrupt", "re-raises the Ctrl-C (or SIGTERM) it held back"),
    ("lab/addrwatch.py", "_setns"):
        ("OSError", "the errno of a failed setns(2): the OS's error, not ours"),
    ("sync/fsops.py", "syncfs"):
        ("OSError", "the errno of a failed syncfs(2): the OS's error, not ours"),
    ("sync/inotify.py", "__init__"):
        ("OSError", "the errno of a failed inotify_init1(2): the OS's error, not ours"),
    ("records.py", "__init__"):
        ("TypeError", "a record's __init__ refuses wrong arguments as every Python call does"),
    ("records.py", "replace"):
        ("TypeError", "as dataclasses.replace does, for a field the record does not have"),
    ("sync/inotify.py", "_add"):
        ("OSError", "the errno of a failed inotify_add_watch(2): the OS's error, not ours"),
}


def _is_builtin_exception(name: str) -> bool:
    obj = getattr(builtins, name, None)
    return inspect.isclass(obj) and issubclass(obj, BaseException)


def _protocol_demands(raised: str, func: ast.FunctionDef | ast.AsyncFunctionDef | None) -> bool:
    """A method a subclass provides raises NotImplementedError and nothing else; __getattr__
    says "no such attribute" with AttributeError."""
    if func is None:
        return False
    if raised == "NotImplementedError":
        body = func.body[1:] if ast.get_docstring(func) is not None else func.body
        return len(body) == 1 and isinstance(body[0], ast.Raise)
    return raised == "AttributeError" and func.name == "__getattr__"


def _bare_builtin_raises(tree: ast.AST) -> list[tuple[int, str, str]]:
    """(line, enclosing function, builtin) for each ``raise <builtin>`` / ``raise <builtin>(...)``
    outside an allowed protocol."""
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, func: ast.FunctionDef | ast.AsyncFunctionDef | None) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            func = node
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if (isinstance(target, ast.Name) and _is_builtin_exception(target.id)
                    and not _protocol_demands(target.id, func)):
                found.append((node.lineno, func.name if func else "<module>", target.id))
        for child in ast.iter_child_nodes(node):
            visit(child, func)

    visit(tree, None)
    return found


def test_the_package_raises_no_bare_builtin() -> None:
    """`raise ValueError(...)` in src/nonstop derives from neither root: raise one of the
    classes of nonstop.errors (InvalidValue, MachineError, ...) or a class of the module."""
    src = Path(nonstop.__file__).parent
    wrong: list[str] = []
    allowed_seen: set[tuple[str, str]] = set()
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).as_posix()
        for line, func, raised in _bare_builtin_raises(ast.parse(path.read_text())):
            allowed = BUILTIN_ALLOWED.get((rel, func))
            if allowed is not None and allowed[0] == raised:
                allowed_seen.add((rel, func))
                continue
            wrong.append(f"{rel}:{line} ({func}): raise {raised}")
    assert wrong == []
    # An entry whose raise went away is taken out, so the list stays a list of real exceptions.
    assert allowed_seen == set(BUILTIN_ALLOWED)


def test_the_source_walk_sees_a_bare_builtin() -> None:
    """The walk itself: it would otherwise pass on any source."""
    tree = ast.parse(
        "class A:\n"
        "    def run(self):\n"
        "        raise NotImplementedError\n"
        "    def __getattr__(self, name):\n"
        "        raise AttributeError(name)\n"
        "    def check(self, x):\n"
        "        if x:\n"
        "            raise ValueError(f'bad {x}')\n"
        "        raise KeyError\n"
        "    def half(self):\n"
        "        self.x = 1\n"
        "        raise NotImplementedError\n"
        "raise RuntimeError('at import')\n"
        "raise InvalidValue('fine')\n"
    )
    assert _bare_builtin_raises(tree) == [
        (8, "check", "ValueError"), (9, "check", "KeyError"),
        (12, "half", "NotImplementedError"), (13, "<module>", "RuntimeError"),
    ]
