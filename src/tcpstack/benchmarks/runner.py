"""`run_benchmarks(argv)`: the command line of the benchmark suite.

    python -m tcpstack.benchmarks                 # everything, quick defaults
    python -m tcpstack.benchmarks --only bulk --bulk-bytes 100M --json out/bench.json
    python -m tcpstack.benchmarks --only profile      # cProfile one bulk transfer only

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

__all__ = ["BENCHMARKS", "JSON_SCHEMA", "build_parser", "parse_size", "run_benchmarks"]

BENCHMARKS = ("floor", "bulk", "cycles", "accept")
_CHOICES = (*BENCHMARKS, "profile")
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
        help=f"comma-separated subset of {','.join(_CHOICES)} (default: all but profile)",
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
    print(
        f"tcpstack benchmarks: {env['implementation']} {env['python']} on {env['platform']}; "
        f"every figure is the median of {repetitions} repetitions"
    )
    if repetitions < MIN_REPETITIONS:
        print(f"warning: fewer than {MIN_REPETITIONS} repetitions: figures are not reliable")
    document: dict[str, Any] = {
        "schema": JSON_SCHEMA,
        "environment": env,
        "repetitions": repetitions,
        "benchmarks": {},
    }
    results: dict[str, Any] = document["benchmarks"]
    started = time.perf_counter()
    try:
        if "floor" in chosen:
            floor = run_floor(args.floor_segments, repetitions, max(args.floor_segments // 2, 1))
            results["floor"] = floor.to_json()
            _show(floor.table().render())
        if "bulk" in chosen:
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
        cycles = run_cycles(args.cycles, repetitions) if "cycles" in chosen else None
        accept = run_accept(args.syn_burst, repetitions) if "accept" in chosen else None
        if cycles is not None:
            results["cycles"] = cycles.to_json()
        if accept is not None:
            results["accept"] = accept.to_json()
        if cycles is not None or accept is not None:
            _show(connection_table(cycles, accept).render())
        if args.profile or "profile" in chosen:
            _show(profile_bulk(total=args.bulk_bytes, top=args.profile_top).rstrip())
    except RuntimeError as error:
        print(f"tcpstack bench: {error}", file=sys.stderr)
        return 1
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


def _show(text: str) -> None:
    print()
    print(text, flush=True)
