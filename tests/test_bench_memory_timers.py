"""The memory and timer benchmarks and the README plot run end to end at tiny sizes.

Smoke only: the JSON has the expected keys and the figures are positive numbers. Never
an assertion on how fast or how small anything is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tcpstack.benchmarks import run_benchmarks
from tcpstack.benchmarks._idle import IdleServer, client_address
from tcpstack.benchmarks.memory import connection_breakdown
from tcpstack.benchmarks.plot import plot_results
from tcpstack.benchmarks.timers import parse_case
from tcpstack.core.state import State

TINY = [
    "--only",
    "memory,timers,bulk",
    "--repetitions",
    "2",
    "--memory-connections",
    "30",
    "--memory-time-wait",
    "40",
    "--memory-chunk",
    "15",
    "--timer-cases",
    "20@600",
    "30@7200",
    "--bulk-bytes",
    "4K",
    "--bulk-floor-segments",
    "50",
    "--no-warmup",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    directory = tmp_path_factory.mktemp("bench")
    path = directory / "bench.json"
    plots = directory / "img"
    assert run_benchmarks([*TINY, "--json", str(path), "--plot", str(plots)]) == 0
    document: dict[str, Any] = json.loads(path.read_text())
    return document, plots


def test_memory_figures_are_positive(run: tuple[dict[str, Any], Path]) -> None:
    memory = run[0]["benchmarks"]["memory"]
    established, time_wait = memory["established"], memory["time_wait"]
    assert established["connections"] == 30
    assert time_wait["entries"] == 40
    for part in (established, time_wait):
        assert part["traced_bytes_each"] > 0
        assert part["goal_bytes_each"] > 0
        assert isinstance(part["meets_goal"], bool)
        rss = part["rss_bytes_each"]
        assert rss is None or isinstance(rss, float)
        assert part["top_lines"]
        for line in part["top_lines"]:
            assert set(line) == {"where", "bytes_each", "blocks_each"}
        assert all(size > 0 for size in part["getsizeof_by_attribute"].values())
    assert "(object and its __dict__)" in established["getsizeof_by_attribute"]


def test_timer_figures_are_positive(run: tuple[dict[str, Any], Path]) -> None:
    cases = run[0]["benchmarks"]["timers"]["cases"]
    assert [(c["connections"], c["keepalive_idle_s"]) for c in cases] == [(20, 600), (30, 7200)]
    for case in cases:
        assert case["expirations_per_hour"] > 0
        assert len(case["probes_per_hour"]) == 2
        assert all(p > 0 for p in case["probes_per_hour"])
        assert case["still_established"] == case["connections"]
        for key in ("cpu_seconds_per_hour", "cpu_us_per_expiration", "cpu_us_per_connection_hour"):
            assert len(case[key]["samples"]) == 2
            assert all(v > 0 for v in case[key]["samples"])
    # 600 s idle: two expirations per idle period, six periods per hour.
    assert cases[0]["expirations_per_hour"] == 20 * 12


def test_plot_written(run: tuple[dict[str, Any], Path]) -> None:
    png = run[1] / "goodput.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (run[1] / "goodput-loss.png").exists()  # lossy did not run


def test_lossy_plot_from_results(tmp_path: Path) -> None:
    cases = [
        {"congestion_control": cc, "sack": True, "loss": loss, "goodput_mbit_per_s": rate}
        for cc, loss, rate in (("cubic", 0.0, 90.0), ("cubic", 0.01, 40.0))
    ]
    lossy = {"bytes": 1_000_000, "bandwidth_bps": 100_000_000, "cases": cases}
    lines = plot_results({"lossy": lossy}, tmp_path)
    assert any("skipped" in line for line in lines)  # no bulk results
    assert (tmp_path / "goodput-loss.png").stat().st_size > 0


def test_idle_server_builds_established_then_time_wait() -> None:
    server = IdleServer.create(10)
    server.establish(10)
    assert all(conn.state is State.ESTABLISHED for conn in server.connections)
    rows = dict(connection_breakdown(server.connections[0], server.connections[1]))
    assert rows["(object and its __dict__)"] > 0
    server.close_into_time_wait()
    assert len(server.endpoint.time_wait) == 10
    assert server.endpoint.connection_count() == 0


def test_client_addresses_and_cases() -> None:
    assert client_address(0) == ("10.1.0.1", 1024)
    assert client_address(64_512) == ("10.1.1.1", 1024)
    assert parse_case("10k@600") == (10_000, 600)
    assert parse_case("1M") == (1_000_000, 7200)
    with pytest.raises(ValueError):
        parse_case("10@60")


def test_lossy_plot_from_an_earlier_run(tmp_path: Path) -> None:
    cases = [
        {"congestion_control": "newreno", "sack": sack, "loss": 0.01, "goodput_mbit_per_s": 5.0}
        for sack in (False, True)
    ]
    saved = tmp_path / "bench-lossy.json"
    saved.write_text(json.dumps({"benchmarks": {"lossy": {"bytes": 10, "cases": cases}}}))
    lines = plot_results({}, tmp_path / "img", saved)
    assert any(str(saved) in line for line in lines)
    assert (tmp_path / "img" / "goodput-loss.png").stat().st_size > 0
