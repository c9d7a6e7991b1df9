"""Small applications that run inside the NetLoop (as its handlers): echo, discard,
chargen (RFC 862, 863, 864) and a bulk transfer used by `tcpstack connect`, the
interop tests and the throughput script.

An application object drives one connection: `on_wake(conn, now)` is called whenever
the connection moved (events, acknowledgements, timers), always with the loop's lock
held, so it may call the Connection's API directly. A `Dispatcher` is the loop handler:
it accepts connections on listening ports, gives each an application made by the port's
factory, and routes wake-ups to applications.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Protocol

from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.events import (
    Closed,
    CloseReason,
    EndOfStream,
    Established,
    Event,
)
from tcpstack.core.state import State

__all__ = [
    "Chargen",
    "ConnectionApp",
    "Discard",
    "Dispatcher",
    "Echo",
    "StreamApp",
    "Transfer",
    "chargen_block",
]

READ_CHUNK = 1 << 18
_SENDING = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})


class ConnectionApp(Protocol):
    def on_wake(self, conn: Connection, now: int) -> None: ...


class Dispatcher:
    """The loop handler that owns the applications of one or more Endpoints."""

    def __init__(self) -> None:
        self._services: list[tuple[Endpoint, int, Callable[[Connection], ConnectionApp]]] = []
        self.apps: dict[Connection, ConnectionApp] = {}
        self.accepted: list[Connection] = []

    def serve(
        self, endpoint: Endpoint, port: int, factory: Callable[[Connection], ConnectionApp]
    ) -> None:
        """Give every connection accepted on endpoint:port an app from factory (the
        caller has called endpoint.listen(port))."""
        self._services.append((endpoint, port, factory))

    def attach(self, conn: Connection, app: ConnectionApp) -> None:
        """Drive an existing (e.g. connecting) connection with app."""
        self.apps[conn] = app

    def __call__(self, woken: list[Connection], now: int) -> None:
        for endpoint, port, factory in self._services:
            if port not in endpoint.listeners:
                continue
            while (conn := endpoint.accept(port)) is not None:
                app = factory(conn)
                self.apps[conn] = app
                self.accepted.append(conn)
                app.on_wake(conn, now)
        for conn in woken:
            found = self.apps.get(conn)
            if found is not None:
                found.on_wake(conn, now)
                if conn.state is State.CLOSED:
                    del self.apps[conn]


class StreamApp:
    """Bookkeeping shared by the applications: events seen, end of stream, close reason."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.established_at: int | None = None
        self.eof = False
        self.eof_at: int | None = None
        self.closed: CloseReason | None = None
        self.closed_at: int | None = None
        self.received = 0
        self.sent = 0
        self._closed_by_us = False

    def on_wake(self, conn: Connection, now: int) -> None:
        while (event := conn.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, Established):
                self.established_at = now
            elif isinstance(event, EndOfStream):
                self.eof = True
                self.eof_at = now
            elif isinstance(event, Closed):
                self.closed = event.reason
                self.closed_at = now
        self.pump(conn, now)

    def pump(self, conn: Connection, now: int) -> None:
        """Move data; called after every wake-up."""

    def read_all(self, conn: Connection, now: int, limit: int = 1 << 62) -> bytes:
        """Everything readable now (at most limit bytes), b'' when nothing is."""
        if not conn.receive_buffered:
            return b""
        data = conn.receive(min(limit, READ_CHUNK * 8), now=now)
        self.received += len(data)
        return data

    def close_once(self, conn: Connection, now: int) -> None:
        if not self._closed_by_us and conn.state is not State.CLOSED:
            self._closed_by_us = True
            conn.close(now=now)

    @property
    def done(self) -> bool:
        return self.closed is not None

    @property
    def event_names(self) -> list[str]:
        return [type(e).__name__ for e in self.events]


class Discard(StreamApp):
    """RFC 863: read and forget; close when the peer has finished."""

    def pump(self, conn: Connection, now: int) -> None:
        while self.read_all(conn, now):
            pass
        if self.eof and conn.state is State.CLOSE_WAIT:
            self.close_once(conn, now)


class Echo(StreamApp):
    """RFC 862: send back what arrives; close after the peer's FIN and the last echo."""

    def __init__(self) -> None:
        super().__init__()
        self._pending = b""

    def pump(self, conn: Connection, now: int) -> None:
        while conn.state in _SENDING:
            if self._pending:
                accepted = conn.send(self._pending, now=now)
                self.sent += accepted
                self._pending = self._pending[accepted:]
                if self._pending:
                    return  # SendSpaceAvailable will call again
            data = self.read_all(conn, now, limit=max(conn.send_space, 1))
            if not data:
                break
            self._pending = data
        idle = not self._pending and not conn.receive_buffered
        if self.eof and idle and conn.state is State.CLOSE_WAIT:
            self.close_once(conn, now)


def chargen_block() -> bytes:
    """One full cycle of RFC 864's pattern: 95 lines of 72 characters, CR LF ended."""
    printable = bytes(range(32, 127))
    doubled = printable + printable
    return b"".join(doubled[i : i + 72] + b"\r\n" for i in range(len(printable)))


class Chargen(StreamApp):
    """RFC 864: send the character pattern until the peer closes; discard input."""

    _BLOCK = chargen_block()

    def __init__(self) -> None:
        super().__init__()
        self._offset = 0

    def pump(self, conn: Connection, now: int) -> None:
        while self.read_all(conn, now):
            pass
        if self.eof:
            if conn.state is State.CLOSE_WAIT:
                self.close_once(conn, now)
            return
        block = self._BLOCK
        while conn.state is State.ESTABLISHED and conn.send_space:
            piece = (block[self._offset :] + block)[: conn.send_space]
            accepted = conn.send(piece, now=now)
            self.sent += accepted
            self._offset = (self._offset + accepted) % len(block)
            if accepted < len(piece):
                break


class Transfer(StreamApp):
    """Send `payload`, read everything the peer sends, then close.

    `close_when`: "eof" closes after the payload went out and the peer's FIN arrived
    (the peer closes first, we take the passive close); "sent" closes as soon as the
    whole payload is queued (we are the active closer); "shutdown" half-closes after
    the payload and closes after the peer's FIN; None never closes. SHA-256 of the
    bytes received is kept in `digest_in`; `keep` also keeps the bytes.
    """

    def __init__(
        self,
        payload: bytes = b"",
        *,
        close_when: str | None = "eof",
        keep: bool = False,
        on_data: Callable[[bytes], None] | None = None,
    ) -> None:
        super().__init__()
        if close_when not in ("eof", "sent", "shutdown", None):
            raise ValueError(f"close_when {close_when!r}")
        self.payload = payload
        self.close_when = close_when
        self.keep = keep
        self.data = bytearray()
        self.on_data = on_data
        self._hash = hashlib.sha256()
        self._shut = False

    def pump(self, conn: Connection, now: int) -> None:
        while data := self.read_all(conn, now):
            self._hash.update(data)
            if self.keep:
                self.data += data
            if self.on_data is not None:
                self.on_data(data)
        payload = self.payload
        while conn.state in _SENDING and self.sent < len(payload) and conn.send_space:
            piece = payload[self.sent : self.sent + conn.send_space]
            accepted = conn.send(piece, now=now)
            self.sent += accepted
            if accepted < len(piece):
                break
        state = conn.state
        if self.sent < len(payload) or state is State.CLOSED:
            return
        when = self.close_when
        if when == "sent" and state in _SENDING:
            self.close_once(conn, now)
        elif when == "shutdown" and not self._shut and state in _SENDING:
            self._shut = True
            conn.shutdown(now=now)
        after_eof = (when == "eof" and state in _SENDING) or when == "shutdown"
        if self.eof and after_eof:
            self.close_once(conn, now)

    def add_payload(self, data: bytes) -> None:
        """More to send (for streaming from stdin); call with the loop's lock held."""
        self.payload += data

    @property
    def digest_in(self) -> str:
        return self._hash.hexdigest()

    @property
    def all_sent(self) -> bool:
        return self.sent >= len(self.payload)
