"""The sampling profilers of the bulk benchmark (tcpstack.benchmarks.sampling).

The summary of collapsed stacks is checked on hand-written input with known answers;
py-spy and pyinstrument (the 'profile' extra, in the dev extra too) are then run for
real on a small transfer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpstack.benchmarks.runner import run_benchmarks
from tcpstack.benchmarks.sampling import (
    FunctionShare,
    profile_with_py_spy,
    profile_with_pyinstrument,
    summarize_collapsed,
)

RUNNER = "<module> (tcpstack/benchmarks/sampling.py:240)"
TRANSFER = "BulkSetup.transfer (tcpstack/benchmarks/bulk.py:184)"
RUN = "Network.run_until (tcpstack/sim/network.py:687)"
DELIVER = "Endpoint._deliver (tcpstack/core/endpoint.py:381)"
RECEIVE = "Connection.receive_segment (tcpstack/core/connection.py:947)"
ENCODE = "encode_segment (tcpstack/core/codec.py:281)"
SETUP = "BulkSetup.__init__ (tcpstack/benchmarks/bulk.py:150)"


def _share(shares: tuple[FunctionShare, ...], function: str) -> FunctionShare:
    return next(share for share in shares if share.function == function)


def test_summary_counts_only_the_timed_part_with_self_and_inclusive_shares() -> None:
    lines = [
        f"{RUNNER};{TRANSFER};{RUN};{DELIVER};{RECEIVE} 6\n",
        f"{RUNNER};{TRANSFER};{RUN};{DELIVER} 2\n",
        f"{RUNNER};{TRANSFER};{RUN};{ENCODE} 3\n",
        f"{RUNNER};{SETUP};{ENCODE} 5\n",  # the handshake, before the timed part
        " 4\n",  # samples without a Python frame
        "\n",
    ]
    profile = summarize_collapsed(lines)
    assert profile.total_samples == 20
    assert profile.counted_samples == 11
    functions = profile.functions
    assert [share.function for share in functions[:3]] == [
        "Connection.receive_segment",
        "encode_segment",
        "Endpoint._deliver",
    ]
    assert _share(functions, "Connection.receive_segment") == FunctionShare(
        "Connection.receive_segment", "connection.py", 6, 6
    )
    assert _share(functions, "Endpoint._deliver") == FunctionShare(
        "Endpoint._deliver", "endpoint.py", 2, 8
    )
    # encode_segment's 5 samples under __init__ are outside the timed part.
    assert _share(functions, "encode_segment") == FunctionShare("encode_segment", "codec.py", 3, 3)
    assert _share(functions, "BulkSetup.transfer") == FunctionShare(
        "BulkSetup.transfer", "bulk.py", 0, 11
    )
    assert _share(functions, "Network.run_until").inclusive_samples == 11
    # The runner's frame is above the timed function: not counted at all.
    assert all(share.function != "<module>" for share in functions)
    table = profile.table("t", top=2)
    assert table.rows == [
        ["Connection.receive_segment (connection.py)", "54.5", "54.5", "6"],
        ["encode_segment (codec.py)", "27.3", "27.3", "3"],
    ]
    assert "11 of 20 samples were inside transfer() (bulk.py)" in table.render()
    assert profile.self_by_file() == [
        ("connection.py", 6),
        ("codec.py", 3),
        ("endpoint.py", 2),
        ("bulk.py", 0),
        ("network.py", 0),
    ]
    assert profile.file_table("f").rows == [
        ["connection.py", "54.5", "6"],
        ["codec.py", "27.3", "3"],
        ["endpoint.py", "18.2", "2"],
    ]


def test_recursion_counts_a_function_once_per_sample() -> None:
    recursive = "Endpoint._settle_dirty (tcpstack/core/endpoint.py:708)"
    lines = [f"{TRANSFER};{recursive};{recursive};{RECEIVE} 5"]
    profile = summarize_collapsed(lines)
    assert _share(profile.functions, "Endpoint._settle_dirty").inclusive_samples == 5
    assert _share(profile.functions, "Endpoint._settle_dirty").self_samples == 0


def test_frames_without_line_numbers_parse_too() -> None:
    lines = ["BulkSetup.transfer (tcpstack/benchmarks/bulk.py);seq_lt (tcpstack/core/seq.py) 7"]
    profile = summarize_collapsed(lines)
    assert _share(profile.functions, "seq_lt") == FunctionShare("seq_lt", "seq.py", 7, 7)


def test_a_line_without_a_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="line 2: not 'stack count'"):
        summarize_collapsed([f"{TRANSFER} 1", f"{TRANSFER};{RECEIVE}"])


def test_py_spy_profiles_a_real_transfer(tmp_path: Path) -> None:
    profile, raw, svg = profile_with_py_spy(tmp_path, total=2_000_000)
    assert raw.exists() and svg.exists()
    assert "<svg" in svg.read_text()
    assert profile.counted_samples > 0
    names = {share.function for share in profile.functions}
    # Every data segment passes these on the wire path.
    assert {"Connection.receive_segment", "encode_segment", "decode_segment"} <= names
    receive = _share(profile.functions, "Connection.receive_segment")
    assert 0 < receive.inclusive_samples <= profile.counted_samples


def test_pyinstrument_profiles_a_real_transfer(tmp_path: Path) -> None:
    text, html = profile_with_pyinstrument(tmp_path, total=500_000)
    assert "Connection.receive_segment" in text
    assert html.exists() and "pyinstrument" in html.read_text()


def test_runner_prints_the_py_spy_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--only", "profile", "--profiler", "py-spy", "--bulk-bytes", "1M"]
    assert run_benchmarks([*argv, "--profile-dir", str(tmp_path), "-r", "1"]) == 0
    out = capsys.readouterr().out
    assert "py-spy samples of one 1 MB bulk transfer" in out
    assert "self %" in out and "inclusive %" in out
    assert "py-spy samples by file" in out and "connection.py" in out
    assert (tmp_path / "bulk-wire-1460.py-spy.svg").exists()


def test_the_table_names_the_timed_function_it_was_given() -> None:
    batch = "run_cycle_batch (tcpstack/benchmarks/cycles.py:176)"
    lines = [f"{batch};{RECEIVE} 4", f"{SETUP};{ENCODE} 1"]
    profile = summarize_collapsed(lines, timed_function="run_cycle_batch", timed_file="cycles.py")
    assert (profile.counted_samples, profile.total_samples) == (4, 5)
    note = "4 of 5 samples were inside run_cycle_batch() (cycles.py)"
    assert note in profile.table("t", top=1).render()
