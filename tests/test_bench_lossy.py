"""The lossy-path benchmark runs end to end at a tiny size (smoke only: the JSON has the
expected shape and the figures are positive; never an assertion on how fast)."""

from __future__ import annotations

import json
from pathlib import Path

from tcpstack.benchmarks import run_benchmarks
from tcpstack.benchmarks.lossy import BDP_PACKETS, LossyCase, lossy_transfer
from tcpstack.benchmarks.runner import JSON_SCHEMA


def test_lossy_benchmark_json(tmp_path: Path) -> None:
    path = tmp_path / "lossy.json"
    argv = [
        "--only",
        "lossy",
        "--lossy-bytes",
        "60K",
        "--lossy-loss",
        "0",
        "5",
        "--json",
        str(path),
    ]
    assert run_benchmarks(argv) == 0
    document = json.loads(path.read_text())
    assert document["schema"] == JSON_SCHEMA
    assert set(document["benchmarks"]) == {"lossy"}
    lossy = document["benchmarks"]["lossy"]
    assert lossy["bytes"] == 60_000
    assert lossy["repetitions"] == 1 and lossy["virtual_time"] is True
    assert lossy["queue_limit_packets"] == BDP_PACKETS == 167
    cases = {(c["congestion_control"], c["sack"], c["loss"]) for c in lossy["cases"]}
    assert cases == {
        (cc, sack, loss)
        for cc in ("newreno", "cubic")
        for sack in (False, True)
        for loss in (0.0, 0.05)
    }
    for case in lossy["cases"]:
        assert case["goodput_mb_per_s"] > 0 and case["virtual_time_us"] > 0
        assert case["data_segments"] >= 60_000 // 1448
        assert 0 <= case["retransmitted_segments"] <= case["data_segments"]


def test_lossless_uncongested_transfer_resends_nothing() -> None:
    # 30 kB fits the initial window's growth without overflowing the queue.
    sample = lossy_transfer(LossyCase("newreno", True, 0.0), total=30_000)
    assert sample.retransmitted_segments == 0 and sample.lost == 0 and sample.queue_drops == 0
    assert sample.virtual_us > 20_000  # at least one round trip of 20 ms
