"""Benchmark 2: bulk goodput of two Endpoints on the simulator, no loss, zero delay.

A client Endpoint sends `total` bytes to a server Endpoint over a `tcpstack.sim.Network`
link with delay 0 (virtual time never advances: every figure is the wall-clock cost of
the stack and the simulator). The client's "application" keeps the send buffer full;
the server's reads everything as soon as it arrives. Both ends use the same `Config`:
the MSS under test and raised send/receive buffers. The handshake and the close are not
timed: the clock runs from the first `send` until the server application has read the
last byte and the client holds the ACK of it.

Each case runs through the wire path (`Network(wire=True)`: every segment is encoded
with its checksum, carried as bytes and decoded) and the object path (`wire=False`: the
`Segment` object is handed over). In every repetition the floor (benchmark 1) is
measured once right before the cases, and each case's data segments/s is divided by
that repetition's floor: the ratio's median is reported.
"""

from __future__ import annotations

import cProfile
import io
import pstats
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tcpstack.benchmarks._report import MB, Figure, Table, fmt, ratio_figure, timed
from tcpstack.benchmarks.floor import build_packets, measure_floor_once
from tcpstack.core.config import Config
from tcpstack.core.connection import Connection, FourTuple
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.segment import Datagram
from tcpstack.core.state import State
from tcpstack.sim import Network

__all__ = [
    "BulkCase",
    "BulkResult",
    "bulk_transfer",
    "profile_bulk",
    "run_bulk",
]

CLIENT_IP = "10.0.0.1"
SERVER_IP = "10.0.0.2"
SERVER_PORT = 5001
DEFAULT_MSS = (1460, 65483)
DEFAULT_BUFFER = 256 * 1024
MAX_UNSCALED_WINDOW = 0xFFFF  # the 16-bit window field without RFC 7323 scaling
_VIRTUAL_LIMIT = 3_600_000_000  # µs; zero delay means the clock should never move
_NO_INSTANT_LIMIT = 1 << 62  # the whole transfer happens at one virtual instant


def _client_isn(four_tuple: FourTuple, now: int) -> int:
    return 1_000


def _server_isn(four_tuple: FourTuple, now: int) -> int:
    return 2**32 - 100_000  # the server's sequence numbers wrap during the transfer


class BulkSender:
    """A `Node`: the client Endpoint plus an application that keeps its send buffer full."""

    def __init__(self, endpoint: Endpoint, total: int, chunk_size: int) -> None:
        self.endpoint = endpoint
        self.remaining = total
        self.conn: Connection | None = None  # set when the timed transfer starts
        self._chunk = bytes(range(256)) * (chunk_size // 256 + 1)

    @property
    def address(self) -> str:
        return self.endpoint.address

    def datagrams_to_send(self, *, now: int) -> list[Datagram]:
        conn = self.conn
        if conn is not None:
            if self.remaining:
                space = conn.send_space
                if space:
                    size = min(space, self.remaining)
                    self.remaining -= conn.send(self._chunk[:size], now=now)
            while conn.next_event() is not None:
                pass
        return self.endpoint.datagrams_to_send(now=now)

    def receive_datagram(self, datagram: Datagram, *, now: int) -> None:
        self.endpoint.receive_datagram(datagram, now=now)

    def receive_bytes(self, src: str, dst: str, data: bytes, *, now: int) -> None:
        self.endpoint.receive_bytes(src, dst, data, now=now)

    def next_timer(self) -> int | None:
        return self.endpoint.next_timer()

    def handle_timer(self, *, now: int) -> None:
        self.endpoint.handle_timer(now=now)


class BulkReceiver:
    """A `Node`: the server Endpoint plus an application that reads everything at once."""

    def __init__(self, endpoint: Endpoint, port: int) -> None:
        self.endpoint = endpoint
        self.port = port
        self.conn: Connection | None = None
        self.received = 0

    @property
    def address(self) -> str:
        return self.endpoint.address

    def _read(self, now: int) -> None:
        conn = self.conn
        if conn is None:
            conn = self.conn = self.endpoint.accept(self.port)
            if conn is None:
                return
        while conn.next_event() is not None:
            pass
        if conn.receive_buffered:
            self.received += len(conn.receive(now=now))

    def datagrams_to_send(self, *, now: int) -> list[Datagram]:
        return self.endpoint.datagrams_to_send(now=now)

    def receive_datagram(self, datagram: Datagram, *, now: int) -> None:
        self.endpoint.receive_datagram(datagram, now=now)
        self._read(now)

    def receive_bytes(self, src: str, dst: str, data: bytes, *, now: int) -> None:
        self.endpoint.receive_bytes(src, dst, data, now=now)
        self._read(now)

    def next_timer(self) -> int | None:
        return self.endpoint.next_timer()

    def handle_timer(self, *, now: int) -> None:
        self.endpoint.handle_timer(now=now)
        self._read(now)


@dataclass(frozen=True)
class TransferSample:
    """One timed transfer."""

    seconds: float
    data_segments: int  # client -> server deliveries while timed
    ack_segments: int  # server -> client deliveries while timed
    virtual_us: int  # how far the virtual clock moved (0 expected)


class BulkSetup:
    """Two Endpoints on a zero-delay network, connected, ready for the timed transfer."""

    def __init__(self, *, wire: bool, mss: int, total: int, buffer: int) -> None:
        config = Config(mss=mss, send_buffer_size=buffer, receive_buffer_size=buffer)
        self.total = total
        self.network = Network(0, wire=wire, max_events_per_instant=_NO_INSTANT_LIMIT)
        client = Endpoint(CLIENT_IP, isn_generator=_client_isn, config=config)
        server = Endpoint(SERVER_IP, isn_generator=_server_isn, config=config)
        self.sender = BulkSender(client, total, buffer)
        self.receiver = BulkReceiver(server, SERVER_PORT)
        self.network.add_node(self.sender)
        self.network.add_node(self.receiver)
        self.network.link(CLIENT_IP, SERVER_IP, delay=0)
        server.listen(SERVER_PORT, now=self.network.now)
        self.conn = client.connect(SERVER_IP, SERVER_PORT, now=self.network.now)
        conn = self.conn
        receiver = self.receiver
        if not self.network.run_until(
            lambda: conn.state is State.ESTABLISHED and receiver.conn is not None,
            self.network.now + 10_000_000,
        ):
            raise RuntimeError("bulk benchmark: the handshake did not complete")

    def transfer(self) -> None:
        """The timed part: send everything, run until the server application has read
        it all and the client has had it all acknowledged."""
        conn = self.sender.conn = self.conn
        receiver = self.receiver
        total = self.total
        network = self.network
        if not network.run_until(
            lambda: receiver.received >= total and not conn.send_buffered,
            network.now + _VIRTUAL_LIMIT,
        ):
            raise RuntimeError(
                f"bulk benchmark: {receiver.received} of {total} bytes arrived before the "
                "virtual time limit"
            )


def bulk_transfer(*, wire: bool, mss: int, total: int, buffer: int) -> TransferSample:
    """Set up, then time one transfer of `total` bytes."""
    setup = BulkSetup(wire=wire, mss=mss, total=total, buffer=buffer)
    network = setup.network
    data_before = network.link_stats(CLIENT_IP, SERVER_IP).delivered
    acks_before = network.link_stats(SERVER_IP, CLIENT_IP).delivered
    start_time = network.now
    _, seconds = timed(setup.transfer)
    if setup.receiver.received != total:
        raise RuntimeError(f"bulk benchmark: {setup.receiver.received} bytes, wanted {total}")
    return TransferSample(
        seconds=seconds,
        data_segments=network.link_stats(CLIENT_IP, SERVER_IP).delivered - data_before,
        ack_segments=network.link_stats(SERVER_IP, CLIENT_IP).delivered - acks_before,
        virtual_us=network.now - start_time,
    )


@dataclass(frozen=True)
class BulkCase:
    """The repetitions of one (path, MSS) case."""

    wire: bool
    mss: int
    total: int
    samples: tuple[TransferSample, ...]
    vs_floor: Figure

    @property
    def path(self) -> str:
        return "wire" if self.wire else "object"

    @property
    def goodput_mb_per_s(self) -> Figure:
        return Figure.of([self.total / s.seconds / MB for s in self.samples])

    @property
    def data_segments_per_s(self) -> Figure:
        return Figure.of([s.data_segments / s.seconds for s in self.samples])

    @property
    def ack_segments_per_s(self) -> Figure:
        return Figure.of([s.ack_segments / s.seconds for s in self.samples])

    @property
    def us_per_data_segment(self) -> Figure:
        return Figure.of([s.seconds / s.data_segments * 1e6 for s in self.samples])

    @property
    def bytes_per_data_segment(self) -> float:
        return self.total / self.samples[0].data_segments

    @property
    def window_limited(self) -> bool:
        """Data segments average well below the MSS: something (at a large MSS, the
        65,535-byte unscaled window) cut them short."""
        return self.bytes_per_data_segment < 0.9 * min(self.mss, self.total)

    def to_json(self) -> dict[str, Any]:
        first = self.samples[0]
        return {
            "path": self.path,
            "mss": self.mss,
            "bytes": self.total,
            "goodput_mb_per_s": self.goodput_mb_per_s.to_json(),
            "data_segments_per_s": self.data_segments_per_s.to_json(),
            "ack_segments_per_s": self.ack_segments_per_s.to_json(),
            "us_per_data_segment": self.us_per_data_segment.to_json(),
            "data_segments": first.data_segments,
            "ack_segments": first.ack_segments,
            "bytes_per_data_segment": self.bytes_per_data_segment,
            "window_limited": self.window_limited,
            "virtual_time_us": max(s.virtual_us for s in self.samples),
            "data_segments_per_s_vs_floor": self.vs_floor.to_json(),
        }


@dataclass(frozen=True)
class BulkResult:
    total: int
    buffer: int
    window_scaling_in_config: bool
    repetitions: int
    floor_segments: int
    floor_segments_per_s: Figure
    cases: tuple[BulkCase, ...]

    def case(self, wire: bool, mss: int) -> BulkCase | None:
        for case in self.cases:
            if case.wire == wire and case.mss == mss:
                return case
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "bytes": self.total,
            "send_buffer_size": self.buffer,
            "receive_buffer_size": self.buffer,
            "unscaled_window_max": MAX_UNSCALED_WINDOW,
            "window_scaling_in_config": self.window_scaling_in_config,
            "delay_us": 0,
            "repetitions": self.repetitions,
            "floor_segments": self.floor_segments,
            "floor_segments_per_s": self.floor_segments_per_s.to_json(),
            "cases": [case.to_json() for case in self.cases],
        }

    def table(self) -> Table:
        table = Table(
            f"2. Bulk goodput in the simulator: {self.total / MB:g} MB, no loss, delay 0",
            [
                "path",
                "MSS",
                "goodput MB/s",
                "data seg/s",
                "ACK seg/s",
                "us/data seg",
                "bytes/data seg",
                "data seg/s / floor",
            ],
        )
        for case in self.cases:
            table.add(
                case.path,
                str(case.mss),
                fmt(case.goodput_mb_per_s.median),
                fmt(case.data_segments_per_s.median),
                fmt(case.ack_segments_per_s.median),
                fmt(case.us_per_data_segment.median),
                f"{case.bytes_per_data_segment:,.0f}",
                f"{case.vs_floor.median:.3f}",
            )
        table.notes += [
            f"floor measured side by side in each repetition: "
            f"{fmt(self.floor_segments_per_s.median)} segments/s (median); the last "
            "column is the per-repetition ratio's median",
            f"Config(mss=MSS, send_buffer_size={self.buffer:,}, receive_buffer_size="
            f"{self.buffer:,}) on both ends; no tracer; handshake and close not timed",
            "data seg/s counts everything delivered client -> server while timed, ACK seg/s "
            "everything server -> client; both Endpoints, the applications and the "
            "simulator share one core",
            f"median of {self.repetitions} repetitions",
        ]
        for case in self.cases:
            if case.wire and case.mss > MAX_UNSCALED_WINDOW // 2 < self.total // 4:
                if case.window_limited:
                    table.notes.append(
                        f"MSS {case.mss}: data segments average "
                        f"{case.bytes_per_data_segment:,.0f} bytes: the window is capped at "
                        f"{MAX_UNSCALED_WINDOW:,} bytes without window scaling (RFC 7323), "
                        "which the core does not do yet, so one full segment fills the "
                        "window and what is left of it goes as a second, small segment"
                    )
                else:
                    table.notes.append(
                        f"MSS {case.mss}: data segments are full-sized: the window does not "
                        f"stop at {MAX_UNSCALED_WINDOW:,} (window scaling in use)"
                    )
        for mss in sorted({case.mss for case in self.cases}):
            wire, obj = self.case(True, mss), self.case(False, mss)
            if wire is not None and obj is not None:
                ratio = ratio_figure(
                    [s.seconds for s in obj.samples], [s.seconds for s in wire.samples]
                )
                table.notes.append(
                    f"MSS {mss}: wire path goodput / object path goodput = "
                    f"{ratio.median:.3f} (per-repetition ratio's median)"
                )
        return table


def run_bulk(
    *,
    total: int,
    mss_values: Sequence[int] = DEFAULT_MSS,
    repetitions: int,
    buffer: int = DEFAULT_BUFFER,
    floor_segments: int = 20_000,
    warmup: bool = True,
) -> BulkResult:
    cases = [(wire, mss) for wire in (True, False) for mss in mss_values]
    if warmup:
        for wire, mss in cases:
            bulk_transfer(wire=wire, mss=mss, total=min(total, 256 * 1024), buffer=buffer)
    packets = build_packets()
    floor_rates: list[float] = []
    samples: dict[tuple[bool, int], list[TransferSample]] = {case: [] for case in cases}
    for _ in range(repetitions):
        floor_rates.append(measure_floor_once(floor_segments, packets))
        for wire, mss in cases:
            samples[(wire, mss)].append(
                bulk_transfer(wire=wire, mss=mss, total=total, buffer=buffer)
            )
    results = []
    for wire, mss in cases:
        runs = samples[(wire, mss)]
        rates = [s.data_segments / s.seconds for s in runs]
        results.append(
            BulkCase(
                wire=wire,
                mss=mss,
                total=total,
                samples=tuple(runs),
                vs_floor=ratio_figure(rates, floor_rates),
            )
        )
    return BulkResult(
        total=total,
        buffer=buffer,
        # A Config field once the core offers RFC 7323 window scaling; False before.
        window_scaling_in_config=bool(getattr(Config(), "window_scaling", False)),
        repetitions=repetitions,
        floor_segments=floor_segments,
        floor_segments_per_s=Figure.of(floor_rates),
        cases=tuple(results),
    )


def profile_bulk(*, total: int, mss: int = 1460, wire: bool = True, top: int = 10) -> str:
    """cProfile one transfer (setup excluded); the top functions by cumulative time,
    then by own time, as pstats prints them."""
    setup = BulkSetup(wire=wire, mss=mss, total=total, buffer=DEFAULT_BUFFER)
    profiler = cProfile.Profile()
    profiler.runcall(setup.transfer)
    out = io.StringIO()
    out.write(
        f"cProfile of one bulk transfer: {total / MB:g} MB, "
        f"{'wire' if wire else 'object'} path, MSS {mss}, delay 0\n"
    )
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs()
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(top)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(top)
    return out.getvalue()
