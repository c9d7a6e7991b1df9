"""The packetdrill corpus written from RFC 9293: every script under scripts/ passes
against tcpstack's default (Linux-like) Config; every script under pending/ shows a
deviation of tcpstack from the RFC and still fails (strict xfail: once tcpstack is
fixed the test says so, and the script moves to scripts/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpstack.packetdrill import run_file

SCRIPTS = Path(__file__).parent / "scripts"
PENDING = Path(__file__).parent / "pending"
ALL = sorted(SCRIPTS.glob("*/*.pkt"))
ALL_PENDING = sorted(PENDING.glob("*.pkt"))
STATES = {
    "closed",
    "listen",
    "syn_sent",
    "syn_received",
    "established",
    "fin_wait_1",
    "fin_wait_2",
    "closing",
    "close_wait",
    "last_ack",
    "time_wait",
    "misc",
}


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_script_passes(path: Path) -> None:
    result = run_file(path)
    assert result.ok, result.describe()


@pytest.mark.parametrize("path", ALL_PENDING, ids=lambda p: p.stem)
@pytest.mark.xfail(strict=True, reason="tcpstack deviates from the RFC here (see the script)")
def test_pending_script_still_fails(path: Path) -> None:
    result = run_file(path)
    assert result.ok, result.describe()


def test_pending_scripts_fail_on_an_expectation_not_on_syntax() -> None:
    # A pending script must fail because tcpstack answers differently, not because the
    # script cannot be parsed or uses something the runner does not support.
    for path in ALL_PENDING:
        result = run_file(path)
        assert not result.ok
        assert not result.message.startswith(("parse error", "unsupported")), result.describe()


def test_corpus_covers_every_state() -> None:
    directories = {p.name for p in SCRIPTS.iterdir() if p.is_dir()}
    assert directories == STATES
    counts = {state: len(list((SCRIPTS / state).glob("*.pkt"))) for state in STATES}
    assert all(count >= 1 for count in counts.values()), counts
    assert sum(counts.values()) == len(ALL)
    for name in ("keepalive", "linger_zero", "simultaneous_close", "zero_window"):
        assert (SCRIPTS / "misc" / f"{name}.pkt").exists()
