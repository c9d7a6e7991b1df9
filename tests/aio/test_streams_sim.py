"""tcpstack.aio over the simulator: stdlib asyncio streams on virtual time.

Two hosts 10 ms apart (A = 10.0.0.1 client, B = 10.0.0.2 server). Every program runs in
a SimEventLoop, so `loop.time()` is the network's clock and each outcome happens at an
exact virtual instant: the handshake completes at 20 ms (SYN there, SYN,ACK back), a
request written at 20 ms is answered at 40 ms, and so on.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from tcpstack import aio
from tcpstack.core.config import SECOND, Config
from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.events import CloseReason
from tcpstack.core.icmp import IcmpKind, IcmpReport
from tcpstack.core.segment import Datagram
from tcpstack.core.state import State
from tcpstack.scenarios.story import simulation_isn
from tcpstack.sim import Network, Verdict

T = TypeVar("T")

A, B = "10.0.0.1", "10.0.0.2"
PORT = 7
MS = 1_000


def network() -> tuple[Network, Endpoint, Endpoint]:
    net = Network(seed=1)
    a = Endpoint(A, isn_generator=simulation_isn)
    b = Endpoint(B, isn_generator=simulation_isn)
    net.add_node(a)
    net.add_node(b)
    net.link(A, B, delay=10 * MS)
    return net, a, b


def run(main: Callable[[Network], Awaitable[T]]) -> T:
    net, _, _ = network()

    async def program() -> T:
        return await main(net)

    return aio.run(program(), net)


def now_us() -> int:
    return round(asyncio.get_running_loop().time() * 1_000_000)


def connection_of(writer: asyncio.StreamWriter) -> Connection:
    conn = writer.get_extra_info("tcpstack_connection")
    assert isinstance(conn, Connection)
    return conn


async def connect(
    port: int = PORT, config: Config | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await aio.open_connection(B, port, local_addr=(A, 0), config=config)


# --------------------------------------------------------------------------- basics


def test_echo_round_trip_with_stdlib_streams_at_exact_virtual_times() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.read(100)).upper())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main(net: Network) -> list[object]:
        seen: list[object] = []
        async with await aio.start_server(handle, B, PORT) as server:
            assert server.is_serving()
            assert [s.getsockname() for s in server.sockets] == [(B, PORT)]
            reader, writer = await connect()
            seen.append(now_us())  # SYN at 0, SYN,ACK back at 20 ms
            assert type(reader) is asyncio.StreamReader
            assert type(writer) is asyncio.StreamWriter
            assert writer.get_extra_info("peername") == (B, PORT)
            assert writer.get_extra_info("sockname") == (A, 32768)
            sock = writer.get_extra_info("socket")
            assert sock.getpeername() == (B, PORT) and sock.family == socket.AF_INET
            assert sock.tcp_info().state == "ESTABLISHED"
            writer.write(b"ping")
            await writer.drain()
            seen.append(await reader.read(100))
            seen.append(now_us())  # there at 30 ms, the answer back at 40 ms
            seen.append(await reader.read(100))  # the server's FIN came with it
            conn = connection_of(writer)
            seen.append(conn.state)
            writer.close()
            await writer.wait_closed()
            seen.append(conn.state)
        return seen

    assert run(main) == [
        20 * MS,
        b"PING",
        40 * MS,
        b"",
        State.CLOSE_WAIT,
        State.LAST_ACK,
    ]


def test_connect_to_a_closed_port_is_refused_when_the_rst_arrives() -> None:
    async def main(net: Network) -> tuple[int | None, int]:
        with pytest.raises(ConnectionRefusedError) as caught:
            await connect(9)
        return caught.value.errno, now_us()

    assert run(main) == (errno.ECONNREFUSED, 20 * MS)


def test_a_reset_reaches_reader_and_writer_as_connection_reset_error() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.transport.abort()  # RST

    async def main(net: Network) -> list[object]:
        async with await aio.start_server(handle, B, PORT):
            reader, writer = await connect()
            writer.write(b"x")  # at 20 ms; there at 30, the RST back at 40
            with pytest.raises(ConnectionResetError) as caught:
                await reader.read(10)
            at = now_us()
            writer.write(b"lost")  # silently dropped, as on a dead socket transport
            with pytest.raises(ConnectionResetError):
                await writer.drain()
            conn = connection_of(writer)
            return [caught.value.errno, at, conn.close_reason, writer.is_closing()]

    assert run(main) == [errno.ECONNRESET, 40 * MS, CloseReason.RESET, True]


def test_half_close_write_eof_keeps_receiving() -> None:
    """write_eof() is shutdown(SHUT_WR): our FIN goes, the reply still comes in (the
    client sits in FIN_WAIT_2 meanwhile), then the server's FIN ends it normally."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read()  # to EOF
        await asyncio.sleep(1)
        writer.write(b"got " + request)
        writer.close()
        await writer.wait_closed()

    async def main(net: Network) -> list[object]:
        async with await aio.start_server(handle, B, PORT):
            reader, writer = await connect()
            assert writer.can_write_eof()
            writer.write(b"request")
            writer.write_eof()
            with pytest.raises(RuntimeError):
                writer.write(b"more")
            conn = connection_of(writer)
            await asyncio.sleep(0.5)
            state_while_waiting = conn.state
            reply = await reader.read()
            return [state_while_waiting, reply, now_us(), conn.state_history[-1]]

    # Request and FIN at 20 ms, read to EOF at 30 ms; the reply leaves at 1.030 s and
    # arrives at 1.040 s with the server's FIN.
    assert run(main) == [State.FIN_WAIT_2, b"got request", 1_040 * MS, State.TIME_WAIT]


def test_eof_before_readexactly_completes_raises_incomplete_read_error() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"abc")
        writer.close()

    async def main(net: Network) -> tuple[bytes, int | None, int]:
        async with await aio.start_server(handle, B, PORT):
            reader, writer = await connect()
            with pytest.raises(asyncio.IncompleteReadError) as caught:
                await reader.readexactly(10)
            writer.close()
            return caught.value.partial, caught.value.expected, now_us()

    # The server has the connection when the client's ACK arrives (30 ms); its bytes
    # and FIN reach the client at 40 ms.
    assert run(main) == (b"abc", 10, 40 * MS)


# --------------------------------------------------------------------------- backpressure

SMALL = Config(send_buffer_size=65536, receive_buffer_size=65536)
MB = 1 << 20


def test_drain_blocks_while_the_send_buffer_is_full_and_resumes_when_the_peer_reads() -> None:
    """The server reads nothing: its buffers fill, its window closes, our send buffer
    fills. drain() stays pending for 10 s of virtual time with the send buffer full;
    once the server reads, ACKs free the buffer and drain() completes."""
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result((reader, writer))

    async def main(net: Network) -> list[object]:
        nonlocal accepted
        accepted = asyncio.get_running_loop().create_future()
        async with await aio.start_server(handle, B, PORT, config=SMALL):
            _, writer = await connect(config=SMALL)
            server_reader, server_writer = await accepted
            conn = connection_of(writer)
            server_conn = connection_of(server_writer)
            payload = bytes(range(256)) * (4 * MB // 256)
            writer.write(payload)
            assert writer.transport.get_write_buffer_size() == len(payload)
            drain = asyncio.ensure_future(writer.drain())
            await asyncio.sleep(10)
            facts: list[object] = [
                drain.done(),
                conn.send_space,
                conn.send_buffered,
                server_conn.receive_buffered,
                server_conn.window_field(),
                writer.transport.get_write_buffer_size() > 3 * MB,
            ]
            drained_at: list[int] = []
            drain.add_done_callback(lambda _: drained_at.append(now_us()))
            started = now_us()
            received = await server_reader.readexactly(len(payload))
            facts += [drain.done(), drain.exception(), drained_at[0] > started]
            facts.append(received == payload)
            await asyncio.sleep(0.1)  # the last (delayed, 40 ms) ACK is on its way
            facts.append(writer.transport.get_write_buffer_size())
            server_writer.close()
            writer.close()
            return facts

    assert run(main) == [
        False,  # drain() still waiting after 10 s
        0,  # no room in the send buffer ...
        65536,  # ... which is full
        65536,  # the server's receive buffer is full too
        0,  # so it advertises a zero window
        True,  # most of the 4 MB still waits in the transport
        True,  # drain() done once the server read
        None,
        True,  # and not before it started reading
        True,
        0,
    ]


def test_write_buffer_limits_follow_the_send_buffer() -> None:
    async def main(net: Network) -> list[tuple[int, int]]:
        async with await aio.start_server(lambda r, w: None, B, PORT):
            _, writer = await connect(config=SMALL)
            transport = writer.transport
            limits = [transport.get_write_buffer_limits()]
            transport.set_write_buffer_limits(high=1000)
            limits.append(transport.get_write_buffer_limits())
            with pytest.raises(ValueError):
                transport.set_write_buffer_limits(high=10, low=20)
            writer.close()
            return limits

    assert run(main) == [(16384, 65536), (250, 1000)]


# --------------------------------------------------------------------------- timeouts


def test_keepalive_death_raises_timeout_error_at_the_exact_deadline() -> None:
    """Keepalive 10 s idle, 1 s apart, 3 probes; the path dies after the handshake.
    The last segment came at 20 ms: probes at 10.02, 11.02 and 12.02 s, and at 13.02 s
    the connection gives up: TimeoutError (ETIMEDOUT) for the reader."""
    keepalive = Config(
        keepalive=True,
        keepalive_idle=10 * SECOND,
        keepalive_interval=1 * SECOND,
        keepalive_count=3,
    )

    async def main(net: Network) -> list[object]:
        # No `async with`: wait_closed() would wait for the server's side of the dead
        # connection, which never learns anything (it has no keepalive).
        server = await aio.start_server(lambda r, w: None, B, PORT)
        reader, writer = await connect(config=keepalive)
        net.add_filter(lambda datagram: Verdict.DROP)
        with pytest.raises(TimeoutError) as caught:
            await reader.read(10)
        conn = connection_of(writer)
        server.close()
        return [caught.value.errno, now_us(), conn.close_reason, conn.keepalive_probes_out]

    assert run(main) == [errno.ETIMEDOUT, 13_020 * MS, CloseReason.KEEPALIVE_TIMEOUT, 3]


def test_user_timeout_ends_a_stalled_write_with_timeout_error() -> None:
    """TCP_USER_TIMEOUT 2 s (RFC 5482): data written at 20 ms into a dead path is
    resent at 1.02 s (RTO 1 s) and given up at exactly 2.02 s; drain() and read()
    raise TimeoutError (ETIMEDOUT)."""
    user_timeout = Config(user_timeout=2 * SECOND)

    async def main(net: Network) -> list[object]:
        server = await aio.start_server(lambda r, w: None, B, PORT)
        reader, writer = await connect(config=user_timeout)
        net.add_filter(lambda datagram: Verdict.DROP)
        writer.write(b"into the void")
        with pytest.raises(TimeoutError) as caught:
            await reader.read(10)
        at = now_us()
        with pytest.raises(TimeoutError):
            await writer.drain()
        conn = connection_of(writer)
        server.close()
        return [caught.value.errno, at, conn.close_reason, conn.total_retransmissions]

    assert run(main) == [errno.ETIMEDOUT, 2_020 * MS, CloseReason.USER_TIMEOUT, 1]


def test_icmp_soft_error_turns_a_connect_timeout_into_ehostunreach() -> None:
    """SYNs to 10.0.0.9 vanish (no such host); an ICMP host unreachable for the first
    SYN is recorded (MUST-56: no abort). With 2 SYN retries (at 1 s and 3 s) the attempt
    gives up at 7 s and open_connection raises EHOSTUNREACH, not ETIMEDOUT (Linux's
    sk_err_soft)."""
    two_retries = Config(syn_retries=2)

    async def main(net: Network) -> tuple[int | None, int]:
        client = net.node(A)
        assert isinstance(client, Endpoint)

        def icmp() -> None:
            (key,) = client.connections
            report = IcmpReport(
                *key, seq=client.connections[key].iss, kind=IcmpKind.HOST_UNREACHABLE
            )
            assert client.receive_icmp_error(report, now=net.now) == "soft_error"

        asyncio.get_running_loop().call_later(0.5, icmp)
        with pytest.raises(OSError) as caught:
            await aio.open_connection("10.0.0.9", 80, local_addr=(A, 0), config=two_retries)
        return caught.value.errno, now_us()

    assert run(main) == (errno.EHOSTUNREACH, 7_000 * MS)


def test_icmp_hard_error_refuses_the_connect_at_once() -> None:
    async def main(net: Network) -> tuple[type[BaseException], int | None, int]:
        client = net.node(A)
        assert isinstance(client, Endpoint)

        def icmp() -> None:
            (key,) = client.connections
            report = IcmpReport(
                *key, seq=client.connections[key].iss, kind=IcmpKind.PORT_UNREACHABLE
            )
            client.receive_icmp_error(report, now=net.now)

        asyncio.get_running_loop().call_later(0.25, icmp)
        with pytest.raises(OSError) as caught:
            await aio.open_connection("10.0.0.9", 80, local_addr=(A, 0))
        return type(caught.value), caught.value.errno, now_us()

    assert run(main) == (ConnectionRefusedError, errno.ECONNREFUSED, 250 * MS)


# --------------------------------------------------------------------------- server


def test_serve_forever_close_and_wait_closed() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    async def main(net: Network) -> list[object]:
        server = await aio.start_server(echo, B, PORT, start_serving=False)
        facts: list[object] = [server.is_serving()]
        forever = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        facts.append(server.is_serving())
        reader, writer = await connect()
        writer.write(b"hi")
        facts.append(await reader.read(100))
        writer.close()
        forever.cancel()
        with pytest.raises(asyncio.CancelledError):
            await forever
        facts.append(server.is_serving())
        await server.wait_closed()
        facts.append(server.sockets)
        with pytest.raises(ConnectionRefusedError):
            await connect()
        return facts

    assert run(main) == [False, True, b"hi", False, ()]


def test_listening_twice_on_a_port_is_eaddrinuse() -> None:
    async def main(net: Network) -> int | None:
        async with await aio.start_server(lambda r, w: None, B, PORT):
            with pytest.raises(OSError) as caught:
                await aio.start_server(lambda r, w: None, B, PORT)
            return caught.value.errno

    assert run(main) == errno.EADDRINUSE


def test_a_program_waiting_for_nothing_is_a_deadlock_not_a_hang() -> None:
    async def main(net: Network) -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(aio.SimulationDeadlock):
        run(main)


def test_the_same_seed_gives_the_same_run() -> None:
    """Determinism: the full list of datagrams of a lossy exchange is identical."""

    def once() -> list[Datagram]:
        net, _, _ = network()
        net.link(A, B, delay=10 * MS, loss=0.2)
        seen: list[Datagram] = []

        def record(datagram: Datagram) -> Verdict:
            seen.append(datagram)
            return Verdict.PASS

        net.add_filter(record)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readexactly(100_000))
            await writer.drain()
            writer.close()

        async def main() -> bytes:
            async with await aio.start_server(handle, B, PORT):
                reader, writer = await connect()
                writer.write(b"z" * 100_000)
                data = await reader.readexactly(100_000)
                writer.close()
                return data

        assert aio.run(main(), net) == b"z" * 100_000
        return seen

    first = once()
    assert len(first) > 100 and first == once()
