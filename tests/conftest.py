"""Suite-wide checks.

Transition coverage: every (state, trigger) edge of TRANSITIONS must be taken by at least
one test. Connection._transition is wrapped for the run to record the edges; with
pytest-xdist each worker reports its set to the controller. A full run of the suite that
leaves an edge untaken fails, naming the edges. Runs of a subset (-k, -m, paths) only
report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tcpstack.core.connection import Connection
from tcpstack.core.state import TRANSITIONS, State, Trigger

_SEEN: set[tuple[str, str]] = set()
_ORIGINAL_TRANSITION = Connection._transition
_MISSING_KEY = "transition_coverage_missing"


def _recording_transition(self: Connection, trigger: Trigger, now: int) -> None:
    old: State = self.state
    _ORIGINAL_TRANSITION(self, trigger, now)
    _SEEN.add((old.name, trigger.name))


def pytest_configure(config: pytest.Config) -> None:
    Connection._transition = _recording_transition  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    Connection._transition = _ORIGINAL_TRANSITION  # type: ignore[method-assign]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: merge the edges a worker saw."""
    seen = node.workeroutput.get("transitions_seen", [])
    _SEEN.update((a, b) for a, b in seen)


def _is_full_run(config: pytest.Config) -> bool:
    option = config.option
    # The default run deselects the opt-in `slow` marker; that is still the full suite.
    if option.keyword or option.markexpr not in ("", "not slow") or getattr(option, "lf", False):
        return False
    tests_dir = Path(__file__).parent.resolve()
    args = [Path(str(a).split("::")[0]).resolve() for a in config.args]
    return all(a == tests_dir or a == tests_dir.parent for a in args)


def missing_edges() -> list[str]:
    return sorted(
        f"{state.name} --{trigger.name}--> {target.name}"
        for (state, trigger), target in TRANSITIONS.items()
        if (state.name, trigger.name) not in _SEEN
    )


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the set to the controller
        workeroutput["transitions_seen"] = sorted(_SEEN)
        return
    missing = missing_edges()
    config.stash[_missing_stash] = missing
    if missing and _is_full_run(config) and session.testscollected > 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_missing_stash = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if getattr(config, "workeroutput", None) is not None:
        return
    missing = config.stash.get(_missing_stash, None)
    if missing is None:
        return
    total = len(TRANSITIONS)
    terminalreporter.section("TRANSITIONS coverage")
    terminalreporter.write_line(f"{total - len(missing)} of {total} edges exercised")
    for edge in missing:
        terminalreporter.write_line(f"  never exercised: {edge}")
    if missing and _is_full_run(config):
        terminalreporter.write_line("FAILED: every TRANSITIONS edge must be exercised by the suite")
