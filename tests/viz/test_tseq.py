"""Time-sequence graphs: a PNG of the expected size, and the data behind it."""

from __future__ import annotations

import struct
from pathlib import Path

from tcpstack.viz.timeline import conn_label, timeline_of_run
from tcpstack.viz.tseq import SIZE, directions, plot
from tests.viz.support import run_of, sack_run, timeline_of


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_png_written_with_the_expected_size(tmp_path: Path) -> None:
    run = run_of("time-wait-lost-final-ack")
    assert run.client is not None and run.server is not None
    path = plot(
        timeline_of("time-wait-lost-final-ack"),
        tmp_path / "tseq.png",
        conns=(conn_label(run.client), conn_label(run.server)),
        title="t",
    )
    assert path.stat().st_size > 10_000
    assert png_size(path) == SIZE == (1000, 750)


def test_long_runs_and_sack_runs_plot(tmp_path: Path) -> None:
    long = plot(timeline_of("keepalive-dead-peer"), tmp_path / "long.png")
    assert png_size(long) == SIZE
    run = sack_run()
    sack = plot(timeline_of_run(run), tmp_path / "sack.png")
    assert png_size(sack) == SIZE


def test_directions_split_the_segments() -> None:
    run = sack_run()
    assert run.client is not None and run.server is not None
    up, down = directions(timeline_of_run(run), (conn_label(run.client), conn_label(run.server)))
    assert up.title == "client -> server" and down.title == "server -> client"
    assert sum(s.length for s in up.sends if not s.retransmission) == 20_480
    assert [s.seq for s in up.sends if s.retransmission] == [2897]
    assert any(s.segment.options.sack_blocks for s in up.acks)
    assert up.window_shift == 3  # both SYNs carried wscale 3
