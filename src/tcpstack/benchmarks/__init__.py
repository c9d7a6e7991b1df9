"""The benchmark suite of tcpstack (speed only; never imported by the core or tests' asserts).

1. floor: the least per-segment work any Python TCP must do in this interpreter;
2. bulk: goodput of two Endpoints on the simulator (wire and object paths, two MSS);
3. cycles / accept: connect-echo-close cycles per second and a listener's accept rate;
4. lossy (opt-in, `--only lossy`): goodput in virtual time over a lossy 100 Mbit/s path.
5. memory: bytes per idle ESTABLISHED connection and per TIME_WAIT entry;
6. timers: CPU time of an hour of keepalive timers over many idle connections.
`--plot DIR` draws README figures (goodput vs MSS; goodput vs loss when lossy ran).

Entry point: `run_benchmarks(argv) -> int` (also `python -m tcpstack.benchmarks`).
"""

from tcpstack.benchmarks.runner import run_benchmarks

__all__ = ["run_benchmarks"]
