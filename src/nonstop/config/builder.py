"""The state of reading one ha.cf, and how a directive's line becomes its value.

:class:`Builder` collects what the directive handlers of :mod:`nonstop.config.directives`
find; :mod:`nonstop.config.hacf` turns it into the HaConfig at the end. A handler reports a
single-error line by raising :class:`~nonstop.config.settings.BadValue`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

from nonstop.config.errors import ConfigError, Location
from nonstop.config.model import Bcast, ConfigWarning, Medium, Ucast
from nonstop.config.settings import BadValue, Setting, Unsupported
from nonstop.ping.targets import PingTarget
from nonstop.resources.respawn import RespawnSpec
from nonstop.resources.stonith import StonithDevice

T = TypeVar("T")


@dataclass
class Builder:
    """Mutable state while reading one ha.cf; the reader turns it into HaConfig at the end."""

    path: str
    errors: list[ConfigError] = field(default_factory=list)
    warnings: list[ConfigWarning] = field(default_factory=list)
    # What each single-valued directive's converter returned, by directive name.
    values: dict[str, object] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    locations: dict[str, Location] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    media: list[Medium] = field(default_factory=list)
    notify: list[str] = field(default_factory=list)  # nonstop_notify programs, in file order
    # (medium, line) of each bcast/ucast medium, to warn about a udpport that comes too late
    port_media: list[tuple[Medium, Location]] = field(default_factory=list)
    # Heartbeat's global nice_failback flag: nice_failback looks at it, not at its own value.
    nice_failback: bool = False
    ping_targets: list[PingTarget] = field(default_factory=list)
    ipfail: bool = False
    respawn: list[RespawnSpec] = field(default_factory=list)
    respawn_env: dict[str, str] = field(default_factory=dict)
    stonith: list[tuple[str, StonithDevice]] = field(default_factory=list)

    def error(self, loc: Location, message: str) -> None:
        self.errors.append(ConfigError(loc, message))

    def warn(self, loc: Location, message: str) -> None:
        self.warnings.append(ConfigWarning(loc, message))

    def get(self, setting: Setting[T]) -> T:
        """A setting's value: as given in the file, else its default."""
        if setting.name in self.values:
            # set() below stores only what the setting's converter returned
            return cast(T, self.values[setting.name])
        return setting.initial

    def given(self, *names: str) -> bool:
        return any(n in self.locations for n in names)

    def set(
        self, setting: Setting[T], value: T, raw: str, loc: Location, warn: bool = True
    ) -> None:
        """Record a single-valued directive; a repeat wins, as in Heartbeat, with a warning."""
        name = setting.name
        if warn and name in self.locations:
            self.warn(
                loc,
                f"'{name}' was already given at line {self.locations[name].line}; "
                f"this later value '{raw}' wins",
            )
        self.values[name] = value
        self.parameters[name] = raw
        self.locations[name] = loc

    def record(self, name: str, raw: str, loc: Location, sep: str = "; ") -> None:
        """Record one line of a directive that may be given several times."""
        prev = self.parameters.get(name)
        self.parameters[name] = raw if prev is None else f"{prev}{sep}{raw}"
        self.locations.setdefault(name, loc)

    def add_medium(self, name: str, medium: Medium, raw: str, loc: Location) -> None:
        medium = dataclasses.replace(medium, loc=loc)
        if medium in self.media:
            self.warn(loc, f"'{name} {raw}' repeats a medium given earlier; using it once")
            return
        self.media.append(medium)
        self.locations.setdefault(name, loc)
        # bcast lists devices like node lists names; whole-line media are kept line by line
        sep = " " if name == "bcast" else "; "
        prev = self.parameters.get(name)
        self.parameters[name] = raw if prev is None else f"{prev}{sep}{raw}"
        if isinstance(medium, Bcast | Ucast):
            self.port_media.append((medium, loc))


# (builder, directive name, values, line) -> None; raises BadValue for a single-error line
Handler = Callable[[Builder, str, list[str], Location], None]


def one_value(name: str, args: list[str]) -> str:
    if not args:
        raise BadValue(f"'{name}' needs a value")
    if len(args) > 1:
        shown = " ".join(repr(a) for a in args)
        raise BadValue(
            f"'{name}' takes one value, got {len(args)}: {shown} (a value cannot contain "
            "spaces or commas: write '500ms', not '500 ms')"
        )
    return args[0]


def convert(setting: Setting[T], raw: str) -> T:
    """The setting's value for ``raw``, or BadValue with the message for the line."""
    try:
        return setting.convert(raw)
    except ValueError as e:
        raise BadValue(f"'{setting.name}': {e}") from None
    except Unsupported as e:
        raise BadValue(
            f"directive '{setting.name}' with value '{raw}' is not supported by nonstop: {e}"
        ) from None
