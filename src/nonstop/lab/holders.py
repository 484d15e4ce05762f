"""Who has the virtual IP, sampled continuously: the ground truth for "never two holders".

A thread asks each node's namespace for its addresses in turn (a few ms per node) for as long
as the watch runs; ``dual_s`` is the longest stretch during which two or more nodes had the
address, ``samples`` how many rounds were taken.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from nonstop.lab.errors import LabError
from nonstop.lab.lab import VIP, Lab


@dataclass
class HolderWatch:
    lab: Lab
    nodes: Sequence[str]
    address: str = VIP
    samples: int = 0
    dual_s: float = 0.0
    most: int = 0  # the most nodes seen holding at once
    history: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _dual_since: float | None = None

    def __enter__(self) -> HolderWatch:
        self._thread = threading.Thread(target=self._run, name="holder-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                holders = tuple(n for n in self.nodes if self.lab.has_address(n, self.address))
            except LabError:
                continue  # a namespace command timed out on a loaded machine: sample again
            now = time.monotonic()
            self.samples += 1
            self.most = max(self.most, len(holders))
            if not self.history or self.history[-1][1] != holders:
                self.history.append((now, holders))
            if len(holders) > 1:
                self._dual_since = self._dual_since if self._dual_since is not None else now
                self.dual_s = max(self.dual_s, now - self._dual_since)
            else:
                self._dual_since = None
            self._stop.wait(0.005)

    def holders_now(self) -> tuple[str, ...]:
        return self.history[-1][1] if self.history else ()
