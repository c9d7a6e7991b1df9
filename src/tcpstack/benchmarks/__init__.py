"""The benchmark suite of tcpstack (speed only; never imported by the core or tests' asserts).

1. floor: the least per-segment work any Python TCP must do in this interpreter;
2. bulk: goodput of two Endpoints on the simulator (wire and object paths, two MSS);
3. cycles / accept: connect-echo-close cycles per second and a listener's accept rate.

Entry point: `run_benchmarks(argv) -> int` (also `python -m tcpstack.benchmarks`).
"""

from tcpstack.benchmarks.runner import run_benchmarks

__all__ = ["run_benchmarks"]
