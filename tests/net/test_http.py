"""Interop row 8: curl and wrk (the kernel's TCP, inside the namespace) against
tcpstack's HTTP/1.1 server (h11), with HTTP keep-alive: connections reused."""

from __future__ import annotations

import re

import pytest

from tcpstack.core.config import SECOND
from tcpstack.core.state import State
from tcpstack.net.host import NetHost

pytest.importorskip("h11")

from tcpstack.net.http import DEFAULT_PAGES, HttpServer, HttpSite, http_factory

S4 = "10.77.0.2"
WRK_SECONDS = 10
OPENED = [State.CLOSED, State.LISTEN, State.SYN_RECEIVED, State.ESTABLISHED]


def serve_http(host: NetHost, port: int) -> HttpSite:
    site = HttpSite()

    def listen(now: int) -> None:
        host.endpoint.listen(port)
        host.dispatcher.serve(host.endpoint, port, http_factory(site))

    host.loop.call(listen)
    return site


def test_curl_reuses_one_connection_for_three_requests(host: NetHost) -> None:
    site = serve_http(host, 80)
    url = f"http://{S4}/"
    result = host.netns.run(["curl", "-sv", url, url, url], timeout=30)
    verbose = result.stderr
    assert result.stdout == DEFAULT_PAGES["/"].decode() * 3
    assert verbose.count("Re-using existing connection") == 2, verbose
    assert verbose.count("left intact") == 3, verbose
    assert verbose.count("< HTTP/1.1 200 OK") == 3
    # tcpstack's side: exactly one connection, which carried the three requests.
    assert site.connections == 1 and site.requests == 3
    with host.loop.lock:
        (conn,) = host.dispatcher.accepted
        app = host.dispatcher.apps.get(conn)
    # curl closed at exit; tcpstack took the passive close.
    assert host.loop.wait_until(lambda: conn.state is State.CLOSED, 5 * SECOND)
    assert conn.state_history == [*OPENED, State.CLOSE_WAIT, State.LAST_ACK, State.CLOSED]
    assert app is None or isinstance(app, HttpServer)


def test_curl_gets_404_and_connection_close_is_honoured(host: NetHost) -> None:
    site = serve_http(host, 8080)
    result = host.netns.run(
        ["curl", "-sv", "-H", "Connection: close", f"http://{S4}:8080/missing"],
        timeout=30,
        check=False,
    )
    assert "< HTTP/1.1 404 Not Found" in result.stderr
    assert result.stdout == "not found\n"
    assert site.requests == 1 and site.connections == 1
    (conn,) = host.dispatcher.accepted
    # tcpstack closes first after a `Connection: close` request: the active close.
    assert host.loop.wait_until(lambda: conn.state is State.TIME_WAIT, 5 * SECOND)
    # curl closes as soon as it has the whole response (Content-Length), so its FIN
    # races ours: it may carry the ACK of ours (FIN_WAIT_1 -> TIME_WAIT, C4), follow
    # it (through FIN_WAIT_2) or cross it (CLOSING, a simultaneous close).
    assert conn.state_history in (
        [*OPENED, State.FIN_WAIT_1, State.TIME_WAIT],
        [*OPENED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.TIME_WAIT],
        [*OPENED, State.FIN_WAIT_1, State.CLOSING, State.TIME_WAIT],
    )


def test_wrk_keep_alive_load_has_no_errors(host: NetHost) -> None:
    site = serve_http(host, 80)
    result = host.netns.run(
        ["wrk", "-t1", "-c4", f"-d{WRK_SECONDS}s", f"http://{S4}/"],
        timeout=WRK_SECONDS + 30,
    )
    out = result.stdout
    print(f"\n{out}")
    assert "Socket errors" not in out, out
    assert "Non-2xx" not in out, out
    match = re.search(r"(\d+) requests in", out)
    assert match is not None, out
    completed = int(match.group(1))
    assert completed > 0
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rate is not None
    print(f"tcpstack HTTP keep-alive: {rate.group(1)} requests/s over {site.connections} conns")
    # Keep-alive: wrk's four connections carried every request (wrk 4 first opens and
    # closes one connection to check the address, with no request on it).
    assert site.connections in (4, 5)
    assert site.requests >= completed
    assert site.errors == 0
