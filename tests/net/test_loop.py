"""NetLoop without root: two loops joined by a socketpair that carries IP packets."""

from __future__ import annotations

import hashlib
import random
import socket
from collections.abc import Iterator

import pytest

from tcpstack.core.config import SECOND
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.events import CloseReason
from tcpstack.core.isn import KeyedIsnGenerator
from tcpstack.core.state import State
from tcpstack.net.apps import Chargen, Dispatcher, Echo, Transfer, chargen_block
from tcpstack.net.loop import LoopStopped, NetLoop
from tcpstack.net.packet import ICMP, decode_ip, encode_ipv4

A, B = "10.77.0.1", "10.77.0.2"


class PairDevice:
    """One end of a SOCK_SEQPACKET socketpair: whole packets, like a TUN."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.writes = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> bytes | None:
        try:
            return self.sock.recv(65535)
        except BlockingIOError:
            return None

    def write(self, packet: bytes) -> None:
        self.writes += 1
        self.sock.send(packet)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def pair() -> Iterator[tuple[NetLoop, NetLoop]]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for sock in (left, right):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    loop_a = NetLoop(
        PairDevice(left), Endpoint(A, isn_generator=KeyedIsnGenerator(bytes(range(16))))
    )
    loop_b = NetLoop(
        PairDevice(right), Endpoint(B, isn_generator=KeyedIsnGenerator(bytes(range(16))))
    )
    loop_a.handlers.append(Dispatcher())
    loop_b.handlers.append(Dispatcher())
    try:
        yield loop_a, loop_b
    finally:
        for loop in (loop_a, loop_b):
            loop.close()
            loop.device.close()


def dispatcher(loop: NetLoop) -> Dispatcher:
    handler = loop.handlers[0]
    assert isinstance(handler, Dispatcher)
    return handler


def test_transfer_between_two_threaded_loops(pair: tuple[NetLoop, NetLoop]) -> None:
    loop_a, loop_b = pair
    payload = random.Random(7).randbytes(300_000)
    server = Transfer(close_when="eof")

    def listen(now: int) -> None:
        loop_b.endpoint_for(B).listen(5000)
        dispatcher(loop_b).serve(loop_b.endpoint_for(B), 5000, lambda conn: server)

    loop_b.call(listen)
    client = Transfer(payload, close_when="shutdown")

    def connect(now: int) -> None:
        conn = loop_a.endpoint_for(None).connect(B, 5000, now=now)
        dispatcher(loop_a).attach(conn, client)

    with loop_a, loop_b:
        loop_a.call(connect)
        assert loop_b.wait_until(lambda: server.done, 20 * SECOND)
        assert loop_a.wait_until(lambda: client.eof, 5 * SECOND)
    assert server.digest_in == hashlib.sha256(payload).hexdigest()
    assert server.closed is CloseReason.NORMAL
    conn_b = dispatcher(loop_b).accepted[0]
    assert conn_b.state_history == [
        State.CLOSED,
        State.LISTEN,
        State.SYN_RECEIVED,
        State.ESTABLISHED,
        State.CLOSE_WAIT,
        State.LAST_ACK,
        State.CLOSED,
    ]


def test_wait_until_runs_the_loop_inline_without_a_thread(
    pair: tuple[NetLoop, NetLoop],
) -> None:
    loop_a, loop_b = pair

    def listen(now: int) -> None:
        endpoint = loop_b.endpoint_for(B)
        endpoint.listen(7)
        dispatcher(loop_b).serve(endpoint, 7, lambda conn: Echo())

    loop_b.call(listen)
    loop_b.start()
    client = Transfer(b"echo me", close_when="shutdown", keep=True)

    def connect(now: int) -> None:
        conn = loop_a.endpoint_for(A).connect(B, 7, now=now)
        dispatcher(loop_a).attach(conn, client)

    loop_a.call(connect)  # loop_a has no thread: wait_until drives it
    assert loop_a.wait_until(lambda: client.eof, 10 * SECOND)
    assert bytes(client.data) == b"echo me"
    assert not loop_a.wait_until(lambda: False, 50_000)  # times out, returns False


def test_chargen_sends_the_rfc_864_pattern(pair: tuple[NetLoop, NetLoop]) -> None:
    loop_a, loop_b = pair

    def listen(now: int) -> None:
        endpoint = loop_b.endpoint_for(B)
        endpoint.listen(19)
        dispatcher(loop_b).serve(endpoint, 19, lambda conn: Chargen())

    loop_b.call(listen)
    client = Transfer(close_when=None, keep=True)

    def connect(now: int) -> None:
        dispatcher(loop_a).attach(loop_a.endpoint_for(A).connect(B, 19, now=now), client)

    with loop_a, loop_b:
        loop_a.call(connect)
        assert loop_a.wait_until(lambda: client.received >= 20_000, 10 * SECOND)
    block = chargen_block()
    assert bytes(client.data[:20_000]) == (block * 4)[:20_000]
    assert block[:74] == bytes(range(32, 104)) + b"\r\n"


def test_ping_is_answered_through_the_loop(pair: tuple[NetLoop, NetLoop]) -> None:
    loop_a, loop_b = pair
    body = bytes([8, 0, 0, 0, 0, 1, 0, 1]) + b"abc"
    from tcpstack.core.codec import internet_checksum

    checksum = internet_checksum(body)
    request = body[:2] + checksum.to_bytes(2, "big") + body[4:]
    device_a = loop_a.device
    assert isinstance(device_a, PairDevice)
    device_a.sock.setblocking(True)
    device_a.sock.send(encode_ipv4(A, B, ICMP, request))
    loop_b.run_once(max_wait=1_000_000)
    reply = decode_ip(device_a.sock.recv(65535))
    assert (reply.src, reply.dst, reply.payload[0]) == (B, A, 0)
    assert loop_b.ip.stats["icmp.echo_request"] == 1


def test_a_failing_handler_stops_the_loop_and_waiters_hear_of_it(
    pair: tuple[NetLoop, NetLoop],
) -> None:
    loop_a, loop_b = pair

    def broken(woken: object, now: int) -> None:
        raise RuntimeError("application bug")

    loop_b.call(lambda now: loop_b.endpoint_for(B).listen(9))
    loop_b.handlers.append(broken)
    with loop_a, loop_b:
        loop_a.call(lambda now: loop_a.endpoint_for(A).connect(B, 9, now=now))
        with pytest.raises(LoopStopped):
            loop_b.wait_until(lambda: False, 5 * SECOND)
    assert isinstance(loop_b.failure, RuntimeError)


def test_endpoint_for_unknown_address_is_eaddrnotavail(pair: tuple[NetLoop, NetLoop]) -> None:
    loop_a, _ = pair
    with pytest.raises(OSError) as caught:
        loop_a.endpoint_for("10.9.9.9")
    assert caught.value.errno == 99  # EADDRNOTAVAIL
