"""Benchmark 6: the timer loop of an Endpoint holding many idle keepalive connections.

N idle connections (see `_idle.py`) with keepalive on, established at times spread
evenly over one keepalive idle period, so their timers expire evenly too. The loop an
event loop runs: `next_timer()`, `handle_timer(now=deadline)`, `datagrams_to_send()`;
each keepalive probe is answered at once by the client's bare ACK (prepared when the
connection was built, so the client costs a dict lookup), which the Endpoint receives.

One repetition is one virtual hour; repetitions are consecutive hours after a warm-up
hour, each timed with `time.process_time` (CPU time of this process). Per keepalive
period each connection's timer expires twice, as on Linux: once to send the probe, and
once `keepalive_interval` later to find the answer and re-arm for the next idle period.
Expirations (calls of a connection's handle_timer by the Endpoint) are counted in one
more hour, untimed, with a counting wrapper (so the timed hours carry no counter).

What should hold: CPU time follows expirations, not N. 10,000 connections with a 600 s
idle expire 12 times per connection-hour (120,000), 100,000 with Linux's 7200 s about
once (half of them probe in any hour): similar CPU for ten times the connections.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tcpstack.benchmarks._idle import IdleServer
from tcpstack.benchmarks._report import Figure, Table, fmt
from tcpstack.core.config import SECOND, Config
from tcpstack.core.connection import Connection

__all__ = [
    "DEFAULT_CASES",
    "HOUR",
    "TimerCase",
    "TimerResult",
    "parse_case",
    "run_timer_case",
    "run_timers",
]

HOUR = 3600 * SECOND
DEFAULT_CASES = ((10_000, 7200), (100_000, 7200), (10_000, 600))
KEEPALIVE_INTERVAL = 75 * SECOND  # Linux's tcp_keepalive_intvl


def parse_case(text: str) -> tuple[int, int]:
    """'100000' -> (100000, 7200); '10k@600' -> (10000, 600): connections @ idle seconds."""
    count_text, _, idle_text = text.partition("@")
    count_text = count_text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(count_text[-1:], 1)
    count = int(float(count_text.rstrip("km")) * scale)
    idle = int(idle_text) if idle_text else 7200
    if count < 2 or idle <= KEEPALIVE_INTERVAL // SECOND:
        raise ValueError(f"need >= 2 connections and idle > 75 s: {text!r}")
    return count, idle


@contextmanager
def _counting_expirations() -> Iterator[list[int]]:
    """Count Connection.handle_timer calls while inside (restored on exit)."""
    counter = [0]
    original = Connection.handle_timer

    def counted(self: Connection, *, now: int) -> None:
        counter[0] += 1
        original(self, now=now)

    setattr(Connection, "handle_timer", counted)  # noqa: B010
    try:
        yield counter
    finally:
        setattr(Connection, "handle_timer", original)  # noqa: B010


def _run_until(server: IdleServer, end: int) -> tuple[int, int]:
    """The timer loop up to (not including) virtual time `end`; (wake-ups, probes)."""
    endpoint = server.endpoint
    answers = server.answers
    next_timer = endpoint.next_timer
    handle_timer = endpoint.handle_timer
    datagrams_to_send = endpoint.datagrams_to_send
    receive = endpoint.receive_datagram
    wakeups = probes = 0
    while True:
        deadline = next_timer()
        if deadline is None or deadline >= end:
            return wakeups, probes
        wakeups += 1
        handle_timer(now=deadline)
        for datagram in datagrams_to_send(now=deadline):
            probes += 1
            receive(answers[(datagram.dst, datagram.segment.dst_port)], now=deadline)


@dataclass(frozen=True)
class TimerCase:
    connections: int
    idle_s: int
    repetitions: int
    cpu_seconds: Figure  # per virtual hour
    expirations: int  # per virtual hour (the counted hour)
    wakeups: int  # distinct deadlines the loop woke for, per hour (first timed hour)
    probes: tuple[int, ...]  # keepalive probes sent, each timed hour
    build_seconds: float
    alive: int  # connections still ESTABLISHED at the end

    @property
    def us_per_expiration(self) -> Figure:
        return Figure.of([s / max(self.expirations, 1) * 1e6 for s in self.cpu_seconds.samples])

    @property
    def us_per_connection(self) -> Figure:
        return Figure.of([s / self.connections * 1e6 for s in self.cpu_seconds.samples])

    def to_json(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "keepalive_idle_s": self.idle_s,
            "keepalive_interval_s": KEEPALIVE_INTERVAL // SECOND,
            "virtual_seconds_per_repetition": HOUR // SECOND,
            "repetitions": self.repetitions,
            "cpu_seconds_per_hour": self.cpu_seconds.to_json(),
            "expirations_per_hour": self.expirations,
            "wakeups_per_hour": self.wakeups,
            "probes_per_hour": list(self.probes),
            "cpu_us_per_expiration": self.us_per_expiration.to_json(),
            "cpu_us_per_connection_hour": self.us_per_connection.to_json(),
            "build_seconds": self.build_seconds,
            "still_established": self.alive,
        }


def run_timer_case(connections: int, idle_s: int, repetitions: int) -> TimerCase:
    idle = idle_s * SECOND
    config = Config(keepalive=True, keepalive_idle=idle, keepalive_interval=KEEPALIVE_INTERVAL)
    server = IdleServer.create(connections, config)
    spread: Callable[[int], int] = lambda index: index * idle // connections  # noqa: E731
    started = time.perf_counter()
    server.establish(connections, at=spread, keep_answers=True, batch=1)
    build_seconds = time.perf_counter() - started
    start = idle  # every first keepalive deadline lies in [idle, 2 * idle)
    _run_until(server, start + HOUR)  # warm-up hour
    hour = 1
    samples: list[float] = []
    probes: list[int] = []
    wakeups = 0
    for _ in range(repetitions):
        cpu = time.process_time()
        woke, sent = _run_until(server, start + (hour + 1) * HOUR)
        samples.append(time.process_time() - cpu)
        probes.append(sent)
        wakeups = wakeups or woke
        hour += 1
    with _counting_expirations() as counter:
        _run_until(server, start + (hour + 1) * HOUR)
    alive = sum(1 for conn in server.connections if conn.state.value == "ESTABLISHED")
    return TimerCase(
        connections=connections,
        idle_s=idle_s,
        repetitions=repetitions,
        cpu_seconds=Figure.of([max(s, 1e-9) for s in samples]),
        expirations=counter[0],
        wakeups=wakeups,
        probes=tuple(probes),
        build_seconds=build_seconds,
        alive=alive,
    )


@dataclass(frozen=True)
class TimerResult:
    cases: tuple[TimerCase, ...]

    def to_json(self) -> dict[str, Any]:
        return {"cases": [case.to_json() for case in self.cases]}

    def table(self) -> Table:
        table = Table(
            "6. Keepalive timers: one virtual hour of the Endpoint's timer loop (CPU time)",
            [
                "connections",
                "idle s",
                "expirations/h",
                "probes/h",
                "CPU s/h",
                "min",
                "max",
                "CPU us/expiration",
                "CPU us/connection",
            ],
        )
        for case in self.cases:
            table.add(
                f"{case.connections:,}",
                str(case.idle_s),
                f"{case.expirations:,}",
                f"{case.probes[0]:,}",
                fmt(case.cpu_seconds.median),
                fmt(case.cpu_seconds.low),
                fmt(case.cpu_seconds.high),
                fmt(case.us_per_expiration.median),
                fmt(case.us_per_connection.median),
            )
        reps = {case.repetitions for case in self.cases}
        table.notes += [
            "loop: next_timer(), handle_timer(now=deadline), datagrams_to_send(); every "
            "probe answered at once by the client's bare ACK, received by the Endpoint "
            "(included in the CPU time); keepalive interval "
            f"{KEEPALIVE_INTERVAL // SECOND} s",
            "connections established evenly over one idle period, so expirations are "
            "spread over the hour; each expires twice per idle period (probe, then the "
            "check that re-arms), counted in an extra untimed hour",
            f"median of {'/'.join(str(r) for r in sorted(reps))} consecutive virtual hours "
            "after a warm-up hour; time.process_time",
        ]
        dead = [case for case in self.cases if case.alive != case.connections]
        for case in dead:
            table.notes.append(
                f"{case.connections:,} @ {case.idle_s} s: only {case.alive:,} still "
                "ESTABLISHED at the end"
            )
        return table


def run_timers(
    cases: Sequence[tuple[int, int]] = DEFAULT_CASES, repetitions: int = 5
) -> TimerResult:
    return TimerResult(tuple(run_timer_case(count, idle, repetitions) for count, idle in cases))
