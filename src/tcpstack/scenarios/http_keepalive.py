"""Seed claim C19: HTTP keep-alive is connection reuse, TCP keepalive is liveness
probing; two different things that share a name.

The scenario registers itself in `tcpstack.scenarios.catalog.SCENARIOS` (catalog
imports this module at its end).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tcpstack.core.connection import Connection
from tcpstack.core.events import DataAvailable, EndOfStream, Event
from tcpstack.core.state import State
from tcpstack.scenarios.catalog import ScenarioRun, _handshake, scenario
from tcpstack.scenarios.lifecycle import _keepalive_probes, seconds
from tcpstack.scenarios.story import MS, SECOND, Story
from tcpstack.viz.ladder import LEFT, RIGHT

__all__ = [
    "HTTP_KEEPALIVE",
    "IDLE_FOR",
    "PATHS",
    "REQUESTS",
    "http_keepalive_vs_tcp_keepalive",
]

REQUESTS = ("/", "/style.css", "/logo.png")
# TCP keepalive with short timers, so the story need not idle for two hours.
HTTP_KEEPALIVE = {
    "keepalive": True,
    "keepalive_idle": 5 * SECOND,
    "keepalive_interval": 1 * SECOND,
    "keepalive_count": 3,
}
IDLE_FOR = 12 * SECOND
PATHS = {
    "client": ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "TIME_WAIT", "CLOSED"],
    "server": [
        "CLOSED",
        "LISTEN",
        "SYN_RECEIVED",
        "ESTABLISHED",
        "CLOSE_WAIT",
        "LAST_ACK",
        "CLOSED",
    ],
}


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 10.0.0.2\r\n\r\n".encode()


def response(path: str) -> bytes:
    body = f"the page {path}\n".encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


@dataclass
class _HttpServerApp:
    """A minimal HTTP/1.1 server on one connection: one response per request, the
    connection kept open (keep-alive) until the client closes it."""

    received: bytearray = field(default_factory=bytearray)
    served: list[str] = field(default_factory=list)

    def on_event(self, conn: Connection, event: Event, now: int) -> None:
        if isinstance(event, DataAvailable):
            self.received += conn.receive(now=now)
            while b"\r\n\r\n" in self.received:
                head, _, rest = bytes(self.received).partition(b"\r\n\r\n")
                self.received = bytearray(rest)
                path = head.split(b" ")[1].decode()
                self.served.append(path)
                conn.send(response(path), now=now)
        elif isinstance(event, EndOfStream):
            conn.close(now=now)


@scenario(
    "http-keepalive-vs-tcp-keepalive",
    ("C19", "C15"),
    "HTTP keep-alive reuses one TCP connection for 3 requests in series; TCP keepalive "
    "then probes the idle connection (5 s idle, 1 s interval) and the live server answers "
    "each probe: connection reuse and liveness probing are different things",
)
def http_keepalive_vs_tcp_keepalive() -> ScenarioRun:
    story = Story()
    client, server = _handshake(story)
    app = _HttpServerApp()
    story.server.on(server, app.on_event)
    client.configure(now=story.now, **HTTP_KEEPALIVE)
    story.note(LEFT, "SO_KEEPALIVE on: idle 5 s, interval 1 s, count 3")
    responses: list[tuple[int, bytes]] = []
    for path in REQUESTS:
        story.note(LEFT, f"HTTP request {path} on the same connection (keep-alive)")
        client.send(request(path), now=story.now)
        expected = response(path)
        got = bytearray()

        def complete(want: bytes = expected, buffer: bytearray = got) -> bool:
            if client.receive_buffered:
                buffer += client.receive(now=story.now)
            return len(buffer) >= len(want)

        story.run_until(complete, limit=SECOND)
        responses.append((story.now, bytes(got)))
    last_response = story.now
    story.note(LEFT, "idle: no HTTP traffic; TCP keepalive probes the connection")
    story.note(RIGHT, "the server's stack answers every probe (its application is idle)")
    story.run_for(IDLE_FOR)
    probes = _keepalive_probes(story, client)
    answered = client.keepalive_probes_out == 0 and client.state is State.ESTABLISHED
    client.close(now=story.now)
    story.run_until(
        lambda: client.state is State.CLOSED and server.state is State.CLOSED,
        limit=2 * 60 * SECOND,
    )
    story.run_for(50 * MS)
    return ScenarioRun(
        story,
        client,
        server,
        summary_lines=[
            f"connections: 1 ({client.label}); HTTP requests on it: {len(app.served)} "
            f"({', '.join(app.served)}), responses: {len(responses)}",
            f"last response at {seconds(last_response)}; keepalive probes after it: "
            + ", ".join(seconds(t - last_response) for t in probes),
            f"probes answered: {answered} (TCP keepalive checks the peer's stack is there; "
            "HTTP keep-alive only kept the connection for reuse)",
        ],
    )
