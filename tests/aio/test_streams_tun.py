"""tcpstack.aio over the Linux TUN driver, with the kernel's TCP as the peer.

The namespace (created and deleted per test) holds the kernel at 10.77.0.1; tcpstack
answers for 10.77.0.2. One asyncio loop (real time) runs both sides: the kernel's side
with the stdlib's own asyncio streams on sockets created inside the namespace, and
tcpstack's side with tcpstack.aio on the host's NetLoop (in its own thread).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import socket

from tcpstack import aio
from tcpstack.core.connection import Connection
from tcpstack.core.events import CloseReason
from tcpstack.core.state import State
from tcpstack.net.host import NetHost

K4, S4 = "10.77.0.1", "10.77.0.2"
SIZE = 4 * 1024 * 1024
CHUNK = 1 << 16
TIMEOUT = 60.0


def payload(size: int = SIZE) -> bytes:
    """Bytes that differ everywhere (a counter), so a misplaced chunk changes the hash."""
    return b"".join(i.to_bytes(4, "big") for i in range(size // 4))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def send_and_collect(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> bytes:
    """Write everything (awaiting drain), half-close, and read to EOF meanwhile."""

    async def send() -> None:
        view = memoryview(data)
        for start in range(0, len(data), CHUNK):
            writer.write(view[start : start + CHUNK])
            await writer.drain()
        writer.write_eof()

    sender = asyncio.ensure_future(send())
    received = await reader.read()
    await sender
    writer.close()
    await writer.wait_closed()
    return received


def test_kernel_asyncio_client_is_echoed_by_a_tcpstack_aio_server(host: NetHost) -> None:
    """The kernel's asyncio client sends 4 MB to a tcpstack.aio echo server and reads
    them back: the same SHA-256; tcpstack's side went through CLOSE_WAIT and closed
    normally."""
    data = payload()
    served: list[Connection] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(writer.get_extra_info("tcpstack_connection"))
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main() -> bytes:
        async with await aio.start_server(echo, S4, 7007, stack=host.loop):
            loop = asyncio.get_running_loop()
            sock = host.netns.socket(socket.AF_INET)  # the kernel's side, in the namespace
            sock.setblocking(False)
            await loop.sock_connect(sock, (S4, 7007))
            reader, writer = await asyncio.open_connection(sock=sock)
            return await asyncio.wait_for(send_and_collect(reader, writer, data), TIMEOUT)

    received = asyncio.run(main())
    assert len(received) == SIZE and digest(received) == digest(data)
    (conn,) = served
    assert host.loop.wait_until(lambda: conn.state is State.CLOSED, 5_000_000)
    assert conn.state_history == [
        State.CLOSED,
        State.LISTEN,
        State.SYN_RECEIVED,
        State.ESTABLISHED,
        State.CLOSE_WAIT,
        State.LAST_ACK,
        State.CLOSED,
    ]
    assert conn.close_reason is CloseReason.NORMAL


def test_tcpstack_aio_client_is_echoed_by_a_kernel_asyncio_server(host: NetHost) -> None:
    """tcpstack.aio connects to the kernel's asyncio echo server, sends 4 MB with
    write backpressure (drain), half-closes and reads them all back."""
    data = payload()

    async def kernel_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    async def main() -> tuple[bytes, Connection, tuple[str, int], tuple[str, int]]:
        listening = host.netns.socket(socket.AF_INET)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((K4, 7008))
        async with await asyncio.start_server(kernel_echo, sock=listening):
            reader, writer = await aio.open_connection(K4, 7008, stack=host.loop)
            conn = writer.get_extra_info("tcpstack_connection")
            peer = writer.get_extra_info("peername")
            mine = writer.get_extra_info("sockname")
            received = await asyncio.wait_for(send_and_collect(reader, writer, data), TIMEOUT)
            return received, conn, peer, mine

    received, conn, peer, mine = asyncio.run(main())
    assert len(received) == SIZE and digest(received) == digest(data)
    assert peer == (K4, 7008) and mine[0] == S4
    # We half-closed first (FIN_WAIT_1/2), the kernel's FIN came after its last byte.
    assert conn.state_history[:4] == [
        State.CLOSED,
        State.SYN_SENT,
        State.ESTABLISHED,
        State.FIN_WAIT_1,
    ]
    assert conn.state_history[-1] in (State.TIME_WAIT, State.CLOSED)


def test_tcpstack_aio_connect_to_a_closed_kernel_port_is_refused(host: NetHost) -> None:
    async def main() -> int | None:
        try:
            await aio.open_connection(K4, 9, stack=host.loop)
        except ConnectionRefusedError as error:
            return error.errno
        return None

    assert asyncio.run(main()) == errno.ECONNREFUSED  # the kernel answered with RST
