"""Fixtures for namespace tests, and what the whole run reports.

``lab`` is a started two-node lab (``n1``, ``n2`` and the client); ``make_lab(nodes)`` builds
more. A lab of a failed test keeps its work directory (logs, box files) for inspection; the
next session's leftover cleanup removes it.

This file sits at the top of ``tests`` (not in ``tests/integration``) so that pytest loads it
at start-up, in the xdist controller too, which receives every worker's reports: a test that
was run again (``--reruns``) has its first failure printed at the end, which
pytest-rerunfailures does not do, so a test that fails once in a while under load can be
diagnosed from a CI log.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Generator, Iterator, Sequence

import pytest

from nonstop.daemon import MISSED_CHANGE
from nonstop.lab import Lab, cleanup_leftovers


def _can_build_labs() -> bool:
    return os.geteuid() == 0 and all(shutil.which(tool) for tool in ("ip", "nft", "unshare"))


def netns_names() -> list[str]:
    """Names in ``ip netns list``."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


# Under pytest-xdist (scripts/test.sh runs two workers, `--dist loadgroup`), each module's tests
# stay together on one worker (module-scoped labs are built once), and the modules below share a
# group, so that they never run beside one another: the benchmarks, the chaos and flood tests keep
# a core busy, and the Heartbeat 3.0.6 boxes run SCHED_RR. What runs beside them is lighter.
XDIST_GROUPS = {
    "heavy": ("test_bench_quick", "test_bench_sync_quick", "test_bench_issue15_quick",
              "test_chaos_quick", "test_hostile_lan", "test_membership_loss",
              "test_replication_live"),
    "heartbeat": ("test_interop_heartbeat", "test_interop_heartbeat_resources",
                  "test_lab_heartbeat", "test_fencing_netns"),
}
_GROUP_OF = {module: group for group, modules in XDIST_GROUPS.items() for module in modules}


def pytest_configure(config: pytest.Config) -> None:
    """SIGUSR1 makes this process (the xdist controller or a worker) write every thread's stack
    to the log: scripts/test.sh's watchdog sends it to a run that outlives its limit."""
    faulthandler.register(signal.SIGUSR1, file=os.dup(2), all_threads=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.stem
        if item.path.parent.name == "integration":
            item.add_marker(pytest.mark.xdist_group(_GROUP_OF.get(module, module)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None],
                              ) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session", autouse=True)
def _remove_lab_leftovers() -> None:
    """Remove namespaces and work directories of earlier lab runs whose process is gone."""
    if _can_build_labs():
        cleanup_leftovers()


@pytest.fixture
def make_lab(request: pytest.FixtureRequest) -> Iterator[Callable[[Sequence[str]], Lab]]:
    """Build started labs; all are torn down after the test, and must leave nothing behind."""
    if not _can_build_labs():
        pytest.skip("labs need root, iproute2, nftables and unshare")
    labs: list[Lab] = []

    def build(nodes: Sequence[str] = ("n1", "n2")) -> Lab:
        lab = Lab(nodes)
        labs.append(lab)
        return lab.start()

    yield build
    failed = request.node.stash.get(_FAILED, False)
    # A daemon whose decisions changed with nothing reported to it (the daemon's safety net
    # caught an input change that had no event: a bug, whatever the test itself checked).
    problems = [f"{name}: {MISSED_CHANGE}" for lab in labs
                for name in lab.logs_saying(MISSED_CHANGE)]
    for lab in labs:
        lab.keep_workdir = failed or bool(problems)
        if failed:
            print(f"lab {lab.prefix}: work directory kept at {lab.workdir}")
        try:
            lab.close()
        except Exception as exc:  # close the other labs too, then fail
            problems.append(str(exc))
    assert not problems, problems
    for lab in labs:
        left = [name for name in netns_names() if name.startswith(lab.prefix + "-")]
        assert not left, f"lab teardown left namespaces behind: {left}"


@pytest.fixture
def lab(make_lab: Callable[[Sequence[str]], Lab]) -> Lab:
    """A started lab with nodes ``n1``, ``n2`` and the client."""
    return make_lab(("n1", "n2"))


_KEEP_CHARS = 6000
_first_failures: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.outcome == "rerun":  # type: ignore[comparison-overlap]  # the plugin's outcome
        captured = "".join(f"\n--- {name}\n{content}" for name, content in report.sections)
        _first_failures.append((report.nodeid, report.longreprtext[-_KEEP_CHARS:]
                                + captured[-_KEEP_CHARS:]))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for nodeid, text in _first_failures:
        terminalreporter.write_sep("-", f"failed, then run again: {nodeid}")
        terminalreporter.write_line(text)
