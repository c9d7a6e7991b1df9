"""`tcpstack scenario NAME --out DIR` and `tcpstack report --out DIR`."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tcpstack.cli import main
from tcpstack.viz.artifacts import FILES
from tests.viz.support import need


def test_scenario_out_writes_every_picture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need("dot", "graphviz")
    assert main(["scenario", "simultaneous-close"]) == 0
    plain = capsys.readouterr().out
    out = tmp_path / "sc"
    assert main(["scenario", "simultaneous-close", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == plain  # the text output is unchanged
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    for name in FILES:
        assert (out / name).stat().st_size > 0
        assert f"wrote {out / name}" in captured.err
    lines = (out / "trace.jsonl").read_text().splitlines()
    assert len(lines) > 10 and lines[0].startswith("{")
    for svg in ("ladder.svg", "states-client.svg", "states-server.svg"):
        ET.parse(out / svg)
    assert (out / "capture.pcap").read_bytes()[:4] == bytes.fromhex("d4c3b2a1")
    assert (out / "capture.pcapng").read_bytes()[:4] == bytes.fromhex("0a0d0d0a")
    assert (out / "tseq.png").read_bytes()[:4] == b"\x89PNG"


def test_scenario_all_out_writes_one_directory_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'all' with --out: DIR/NAME per scenario (the pictures themselves are checked
    above, so the writer is replaced by one that only records where it was asked to)."""
    from tcpstack.scenarios.catalog import SCENARIOS
    from tcpstack.viz import artifacts

    asked: list[tuple[str, Path]] = []

    def record(run: object, out_dir: Path, *, name: str, summary: str) -> artifacts.Artifacts:
        asked.append((name, Path(out_dir)))
        return artifacts.Artifacts(Path(out_dir))

    monkeypatch.setattr(artifacts, "write_artifacts", record)
    assert main(["scenario", "all", "--out", str(tmp_path)]) == 0
    assert asked == [(name, tmp_path / name) for name in SCENARIOS]


def test_report_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need("dot", "graphviz")
    code = main(
        [
            "report",
            "--out",
            str(tmp_path),
            "--scenario",
            "simultaneous-close",
            "--scenario",
            "three-segment-close",
            "--no-progress",
        ]
    )
    assert code == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert capsys.readouterr().out.strip() == str(tmp_path / "report.html")
    assert 'id="simultaneous-close"' in page and 'id="three-segment-close"' in page
    assert "但是 CLOSING 状态表示一方发送 FIN 报文后" in page  # C9 quoted
    assert "http://" not in page.replace("http://www.w3.org/", "")
    assert "https://" not in page


def test_report_rejects_unknown_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--scenario", "no-such-thing"]) == 2
    assert "no scenario named" in capsys.readouterr().err
