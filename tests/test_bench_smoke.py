"""The benchmark suite runs end to end at the smallest sizes.

Smoke only: the JSON has the expected keys and every rate is a positive number. Never an
assertion on how fast anything is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tcpstack.benchmarks import run_benchmarks
from tcpstack.benchmarks.floor import (
    DST_IP,
    SRC_IP,
    build_packets,
    floor_loop,
    floor_table,
)
from tcpstack.benchmarks.runner import JSON_SCHEMA, parse_size
from tcpstack.core.codec import decode_segment
from tcpstack.core.segment import Flag

SMALL = [
    "--repetitions",
    "2",
    "--floor-segments",
    "200",
    "--bulk-bytes",
    "4K",
    "--bulk-floor-segments",
    "50",
    "--cycles",
    "2",
    "--syn-burst",
    "10",
    "--memory-connections",
    "10",
    "--memory-time-wait",
    "10",
    "--no-memory-rss",
    "--timer-cases",
    "10@600",
    "--no-warmup",
]


def _assert_figure(figure: Any, repetitions: int = 2) -> None:
    assert set(figure) == {"median", "min", "max", "samples"}
    assert len(figure["samples"]) == repetitions
    assert all(isinstance(v, float) and v > 0 for v in figure["samples"])
    assert figure["min"] <= figure["median"] <= figure["max"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    assert run_benchmarks([*SMALL, "--json", str(path)]) == 0
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def test_document_names_its_schema_and_all_benchmarks(report: dict[str, Any]) -> None:
    assert report["schema"] == JSON_SCHEMA
    assert report["repetitions"] == 2
    assert set(report["benchmarks"]) == {
        "floor",
        "bulk",
        "cycles",
        "accept",
        "memory",
        "timers",
    }
    assert report["environment"]["python"]


def test_floor_figures(report: dict[str, Any]) -> None:
    floor = report["benchmarks"]["floor"]
    assert floor["segments"] == 200
    assert floor["payload_bytes"] == 1460
    for key in ("segments_per_s", "mb_per_s", "us_per_segment"):
        _assert_figure(floor[key])
    for key in ("big_endian", "little_endian", "little_over_big_time"):
        _assert_figure(floor["checksum_only_us"][key])


def test_bulk_figures(report: dict[str, Any]) -> None:
    bulk = report["benchmarks"]["bulk"]
    assert bulk["bytes"] == 4_000
    assert bulk["unscaled_window_max"] == 65535
    assert isinstance(bulk["window_scaling_in_config"], bool)
    _assert_figure(bulk["floor_segments_per_s"])
    cases = {(case["path"], case["mss"]) for case in bulk["cases"]}
    assert cases == {("wire", 1460), ("wire", 65483), ("object", 1460), ("object", 65483)}
    for case in bulk["cases"]:
        for key in (
            "goodput_mb_per_s",
            "data_segments_per_s",
            "ack_segments_per_s",
            "us_per_data_segment",
            "data_segments_per_s_vs_floor",
        ):
            _assert_figure(case[key])
        assert case["data_segments"] > 0
        assert case["ack_segments"] > 0
        assert case["virtual_time_us"] >= 0  # 0 unless a timer (e.g. delayed ACK) fired
        assert isinstance(case["window_limited"], bool)


def test_cycle_and_accept_figures(report: dict[str, Any]) -> None:
    cycles = report["benchmarks"]["cycles"]
    assert cycles["cycles"] == 2
    for key in ("pair_wall", "client", "server", "client_plus_server"):
        _assert_figure(cycles["cycles_per_s"][key])
    assert cycles["segments_per_cycle"] > 0
    accept = report["benchmarks"]["accept"]
    assert accept["syns"] == 10
    for key in ("accepts_per_s", "syn_to_synack_per_s", "ack_to_accept_per_s"):
        _assert_figure(accept[key])


def test_only_one_benchmark_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_benchmarks([*SMALL, "--only", "floor", "--json", "-"]) == 0
    out = capsys.readouterr().out
    document = json.loads(out[out.index("\n{") + 1 :])
    assert set(document["benchmarks"]) == {"floor"}


def test_floor_packets_and_acks_are_valid_tcp() -> None:
    packets = build_packets(4)
    acks, ack = floor_loop(packets, 4, floor_table())
    assert acks == 4
    assert len(ack) == 40
    assert int.from_bytes(ack[:20], "big") % 0xFFFF == 0  # IPv4 header checksum
    segment = decode_segment(ack[20:], DST_IP, SRC_IP)  # verifies the TCP checksum
    assert segment.flags == Flag.ACK
    assert segment.ack == decode_segment(packets[3][20:], SRC_IP, DST_IP).end_seq


def test_floor_rejects_a_corrupted_segment() -> None:
    damaged = bytearray(build_packets(1)[0])
    damaged[200] ^= 0x10
    with pytest.raises(ValueError, match="checksum"):
        floor_loop([bytes(damaged)], 1, floor_table())


def test_sizes_parse() -> None:
    assert parse_size("20M") == 20_000_000
    assert parse_size("4K") == 4_000
    assert parse_size("64Ki") == 65_536
    assert parse_size("1500") == 1500


def test_benchmark_suite_is_importable_as_documented() -> None:
    assert Path(__file__).name == "test_bench_smoke.py"
    import tcpstack.benchmarks

    assert tcpstack.benchmarks.run_benchmarks is run_benchmarks
