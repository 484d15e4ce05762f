"""Records without :mod:`dataclasses`, for the modules ``nonstop sync`` loads at start-up.

``nonstop sync -M`` or a ``-x`` with nothing to do should cost about what the interpreter's
own start costs (issue 8: under 60 ms). ``import dataclasses`` pulls in :mod:`inspect` (with
ast, dis, tokenize, linecache) and every ``@dataclass`` compiles its generated methods with
``exec``: together a third of what the command's own imports cost here (``python3 -X
importtime -m nonstop sync -M ...``), for the two dozen small classes of the configuration,
the state database and the sync engine. A :func:`record` is the same kind of class built
without generated source: its annotated attributes are its fields, in order, with their
class-level defaults (or ``field(default_factory=...)``); it gets ``__init__`` (positional or
by name), ``__eq__`` (same class and equal fields), ``__repr__``, ``__match_args__``, and,
frozen, ``__hash__`` and assignment refused. mypy sees a dataclass (``dataclass_transform``).
:func:`replace` and :func:`fields` are the two helpers of :mod:`dataclasses` the code uses.
Per-file classes (``FileState``) are written out by hand: a generic ``__init__`` is slower.
"""

from __future__ import annotations

from nonstop.errors import NonstopError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from typing_extensions import dataclass_transform

    T = TypeVar("T")
else:
    def dataclass_transform(**_kw):
        return lambda fn: fn


class FrozenRecordError(NonstopError, AttributeError):
    """Assignment to a field of a frozen record (as dataclasses.FrozenInstanceError): a bug."""


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], object]) -> None:
        self.make = make


_MISSING = object()


def field(*, default_factory: Callable[[], T]) -> T:
    """A default made fresh for each record (as dataclasses.field(default_factory=...))."""
    return _Factory(default_factory)  # type: ignore[return-value]


def _field_names(cls: type) -> tuple[str, ...]:
    names: list[str] = []
    for base in reversed(cls.__mro__[1:]):
        names += [n for n in getattr(base, "__record_fields__", ()) if n not in names]
    # a class's own annotations (since 3.10 never a base class's)
    for name, hint in getattr(cls, "__annotations__", {}).items():
        if "ClassVar" not in str(hint) and name not in names:
            names.append(name)
    return tuple(names)


def _defaults(cls: type, names: tuple[str, ...]
              ) -> tuple[dict[str, object], dict[str, Callable[[], object]]]:
    defaults: dict[str, object] = {}
    factories: dict[str, Callable[[], object]] = {}
    for base in reversed(cls.__mro__[1:]):
        defaults.update(getattr(base, "__record_defaults__", {}))
        factories.update(getattr(base, "__record_factories__", {}))
    for name in names:
        value = cls.__dict__.get(name, _MISSING)
        if isinstance(value, _Factory):
            factories[name] = value.make
            delattr(cls, name)
        elif value is not _MISSING:
            defaults[name] = value
    return defaults, factories


def _init(cls: type, names: tuple[str, ...]) -> Callable[..., None]:
    defaults, factories = _defaults(cls, names)
    fieldset = frozenset(names)
    setter = object.__setattr__
    post_init = getattr(cls, "__post_init__", None)
    cls.__record_defaults__ = defaults  # type: ignore[attr-defined]
    cls.__record_factories__ = factories  # type: ignore[attr-defined]

    def __init__(self: Any, *args: object, **kwargs: object) -> None:
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes {len(names)} arguments, got {len(args)}")
        for name, value in zip(names, args, strict=False):
            setter(self, name, value)
        for name in names[len(args):]:
            if name in kwargs:
                setter(self, name, kwargs.pop(name))
            elif name in defaults:
                setter(self, name, defaults[name])
            elif name in factories:
                setter(self, name, factories[name]())
            else:
                raise TypeError(f"{cls.__name__}() missing argument {name!r}")
        if kwargs:
            extra = next(iter(kwargs))
            why = "got multiple values for" if extra in fieldset else "got an unexpected"
            raise TypeError(f"{cls.__name__}() {why} argument {extra!r}")
        if post_init is not None:
            post_init(self)

    return __init__


def _frozen_methods(names: tuple[str, ...]) -> dict[str, Any]:
    def __setattr__(self: Any, name: str, value: object) -> None:
        raise FrozenRecordError(f"cannot assign to field {name!r}")

    def __delattr__(self: Any, name: str) -> None:
        raise FrozenRecordError(f"cannot delete field {name!r}")

    def __hash__(self: Any) -> int:
        return hash(tuple(getattr(self, n) for n in names))

    return {"__setattr__": __setattr__, "__delattr__": __delattr__, "__hash__": __hash__}


def _build(cls: type[T], frozen: bool) -> type[T]:
    names = _field_names(cls)

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in names)

    methods: dict[str, Any] = {"__init__": _init(cls, names), "__repr__": __repr__,
                               "__eq__": __eq__}
    methods |= _frozen_methods(names) if frozen else {"__hash__": None}
    for name, fn in methods.items():
        # as dataclasses: a method the class defines itself stays (for __hash__: a real one,
        # not the None that defining __eq__ leaves)
        if cls.__dict__.get(name) is None:
            if fn is not None:
                fn.__qualname__ = f"{cls.__qualname__}.{name}"
            setattr(cls, name, fn)
    setattr(cls, "__match_args__", names)  # noqa: B010 - mypy refuses the assignment
    cls.__record_fields__ = names  # type: ignore[attr-defined]
    return cls


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[T]) -> type[T]:
    """A frozen record: fields can't be assigned; equal records hash alike."""
    return _build(cls, frozen=True)


@dataclass_transform(field_specifiers=(field,))
def mutable_record(cls: type[T]) -> type[T]:
    """A record whose fields can be assigned (not hashable, as a dataclass with eq)."""
    return _build(cls, frozen=False)


def fields(cls_or_record: object) -> tuple[str, ...]:
    """The field names, in order."""
    names: tuple[str, ...] = getattr(cls_or_record, "__record_fields__")  # noqa: B009
    return names


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of a record with some fields changed (as dataclasses.replace)."""
    values = {n: getattr(obj, n) for n in fields(obj)}
    unknown = set(changes) - set(values)
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {sorted(unknown)[0]!r}")
    values.update(changes)
    return type(obj)(**values)
