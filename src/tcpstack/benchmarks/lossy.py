"""Benchmark 4: goodput of one bulk transfer over a lossy 100 Mbit/s path, in virtual time.

A client Endpoint sends `total` bytes (100 MB by default) to a server Endpoint over a
simulated link of 10 ms one-way delay and 100 Mbit/s each way, with a drop-tail queue of
about one bandwidth-delay product (BDP_PACKETS full-sized packets), and random loss of 0,
1 and 5 % in both directions (data and ACKs). Each of NewReno and CUBIC runs with and
without SACK: twelve runs. Both ends use timestamps and window scaling, and send and
receive buffers of 4 MiB (far above the 250 kB BDP, so the windows never limit).

The client's application keeps its send buffer full; the server's reads everything as it
arrives. The clock runs from the first `send` (after the handshake) until the server
application has read the last byte. Goodput is bytes / virtual seconds: what the
protocol achieves on that path, not how fast Python runs it (the wall time is reported
beside it). The simulator is deterministic for a seed, so one run per case is the figure;
another --lossy-seed draws other losses.

Retransmissions are counted on the link: every data segment the client sends that starts
below the highest sequence number it sent before (fast retransmits, SACK hole resends
and everything resent after a timeout). "drops" is what the data direction discarded:
random loss plus queue overflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tcpstack.benchmarks._report import MB, Table, fmt, timed
from tcpstack.benchmarks.bulk import CLIENT_IP, SERVER_IP, SERVER_PORT, BulkReceiver, BulkSender
from tcpstack.core.config import Config
from tcpstack.core.connection import FourTuple
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.state import State
from tcpstack.sim import LinkParams, NetRecord, Network, What

__all__ = [
    "BANDWIDTH",
    "BDP_PACKETS",
    "BUFFER",
    "CONTROLLERS",
    "DEFAULT_LOSSES",
    "DEFAULT_TOTAL",
    "ONE_WAY_DELAY",
    "LossyCase",
    "LossyResult",
    "LossySample",
    "lossy_transfer",
    "run_lossy",
]

DEFAULT_TOTAL = 100_000_000
DEFAULT_LOSSES = (0.0, 0.01, 0.05)
CONTROLLERS = ("newreno", "cubic")
ONE_WAY_DELAY = 10_000  # µs
BANDWIDTH = 100_000_000  # bit/s, each direction
BUFFER = 4 * 1024 * 1024  # send and receive buffers, both ends
PACKET = 1500  # bytes of a full-sized IP datagram (MSS 1460 + 40)
# One bandwidth-delay product of queueing: 100 Mbit/s * 20 ms RTT = 250 kB = 167 packets.
BDP_PACKETS = -(-BANDWIDTH * 2 * ONE_WAY_DELAY // (8 * 1_000_000 * PACKET))
_SEQ = 1 << 32
_HALF = 1 << 31
_SECOND = 1_000_000
# No transfer here should need more than this much virtual time (5 % loss: minutes).
_VIRTUAL_LIMIT = 4 * 3600 * _SECOND


def _client_isn(four_tuple: FourTuple, now: int) -> int:
    return 1_000


def _server_isn(four_tuple: FourTuple, now: int) -> int:
    return 2**32 - 100_000


@dataclass(frozen=True)
class LossyCase:
    congestion_control: str
    sack: bool
    loss: float

    @property
    def label(self) -> str:
        return f"{self.congestion_control}, {'SACK' if self.sack else 'no SACK'}, {self.loss:.0%}"


class _RetransmitCounter:
    """An observer counting the client's data segments that start below the highest
    sequence number it had sent (sequence numbers compared mod 2**32)."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.high: int | None = None
        self.data_segments = 0
        self.segments = 0
        self.bytes = 0

    def __call__(self, record: NetRecord) -> None:
        if record.what is not What.SENT or record.src != self.src:
            return
        seg = record.segment
        size = len(seg.payload)
        if not size:
            return
        self.data_segments += 1
        end = (seg.seq + size) % _SEQ
        high = self.high
        if high is None:
            self.high = end
            return
        behind = (high - seg.seq) % _SEQ
        if 0 < behind < _HALF:
            self.segments += 1
            self.bytes += min(behind, size)
        if 0 < (end - high) % _SEQ < _HALF:
            self.high = end


@dataclass(frozen=True)
class LossySample:
    """One transfer of one case."""

    case: LossyCase
    total: int
    virtual_us: int
    wall_seconds: float
    data_segments: int  # data segments the client sent, retransmissions included
    retransmitted_segments: int
    retransmitted_bytes: int
    stack_retransmissions: int  # the connection's own counter (timeouts count once)
    lost: int  # random loss and corruption, data direction
    queue_drops: int  # drop-tail overflow, data direction
    acks_lost: int  # random loss, ACK direction

    @property
    def virtual_seconds(self) -> float:
        return self.virtual_us / _SECOND

    @property
    def goodput_mb_per_s(self) -> float:
        return self.total / self.virtual_seconds / MB

    @property
    def goodput_mbit_per_s(self) -> float:
        return self.total * 8 / self.virtual_seconds / 1_000_000

    @property
    def retransmitted_share(self) -> float:
        return self.retransmitted_segments / self.data_segments if self.data_segments else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "congestion_control": self.case.congestion_control,
            "sack": self.case.sack,
            "loss": self.case.loss,
            "bytes": self.total,
            "virtual_time_us": self.virtual_us,
            "goodput_mb_per_s": self.goodput_mb_per_s,
            "goodput_mbit_per_s": self.goodput_mbit_per_s,
            "wall_seconds": self.wall_seconds,
            "data_segments": self.data_segments,
            "retransmitted_segments": self.retransmitted_segments,
            "retransmitted_bytes": self.retransmitted_bytes,
            "retransmitted_share": self.retransmitted_share,
            "stack_retransmissions": self.stack_retransmissions,
            "lost": self.lost,
            "queue_drops": self.queue_drops,
            "acks_lost": self.acks_lost,
        }


def lossy_transfer(
    case: LossyCase, *, total: int, seed: int = 1, wire: bool = False
) -> LossySample:
    """Connect, then transfer `total` bytes over the lossy path; one sample."""
    config = Config(
        send_buffer_size=BUFFER,
        receive_buffer_size=BUFFER,
        congestion_control=case.congestion_control,
        sack=case.sack,
        timestamps=True,
        window_scaling=True,
    )
    link = LinkParams(
        delay=ONE_WAY_DELAY, bandwidth=BANDWIDTH, queue_limit=BDP_PACKETS, loss=case.loss
    )
    network = Network(seed, wire=wire)
    client = Endpoint(CLIENT_IP, isn_generator=_client_isn, config=config)
    server = Endpoint(SERVER_IP, isn_generator=_server_isn, config=config)
    sender = BulkSender(client, total, 64 * 1024)
    receiver = BulkReceiver(server, SERVER_PORT)
    network.add_node(sender)
    network.add_node(receiver)
    network.link(CLIENT_IP, SERVER_IP, link)
    server.listen(SERVER_PORT, now=network.now)
    conn = client.connect(SERVER_IP, SERVER_PORT, now=network.now)
    if not network.run_until(
        lambda: conn.state is State.ESTABLISHED and receiver.conn is not None,
        network.now + 600 * _SECOND,
    ):
        raise RuntimeError(f"lossy benchmark ({case.label}): the handshake did not complete")
    counter = _RetransmitCounter(CLIENT_IP)
    network.add_observer(counter)
    up = network.link_stats(CLIENT_IP, SERVER_IP)
    down = network.link_stats(SERVER_IP, CLIENT_IP)
    lost_before = up.lost + up.corrupted
    drops_before, acks_lost_before = up.queue_drops, down.lost
    stack_before = conn.total_retransmissions
    start = network.now
    sender.conn = conn

    def transfer() -> bool:
        return network.run_until(lambda: receiver.received >= total, start + _VIRTUAL_LIMIT)

    done, seconds = timed(transfer)
    if not done:
        raise RuntimeError(
            f"lossy benchmark ({case.label}): {receiver.received} of {total} bytes arrived "
            f"within {_VIRTUAL_LIMIT // _SECOND} virtual seconds"
        )
    return LossySample(
        case=case,
        total=total,
        virtual_us=network.now - start,
        wall_seconds=seconds,
        data_segments=counter.data_segments,
        retransmitted_segments=counter.segments,
        retransmitted_bytes=counter.bytes,
        stack_retransmissions=conn.total_retransmissions - stack_before,
        lost=up.lost + up.corrupted - lost_before,
        queue_drops=up.queue_drops - drops_before,
        acks_lost=down.lost - acks_lost_before,
    )


@dataclass(frozen=True)
class LossyResult:
    total: int
    seed: int
    wire: bool
    samples: tuple[LossySample, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "bytes": self.total,
            "seed": self.seed,
            "path": "wire" if self.wire else "object",
            "one_way_delay_us": ONE_WAY_DELAY,
            "bandwidth_bps": BANDWIDTH,
            "queue_limit_packets": BDP_PACKETS,
            "send_buffer_size": BUFFER,
            "receive_buffer_size": BUFFER,
            "repetitions": 1,
            "virtual_time": True,
            "cases": [sample.to_json() for sample in self.samples],
        }

    def table(self) -> Table:
        table = Table(
            f"4. Goodput over a lossy path (virtual time): {self.total / MB:g} MB, "
            f"{ONE_WAY_DELAY // 1000} ms one way, {BANDWIDTH // 1_000_000} Mbit/s",
            [
                "congestion control",
                "SACK",
                "loss",
                "goodput MB/s",
                "Mbit/s",
                "virtual s",
                "rtx segs",
                "rtx %",
                "drops (loss+queue)",
                "wall s",
            ],
        )
        for s in self.samples:
            table.add(
                s.case.congestion_control,
                "on" if s.case.sack else "off",
                f"{s.case.loss:.0%}",
                fmt(s.goodput_mb_per_s),
                fmt(s.goodput_mbit_per_s),
                fmt(s.virtual_seconds),
                f"{s.retransmitted_segments:,}",
                f"{s.retransmitted_share:.2%}",
                f"{s.lost:,}+{s.queue_drops:,}",
                fmt(s.wall_seconds),
            )
        table.notes += [
            "figures are simulated: bytes / virtual seconds from the first send to the "
            "last byte read, deterministic for a seed, so ONE run per case (not a median); "
            "only 'wall s' is a measurement of this machine",
            f"link: {ONE_WAY_DELAY // 1000} ms one-way delay and {BANDWIDTH // 1_000_000} "
            f"Mbit/s each way, drop-tail queue of {BDP_PACKETS} packets (one BDP), the "
            "loss rate in both directions (data and ACKs); seed "
            f"{self.seed}, {'wire' if self.wire else 'object'} path (the virtual figures "
            "are the same on both paths)",
            f"both ends: timestamps, window scaling, {BUFFER // (1024 * 1024)} MiB send and "
            "receive buffers, MSS 1460, delayed ACK; the server reads at once",
            "rtx segs: data segments resent (below the highest sequence sent before); "
            "drops: data-direction random losses + queue overflows",
        ]
        return table


def run_lossy(
    *,
    total: int = DEFAULT_TOTAL,
    losses: Sequence[float] = DEFAULT_LOSSES,
    controllers: Sequence[str] = CONTROLLERS,
    seed: int = 1,
    wire: bool = False,
) -> LossyResult:
    samples = [
        lossy_transfer(LossyCase(cc, sack, loss), total=total, seed=seed, wire=wire)
        for cc in controllers
        for sack in (False, True)
        for loss in losses
    ]
    return LossyResult(total=total, seed=seed, wire=wire, samples=tuple(samples))
