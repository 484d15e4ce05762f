"""Configuration errors that always name the file and line they come from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from nonstop.errors import NonstopError
from nonstop.records import record


@record
class Location:
    """A place in a configuration file (line numbers start at 1; 0 means the whole file)."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class ConfigError(NonstopError):
    """One problem in one configuration file, printed as ``file:line: message``."""

    def __init__(self, loc: Location, message: str) -> None:
        super().__init__(f"{loc}: {message}")
        self.loc = loc
        self.message = message


class ConfigErrors(NonstopError):
    """Every problem found while loading a configuration; raised when there is at least one."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors: tuple[ConfigError, ...] = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))

    @classmethod
    def raise_if_any(cls, errors: Iterable[ConfigError]) -> None:
        errs = list(errors)
        if errs:
            raise cls(errs)
