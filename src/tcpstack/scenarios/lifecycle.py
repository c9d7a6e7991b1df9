"""The seed's stories about a connection's later life: keepalive, lingering, half-closes,
orphans, TIME_WAIT limits, application heartbeats and middleboxes that forget (claims
C7, C8, C11, C13, C15-C18).

Each scenario registers itself in `tcpstack.scenarios.catalog.SCENARIOS` (catalog imports
this module at its end) and plays on a Story in virtual time, so hours of idleness cost
nothing. Summary lines state the facts each story is about, with exact virtual times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tcpstack.core.config import GO_KEEPALIVE
from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.errors import InvalidOperation
from tcpstack.core.events import DataAvailable, EndOfStream, Event
from tcpstack.core.segment import Datagram
from tcpstack.core.state import State
from tcpstack.core.trace import TraceKind
from tcpstack.heartbeat import Heartbeat, HeartbeatChannel, Message, PeerDead
from tcpstack.scenarios.catalog import (
    HOUR,
    ScenarioRun,
    _exchange,
    _handshake,
    _is_final_ack_from_client,
    _on_end_of_stream,
    _reached,
    scenario,
)
from tcpstack.scenarios.story import CLIENT_IP, MS, SECOND, SERVER_IP, Story, simulation_isn
from tcpstack.sim import NetRecord, Network, What, drop_where
from tcpstack.sim.middlebox import Nat, NatEvent, NatEventKind, Outside
from tcpstack.viz.ladder import LEFT, RIGHT

__all__ = [
    "NAT_IP",
    "AppTimers",
    "NatStory",
    "fin_wait_2_orphan_timeout",
    "half_close",
    "heartbeat_vs_keepalive",
    "keepalive_dead_peer",
    "keepalive_go_profile",
    "keepalive_peer_rebooted",
    "last_received",
    "linger_zero_reset",
    "nat_idle_expiry",
    "play_nat_idle_expiry",
    "time_wait_bucket_limit",
]

MINUTE = 60 * SECOND
NAT_IP = "203.0.113.7"  # the client's NAT, as the server sees it (TEST-NET-3)


# ---------------------------------------------------------------------------- helpers


def seconds(us: int) -> str:
    """Virtual time for summary lines: '7875 s', or '120.05 s' when not whole."""
    if us % SECOND == 0:
        return f"{us // SECOND} s"
    return f"{us / SECOND:.6f}".rstrip("0") + " s"


def last_received(story: Story, conn: Connection) -> int:
    """The time of the last segment that reached `conn` (its keepalive idle clock)."""
    return max(
        r.time
        for r in story.trace.of_kind(TraceKind.SEGMENT_IN)
        if r.conn == conn.label and r.segment is not None
    )


def _keepalive_probes(story: Story, conn: Connection) -> list[int]:
    """When `conn` sent keepalive probes (the core traces a fired keepalive timer only
    when it sends one)."""
    return [
        r.time
        for r in story.trace.of_kind(TraceKind.TIMER_FIRED)
        if r.conn == conn.label and r.data.get("timer") == "keepalive"
    ]


def _cut_off_server(story: Story) -> None:
    """The server's host vanishes (power cut, cable pulled): nothing reaches it and
    nothing leaves it. Its stack stays as it was, like a machine that was switched off."""
    story.network.add_filter(drop_where(lambda d: SERVER_IP in (d.src, d.dst), count=None))
    story.note(RIGHT, "server vanishes: nothing gets through in either direction")


class AppTimers:
    """A node without links: it runs the applications' own timers in a story.

    The simulator moves time to the next node timer, so an application deadline (a
    heartbeat's next PING) becomes an event by being this node's timer.
    """

    def __init__(self, address: str = "app-timers") -> None:
        self.address = address
        self._alarms: list[tuple[Callable[[], int | None], Callable[[int], None]]] = []

    def add(self, deadline: Callable[[], int | None], action: Callable[[int], None]) -> None:
        self._alarms.append((deadline, action))

    def datagrams_to_send(self, *, now: int) -> list[Datagram]:
        return []

    def receive_datagram(self, datagram: Datagram, *, now: int) -> None:
        raise AssertionError("nothing is routed to the application timers")

    def receive_bytes(self, src: str, dst: str, data: bytes, *, now: int) -> None:
        raise AssertionError("nothing is routed to the application timers")

    def next_timer(self) -> int | None:
        deadlines = [d for d in (deadline() for deadline, _ in self._alarms) if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, *, now: int) -> None:
        for deadline, action in self._alarms:
            due = deadline()
            if due is not None and due <= now:
                action(now)


# ------------------------------------------------------------------------- keepalive


@scenario(
    "keepalive-dead-peer",
    ("C15", "C17"),
    "the server vanishes; with Linux's defaults the client probes 7200 s after the last "
    "segment it received, 9 probes 75 s apart go unanswered, and at 7875 s the connection "
    "is closed with a keepalive timeout",
)
def keepalive_dead_peer() -> ScenarioRun:
    story = Story()
    client, server = _handshake(story)
    client.configure(now=story.now, keepalive=True)  # SO_KEEPALIVE, Linux's defaults
    _exchange(story, client, server)
    _cut_off_server(story)
    story.run_until(_reached(client, State.CLOSED), limit=3 * HOUR)
    return ScenarioRun(story, client, server, summary_lines=_keepalive_summary(story, client))


def _keepalive_summary(story: Story, conn: Connection) -> list[str]:
    quiet_since = last_received(story, conn)
    probes = [t - quiet_since for t in _keepalive_probes(story, conn)]
    closed_at = next(
        r.time
        for r in story.trace.of_kind(TraceKind.STATE)
        if r.conn == conn.label and r.data["to"] == "CLOSED"
    )
    config = conn.config
    return [
        f"{conn.local_ip} keepalive: idle {seconds(config.keepalive_idle)}, interval "
        f"{seconds(config.keepalive_interval)}, count {config.keepalive_count}",
        f"{conn.local_ip} last received a segment at {seconds(quiet_since)}",
        f"{conn.local_ip} probes, after that: " + ", ".join(seconds(p) for p in probes),
        f"{conn.local_ip} closed ({conn.close_reason}) {seconds(closed_at - quiet_since)} after it",
    ]


@scenario(
    "keepalive-go-profile",
    ("C16", "C15"),
    "Go turns keepalive on for dialed and accepted connections with 15 s idle and interval: "
    "when the path is cut, each end gives up 15 + 9 x 15 = 150 s after it last heard "
    "from the other",
)
def keepalive_go_profile() -> ScenarioRun:
    story = Story()
    client, server = _handshake(story)
    # net.Dialer and net.ListenConfig both call SetKeepAlive(true) and the 15 s period.
    client.configure(now=story.now, **GO_KEEPALIVE)
    server.configure(now=story.now, **GO_KEEPALIVE)
    _exchange(story, client, server)
    _cut_off_server(story)
    story.run_until(
        lambda: client.state is State.CLOSED and server.state is State.CLOSED, limit=HOUR
    )
    return ScenarioRun(
        story,
        client,
        server,
        summary_lines=_keepalive_summary(story, client) + _keepalive_summary(story, server),
    )


@scenario(
    "keepalive-peer-rebooted",
    ("C15", "C17"),
    "the server reboots and comes back with no connections: the client's next keepalive "
    "probe is a segment for no connection, the answer is a RST, and the client learns that "
    "its connection is gone",
)
def keepalive_peer_rebooted() -> ScenarioRun:
    story = Story()
    client, server = _handshake(story)
    client.configure(now=story.now, keepalive=True)
    _exchange(story, client, server)
    story.run_for(HOUR)
    # The crash loses every connection; the restarted service listens on port 80 again.
    story.server.endpoint = Endpoint(
        SERVER_IP,
        isn_generator=simulation_isn,
        config=story.server_config,
        tracer=story.trace,
    )
    story.note(RIGHT, "server reboots: a fresh stack without connections")
    story.listen(80)
    story.run_until(_reached(client, State.CLOSED), limit=3 * HOUR)
    (probe_at,) = _keepalive_probes(story, client)
    quiet_since = last_received_before(story, client, probe_at)
    return ScenarioRun(
        story,
        client,
        server,
        summary_lines=[
            f"client probe sent {seconds(probe_at - quiet_since)} after the last segment "
            "it received",
            f"RSTs from the rebooted server: {story.server.endpoint.stats['listen_ack']}",
            f"client closed ({client.close_reason}) {seconds(story.now - probe_at)} after "
            "its probe",
            f"the old server connection never closed: {server.state.value} "
            "(it died with the old stack)",
        ],
    )


def last_received_before(story: Story, conn: Connection, before: int) -> int:
    """The time of the last segment that reached `conn` before `before`."""
    return max(
        r.time
        for r in story.trace.of_kind(TraceKind.SEGMENT_IN)
        if r.conn == conn.label and r.segment is not None and r.time < before
    )


# ---------------------------------------------------------------------------- closing


@scenario(
    "linger-zero-reset",
    ("C13",),
    "SO_LINGER with a zero timeout: close() sends RST instead of FIN, the client skips "
    "TIME_WAIT (its port is free at once) and the server sees 'connection reset'",
)
def linger_zero_reset() -> ScenarioRun:
    story = Story()
    client, server = _handshake(story, local_port=40000)
    _exchange(story, client, server)
    client.configure(now=story.now, linger=0)
    story.note(LEFT, "close() with SO_LINGER {on, 0}: the stack aborts")
    client.close(now=story.now)
    story.run_until(_reached(server, State.CLOSED), limit=SECOND)
    story.run_for(50 * MS)
    # No TIME_WAIT holds the 4-tuple: the same port connects again at once.
    again, server_again = _handshake(story, local_port=40000)
    story.run_for(50 * MS)
    return ScenarioRun(
        story,
        client,
        server,
        others={"client-again": again, "server-again": server_again},
        summary_lines=[
            f"client closed: {client.close_reason}; server closed: {server.close_reason}",
            f"reconnect from port 40000 at once: {again.state.value}",
        ],
    )


@scenario(
    "fin-wait-2-orphan-timeout",
    ("C7", "C8"),
    "six clients close while the server never does: the three without a FIN_WAIT_2 timeout "
    "(RFC 9293) stay for the whole hour, the three with Linux's tcp_fin_timeout (60 s) "
    "are gone 60 s after entering FIN_WAIT_2",
)
def fin_wait_2_orphan_timeout() -> ScenarioRun:
    story = Story()
    accepted: list[Connection] = []
    story.listen(80, on_accept=lambda conn, now: accepted.append(conn))
    groups: dict[str, list[Connection]] = {"rfc": [], "linux": []}
    for group in groups.values():
        for _ in range(3):
            group.append(story.connect(80))
    clients = groups["rfc"] + groups["linux"]
    for conn in groups["rfc"]:
        conn.configure(now=story.now, fin_wait_2_timeout=None)  # RFC 9293: wait forever
    story.run_until(
        lambda: len(accepted) == 6 and all(c.state is State.ESTABLISHED for c in clients),
        limit=10 * SECOND,
    )
    servers = {conn.remote_port: conn for conn in accepted}
    for conn in clients:
        conn.send(b"request", now=story.now)
        conn.close(now=story.now)  # the client application is done: an orphan from now on
    story.run_until(lambda: all(c.state is State.FIN_WAIT_2 for c in clients), limit=SECOND)
    entered = story.now
    story.note(LEFT, "all six clients in FIN_WAIT_2; the server application never closes")

    def count(group: str) -> int:
        return sum(c.state is State.FIN_WAIT_2 for c in groups[group])

    summary: list[str] = []
    for offset in (SECOND, 60 * SECOND - 1, 60 * SECOND, 10 * MINUTE, HOUR):
        story.network.run_until(lambda: False, limit=entered + offset)
        close_wait = sum(s.state is State.CLOSE_WAIT for s in servers.values())
        summary.append(
            f"{seconds(offset)} after entering FIN_WAIT_2: {count('rfc')} without a timeout, "
            f"{count('linux')} with tcp_fin_timeout 60 s still in FIN_WAIT_2; "
            f"server CLOSE_WAIT: {close_wait}"
        )
    others: dict[str, Connection] = {}
    for name, group in groups.items():
        for index, conn in enumerate(group, 1):
            others[f"client-{name}-{index}"] = conn
            others[f"server-{name}-{index}"] = servers[conn.local_port]
    first = groups["linux"][0]
    del others["client-linux-1"], others["server-linux-1"]
    return ScenarioRun(
        story, first, servers[first.local_port], others=others, summary_lines=summary
    )


@scenario(
    "half-close",
    ("C7", "C14"),
    "the client shuts down its sending side after its request; the server keeps sending "
    "for 90 s, the client still receives everything in FIN_WAIT_2 (no timeout: the "
    "application holds it), then the server closes",
)
def half_close() -> ScenarioRun:
    story = Story()
    client, server = _handshake(story)
    received: list[tuple[int, str, bytes]] = []

    def client_app(conn: Connection, event: Event, now: int) -> None:
        if isinstance(event, DataAvailable):
            received.append((now, conn.state.value, conn.receive(now=now)))
        elif isinstance(event, EndOfStream):
            conn.close(now=now)  # read to the end: done with the socket

    story.client.on(client, client_app)
    client.send(b"SUM 1 2 3\n", now=story.now)
    client.shutdown(now=story.now)  # shutdown(SHUT_WR): "that was my whole request"
    story.run_until(_reached(server, State.CLOSE_WAIT), limit=SECOND)
    summary = [f"server read {server.receive(now=story.now)!r}, then end of stream"]
    try:
        client.send(b"more", now=story.now)
    except InvalidOperation as error:
        story.note(LEFT, f"send() after shutdown: {error}")
        summary.append("client send() after shutdown: refused (InvalidOperation)")
    for delay, chunk in ((0, b"partial sum 1\n"), (30, b"partial sum 3\n"), (60, b"sum 6\n")):
        story.run_for(delay * SECOND)
        server.send(chunk, now=story.now)
    story.run_for(SECOND)
    server.close(now=story.now)
    story.run_until(lambda: client.state is State.CLOSED, limit=2 * MINUTE)
    for time, state, data in received:
        summary.append(f"client received {data!r} at {seconds(time)} in {state}")
    return ScenarioRun(story, client, server, summary_lines=summary)


TIME_WAIT_LIMIT = 3


def _closer(conn: Connection) -> Callable[[int], None]:
    """An application action: close `conn` (as soon as it reads end of stream)."""
    return lambda now: conn.close(now=now)


@scenario(
    "time-wait-bucket-limit",
    ("C11",),
    "the client's stack keeps at most 3 connections in TIME_WAIT (Linux's "
    "tcp_max_tw_buckets, made small): the 4th and 5th close at once, and when the last "
    "ACK of the 5th is lost the server's resent FIN finds no connection and gets a RST",
)
def time_wait_bucket_limit() -> ScenarioRun:
    story = Story()
    story.client.endpoint.max_time_wait = TIME_WAIT_LIMIT
    pairs: list[tuple[Connection, Connection]] = []
    for index in range(5):
        client, server = _handshake(story)
        _on_end_of_stream(story, RIGHT, server, _closer(server))
        if index == 4:
            story.network.add_filter(drop_where(_is_final_ack_from_client))
        client.close(now=story.now)
        story.run_until(_reached(server, State.CLOSED), limit=10 * SECOND)
        story.run_for(100 * MS)
        pairs.append((client, server))
    held = len(story.client.endpoint.time_wait)
    story.run_until(lambda: all(c.state is State.CLOSED for c, _ in pairs), limit=2 * MINUTE)
    last_client, last_server = pairs[-1]
    others: dict[str, Connection] = {}
    for index, (client, server) in enumerate(pairs[:-1], 1):
        others[f"client-{index}"] = client
        others[f"server-{index}"] = server
    return ScenarioRun(
        story,
        last_client,
        last_server,
        others=others,
        summary_lines=[
            f"TIME_WAIT entries held: {held} (limit {TIME_WAIT_LIMIT}); closed past the "
            f"limit: {story.client.endpoint.stats['time_wait_overflow']}",
            f"connection 5 lost its last ACK: the server's resent FIN got a RST "
            f"({story.client.endpoint.stats['no_connection']}); server closed: "
            f"{last_server.close_reason}",
        ],
    )


# ------------------------------------------------------------------------- heartbeats

HEARTBEAT_INTERVAL = 30 * SECOND
HEARTBEAT_MISSES = 3
HANG_AFTER = 100 * SECOND


@dataclass
class _HeartbeatApps:
    """The two applications of heartbeat-vs-keepalive and what they saw."""

    story: Story
    client: Connection
    server: Connection
    client_channel: HeartbeatChannel
    server_channel: HeartbeatChannel
    hung_at: int | None = None
    replies: list[tuple[int, bytes]] = field(default_factory=list)

    def client_event(self, conn: Connection, event: Event, now: int) -> None:
        if isinstance(event, DataAvailable) and conn.state is not State.CLOSED:
            self.client_channel.pump(now=now)
            self.client_drain(now)

    def client_tick(self, now: int) -> None:
        self.client_channel.tick(now=now)
        self.client_drain(now)

    def client_drain(self, now: int) -> None:
        heartbeat = self.client_channel.heartbeat
        while (event := heartbeat.next_event()) is not None:
            if isinstance(event, Message):
                self.replies.append((now, event.payload))
            elif isinstance(event, PeerDead):
                self.story.note(
                    LEFT, f"heartbeat: {event.missed} PINGs unanswered, peer application dead"
                )
                self.client.abort(now=now)  # give up on the peer, as the application decides

    def server_event(self, conn: Connection, event: Event, now: int) -> None:
        if self.hung_at is not None or not isinstance(event, DataAvailable):
            return  # a hung application reads nothing and answers nothing
        self.server_channel.pump(now=now)
        heartbeat = self.server_channel.heartbeat
        while (message := heartbeat.next_event()) is not None:
            if isinstance(message, Message):
                self.server_channel.send_message(b"200 OK " + message.payload, now=now)


@scenario(
    "heartbeat-vs-keepalive",
    ("C18", "C15"),
    "the server application hangs while its TCP stack lives on: the client's keepalive "
    "probes are all answered and find nothing, while the application heartbeat declares "
    "the peer dead after 3 unanswered PINGs",
)
def heartbeat_vs_keepalive() -> ScenarioRun:
    story = Story()
    client, server = _handshake(story)
    client.configure(now=story.now, **GO_KEEPALIVE)  # probe after 15 s of silence
    start = story.now
    apps = _HeartbeatApps(
        story,
        client,
        server,
        HeartbeatChannel(
            client,
            Heartbeat(now=start, interval=HEARTBEAT_INTERVAL, miss_limit=HEARTBEAT_MISSES),
        ),
        HeartbeatChannel(server, Heartbeat(now=start, interval=None)),
    )
    story.client.on(client, apps.client_event)
    story.server.on(server, apps.server_event)
    timers = AppTimers()
    timers.add(apps.client_channel.next_deadline, apps.client_tick)
    story.network.add_node(timers)
    apps.client_channel.send_message(b"GET /status", now=start)  # heartbeats carry data too
    story.run_for(start + HANG_AFTER - story.now)
    apps.hung_at = story.now
    story.note(RIGHT, "server application hangs: it reads and answers nothing from now on")
    story.run_until(_reached(server, State.CLOSED), limit=10 * MINUTE)
    story.run_for(50 * MS)
    heartbeat = apps.client_channel.heartbeat
    probes_after = [t for t in _keepalive_probes(story, client) if t > apps.hung_at]
    dead_at = heartbeat.dead_at
    assert dead_at is not None, "the heartbeat must find the hung application"
    return ScenarioRun(
        story,
        client,
        server,
        summary_lines=[
            f"reply before the hang: {apps.replies[0][1]!r}",
            f"server application hung at {seconds(apps.hung_at)}",
            f"client keepalive probes after the hang: {len(probes_after)}, unanswered at the "
            f"end: {client.keepalive_probes_out} (keepalive sees a live peer)",
            f"heartbeat PINGs sent: {heartbeat.pings_sent}, PONGs: {heartbeat.pongs_received}; "
            f"peer declared dead at {seconds(dead_at)}",
            f"bytes the hung server never read: {server.receive_buffered}",
            f"client closed: {client.close_reason}; server closed: {server.close_reason}",
        ],
    )


# ------------------------------------------------------------------------------- NAT

NAT_IDLE_TIMEOUT = 5 * MINUTE
IDLE_PERIOD = 10 * MINUTE


@dataclass
class NatStory(Story):
    """A Story whose client sits behind a NAT at NAT_IP that forgets idle flows.

    The server sees the client's connections coming from NAT_IP. Datagrams the NAT
    drops (or answers with RST) are marked lost in the ladder, with a note.
    """

    nat_idle_timeout: int = NAT_IDLE_TIMEOUT
    outside: Outside = Outside.DROP

    def __post_init__(self) -> None:
        super().__post_init__()
        self.nat = Nat(
            self.client,
            public_address=NAT_IP,
            idle_timeout=self.nat_idle_timeout,
            outside=self.outside,
            on_event=self._nat_event,
        )
        # The same network as Story's, with the NAT in front of the client.
        self.network = Network(seed=self.seed, wire=True)
        self.network.add_node(self.nat)
        self.network.add_node(self.server)
        self.network.link(NAT_IP, SERVER_IP, self.link)
        self.network.add_observer(self._observe)
        self.network.add_observer(self._watch_delivery)
        self._delivering: Datagram | None = None
        self.announce()

    def _watch_delivery(self, record: NetRecord) -> None:
        if record.what is What.DELIVERED and record.dst == NAT_IP:
            self._delivering = record.datagram

    def _nat_event(self, event: NatEvent) -> None:
        if event.kind in (NatEventKind.DROPPED, NatEventKind.REJECTED):
            if self._delivering is not None:
                self.lost[id(self._delivering.segment)] = f"nat {event.kind}"
            text = (
                "NAT: no mapping, dropped"
                if event.kind is NatEventKind.DROPPED
                else ("NAT: no mapping, answered with RST")
            )
        elif event.kind is NatEventKind.EXPIRED and event.mapping is not None:
            text = f"NAT forgets {CLIENT_IP}:{event.mapping.inside_port} (idle)"
        elif event.kind is NatEventKind.MAPPED and event.mapping is not None:
            text = (
                f"NAT maps {CLIENT_IP}:{event.mapping.inside_port} to "
                f"{NAT_IP}:{event.mapping.public_port}"
            )
        else:
            return
        self.notes.append((event.time, LEFT, text))


@scenario(
    "nat-idle-expiry",
    ("C17",),
    "a NAT forgets flows idle for 300 s: after 10 min of silence the client's next send "
    "goes out from a new port and is reset, the server's next send meets silence; a flow "
    "with keepalive every 60 s keeps its mapping",
)
def nat_idle_expiry() -> ScenarioRun:
    return play_nat_idle_expiry(Outside.DROP)


def play_nat_idle_expiry(outside: Outside) -> ScenarioRun:
    """nat-idle-expiry with the NAT's inbound behaviour chosen (DROP or REJECT)."""
    story = NatStory(outside=outside)
    quiet, quiet_server = _handshake(story, local_port=40001)
    kept, kept_server = _handshake(story, local_port=40002)
    pushed, pushed_server = _handshake(story, local_port=40003)
    kept.configure(
        now=story.now, keepalive=True, keepalive_idle=MINUTE, keepalive_interval=15 * SECOND
    )
    story.note(LEFT, "port 40002 turns keepalive on: idle 60 s < the NAT's 300 s")
    story.run_for(IDLE_PERIOD)
    quiet.send(b"GET /after-lunch", now=story.now)
    kept.send(b"GET /after-lunch", now=story.now)
    pushed_server.send(b"event: price changed", now=story.now)
    story.run_until(
        lambda: quiet.state is State.CLOSED and pushed_server.state is State.CLOSED,
        limit=HOUR,
    )
    story.run_for(SECOND)
    kept_got = kept_server.receive(now=story.now)
    return ScenarioRun(
        story,
        quiet,
        quiet_server,
        others={
            "client-kept": kept,
            "server-kept": kept_server,
            "client-pushed": pushed,
            "server-pushed": pushed_server,
        },
        summary_lines=[
            f"NAT idle timeout {seconds(story.nat_idle_timeout)}, inbound without a mapping: "
            f"{outside}",
            f"mappings forgotten: {story.nat.stats[NatEventKind.EXPIRED]}",
            f"client send after the idle period (port 40001): {quiet.close_reason}; the "
            f"server's end of it is still {quiet_server.state.value}",
            f"server send after the idle period (port 40003): {pushed_server.close_reason} "
            f"after {pushed_server.total_retransmissions} retransmissions",
            f"keepalive flow (port 40002): server received {kept_got!r}",
        ],
    )
