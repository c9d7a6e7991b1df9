"""The packetdrill corpus written from RFC 9293: every script under scripts/ passes
against tcpstack's default (Linux-like) Config. Where tcpstack follows Linux instead of
the RFC, the script says so and expects what Linux does (docs/packetdrill.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpstack.packetdrill import run_file

SCRIPTS = Path(__file__).parent / "scripts"
ALL = sorted(SCRIPTS.glob("*/*.pkt"))
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


def test_corpus_covers_every_state() -> None:
    directories = {p.name for p in SCRIPTS.iterdir() if p.is_dir()}
    assert directories == STATES
    counts = {state: len(list((SCRIPTS / state).glob("*.pkt"))) for state in STATES}
    assert all(count >= 1 for count in counts.values()), counts
    assert sum(counts.values()) == len(ALL)
    for name in ("keepalive", "linger_zero", "simultaneous_close", "zero_window"):
        assert (SCRIPTS / "misc" / f"{name}.pkt").exists()
