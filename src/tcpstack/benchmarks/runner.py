"""`run_benchmarks(argv)`: the command line of the benchmark suite.

    python -m tcpstack.benchmarks                 # everything, quick defaults
    python -m tcpstack.benchmarks --only bulk --bulk-bytes 100M --json out/bench.json
    python -m tcpstack.benchmarks --only profile      # cProfile one bulk transfer only
    python -m tcpstack.benchmarks --only profile --profiler py-spy   # flame graph + shares
    python -m tcpstack.benchmarks --only lossy        # goodput over a lossy path (minutes)
    python -m tcpstack.benchmarks --only memory --memory-connections 100k --memory-time-wait 1M
    python -m tcpstack.benchmarks --only timers --timer-cases 10k 100k 1M 10k@600
    python -m tcpstack.benchmarks --only bulk --plot docs/img   # README figure(s)

Tables go to stdout; `--json FILE` writes every figure (medians, spreads, samples) as
one JSON document ('-' for stdout, after the tables).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tcpstack.benchmarks._report import MIN_REPETITIONS
from tcpstack.benchmarks.bulk import DEFAULT_BUFFER, DEFAULT_MSS, profile_bulk, run_bulk
from tcpstack.benchmarks.cycles import connection_table, run_accept, run_cycles
from tcpstack.benchmarks.floor import run_floor
from tcpstack.benchmarks.lossy import DEFAULT_LOSSES, DEFAULT_TOTAL, run_lossy
from tcpstack.benchmarks.memory import DEFAULT_CHUNK, run_memory
from tcpstack.benchmarks.plot import plot_results
from tcpstack.benchmarks.sampling import (
    PROFILERS,
    profile_with_py_spy,
    profile_with_pyinstrument,
)
from tcpstack.benchmarks.timers import DEFAULT_CASES, parse_case, run_timers

__all__ = ["BENCHMARKS", "JSON_SCHEMA", "build_parser", "parse_size", "run_benchmarks"]

BENCHMARKS = ("floor", "bulk", "cycles", "accept", "memory", "timers")
# Opt-in only (--only): "lossy" runs for minutes, "profile" prints a cProfile listing.
_CHOICES = (*BENCHMARKS, "lossy", "profile")
JSON_SCHEMA = "tcpstack-bench/1"

_UNITS = {"": 1, "K": 1_000, "M": 1_000_000, "G": 1_000_000_000, "KI": 1024, "MI": 1 << 20}


def parse_size(text: str) -> int:
    """'20M' -> 20_000_000, '4K' -> 4_000, '64Ki' -> 65_536, '1500' -> 1500."""
    cleaned = text.strip().upper().removesuffix("B")
    digits = cleaned.rstrip("KMGI")
    unit = cleaned[len(digits) :]
    if unit not in _UNITS or not digits:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 20M, 4K, 64Ki)")
    try:
        value = float(digits.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None
    size = int(value * _UNITS[unit])
    if size <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return size


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be within 0..100: {text!r}")
    return value


def _timer_case(text: str) -> tuple[int, int]:
    try:
        return parse_case(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a timer case (N or N@IDLE_S): {error}") from None


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in _CHOICES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark(s) {', '.join(unknown) or text!r}; choose from "
            f"{', '.join(_CHOICES)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tcpstack bench",
        description="Benchmarks of tcpstack: the per-segment floor of any Python TCP, bulk "
        "goodput and connection cycles in the simulator. Every figure is the median of "
        "--repetitions runs; comparisons are ratios of measurements taken side by side.",
    )
    parser.add_argument(
        "--only",
        type=_names,
        default=list(BENCHMARKS),
        metavar="NAMES",
        help=f"comma-separated subset of {','.join(_CHOICES)} (default: all but lossy and profile)",
    )
    parser.add_argument(
        "-r", "--repetitions", type=_positive, default=MIN_REPETITIONS, help="default: %(default)s"
    )
    parser.add_argument(
        "--floor-segments",
        type=_positive,
        default=50_000,
        help="segments per floor repetition (default: %(default)s)",
    )
    parser.add_argument(
        "--bulk-bytes",
        type=parse_size,
        default=20_000_000,
        metavar="SIZE",
        help="bytes per bulk transfer, e.g. 20M, 256K (default: 20M)",
    )
    parser.add_argument(
        "--bulk-mss",
        type=_positive,
        nargs="+",
        default=list(DEFAULT_MSS),
        metavar="MSS",
        help="MSS values of the bulk benchmark (default: 1460 65483)",
    )
    parser.add_argument(
        "--bulk-buffer",
        type=parse_size,
        default=DEFAULT_BUFFER,
        metavar="SIZE",
        help="send and receive buffer size on both ends (default: 256Ki)",
    )
    parser.add_argument(
        "--bulk-floor-segments",
        type=_positive,
        default=20_000,
        help="segments of the floor measured beside each bulk repetition (default: %(default)s)",
    )
    parser.add_argument(
        "--cycles",
        type=_positive,
        default=1_000,
        help="connection cycles per repetition (default: %(default)s)",
    )
    parser.add_argument(
        "--syn-burst",
        type=_positive,
        default=10_000,
        help="SYNs in the accept burst (default: %(default)s)",
    )
    parser.add_argument(
        "--lossy-bytes",
        type=parse_size,
        default=DEFAULT_TOTAL,
        metavar="SIZE",
        help="bytes of each lossy-path transfer (default: 100M)",
    )
    parser.add_argument(
        "--lossy-loss",
        type=_percent,
        nargs="+",
        default=[100 * loss for loss in DEFAULT_LOSSES],
        metavar="PERCENT",
        help="random loss rates of the lossy benchmark, in percent (default: 0 1 5)",
    )
    parser.add_argument(
        "--lossy-seed",
        type=int,
        default=1,
        help="network seed of the lossy benchmark (default: %(default)s)",
    )
    parser.add_argument(
        "--lossy-wire",
        action="store_true",
        help="run the lossy benchmark on the wire path (same virtual figures, slower)",
    )
    parser.add_argument(
        "--memory-connections",
        type=parse_size,
        default=20_000,
        metavar="N",
        help="idle ESTABLISHED connections of the memory benchmark, e.g. 100K (default: 20K)",
    )
    parser.add_argument(
        "--memory-time-wait",
        type=parse_size,
        default=20_000,
        metavar="N",
        help="TIME_WAIT entries of the memory benchmark, e.g. 1M (default: 20K)",
    )
    parser.add_argument(
        "--memory-chunk",
        type=parse_size,
        default=DEFAULT_CHUNK,
        metavar="N",
        help="connections live at once while filling TIME_WAIT (default: 100K)",
    )
    parser.add_argument(
        "--no-memory-rss",
        action="store_true",
        help="skip the memory benchmark's RSS child process (tracemalloc figures only)",
    )
    parser.add_argument(
        "--timer-cases",
        type=_timer_case,
        nargs="+",
        default=list(DEFAULT_CASES),
        metavar="N[@IDLE_S]",
        help="connections and keepalive idle seconds of the timer benchmark, e.g. 1M or "
        "10k@600 (default: 10k@7200 100k@7200 10k@600)",
    )
    parser.add_argument(
        "--plot",
        metavar="DIR",
        help="write README plots (PNG) to DIR: goodput vs MSS from the bulk benchmark, "
        "goodput vs loss from the lossy one (this run's, else --plot-lossy FILE)",
    )
    parser.add_argument(
        "--plot-lossy",
        metavar="FILE",
        help="JSON of an earlier lossy run (make bench-lossy writes out/bench-lossy.json) "
        "for --plot when lossy does not run now",
    )
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the untimed warm-up transfers of the bulk benchmark",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="also write every figure as JSON to FILE ('-' for stdout)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the benchmarks, cProfile one bulk transfer (wire path, MSS 1460, "
        "--bulk-bytes) and print the top functions (same as adding 'profile' to --only)",
    )
    parser.add_argument(
        "--profile-top",
        type=_positive,
        default=10,
        help="functions listed by --profile (default: %(default)s)",
    )
    parser.add_argument(
        "--profiler",
        choices=("cprofile", *PROFILERS),
        default="cprofile",
        help="the profiler of --profile: cProfile (call counts), or the sampling profilers "
        "py-spy (a flame graph SVG and a table of shares) or pyinstrument (an HTML call "
        "tree), which need the 'profile' extra (default: %(default)s)",
    )
    parser.add_argument(
        "--profile-dir",
        metavar="DIR",
        default="out/profile",
        help="where py-spy and pyinstrument write their files (default: %(default)s)",
    )
    return parser


def _environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def run_benchmarks(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks named on the command line; returns a process exit status."""
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    chosen: list[str] = args.only
    repetitions: int = args.repetitions
    env = _environment()
    repeated = [name for name in chosen if name != "lossy"]
    print(
        f"tcpstack benchmarks: {env['implementation']} {env['python']} on {env['platform']}; "
        + (
            f"every figure is the median of {repetitions} repetitions"
            if repeated
            else "lossy: one run per case (simulated, virtual time)"
        )
    )
    if repeated and repetitions < MIN_REPETITIONS:
        print(f"warning: fewer than {MIN_REPETITIONS} repetitions: figures are not reliable")
    document: dict[str, Any] = {
        "schema": JSON_SCHEMA,
        "environment": env,
        "repetitions": repetitions,
        "benchmarks": {},
    }
    results: dict[str, Any] = document["benchmarks"]
    started = time.perf_counter()
    # A progress bar on standard error while the (long) benchmarks run; only on a
    # terminal, and transient, so tables and JSON on standard output stay clean.
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    task = progress.add_task("benchmarks", total=len(chosen))

    def step(name: str) -> bool:
        """Mark the benchmark `name` as running; True if it was chosen."""
        if name not in chosen:
            return False
        progress.update(task, description=f"benchmark: {name}", completed=chosen.index(name))
        return True

    try:
        progress.start()
        if step("floor"):
            floor = run_floor(args.floor_segments, repetitions, max(args.floor_segments // 2, 1))
            results["floor"] = floor.to_json()
            _show(floor.table().render())
        if step("bulk"):
            bulk = run_bulk(
                total=args.bulk_bytes,
                mss_values=args.bulk_mss,
                repetitions=repetitions,
                buffer=args.bulk_buffer,
                floor_segments=args.bulk_floor_segments,
                warmup=not args.no_warmup,
            )
            results["bulk"] = bulk.to_json()
            _show(bulk.table().render())
        cycles = run_cycles(args.cycles, repetitions) if step("cycles") else None
        accept = run_accept(args.syn_burst, repetitions) if step("accept") else None
        if cycles is not None:
            results["cycles"] = cycles.to_json()
        if accept is not None:
            results["accept"] = accept.to_json()
        if cycles is not None or accept is not None:
            _show(connection_table(cycles, accept).render())
        if step("lossy"):
            lossy = run_lossy(
                total=args.lossy_bytes,
                losses=[percent / 100 for percent in args.lossy_loss],
                seed=args.lossy_seed,
                wire=args.lossy_wire,
            )
            results["lossy"] = lossy.to_json()
            _show(lossy.table().render())
        if step("memory"):
            memory = run_memory(
                args.memory_connections,
                args.memory_time_wait,
                chunk=args.memory_chunk,
                rss=not args.no_memory_rss,
            )
            results["memory"] = memory.to_json()
            _show(memory.table().render())
        if step("timers"):
            timers = run_timers(args.timer_cases, repetitions)
            results["timers"] = timers.to_json()
            _show(timers.table().render())
        if args.plot:
            print()
            lossy_json = Path(args.plot_lossy) if args.plot_lossy else None
            for line in plot_results(results, Path(args.plot), lossy_json):
                print(line)
        if args.profile or "profile" in chosen:
            _show(_profile(args).rstrip())
    except RuntimeError as error:
        progress.stop()
        print(f"tcpstack bench: {error}", file=sys.stderr)
        return 1
    progress.update(task, completed=len(chosen))
    progress.stop()
    document["seconds"] = time.perf_counter() - started
    print(f"\n(all benchmarks: {document['seconds']:.1f} s of wall time)")
    if args.json:
        text = json.dumps(document, indent=2, sort_keys=True)
        if args.json == "-":
            print(text)
        else:
            path = Path(args.json)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n")
            print(f"JSON written to {path}")
    return 0


def _profile(args: argparse.Namespace) -> str:
    """One bulk transfer (wire path, MSS 1460, --bulk-bytes) under the chosen profiler."""
    total = args.bulk_bytes
    out_dir = Path(args.profile_dir)
    if args.profiler == "cprofile":
        return profile_bulk(total=total, top=args.profile_top)
    title = f"{total / 1e6:g} MB bulk transfer, wire path, MSS 1460, delay 0"
    if args.profiler == "py-spy":
        summary, raw, svg = profile_with_py_spy(out_dir, total=total)
        table = summary.table(f"py-spy samples of one {title}", args.profile_top)
        table.notes.append(f"flame graph: {svg}; collapsed stacks: {raw}")
        by_file = summary.file_table(f"py-spy samples by file, same {total / 1e6:g} MB transfer")
        return f"{table.render()}\n\n{by_file.render()}"
    text, html = profile_with_pyinstrument(out_dir, total=total)
    return f"pyinstrument profile of one {title}\n{text}\nHTML call tree: {html}"


def _show(text: str) -> None:
    print()
    print(text, flush=True)
