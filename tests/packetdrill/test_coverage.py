"""Coverage of the RFC 9293 3.10.7 event table (11 states x 16 events) by the corpus:
every cell is declared (`// cell: STATE x EVENT`) by a script that passes, except the
cells listed in PENDING_ONLY, where tcpstack deviates from the RFC and the only script
is in pending/ (test_corpus checks those still fail). docs/packetdrill.md shows the
table, generated from the same declarations."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpstack.packetdrill.coverage import (
    BEGIN_MARKER,
    END_MARKER,
    EVENTS,
    STATES,
    collect,
    declared_cells,
    main,
    render_markdown,
    replace_section,
)

HERE = Path(__file__).parent
SCRIPTS = HERE / "scripts"
PENDING = HERE / "pending"
DOCS = HERE.parent.parent / "docs" / "packetdrill.md"

# Cells whose RFC expectation tcpstack does not meet yet, declared only by a script in
# pending/ (none now: a new deviation goes there until the core is fixed).
PENDING_ONLY: set[tuple[str, str]] = set()


def test_the_table_has_176_cells() -> None:
    assert len(STATES) == 11
    assert len(EVENTS) == 16
    assert len(collect(SCRIPTS, PENDING).all_cells) == 176


def test_every_cell_is_declared_by_a_passing_script(capsys: pytest.CaptureFixture[str]) -> None:
    coverage = collect(SCRIPTS, PENDING)
    with capsys.disabled():
        counts = ", ".join(f"{k} {v}" for k, v in coverage.scripts_per_directory.items())
        print(f"\npacketdrill scripts per directory: {counts}")
    assert coverage.missing() == []
    assert set(coverage.only_pending()) == PENDING_ONLY
    # Every pending cell is declared by an existing pending script.
    for cell in PENDING_ONLY:
        assert coverage.pending[cell], cell


def test_every_script_declares_known_cells() -> None:
    # declared_cells raises on a misspelt state or event; the corpus has none, and
    # every state directory's scripts declare at least one cell of that state.
    coverage = collect(SCRIPTS, PENDING)
    for state in STATES:
        if state == "CLOSED":
            continue
        directory = state.lower()
        own = [
            cell
            for cell, scripts in coverage.passing.items()
            if cell[0] == state and any(s.startswith(f"scripts/{directory}/") for s in scripts)
        ]
        assert own, state


def test_declarations_are_checked() -> None:
    text = "// cell: ESTABLISHED x RST_in_window\n0 socket(..., SOCK_STREAM, 0) = 3\n"
    assert declared_cells(text) == [("ESTABLISHED", "RST_in_window")]
    with pytest.raises(ValueError, match="unknown state 'ESTABLISHD'"):
        declared_cells("// cell: ESTABLISHD x SYN\n", name="t.pkt")
    with pytest.raises(ValueError, match="unknown event 'RST_inwindow'"):
        declared_cells("// cell: ESTABLISHED x RST_inwindow\n")
    with pytest.raises(ValueError, match=r"t\.pkt:2: write cells as"):
        declared_cells("\n// cell: ESTABLISHED, SYN\n", name="t.pkt")


def test_docs_table_is_generated_from_the_scripts() -> None:
    section = render_markdown(collect(SCRIPTS, PENDING))
    document = DOCS.read_text()
    assert replace_section(document, section) == document, (
        "docs/packetdrill.md is stale: run "
        "`python -m tcpstack.packetdrill.coverage --write docs/packetdrill.md`"
    )
    assert "| RST_in_window | RST in the receive window, not at RCV.NXT |" in section
    assert "`scripts/time_wait/ack_future.pkt`" in section


def test_coverage_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"# T\n\n{BEGIN_MARKER}\nold\n{END_MARKER}\n\nafter\n")
    args = ["--scripts", str(SCRIPTS), "--pending", str(PENDING)]
    assert main([str(page), "--check", *args]) == 1
    assert "stale" in capsys.readouterr().err
    assert main([str(page), "--write", *args]) == 0
    assert main([str(page), "--check", *args]) == 0
    text = page.read_text()
    assert text.startswith("# T\n\n" + BEGIN_MARKER + "\nScripts per directory")
    assert text.endswith(END_MARKER + "\n\nafter\n")
    assert "### TIME_WAIT" in text
    assert main(args) == 0
    assert "### CLOSED" in capsys.readouterr().out
