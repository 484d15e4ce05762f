"""For the whole run: why a test that was run again (``--reruns``) failed the first time.

pytest-rerunfailures names such a test in its summary but drops the failure itself, so a test
that fails once in a while under load could never be diagnosed from a CI log. This file sits
where pytest loads it at start-up, in the xdist controller too, which receives every worker's
reports.
"""

from __future__ import annotations

import pytest

_KEEP_CHARS = 6000
_first_failures: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.outcome == "rerun":  # type: ignore[comparison-overlap]  # the plugin's outcome
        _first_failures.append((report.nodeid, report.longreprtext[-_KEEP_CHARS:]))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for nodeid, text in _first_failures:
        terminalreporter.write_sep("-", f"failed, then run again: {nodeid}")
        terminalreporter.write_line(text)
