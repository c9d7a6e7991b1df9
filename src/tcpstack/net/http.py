"""An HTTP/1.1 server on tcpstack, with h11 (the `net` extra) doing the HTTP.

`HttpServer` is a NetLoop application (like Echo in apps.py): one per connection, run
by the loop's Dispatcher with the loop's lock held. It serves a few fixed pages and
keeps the connection open between requests (HTTP keep-alive: connection reuse, RFC 9112
9.3), until the client closes, asks to close (`Connection: close`) or speaks HTTP/1.0
(which h11 always closes after one response).

    host.endpoint.listen(80)
    host.dispatcher.serve(host.endpoint, 80, http_factory(site))

`tcpstack serve --http` runs it on port 80 of tcpstack's address.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus

import h11

from tcpstack.core.connection import Connection
from tcpstack.core.state import State
from tcpstack.net.apps import ConnectionApp, StreamApp

__all__ = ["DEFAULT_PAGES", "HttpServer", "HttpSite", "http_factory"]

INDEX = b"""<!doctype html>
<html><head><title>tcpstack</title></head>
<body><h1>Hello from tcpstack</h1>
<p>This page came over a TCP connection implemented in pure Python.</p></body></html>
"""

DEFAULT_PAGES: dict[str, bytes] = {"/": INDEX, "/index.html": INDEX}
_SENDING = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})


@dataclass
class HttpSite:
    """What the server serves, and what it saw across all connections."""

    pages: Mapping[str, bytes] = field(default_factory=lambda: dict(DEFAULT_PAGES))
    server_name: str = "tcpstack"
    connections: int = 0
    requests: int = 0
    errors: int = 0


class HttpServer(StreamApp):
    """One connection's HTTP/1.1 server: requests in, responses out, keep-alive."""

    def __init__(self, site: HttpSite) -> None:
        super().__init__()
        self.site = site
        self.h11 = h11.Connection(h11.SERVER)
        self.requests: list[tuple[str, str]] = []  # (method, target) in order
        self._request: h11.Request | None = None
        self._out = bytearray()
        self._eof_fed = False

    def pump(self, conn: Connection, now: int) -> None:
        while data := self.read_all(conn, now):
            self.h11.receive_data(data)
        if self.eof and not self._eof_fed:
            self._eof_fed = True
            self.h11.receive_data(b"")
        self._handle()
        self._flush(conn, now)

    def _handle(self) -> None:
        http = self.h11
        while True:
            if http.our_state is h11.DONE and http.their_state is h11.DONE:
                http.start_next_cycle()  # keep-alive: the next request on this connection
            try:
                event = http.next_event()
            except h11.RemoteProtocolError as error:
                self._fail(error.error_status_hint)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._request = event
            elif isinstance(event, h11.EndOfMessage) and self._request is not None:
                self._respond(self._request)
                self._request = None
            elif isinstance(event, h11.ConnectionClosed):
                return

    def _respond(self, request: h11.Request) -> None:
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("ascii", "replace")
        self.requests.append((method, target))
        self.site.requests += 1
        path = target.split("?", 1)[0]
        page = self.site.pages.get(path)
        if method not in ("GET", "HEAD"):
            status, body = 405, b"method not allowed\n"
        elif page is None:
            status, body = 404, b"not found\n"
        else:
            status, body = 200, page
        headers = [
            ("Server", self.site.server_name),
            ("Content-Type", "text/html; charset=utf-8" if status == 200 else "text/plain"),
            ("Content-Length", str(len(body))),
        ]
        http = self.h11
        reason = HTTPStatus(status).phrase
        response = h11.Response(status_code=status, headers=headers, reason=reason)
        self._out += http.send(response) or b""
        if method != "HEAD":
            self._out += http.send(h11.Data(data=body)) or b""
        self._out += http.send(h11.EndOfMessage()) or b""

    def _fail(self, status: int) -> None:
        self.site.errors += 1
        http = self.h11
        if http.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = f"bad request ({status})\n".encode()
            headers = [("Content-Length", str(len(body))), ("Connection", "close")]
            try:
                response = h11.Response(
                    status_code=status, headers=headers, reason=HTTPStatus(status).phrase
                )
                self._out += http.send(response) or b""
                self._out += http.send(h11.Data(data=body)) or b""
                self._out += http.send(h11.EndOfMessage()) or b""
            except h11.LocalProtocolError:
                pass

    def _flush(self, conn: Connection, now: int) -> None:
        while self._out and conn.state in _SENDING and conn.send_space:
            accepted = conn.send(bytes(self._out[: conn.send_space]), now=now)
            self.sent += accepted
            del self._out[:accepted]
            if not accepted:
                break
        if self._out or conn.state is State.CLOSED:
            return
        http = self.h11
        finished = http.our_state in (h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)
        peer_gone = self.eof and self._request is None
        if (finished or peer_gone) and conn.state in _SENDING:
            self.close_once(conn, now)


def http_factory(site: HttpSite) -> Callable[[Connection], ConnectionApp]:
    """A Dispatcher factory: every accepted connection gets an HttpServer of `site`."""

    def make(conn: Connection) -> ConnectionApp:
        site.connections += 1
        return HttpServer(site)

    return make
