"""The PyTCP comparison (tcpstack.net.bench_pytcp): its arithmetic, its options, the skip
when PyTCP is absent, cleanup when PyTCP fails, and (when an interpreter with PyTCP is
named by $TCPSTACK_PYTCP_PYTHON) a 1 MB run of both directions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tcpstack.net import bench_pytcp
from tcpstack.net.bench import Figure
from tcpstack.net.bench_pytcp import (
    KERNEL_TO_PYTCP,
    KERNEL_TO_TCPSTACK,
    PYTCP_TO_KERNEL,
    TCPSTACK_TO_KERNEL,
    VETH,
    Comparison,
    build_parser,
    pytcp_figures,
    pytcp_missing,
    report,
    run_comparison,
)
from tcpstack.net.netns import netns_exists

from .conftest import require_tun


def python_without_site(tmp_path: Path) -> str:
    """An interpreter that cannot import pytcp: this one, without site-packages (-S)."""
    wrapper = tmp_path / "python-no-site"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def fake_figures(size: int, profile: str | None) -> list[Figure]:
    # 1 MB in 0.05 s and in 0.04 s: 20 and 25 MB/s.
    return [
        Figure(KERNEL_TO_TCPSTACK, size, size / 20e6),
        Figure(TCPSTACK_TO_KERNEL, size, size / 25e6),
    ]


def fake_veth(size: int) -> Figure:
    return Figure(VETH, size, size / 1000e6)


def test_medians_and_ratios_pair_the_same_direction() -> None:
    comparison = Comparison(size=200_000_000, pytcp_size=20_000_000)
    comparison.samples = {
        KERNEL_TO_TCPSTACK: [30.0, 10.0, 20.0],
        TCPSTACK_TO_KERNEL: [40.0, 50.0, 30.0, 45.0],
        VETH: [900.0],
        KERNEL_TO_PYTCP: [1.0, 4.0, 2.0],
        PYTCP_TO_KERNEL: [20.0, 10.0],
    }
    assert comparison.median(KERNEL_TO_TCPSTACK) == 20.0
    assert comparison.median(TCPSTACK_TO_KERNEL) == 42.5  # mean of the middle two
    assert comparison.median(PYTCP_TO_KERNEL) == 15.0
    assert comparison.ratios() == [
        (KERNEL_TO_TCPSTACK, KERNEL_TO_PYTCP, 10.0),
        (TCPSTACK_TO_KERNEL, PYTCP_TO_KERNEL, 42.5 / 15.0),
    ]
    text = report(comparison)
    assert "tcpstack and veth 200 MB, PyTCP 20 MB per transfer" in text
    assert f"{KERNEL_TO_TCPSTACK} / {KERNEL_TO_PYTCP}: 10.0x (meets the 5x goal)" in text
    assert f"{TCPSTACK_TO_KERNEL} / {PYTCP_TO_KERNEL}: 2.8x (misses the 5x goal)" in text
    assert f"  {VETH:<26}    900.00 MB/s  (range 900.00..900.00, n=1)" in text
    document = comparison.as_json()
    assert document["ratios"] == {
        f"{KERNEL_TO_TCPSTACK} / {KERNEL_TO_PYTCP}": 10.0,
        f"{TCPSTACK_TO_KERNEL} / {PYTCP_TO_KERNEL}": 42.5 / 15.0,
    }


def test_options_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TCPSTACK_PYTCP_PYTHON", raising=False)
    args = build_parser().parse_args([])
    assert (args.bytes, args.pytcp_bytes, args.repetitions) == (200_000_000, 20_000_000, 5)
    assert args.pytcp_python == sys.executable
    monkeypatch.setenv("TCPSTACK_PYTCP_PYTHON", "/opt/pytcp/bin/python")
    args = build_parser().parse_args(["--bytes", "1M", "--pytcp-bytes", "256K", "-r", "2"])
    assert (args.bytes, args.pytcp_bytes, args.repetitions) == (1_000_000, 256_000, 2)
    assert args.pytcp_python == "/opt/pytcp/bin/python"


@pytest.mark.parametrize("bad", [["-r", "0"], ["--bytes", "0"], ["--pytcp-bytes", "lots"]])
def test_options_rejected(bad: list[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(bad)


def test_missing_interpreter_is_named() -> None:
    reason = pytcp_missing("/nonexistent/python3")
    assert reason is not None
    assert reason.startswith("cannot run /nonexistent/python3: ")


def test_interpreter_without_pytcp_gets_the_install_command(tmp_path: Path) -> None:
    python = python_without_site(tmp_path)
    reason = pytcp_missing(python)
    assert reason == (
        f"{python} cannot import pytcp (ModuleNotFoundError: No module named 'pytcp'); "
        "install it into a scratch venv: python3 -m venv /tmp/pytcp-venv && "
        "/tmp/pytcp-venv/bin/pip install pytcp==2.7.6"
    )


def test_without_pytcp_the_comparison_skips_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_pytcp, "tcpstack_figures", fake_figures)
    monkeypatch.setattr(bench_pytcp, "veth_figure", fake_veth)
    shown: list[str] = []
    python = python_without_site(tmp_path)
    comparison = run_comparison(1_000_000, 1_000_000, 2, python, show=shown.append)
    assert list(comparison.samples) == [KERNEL_TO_TCPSTACK, TCPSTACK_TO_KERNEL, VETH]
    assert comparison.samples[KERNEL_TO_TCPSTACK] == pytest.approx([20.0, 20.0])
    assert comparison.ratios() == []
    assert shown[0].startswith(f"PyTCP skipped: {python} cannot import pytcp")
    assert len(shown) == 1 + 2 * 3  # the skip, then three figures per repetition
    text = report(comparison)
    assert "no ratio: PyTCP was not measured" in text
    assert f"note: PyTCP skipped: {python} cannot import pytcp" in text


def leftover_processes(marker: str) -> list[str]:
    listed = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in listed.stdout.splitlines() if marker in line]


def test_a_failing_pytcp_leaves_no_namespace_tap_or_process(tmp_path: Path) -> None:
    require_tun()
    python = python_without_site(tmp_path)  # the PyTCP program dies at its import
    pid = os.getpid()
    with pytest.raises(RuntimeError, match=r"(?s)start: PyTCP said ''.*No module named 'pytcp'"):
        pytcp_figures(100_000, python)
    assert not netns_exists(f"tsk-pyt-{pid}")
    assert (
        f"tskt{pid}"
        not in subprocess.run(
            ["ip", "-o", "link"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert leftover_processes(f"tskt{pid} ") == []


def test_one_megabyte_each_way_through_pytcp() -> None:
    require_tun()
    python = os.environ.get("TCPSTACK_PYTCP_PYTHON", sys.executable)
    reason = pytcp_missing(python)
    if reason is not None:
        pytest.skip(f"set TCPSTACK_PYTCP_PYTHON to an interpreter with PyTCP: {reason}")
    pid = os.getpid()
    inbound, outbound = pytcp_figures(1_000_000, python)
    assert (inbound.label, inbound.size) == (KERNEL_TO_PYTCP, 1_000_000)
    assert (outbound.label, outbound.size) == (PYTCP_TO_KERNEL, 1_000_000)
    assert inbound.seconds > 0 and outbound.seconds > 0
    assert not netns_exists(f"tsk-pyt-{pid}")
    assert leftover_processes(f"tskt{pid} ") == []


def test_a_silent_pytcp_is_killed_after_the_startup_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tun()
    silent = tmp_path / "python-silent"
    silent.write_text("#!/bin/sh\nexec sleep 307\n")  # an unusual length, to find it
    silent.chmod(0o755)
    monkeypatch.setattr(bench_pytcp, "STARTUP_TIMEOUT_S", 0.5)
    pid = os.getpid()
    with pytest.raises(RuntimeError, match=r"^start: no 'ready' from PyTCP in 0\.5 s; $"):
        pytcp_figures(100_000, str(silent))
    assert not netns_exists(f"tsk-pyt-{pid}")
    assert leftover_processes("sleep 307") == []
