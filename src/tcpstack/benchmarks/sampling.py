"""Sampling profiles of one bulk transfer: where the time per segment goes.

cProfile (`tcpstack bench --only profile`) counts every call, which is what tells how
many calls a segment costs, but its own overhead per call inflates small functions. A
sampling profiler looks at the stack every so often instead, so its percentages are the
shares of real time. Two are supported, each an extra of its own (`pip install -e
'.[profile]'`, `make profile`):

- py-spy samples the benchmark from another process (no code runs in the profiled
  one). It writes the raw collapsed stacks (`--format raw`: one line per distinct stack,
  frames separated by ';', then the sample count) and a flame graph (SVG); this module
  sums the raw stacks into a table of self and inclusive shares per function.
- pyinstrument samples in-process and writes its own HTML call tree and text report.

Only samples taken inside the timed part (`BulkSetup.transfer`) are counted, so the
table shows the transfer, not the interpreter's start-up or the handshake.

`python -m tcpstack.benchmarks.sampling --target ...` is the process py-spy runs: it
sets up one transfer and runs it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tcpstack.benchmarks._report import MB, Table
from tcpstack.benchmarks.bulk import DEFAULT_BUFFER, BulkSetup

__all__ = [
    "PROFILERS",
    "FunctionShare",
    "SampledProfile",
    "profile_with_py_spy",
    "profile_with_pyinstrument",
    "summarize_collapsed",
]

PROFILERS = ("py-spy", "pyinstrument")
TIMED_FUNCTION = "transfer"
"""The frame (BulkSetup.transfer in bulk.py) whose samples are the timed part."""
TIMED_FILE = "bulk.py"
PY_SPY_RATE = 2000  # samples per second; py-spy's default (100) gives too few per run

# A py-spy frame: "function (path:line)" or, with --nolineno, "function (path)".
_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^():]*)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True)
class FunctionShare:
    """One function's share of the counted samples."""

    function: str
    file: str  # the file's base name
    self_samples: int  # samples with this function on top of the stack
    inclusive_samples: int  # samples with this function anywhere in the stack


@dataclass(frozen=True)
class SampledProfile:
    """Collapsed stacks summed per function, restricted to the timed part."""

    total_samples: int  # every sample in the input
    counted_samples: int  # samples inside the timed function
    functions: tuple[FunctionShare, ...]  # by self samples, most first
    timed_function: str = TIMED_FUNCTION  # the frame that marks the counted samples
    timed_file: str = TIMED_FILE

    def table(self, title: str, top: int) -> Table:
        table = Table(title, ["function", "self %", "inclusive %", "self samples"])
        counted = max(self.counted_samples, 1)
        for share in self.functions[:top]:
            table.add(
                f"{share.function} ({share.file})",
                f"{100 * share.self_samples / counted:.1f}",
                f"{100 * share.inclusive_samples / counted:.1f}",
                f"{share.self_samples:,}",
            )
        table.notes.append(
            f"{self.counted_samples:,} of {self.total_samples:,} samples were inside "
            f"{self.timed_function}() ({self.timed_file}); shares are of those"
        )
        return table

    def self_by_file(self) -> list[tuple[str, int]]:
        """Self samples summed per file (a layer: codec.py, connection.py, endpoint.py,
        network.py, ...), most first."""
        totals: Counter[str] = Counter()
        for share in self.functions:
            totals[share.file or "(built-in or unknown)"] += share.self_samples
        return sorted(totals.items(), key=lambda item: (-item[1], item[0]))

    def file_table(self, title: str) -> Table:
        table = Table(title, ["file", "self %", "self samples"])
        counted = max(self.counted_samples, 1)
        for file, samples in self.self_by_file():
            if samples:
                table.add(file, f"{100 * samples / counted:.1f}", f"{samples:,}")
        table.notes.append("time spent in each file's own code (callees in other files excluded)")
        return table


def _parse_frame(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    if match is None:
        return frame, ""
    return match.group("function"), Path(match.group("path")).name


def summarize_collapsed(
    lines: Iterable[str],
    *,
    timed_function: str = TIMED_FUNCTION,
    timed_file: str = TIMED_FILE,
) -> SampledProfile:
    """Sum collapsed stacks ("frame;frame;... count", outermost frame first) per function.

    A sample counts only if one of its frames is `timed_function` in `timed_file`; the
    frames above it (the callers: interpreter start-up, the runner) are not counted.
    Samples without a frame (a line that is only a count) count in the total only.
    Malformed lines (no count) raise ValueError: the input is py-spy's own output.
    """
    self_samples: Counter[tuple[str, str]] = Counter()
    inclusive_samples: Counter[tuple[str, str]] = Counter()
    total = counted = 0
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            raise ValueError(f"line {number}: not 'stack count': {line[:80]!r}")
        count = int(count_text)
        total += count
        if not stack.strip():
            continue  # samples without a Python frame (py-spy writes just the count)
        frames = [_parse_frame(frame) for frame in stack.split(";")]
        start = next(
            (
                index
                for index, (function, file) in enumerate(frames)
                if file == timed_file and function.split(".")[-1] == timed_function
            ),
            None,
        )
        if start is None:
            continue
        counted += count
        timed_frames = frames[start:]
        self_samples[timed_frames[-1]] += count
        for key in set(timed_frames):  # recursion counts a function once per sample
            inclusive_samples[key] += count
    functions = tuple(
        FunctionShare(function, file, self_samples[(function, file)], inclusive)
        for (function, file), inclusive in inclusive_samples.items()
    )
    ordered = sorted(functions, key=lambda f: (-f.self_samples, -f.inclusive_samples, f.function))
    return SampledProfile(total, counted, tuple(ordered), timed_function, timed_file)


def _target_command(total: int, mss: int, wire: bool) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tcpstack.benchmarks.sampling",
        "--target",
        "--bytes",
        str(total),
        "--mss",
        str(mss),
        "--path",
        "wire" if wire else "object",
    ]


def profile_with_py_spy(
    out_dir: Path, *, total: int, mss: int = 1460, wire: bool = True, py_spy: str | None = None
) -> tuple[SampledProfile, Path, Path]:
    """Run one transfer under py-spy twice (raw stacks, then a flame graph SVG).

    Returns the summary and the two files' paths. Raises RuntimeError when py-spy is not
    installed or fails (it needs ptrace: root, or kernel.yama.ptrace_scope 0).
    """
    executable = py_spy or shutil.which("py-spy") or _beside_python("py-spy")
    if executable is None:
        raise RuntimeError("py-spy is not installed: pip install -e '.[profile]'")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = "wire" if wire else "object"
    raw = out_dir / f"bulk-{path}-{mss}.py-spy.txt"
    svg = out_dir / f"bulk-{path}-{mss}.py-spy.svg"
    for form, output in (("raw", raw), ("flamegraph", svg)):
        command = [
            executable,
            "record",
            "--rate",
            str(PY_SPY_RATE),
            "--format",
            form,
            "--output",
            str(output),
            "--",
            *_target_command(total, mss, wire),
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"py-spy failed ({result.returncode}): {result.stderr.strip()[-500:]}"
            )
    with raw.open() as lines:
        return summarize_collapsed(lines), raw, svg


def _beside_python(name: str) -> str | None:
    """A console script installed next to this interpreter (a venv not on PATH)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None


def profile_with_pyinstrument(
    out_dir: Path, *, total: int, mss: int = 1460, wire: bool = True
) -> tuple[str, Path]:
    """Run one transfer under pyinstrument; returns its text report and the HTML file."""
    try:
        from pyinstrument import Profiler
    except ImportError as error:
        raise RuntimeError("pyinstrument is not installed: pip install -e '.[profile]'") from error
    setup = BulkSetup(wire=wire, mss=mss, total=total, buffer=DEFAULT_BUFFER)
    profiler = Profiler(interval=0.0005)
    profiler.start()
    setup.transfer()
    profiler.stop()
    out_dir.mkdir(parents=True, exist_ok=True)
    html = out_dir / f"bulk-{'wire' if wire else 'object'}-{mss}.pyinstrument.html"
    html.write_text(profiler.output_html())
    text: str = profiler.output_text(unicode=False, color=False, show_all=False)
    return text, html


def _run_target(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tcpstack.benchmarks.sampling")
    parser.add_argument("--target", action="store_true", required=True)
    parser.add_argument("--bytes", type=int, required=True)
    parser.add_argument("--mss", type=int, default=1460)
    parser.add_argument("--path", choices=("wire", "object"), default="wire")
    args = parser.parse_args(argv)
    setup = BulkSetup(
        wire=args.path == "wire", mss=args.mss, total=args.bytes, buffer=DEFAULT_BUFFER
    )
    setup.transfer()
    print(f"transferred {args.bytes / MB:g} MB ({args.path} path, MSS {args.mss})")
    return 0


if __name__ == "__main__":
    sys.exit(_run_target(sys.argv[1:]))
