"""Pair tests over the simulator: two Endpoints, one impaired link, a transfer each way.

For every seed a `random.Random(seed)` draws the link (loss, duplication, reordering,
jitter, corruption, delay) and the payloads; the client sends its payload, the server a
shorter one, and each side closes once its payload is written. Then:

- every byte written arrives exactly once and in order, or an application got a Closed
  event with an error reason (and whatever arrived is still a prefix of what was sent);
- every connection reports exactly one Closed event;
- every state change any connection made is an edge of TRANSITIONS;
- the run ends within a virtual time bound.

The default run sweeps a few dozen seeds; `-m slow` sweeps many more.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import pytest

from tcpstack.core.config import Config
from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.events import Closed, CloseReason, EndOfStream
from tcpstack.core.segment import Datagram
from tcpstack.core.state import TRANSITIONS, State
from tcpstack.core.trace import TraceCollector, TraceKind, Tracer, TraceRecord
from tcpstack.scenarios.story import simulation_isn
from tcpstack.sim import LinkParams, Network

CLIENT_IP = "10.1.0.1"
SERVER_IP = "10.1.0.2"
PORT = 8080
MS = 1_000
MINUTE = 60_000_000
HOUR = 60 * MINUTE
# The virtual time bound of one run: a stall detector, not a speed test. Each run ends
# with the client's 60 s TIME_WAIT; with up to 20 % loss, retransmission timeouts that
# back off add minutes more. 30 virtual minutes leaves a wide margin.
TIME_LIMIT = 30 * MINUTE

EDGES = {(state, target) for (state, _trigger), target in TRANSITIONS.items()}
_WRITABLE = (State.ESTABLISHED, State.CLOSE_WAIT)


class App:
    """One host: an Endpoint plus an application that writes its payload, closes, and
    reads everything. It reacts after every input and before every collection, so what
    it does leaves in the same instant (a `Node` for tcpstack.sim)."""

    def __init__(self, endpoint: Endpoint, payload: bytes, listen_port: int | None) -> None:
        self.endpoint = endpoint
        self.address = endpoint.address
        self.payload = payload
        self.listen_port = listen_port
        self.conn: Connection | None = None
        self.written = 0
        self.close_called = False
        self.shutdown_called = False
        self.received = bytearray()
        self.end_of_stream = False
        self.closed: list[CloseReason] = []

    # -- the Node interface
    def datagrams_to_send(self, *, now: int) -> list[Datagram]:
        self.react(now)
        return self.endpoint.datagrams_to_send(now=now)

    def receive_datagram(self, datagram: Datagram, *, now: int) -> None:
        self.endpoint.receive_datagram(datagram, now=now)
        self.react(now)

    def receive_bytes(self, src: str, dst: str, data: bytes, *, now: int) -> None:
        self.endpoint.receive_bytes(src, dst, data, now=now)
        self.react(now)

    def next_timer(self) -> int | None:
        return self.endpoint.next_timer()

    def handle_timer(self, *, now: int) -> None:
        self.endpoint.handle_timer(now=now)
        self.react(now)

    # -- the application
    def react(self, now: int) -> None:
        conn = self.conn
        if conn is None:
            if self.listen_port is None:
                return
            conn = self.conn = self.endpoint.accept(self.listen_port)
            if conn is None:
                return
        while (event := conn.next_event()) is not None:
            if isinstance(event, Closed):
                self.closed.append(event.reason)
            elif isinstance(event, EndOfStream):
                self.end_of_stream = True
        if conn.receive_buffered:
            self.received += conn.receive(now=now)
        if conn.state in _WRITABLE and not self.shutdown_called:
            if self.written < len(self.payload) and conn.send_space:
                self.written += conn.send(self.payload[self.written :], now=now)
            if self.written == len(self.payload):
                # Half-close after the last write, and close() only once the peer's
                # stream has been read to its end: closing with data unread (or still
                # coming) resets the connection, as on Linux (RFC 9293 3.6.1).
                conn.shutdown(now=now)
                self.shutdown_called = True
        if (
            self.shutdown_called
            and self.end_of_stream
            and not conn.receive_buffered
            and not self.close_called
            and conn.state is not State.CLOSED
        ):
            conn.close(now=now)
            self.close_called = True

    @property
    def finished(self) -> bool:
        return self.conn is not None and self.conn.state is State.CLOSED


@dataclass
class Case:
    seed: int
    link: LinkParams
    wire: bool
    upload: bytes  # client -> server
    download: bytes  # server -> client

    @classmethod
    def draw(cls, seed: int) -> Case:
        rng = random.Random(seed)
        link = LinkParams(
            delay=rng.randint(1 * MS, 50 * MS),
            jitter=rng.randint(0, 5 * MS),
            loss=rng.uniform(0.0, 0.20),
            duplicate=rng.uniform(0.0, 0.05),
            reorder=rng.uniform(0.0, 0.10),
            corrupt=rng.uniform(0.0, 0.05),
        )
        up = rng.randint(1, 200_000)
        down = rng.randint(0, up - 1)
        # Every fourth seed runs in object mode (corruption then acts as loss).
        return cls(seed, link, seed % 4 != 3, rng.randbytes(up), rng.randbytes(down))

    def describe(self) -> str:
        mode = "wire" if self.wire else "object"
        return (
            f"seed {self.seed} ({mode}): {len(self.upload)} B up, {len(self.download)} B "
            f"down over {self.link}"
        )


@dataclass
class Outcome:
    case: Case
    network: Network
    client: App
    server: App
    done: bool
    finished_at: int  # virtual time when both ends were CLOSED (or the limit)
    # (connection label, from, to) of every state change, accepted or not.
    changes: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def reasons(self) -> dict[str, list[CloseReason]]:
        return {"client": self.client.closed, "server": self.server.closed}


def run(case: Case, *, config: Config | None = None, tracer: Tracer | None = None) -> Outcome:
    changes: list[tuple[str, str, str]] = []

    def trace(record: TraceRecord) -> None:
        if record.kind == TraceKind.STATE:
            changes.append((record.conn, record.data["from"], record.data["to"]))
        if tracer is not None:
            tracer(record)

    def endpoint(address: str) -> Endpoint:
        return Endpoint(address, isn_generator=simulation_isn, config=config, tracer=trace)

    network = Network(seed=case.seed, wire=case.wire)
    client = App(endpoint(CLIENT_IP), case.upload, None)
    server = App(endpoint(SERVER_IP), case.download, PORT)
    network.add_node(client)
    network.add_node(server)
    network.link(CLIENT_IP, SERVER_IP, case.link)
    server.endpoint.listen(PORT, now=0)
    client.conn = client.endpoint.connect(SERVER_IP, PORT, now=0)

    def over() -> bool:
        # The client is done and the server's side is done too: its connection closed,
        # or (if the handshake never completed) no half-open child left behind.
        if not client.finished:
            return False
        if server.conn is not None:
            return server.finished
        return not server.endpoint.connections

    done = network.run_until(over, limit=TIME_LIMIT)
    finished_at = network.now
    if done:
        # Let stragglers (duplicates, late retransmissions) arrive: a second Closed or
        # any other late event would show up in the checks.
        network.run_for(10 * MINUTE)
    return Outcome(case, network, client, server, done, finished_at, changes)


def check(outcome: Outcome) -> None:
    """The properties every run must have, failing with the seed and its link."""
    case = outcome.case
    where = case.describe()
    client, server = outcome.client, outcome.server
    assert outcome.done, (
        f"{where}: not finished after {TIME_LIMIT // MINUTE} virtual minutes; client "
        f"{client.conn}, server {server.conn}, reasons {outcome.reasons}"
    )
    # Exactly one Closed per connection.
    assert len(client.closed) == 1, f"{where}: client Closed events {client.closed}"
    if server.conn is not None:
        assert len(server.closed) == 1, f"{where}: server Closed events {server.closed}"
    reasons = client.closed + server.closed
    failed = [r for r in reasons if r is not CloseReason.NORMAL]
    # Bytes: always a prefix of what was written (never altered, duplicated or
    # reordered), and all of it unless an application was told of an error.
    for name, sent, got in (
        ("upload", case.upload, server.received),
        ("download", case.download, client.received),
    ):
        assert len(got) <= len(sent), f"{where}: {name}: {len(got)} bytes of {len(sent)} arrived"
        if bytes(got) != sent[: len(got)]:
            first = next(i for i, (a, b) in enumerate(zip(sent, got, strict=False)) if a != b)
            raise AssertionError(f"{where}: {name}: byte {first} differs from what was sent")
        if not failed:
            assert len(got) == len(sent), (
                f"{where}: {name}: {len(got)} of {len(sent)} bytes arrived, yet both "
                f"connections closed normally ({outcome.reasons})"
            )
    if not failed:
        assert client.end_of_stream and server.end_of_stream, where
    # Every state change is an edge of TRANSITIONS (the table is keyed (state, trigger)).
    for conn in (client.conn, server.conn):
        if conn is not None:
            history = conn.state_history
            bad = [pair for pair in itertools.pairwise(history) if pair not in EDGES]
            assert not bad, f"{where}: {conn.label} took {bad}: not TRANSITIONS edges"
    for label, old, new in outcome.changes:
        assert (State(old), State(new)) in EDGES, f"{where}: {label} went {old} -> {new}"


DEFAULT_SEEDS = range(40)
SLOW_SEEDS = range(40, 1040)


@pytest.mark.parametrize("seed", DEFAULT_SEEDS)
def test_transfer_over_an_impaired_link(seed: int) -> None:
    check(run(Case.draw(seed)))


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_transfer_over_an_impaired_link_long_sweep(seed: int) -> None:
    check(run(Case.draw(seed)))


def test_clean_link_delivers_both_ways_and_closes_normally() -> None:
    case = Case(
        seed=0,
        link=LinkParams(delay=5 * MS),
        wire=True,
        upload=bytes(range(256)) * 700,
        download=b"reply" * 1000,
    )
    outcome = run(case)
    check(outcome)
    assert outcome.reasons == {"client": [CloseReason.NORMAL], "server": [CloseReason.NORMAL]}
    client, server = outcome.client.conn, outcome.server.conn
    assert client is not None and server is not None
    # The client wrote everything first and closed first: it waits in TIME_WAIT.
    assert client.state_history[-2:] == [State.TIME_WAIT, State.CLOSED]


def test_jittery_lossless_link_is_fast() -> None:
    # No loss at all, 0.1 ms of jitter, so back-to-back segments overtake each other.
    # Reassembly keeps the early ones; without it this took 69 virtual minutes.
    case = Case(1, LinkParams(delay=10 * MS, jitter=100), True, bytes(100_000), b"")
    outcome = run(case)
    check(outcome)
    assert outcome.finished_at <= 5 * MINUTE


# ------------------------------------------------------------------ determinism

LOSSY = LinkParams(delay=10 * MS, jitter=2 * MS, loss=0.1, duplicate=0.02, reorder=0.05)


def traced_run(seed: int) -> str:
    payload = random.Random(7).randbytes(30_000)
    case = Case(seed, LOSSY, True, payload, payload[:5_000])
    trace = TraceCollector()
    outcome = run(case, tracer=trace)
    check(outcome)
    return trace.to_jsonl()


def test_same_seed_same_trace_byte_for_byte() -> None:
    first = traced_run(11)
    assert first == traced_run(11)
    assert '"segment_out"' in first and '"retransmit"' in first  # loss was exercised


def test_different_seed_different_trace_under_loss() -> None:
    assert traced_run(11) != traced_run(12)
