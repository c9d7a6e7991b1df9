"""Benchmark 3: connection cycles and the accept rate of a listener.

Cycles. A client Endpoint and a server Endpoint on a zero-delay simulated link (wire
path). One cycle: the client connects, sends 1 byte when established, the server echoes
it, the client closes once it has the echo (the active close, so the client ends in
TIME_WAIT), the server closes on end of stream (CLOSE_WAIT -> LAST_ACK -> CLOSED), and
the network runs until the client's TIME_WAIT has expired (the virtual clock jumps 2*MSL)
and neither Endpoint holds a connection. Cycles run one after the other.

Every call the simulator makes into a host (deliveries, timer calls, output collection,
the timer query) and the client's connect are timed per host with perf_counter_ns, so
each role's cost is reported on its own: "client" and "server" are that Endpoint with a
minimal event-driven application on top. The calibrated cost of the timing itself is
subtracted. "pair" is the wall time of the whole run, simulator included.

Accept burst. A listener Endpoint alone, driven directly (no simulator): 10,000 SYNs as
wire bytes from 10,000 client ports, the SYN,ACKs collected, then the 10,000 ACKs that
complete the handshakes, then accept() until the queue is empty. Only the listener's
calls are timed; building the ACKs (the clients' work) is not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tcpstack.benchmarks._report import Figure, Table, fmt, timed
from tcpstack.core.codec import encode_segment
from tcpstack.core.config import Config
from tcpstack.core.connection import Connection, FourTuple
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.events import Closed, DataAvailable, EndOfStream, Established
from tcpstack.core.segment import Datagram, Flag, Options, Segment
from tcpstack.sim import Network

__all__ = [
    "AcceptResult",
    "CycleResult",
    "accept_burst",
    "connection_table",
    "run_accept",
    "run_cycles",
]

CLIENT_IP = "10.0.0.1"
SERVER_IP = "10.0.0.2"
SERVER_PORT = 7
_CYCLE_VIRTUAL_LIMIT = 600_000_000  # µs per cycle: far more than 2*MSL
_SEQ_MASK = 0xFFFFFFFF


def _isn(four_tuple: FourTuple, now: int) -> int:
    # Deterministic, different per connection and per side, cheap.
    return (four_tuple[1] * 2_654_435_761 + four_tuple[3] * 40_503 + now) & _SEQ_MASK


class _TimedHost:
    """A `Node` around an Endpoint whose every call is timed; subclasses add the app."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.elapsed_ns = 0
        self.calls = 0
        self.closed = 0  # connections that reported Closed

    @property
    def address(self) -> str:
        return self.endpoint.address

    def react(self, now: int) -> None:
        raise NotImplementedError

    def datagrams_to_send(self, *, now: int) -> list[Datagram]:
        start = time.perf_counter_ns()
        out = self.endpoint.datagrams_to_send(now=now)
        self.elapsed_ns += time.perf_counter_ns() - start
        self.calls += 1
        return out

    def receive_datagram(self, datagram: Datagram, *, now: int) -> None:
        start = time.perf_counter_ns()
        self.endpoint.receive_datagram(datagram, now=now)
        self.react(now)
        self.elapsed_ns += time.perf_counter_ns() - start
        self.calls += 1

    def receive_bytes(self, src: str, dst: str, data: bytes, *, now: int) -> None:
        start = time.perf_counter_ns()
        self.endpoint.receive_bytes(src, dst, data, now=now)
        self.react(now)
        self.elapsed_ns += time.perf_counter_ns() - start
        self.calls += 1

    def next_timer(self) -> int | None:
        start = time.perf_counter_ns()
        deadline = self.endpoint.next_timer()
        self.elapsed_ns += time.perf_counter_ns() - start
        self.calls += 1
        return deadline

    def handle_timer(self, *, now: int) -> None:
        start = time.perf_counter_ns()
        self.endpoint.handle_timer(now=now)
        self.react(now)
        self.elapsed_ns += time.perf_counter_ns() - start
        self.calls += 1


class EchoClient(_TimedHost):
    """Connects, sends one byte when established, closes once the echo is back."""

    def connect(self, now: int) -> Connection:
        start = time.perf_counter_ns()
        conn = self.endpoint.connect(SERVER_IP, SERVER_PORT, now=now)
        self.elapsed_ns += time.perf_counter_ns() - start
        self.calls += 1
        return conn

    def react(self, now: int) -> None:
        for conn in self.endpoint.woken_connections():
            while (event := conn.next_event()) is not None:
                if isinstance(event, Established):
                    conn.send(b"x", now=now)
                elif isinstance(event, DataAvailable) and conn.receive(now=now):
                    conn.close(now=now)
                    # The application lets go of the connection here, as a socket
                    # program does after close(): its TIME_WAIT lives on as the
                    # Endpoint's compact entry, which reports to nobody.
                    self.closed += 1


class EchoServer(_TimedHost):
    """Accepts, echoes what arrives, closes on end of stream."""

    def react(self, now: int) -> None:
        endpoint = self.endpoint
        while endpoint.accept(SERVER_PORT) is not None:
            pass  # the child's events arrive through woken_connections below
        for conn in endpoint.woken_connections():
            while (event := conn.next_event()) is not None:
                if isinstance(event, DataAvailable):
                    data = conn.receive(now=now)
                    if data:
                        conn.send(data, now=now)
                elif isinstance(event, EndOfStream):
                    conn.close(now=now)
                elif isinstance(event, Closed):
                    self.closed += 1


def _timing_overhead_ns(samples: int = 20_000) -> float:
    """What one timed call adds by itself: two perf_counter_ns calls and the bookkeeping."""
    counter = time.perf_counter_ns
    host = _TimedHost.__new__(_TimedHost)
    host.elapsed_ns = 0
    host.calls = 0
    start_all = counter()
    for _ in range(samples):
        start = counter()
        host.elapsed_ns += counter() - start
        host.calls += 1
    return (counter() - start_all) / samples


@dataclass(frozen=True)
class CycleSample:
    seconds: float  # wall time of all cycles, simulator included
    client_seconds: float  # timing overhead subtracted
    server_seconds: float
    client_calls: int
    server_calls: int
    segments: int  # delivered, both directions


def run_cycle_batch(cycles: int, overhead_ns: float) -> CycleSample:
    network = Network(0, wire=True)
    config = Config()
    client = EchoClient(Endpoint(CLIENT_IP, isn_generator=_isn, config=config))
    server = EchoServer(
        Endpoint(SERVER_IP, isn_generator=_isn, config=config, syn_backlog=cycles + 1)
    )
    network.add_node(client)
    network.add_node(server)
    network.link(CLIENT_IP, SERVER_IP, delay=0)
    server.endpoint.listen(SERVER_PORT, backlog=cycles + 1, now=network.now)

    goal = 0  # cycles that must have completed

    def finished() -> bool:
        return (
            client.closed == goal
            and server.closed == goal
            and client.endpoint.connection_count() == 0
            and not client.endpoint.time_wait
            and server.endpoint.connection_count() == 0
        )

    def run_all() -> None:
        nonlocal goal
        for index in range(cycles):
            client.connect(network.now)
            goal = index + 1
            if not network.run_until(finished, network.now + _CYCLE_VIRTUAL_LIMIT):
                raise RuntimeError(f"cycle {index} did not complete")

    _, seconds = timed(run_all)
    segments = (
        network.link_stats(CLIENT_IP, SERVER_IP).delivered
        + network.link_stats(SERVER_IP, CLIENT_IP).delivered
    )
    return CycleSample(
        seconds=seconds,
        client_seconds=max(client.elapsed_ns - client.calls * overhead_ns, 1) / 1e9,
        server_seconds=max(server.elapsed_ns - server.calls * overhead_ns, 1) / 1e9,
        client_calls=client.calls,
        server_calls=server.calls,
        segments=segments,
    )


@dataclass(frozen=True)
class CycleResult:
    cycles: int
    repetitions: int
    overhead_ns: float
    samples: tuple[CycleSample, ...]

    def _rate(self, pick: str) -> Figure:
        values = []
        for s in self.samples:
            seconds = {
                "pair": s.seconds,
                "client": s.client_seconds,
                "server": s.server_seconds,
                "both": s.client_seconds + s.server_seconds,
            }[pick]
            values.append(self.cycles / seconds)
        return Figure.of(values)

    def to_json(self) -> dict[str, Any]:
        first = self.samples[0]
        return {
            "cycles": self.cycles,
            "repetitions": self.repetitions,
            "path": "wire",
            "delay_us": 0,
            "cycles_per_s": {
                "pair_wall": self._rate("pair").to_json(),
                "client": self._rate("client").to_json(),
                "server": self._rate("server").to_json(),
                "client_plus_server": self._rate("both").to_json(),
            },
            "segments_per_cycle": first.segments / self.cycles,
            "timed_calls_per_cycle": {
                "client": first.client_calls / self.cycles,
                "server": first.server_calls / self.cycles,
            },
            "timing_overhead_ns_per_call": self.overhead_ns,
        }

    def rows(self, table: Table) -> None:
        for label, pick in (
            ("cycles, pair (wall, incl. simulator)", "pair"),
            ("cycles, client Endpoint + app", "client"),
            ("cycles, server Endpoint + app", "server"),
            ("cycles, client + server", "both"),
        ):
            rate = self._rate(pick)
            table.add(
                label, fmt(rate.median), fmt(1e6 / rate.median), fmt(rate.low), fmt(rate.high)
            )


def run_cycles(cycles: int, repetitions: int) -> CycleResult:
    run_cycle_batch(min(cycles, 20), 0.0)  # warm-up
    overhead = Figure.of([_timing_overhead_ns() for _ in range(5)]).median
    samples = tuple(run_cycle_batch(cycles, overhead) for _ in range(repetitions))
    return CycleResult(cycles, repetitions, overhead, samples)


# --------------------------------------------------------------------------- accept burst


@dataclass(frozen=True)
class AcceptSample:
    syn_seconds: float  # SYNs in, SYN,ACKs out
    ack_seconds: float  # ACKs in, every connection accepted


def accept_burst(syns: int) -> AcceptSample:
    """One burst: `syns` SYNs from distinct ports, then their ACKs, then accept() all."""
    if not 0 < syns <= 65535 - 1024:
        raise ValueError(f"between 1 and {65535 - 1024} SYNs, not {syns}")
    server = Endpoint(SERVER_IP, isn_generator=_isn, syn_backlog=syns)
    server.listen(SERVER_PORT, backlog=syns, now=0)
    first_port = 1024
    syn_bytes = [
        encode_segment(
            Segment(
                first_port + index,
                SERVER_PORT,
                seq=(index * 7_919) & _SEQ_MASK,
                flags=Flag.SYN,
                window=65535,
                options=Options(mss=1460),
            ),
            CLIENT_IP,
            SERVER_IP,
        )
        for index in range(syns)
    ]

    def syn_phase() -> list[Datagram]:
        receive = server.receive_bytes
        for data in syn_bytes:
            receive(CLIENT_IP, SERVER_IP, data, now=0)
        return server.datagrams_to_send(now=0)

    synacks, syn_seconds = timed(syn_phase)
    ack_bytes = []
    for datagram in synacks:
        seg = datagram.segment
        if seg.flags != Flag.SYN | Flag.ACK:
            raise RuntimeError(f"accept benchmark: expected SYN,ACK, got {seg}")
        ack_bytes.append(
            encode_segment(
                Segment(
                    seg.dst_port,
                    seg.src_port,
                    seq=seg.ack,
                    ack=(seg.seq + 1) & _SEQ_MASK,
                    flags=Flag.ACK,
                    window=65535,
                ),
                CLIENT_IP,
                SERVER_IP,
            )
        )
    if len(ack_bytes) != syns:
        raise RuntimeError(f"accept benchmark: {len(ack_bytes)} SYN,ACKs for {syns} SYNs")

    def ack_phase() -> int:
        receive = server.receive_bytes
        for data in ack_bytes:
            receive(CLIENT_IP, SERVER_IP, data, now=1)
        accepted = 0
        while server.accept(SERVER_PORT) is not None:
            accepted += 1
        server.datagrams_to_send(now=1)
        return accepted

    accepted, ack_seconds = timed(ack_phase)
    if accepted != syns:
        raise RuntimeError(f"accept benchmark: accepted {accepted} of {syns}")
    return AcceptSample(syn_seconds, ack_seconds)


@dataclass(frozen=True)
class AcceptResult:
    syns: int
    repetitions: int
    samples: tuple[AcceptSample, ...]

    @property
    def accepts_per_s(self) -> Figure:
        return Figure.of([self.syns / (s.syn_seconds + s.ack_seconds) for s in self.samples])

    @property
    def syn_phase_per_s(self) -> Figure:
        return Figure.of([self.syns / s.syn_seconds for s in self.samples])

    @property
    def ack_phase_per_s(self) -> Figure:
        return Figure.of([self.syns / s.ack_seconds for s in self.samples])

    def to_json(self) -> dict[str, Any]:
        return {
            "syns": self.syns,
            "repetitions": self.repetitions,
            "path": "wire",
            "accepts_per_s": self.accepts_per_s.to_json(),
            "syn_to_synack_per_s": self.syn_phase_per_s.to_json(),
            "ack_to_accept_per_s": self.ack_phase_per_s.to_json(),
        }

    def rows(self, table: Table) -> None:
        for label, figure in (
            (f"accepts, {self.syns:,}-SYN burst (whole handshake)", self.accepts_per_s),
            ("  SYN in -> SYN,ACK out", self.syn_phase_per_s),
            ("  ACK in -> established, accept()ed", self.ack_phase_per_s),
        ):
            table.add(
                label,
                fmt(figure.median),
                fmt(1e6 / figure.median),
                fmt(figure.low),
                fmt(figure.high),
            )


def run_accept(syns: int, repetitions: int) -> AcceptResult:
    accept_burst(min(syns, 100))  # warm-up
    return AcceptResult(syns, repetitions, tuple(accept_burst(syns) for _ in range(repetitions)))


def connection_table(cycles: CycleResult | None, accept: AcceptResult | None) -> Table:
    table = Table(
        "3. Connection cycles and accepts in the simulator (wire path, delay 0)",
        ["figure", "per second", "us each", "min/s", "max/s"],
    )
    if cycles is not None:
        cycles.rows(table)
        first = cycles.samples[0]
        table.notes += [
            "a cycle: connect, 1 byte, echo, client closes first (TIME_WAIT, 2*MSL "
            "expired on the virtual clock), server closes on end of stream; "
            f"{first.segments / cycles.cycles:g} segments per cycle",
            "client / server: time inside that host's calls (Endpoint + a minimal "
            "event-driven app), timing overhead "
            f"({cycles.overhead_ns:.0f} ns x {first.client_calls / cycles.cycles:g} client "
            f"and {first.server_calls / cycles.cycles:g} server calls per cycle) subtracted",
            f"median of {cycles.repetitions} x {cycles.cycles:,} cycles",
        ]
    if accept is not None:
        accept.rows(table)
        table.notes += [
            "accepts: the listener Endpoint driven directly with wire bytes (decode and "
            "checksum included), listen(backlog) and syn_backlog = burst size; building "
            "the clients' ACKs is not timed",
            f"median of {accept.repetitions} bursts",
        ]
    return table
