"""The seed's stories as runnable scenarios (see shared/seed/README.md for C1-C19).

Each scenario plays one story on a fresh Story (two hosts, a 10 ms link) and returns a
ScenarioRun: the connections whose state paths the story is about, and the ladder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tcpstack.core.config import Config
from tcpstack.core.connection import Connection
from tcpstack.core.errors import AddressInUse
from tcpstack.core.events import EndOfStream, Event
from tcpstack.core.segment import Datagram, Flag
from tcpstack.core.state import State
from tcpstack.scenarios.story import CLIENT_IP, MS, SECOND, SERVER_IP, Story, path_names
from tcpstack.sim import drop_where
from tcpstack.viz.ladder import LEFT, RIGHT

HOUR = 3600 * SECOND


@dataclass
class ScenarioRun:
    story: Story
    client: Connection | None
    server: Connection | None
    # Further connections a story is about, by name (e.g. the leaked ones).
    others: dict[str, Connection] = field(default_factory=dict)
    summary_lines: list[str] = field(default_factory=list)

    def ladder(self) -> str:
        return self.story.ladder(self.client, self.server)

    def paths(self) -> dict[str, list[str]]:
        named: dict[str, Connection] = {}
        if self.client is not None:
            named["client"] = self.client
        if self.server is not None:
            named["server"] = self.server
        named.update(self.others)
        return {name: path_names(conn) for name, conn in named.items()}


@dataclass(frozen=True)
class Scenario:
    name: str
    claims: tuple[str, ...]
    summary: str
    play: Callable[[], ScenarioRun]


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str, claims: tuple[str, ...], summary: str
) -> Callable[[Callable[[], ScenarioRun]], Callable[[], ScenarioRun]]:
    def register(play: Callable[[], ScenarioRun]) -> Callable[[], ScenarioRun]:
        SCENARIOS[name] = Scenario(name, claims, summary, play)
        return play

    return register


# ---------------------------------------------------------------------------- helpers


def _handshake(
    story: Story, port: int = 80, local_port: int | None = None
) -> tuple[Connection, Connection]:
    """Listen, connect, and run until both ends are ESTABLISHED."""
    accepted: list[Connection] = []
    if port not in story.server.endpoint.listeners:
        story.listen(port, on_accept=lambda conn, now: accepted.append(conn))
    else:
        story.server.on_accept[port] = lambda conn, now: accepted.append(conn)
    client = story.connect(port, local_port=local_port)
    story.run_until(lambda: client.state is State.ESTABLISHED and bool(accepted), limit=10 * SECOND)
    return client, accepted[0]


def _on_end_of_stream(
    story: Story, side: int, conn: Connection, action: Callable[[int], None]
) -> None:
    host = story.client if side == LEFT else story.server

    def react(c: Connection, event: Event, now: int) -> None:
        if isinstance(event, EndOfStream):
            action(now)

    host.on(conn, react)


def _reached(conn: Connection, state: State) -> Callable[[], bool]:
    return lambda: conn.state is state


def _both_closed(*conns: Connection) -> Callable[[], bool]:
    return lambda: all(c.state is State.CLOSED for c in conns)


def _exchange(story: Story, client: Connection, server: Connection) -> None:
    """A request and a response, so the close has data behind it."""
    client.send(b"GET / HTTP/1.0\r\n\r\n", now=story.now)
    story.run_until(lambda: server.receive_buffered > 0, limit=SECOND)
    server.receive(now=story.now)
    server.send(b"HTTP/1.0 200 OK\r\n\r\nhello", now=story.now)
    story.run_until(lambda: client.receive_buffered > 0, limit=SECOND)
    client.receive(now=story.now)
    story.run_for(50 * MS)


# -------------------------------------------------------------------------- scenarios


@scenario(
    "three-way-handshake",
    ("C2", "C3", "C14"),
    "SYN, SYN+ACK, ACK: the server's SYN and its ACK of the client's SYN share a segment",
)
def three_way_handshake() -> ScenarioRun:
    story = Story()
    client, server = _handshake(story)
    story.run_for(50 * MS)
    return ScenarioRun(story, client, server)


@scenario(
    "normal-close",
    ("C2", "C3", "C10", "C12", "C14"),
    "the four-segment close: FIN, ACK ... FIN, ACK; the active closer waits 2*MSL in TIME_WAIT",
)
def normal_close() -> ScenarioRun:
    story = Story()
    client, server = _handshake(story)
    _exchange(story, client, server)
    client.close(now=story.now)
    story.run_until(lambda: server.state is State.CLOSE_WAIT, limit=SECOND)
    # The server's application still has work to do when the client's FIN arrives: it
    # closes 200 ms later, so its ACK of the FIN and its own FIN are two segments (C14).
    story.run_for(200 * MS)
    server.close(now=story.now)
    story.run_until(_both_closed(client, server), limit=2 * 60 * SECOND)
    return ScenarioRun(story, client, server)


@scenario(
    "three-segment-close",
    ("C4", "C12"),
    "the server closes as soon as it reads EOF: FIN, FIN+ACK, ACK; the client skips FIN_WAIT_2",
)
def three_segment_close() -> ScenarioRun:
    story = Story()
    client, server = _handshake(story)
    _exchange(story, client, server)
    _on_end_of_stream(story, RIGHT, server, lambda now: server.close(now=now))
    client.close(now=story.now)
    story.run_until(_both_closed(client, server), limit=2 * 60 * SECOND)
    return ScenarioRun(story, client, server)


@scenario(
    "simultaneous-close",
    ("C5", "C9", "C12"),
    "both ends close at once: FIN_WAIT_1 -> CLOSING -> TIME_WAIT -> CLOSED on both sides",
)
def simultaneous_close() -> ScenarioRun:
    story = Story()
    client, server = _handshake(story)
    story.run_for(50 * MS)
    client.close(now=story.now)
    server.close(now=story.now)
    story.run_until(_both_closed(client, server), limit=2 * 60 * SECOND)
    return ScenarioRun(story, client, server)


@scenario(
    "simultaneous-open",
    ("C5",),
    "both ends connect to each other at once: four segments, SYN_SENT -> SYN_RECEIVED -> "
    "ESTABLISHED on both sides",
)
def simultaneous_open() -> ScenarioRun:
    story = Story()
    left = story.client.endpoint.connect(SERVER_IP, 5001, now=story.now, local_port=5000)
    right = story.server.endpoint.connect(CLIENT_IP, 5000, now=story.now, local_port=5001)
    story.run_until(
        lambda: left.state is State.ESTABLISHED and right.state is State.ESTABLISHED,
        limit=10 * SECOND,
    )
    story.run_for(50 * MS)
    return ScenarioRun(story, left, right)


def _is_final_ack_from_client(datagram: Datagram) -> bool:
    seg = datagram.segment
    return (
        datagram.src == CLIENT_IP
        and seg.flags == Flag.ACK
        and not seg.payload
        and datagram.dst == SERVER_IP
    )


@scenario(
    "time-wait-lost-final-ack",
    ("C11",),
    "the client's last ACK is lost; the server resends its FIN and TIME_WAIT answers it "
    "again, so the server closes normally instead of seeing a reset",
)
def time_wait_lost_final_ack() -> ScenarioRun:
    return _lost_final_ack_story(Config())


@scenario(
    "time-wait-skipped-reset",
    ("C11",),
    "the same lost ACK without TIME_WAIT (MSL 0): the resent FIN finds no connection, gets "
    "a RST, and the server sees 'connection reset'",
)
def time_wait_skipped_reset() -> ScenarioRun:
    return _lost_final_ack_story(Config(msl=0))


def _lost_final_ack_story(client_config: Config) -> ScenarioRun:
    story = Story(client_config=client_config)
    client, server = _handshake(story)
    _exchange(story, client, server)
    client.close(now=story.now)
    story.run_until(lambda: server.state is State.CLOSE_WAIT, limit=SECOND)
    story.run_for(100 * MS)
    # Lose the client's ACK of the server's FIN: the first bare ACK after the server's
    # FIN leaves.
    story.network.add_filter(drop_where(_is_final_ack_from_client))
    server.close(now=story.now)
    story.run_until(_both_closed(client, server), limit=3 * 60 * SECOND)
    return ScenarioRun(story, client, server)


@scenario(
    "time-wait-blocks-reuse",
    ("C11",),
    "while the client's connection sits in TIME_WAIT the same 4-tuple cannot be used again; "
    "after 2*MSL it can",
)
def time_wait_blocks_reuse() -> ScenarioRun:
    story = Story()
    client, server = _handshake(story, local_port=40000)
    _on_end_of_stream(story, RIGHT, server, lambda now: server.close(now=now))
    client.close(now=story.now)
    story.run_until(lambda: client.state is State.TIME_WAIT, limit=SECOND)
    story.run_for(10 * MS)
    summary: list[str] = []
    try:
        story.connect(local_port=40000)
    except AddressInUse as error:
        story.note(LEFT, f"connect() from port 40000 refused: {error}")
        summary.append(f"reuse during TIME_WAIT: refused ({type(error).__name__})")
    story.run_until(lambda: client.state is State.CLOSED, limit=2 * 60 * SECOND)
    story.note(LEFT, "2*MSL passed: the 4-tuple is free again")
    again, server_again = _handshake(story, local_port=40000)
    summary.append(f"reuse after 2*MSL: {again.state.value}")
    story.run_for(50 * MS)
    return ScenarioRun(
        story,
        client,
        server,
        others={"client-again": again, "server-again": server_again},
        summary_lines=summary,
    )


@scenario(
    "syn-received-held",
    ("C6",),
    "the client's handshake ACKs are lost for 5 s, so the server sits in SYN_RECEIVED and "
    "resends its SYN+ACK at 1 s and 3 s until an ACK gets through",
)
def syn_received_held() -> ScenarioRun:
    story = Story()
    accepted: list[Connection] = []
    story.listen(80, on_accept=lambda conn, now: accepted.append(conn))
    blocker = drop_where(
        lambda d: _is_final_ack_from_client(d) and story.now < 5 * SECOND, count=None
    )
    story.network.add_filter(blocker)
    client = story.connect(80)
    story.run_until(lambda: bool(accepted), limit=30 * SECOND)
    story.run_for(50 * MS)
    server = accepted[0]
    return ScenarioRun(
        story,
        client,
        server,
        summary_lines=[f"client ACKs lost: {len(blocker.hits)}"],
    )


@scenario(
    "close-wait-leak",
    ("C8", "C7"),
    "a server that never calls close(): its connections stay in CLOSE_WAIT for the whole "
    "hour the story runs, while the clients' orphaned FIN_WAIT_2 ends after 60 s "
    "(Linux's tcp_fin_timeout)",
)
def close_wait_leak() -> ScenarioRun:
    story = Story()
    servers: list[Connection] = []
    clients: list[Connection] = []
    story.listen(80, on_accept=lambda conn, now: servers.append(conn))
    for _ in range(3):
        client = story.connect(80)
        story.run_until(_reached(client, State.ESTABLISHED), limit=SECOND)
        client.send(b"request", now=story.now)
        client.close(now=story.now)  # the client is done; the server reads but never closes
        clients.append(client)
        story.run_for(100 * MS)
    story.run_for(HOUR)
    leaked = [s for s in servers if s.state is State.CLOSE_WAIT]
    story.note(RIGHT, f"after 1 h: {len(leaked)} connections in CLOSE_WAIT")
    others = {f"server-{i + 2}": s for i, s in enumerate(servers[1:])}
    others.update({f"client-{i + 2}": c for i, c in enumerate(clients[1:])})
    return ScenarioRun(
        story,
        clients[0],
        servers[0],
        others=others,
        summary_lines=[
            f"server connections in CLOSE_WAIT after 1 h: {len(leaked)}",
            "client connections in FIN_WAIT_2 after 1 h: "
            f"{sum(c.state is State.FIN_WAIT_2 for c in clients)} "
            "(orphans closed by the FIN_WAIT_2 timeout)",
        ],
    )


# The later-life stories (keepalive, linger, half-close, heartbeats, NAT) register
# themselves on import.
from tcpstack.scenarios import http_keepalive, lifecycle  # noqa: E402, F401
