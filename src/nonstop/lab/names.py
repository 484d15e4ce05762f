"""Names of lab objects: a per-run prefix that says which process made them.

Every namespace of a lab is called ``nl<pid>x<serial>-<role>``: ``nl`` marks "nonstop lab",
``<pid>`` is the process that built it and ``<serial>`` (base 36) counts labs within that
process. Carrying the pid lets a later run tell a crashed run's leftovers (pid gone) from a lab
that another run is using right now (pid alive), so cleanup only ever removes what is certainly
ours and abandoned.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass

from nonstop.errors import InvalidValue

# Names stay within IFNAMSIZ (15 usable characters) so any of them could name an interface
# too: a 7-digit pid, a 2-character serial and a 2-character role fit.
IFNAMSIZ = 15
PREFIX_PATTERN = re.compile(r"^nl(?P<pid>\d+)x(?P<serial>[0-9a-z]+)-")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"

_serials = itertools.count(1)


def _base36(number: int) -> str:
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = _DIGITS[digit] + text
        if number == 0:
            return text


@dataclass(frozen=True)
class LabPrefix:
    """The per-run prefix of one lab's names."""

    pid: int
    serial: int

    @property
    def text(self) -> str:
        """The prefix as it appears in names, without the trailing dash."""
        return f"nl{self.pid}x{_base36(self.serial)}"

    def name(self, role: str) -> str:
        """The namespace name for ``role`` (``sw``, ``cl``, ``n1`` ...)."""
        name = f"{self.text}-{role}"
        if len(name) > IFNAMSIZ:
            raise InvalidValue(f"lab name {name!r} is longer than {IFNAMSIZ} characters")
        return name


def new_prefix() -> LabPrefix:
    """A prefix unique within this machine for as long as this process lives."""
    return LabPrefix(os.getpid(), next(_serials))


def owner_pid(name: str) -> int | None:
    """The pid encoded in a lab name, or None when the name is not a lab name."""
    match = PREFIX_PATTERN.match(name)
    return int(match.group("pid")) if match else None
