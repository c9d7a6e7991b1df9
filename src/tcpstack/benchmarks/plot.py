"""README figures from benchmark results (matplotlib, Agg backend, PNG).

`plot_bulk`: goodput against MSS, one line per path (wire, object), from the bulk
benchmark's JSON; the bars are the min..max of the repetitions around the median.
`plot_lossy`: goodput against random loss, one line per (congestion control, SACK)
case, from the lossy benchmark's JSON (virtual time: one run per case).
Both take the dicts that `BulkResult.to_json()` / `LossyResult.to_json()` return (also
found under "benchmarks" in the JSON file the runner writes).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["lossy_from_json", "plot_bulk", "plot_lossy", "plot_results"]

_DPI = 120
_SIZE = (6.4, 4.0)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _null_formatter() -> Any:
    from matplotlib.ticker import NullFormatter

    return NullFormatter()


def plot_bulk(bulk: dict[str, Any], path: Path) -> Path:
    """Goodput (MB/s, median with min..max) against MSS for the wire and object paths."""
    plt = _pyplot()
    lines: dict[str, list[tuple[int, float, float, float]]] = defaultdict(list)
    for case in bulk["cases"]:
        figure = case["goodput_mb_per_s"]
        lines[case["path"]].append((case["mss"], figure["median"], figure["min"], figure["max"]))
    fig, ax = plt.subplots(figsize=_SIZE)
    for label, marker in (("wire", "o"), ("object", "s")):
        points = sorted(lines.get(label, []))
        if not points:
            continue
        mss = [p[0] for p in points]
        median = [p[1] for p in points]
        errors = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
        ax.errorbar(mss, median, yerr=errors, marker=marker, capsize=3, label=f"{label} path")
    ax.set_xscale("log")
    ticks = sorted({case["mss"] for case in bulk["cases"]})
    ax.set_xticks(ticks, [f"{tick:,}" for tick in ticks])
    ax.xaxis.set_minor_formatter(_null_formatter())
    ax.set_xlabel("MSS (bytes, log scale)")
    # Log scale: goodput spans two orders of magnitude from MSS 536 to 65,483.
    ax.set_yscale("log")
    ax.set_ylabel("goodput (MB/s, 10^6 bytes, log scale)")
    ax.set_title(
        f"tcpstack bulk goodput: {bulk['bytes'] / 1e6:g} MB, simulator, no loss, delay 0\n"
        f"median of {bulk['repetitions']} (bars: min..max), one CPU core for both ends",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def plot_lossy(lossy: dict[str, Any], path: Path) -> Path:
    """Goodput (Mbit/s, virtual time) against random loss, one line per case."""
    plt = _pyplot()
    lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for case in lossy["cases"]:
        label = f"{case['congestion_control']}, {'SACK' if case['sack'] else 'no SACK'}"
        lines[label].append((100 * case["loss"], case["goodput_mbit_per_s"]))
    fig, ax = plt.subplots(figsize=_SIZE)
    for label, points in sorted(lines.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    bandwidth = lossy.get("bandwidth_bps")
    if bandwidth:
        ax.axhline(bandwidth / 1e6, color="grey", linestyle="--", linewidth=1, label="link")
    ax.set_xlabel("random loss (%)")
    ax.set_ylabel("goodput (Mbit/s, virtual time)")
    ax.set_ylim(bottom=0)
    delay = lossy.get("one_way_delay_us", 0) / 1000
    ax.set_title(
        f"tcpstack goodput over a lossy path: {lossy['bytes'] / 1e6:g} MB, "
        f"{(bandwidth or 0) / 1e6:g} Mbit/s, {2 * delay:g} ms RTT",
        fontsize=9,
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def _lossy_cases_usable(lossy: dict[str, Any]) -> bool:
    cases = lossy.get("cases", [])
    needed = {"congestion_control", "sack", "loss", "goodput_mbit_per_s"}
    return bool(cases) and all(needed <= set(case) for case in cases)


def lossy_from_json(path: Path) -> dict[str, Any] | None:
    """The lossy benchmark's results in a JSON file the runner wrote, or None."""
    document = json.loads(path.read_text())
    lossy = document.get("benchmarks", {}).get("lossy")
    return lossy if isinstance(lossy, dict) else None


def plot_results(
    results: dict[str, Any], directory: Path, lossy_json: Path | None = None
) -> list[str]:
    """Every plot the results allow, into `directory`; one line of text per plot made
    or skipped. Lossy results come from this run, else from `lossy_json`."""
    report: list[str] = []
    bulk = results.get("bulk")
    if bulk is not None and bulk.get("cases"):
        report.append(f"plot: {plot_bulk(bulk, directory / 'goodput.png')}")
    else:
        report.append("plot: goodput vs MSS skipped (the bulk benchmark did not run)")
    lossy = results.get("lossy")
    source = "this run"
    if lossy is None and lossy_json is not None and lossy_json.exists():
        lossy = lossy_from_json(lossy_json)
        source = str(lossy_json)
    if lossy is not None and _lossy_cases_usable(lossy):
        made = plot_lossy(lossy, directory / "goodput-loss.png")
        report.append(f"plot: {made} (lossy results from {source})")
    else:
        report.append("plot: goodput vs loss skipped (no lossy benchmark results)")
    return report
