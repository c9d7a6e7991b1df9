"""open_connection / start_server (and create_connection / create_server) over tcpstack.

Shaped like the stdlib's: the same names, arguments and return values, real
`asyncio.StreamReader` / `asyncio.StreamWriter` objects, the stdlib's exceptions.
Differences: hosts are IP literals (no name resolution, no SSL); `stack=` says which
tcpstack runs the connection (a `NetLoop`, a `Stack`, or by default the running
`SimEventLoop`'s simulator); `config=` gives the core `Config` (buffer sizes, keepalive,
timeouts) in place of setsockopt.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Awaitable, Callable

from tcpstack.aio.simloop import SimEventLoop
from tcpstack.aio.stack import NetStack, Stack
from tcpstack.aio.transport import TcpTransport, close_error
from tcpstack.core.config import Config
from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import EPHEMERAL_PORTS, Endpoint, Listener
from tcpstack.core.errors import AddressInUse, InvalidOperation
from tcpstack.core.state import State
from tcpstack.net.loop import NetLoop

__all__ = [
    "STREAM_LIMIT",
    "ListeningSocket",
    "Server",
    "StackLike",
    "create_connection",
    "create_server",
    "open_connection",
    "resolve_stack",
    "start_server",
]

STREAM_LIMIT = 2**16  # asyncio.streams' default buffer limit

StackLike = Stack | NetLoop | None
ClientConnectedCallback = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None
]
_HANDSHAKE = frozenset({State.SYN_SENT, State.SYN_RECEIVED})


def resolve_stack(stack: StackLike, loop: asyncio.AbstractEventLoop | None = None) -> Stack:
    """The Stack to use: as given, a NetLoop's NetStack, or the SimEventLoop's own."""
    loop = loop if loop is not None else asyncio.get_running_loop()
    if isinstance(stack, Stack):
        return stack
    if isinstance(stack, NetLoop):
        return NetStack.of(stack, loop)
    if isinstance(loop, SimEventLoop):
        return loop.stack
    raise ValueError(
        "no tcpstack to run on: pass stack= (a NetLoop or a Stack), or run the "
        "program in a tcpstack.aio.SimEventLoop"
    )


def _os_error(code: int, detail: str) -> OSError:
    return OSError(code, f"{os.strerror(code)}: {detail}")


def _split(address: tuple[str, int] | None) -> tuple[str | None, int]:
    if address is None:
        return None, 0
    return address[0], address[1]


# --------------------------------------------------------------------------- client


async def create_connection(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str,
    port: int,
    *,
    stack: StackLike = None,
    local_addr: tuple[str, int] | None = None,
    config: Config | None = None,
) -> tuple[TcpTransport, asyncio.BaseProtocol]:
    """Active open to host:port; returns (transport, protocol) once ESTABLISHED.

    Raises what connect(2) would: ConnectionRefusedError (RST to our SYN), TimeoutError
    (ETIMEDOUT: SYN retries exhausted), the OSError of an ICMP error (EHOSTUNREACH ...),
    OSError(EADDRINUSE / EADDRNOTAVAIL). Cancelling the await aborts the attempt.
    """
    loop = asyncio.get_running_loop()
    chosen = resolve_stack(stack, loop)
    local_ip, local_port = _split(local_addr)
    endpoint = chosen.endpoint_for(local_ip, host)

    def start(now: int) -> Connection:
        try:
            return endpoint.connect(
                host, port, now=now, local_port=local_port or None, config=config
            )
        except AddressInUse as error:
            code = errno.EADDRNOTAVAIL if error.state is State.TIME_WAIT else errno.EADDRINUSE
            raise _os_error(code, error.reason) from None
        except InvalidOperation as error:
            raise _os_error(errno.EINVAL, error.reason) from None

    conn = chosen.call(start)
    done: asyncio.Future[None] = loop.create_future()

    def check(now: int) -> State:
        while conn.next_event() is not None:
            pass
        return conn.state

    def on_wake() -> None:
        if done.done():
            return
        state = chosen.call(check)
        if state in _HANDSHAKE:
            return
        if state is State.CLOSED and State.ESTABLISHED not in conn.state_history:
            error = close_error(conn) or _os_error(errno.ECONNABORTED, "connection attempt")
            done.set_exception(error)
        else:
            done.set_result(None)

    chosen.watch(conn, on_wake)
    try:
        await done
    except asyncio.CancelledError:
        chosen.call(lambda now: conn.abort(now=now) if conn.state is not State.CLOSED else None)
        raise
    finally:
        chosen.unwatch(conn)
    protocol = protocol_factory()
    transport = TcpTransport(chosen, conn, protocol)
    transport.start()
    return transport, protocol


async def open_connection(
    host: str,
    port: int,
    *,
    limit: int = STREAM_LIMIT,
    stack: StackLike = None,
    local_addr: tuple[str, int] | None = None,
    config: Config | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio.open_connection over tcpstack: (StreamReader, StreamWriter)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await create_connection(
        lambda: protocol, host, port, stack=stack, local_addr=local_addr, config=config
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


# --------------------------------------------------------------------------- server


class Server(asyncio.AbstractServer):
    """A listening tcpstack port serving protocols, shaped like asyncio.Server.

    close() stops listening (connections not yet accepted are reset, as Linux does);
    wait_closed() returns once closed and every connection it served is lost (the
    stdlib's behaviour from Python 3.12 on).
    """

    def __init__(
        self,
        stack: Stack,
        endpoint: Endpoint,
        listener: Listener,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
    ) -> None:
        self._stack = stack
        self._loop = stack.loop
        self._endpoint = endpoint
        self._listener = listener
        self._protocol_factory = protocol_factory
        self._key = (endpoint.address, listener.port)
        self._serving = False
        self._closed = False
        self._active = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._serving_forever: asyncio.Future[None] | None = None

    # -- bookkeeping of the transports ---------------------------------------------

    def transport_opened(self) -> None:
        """A connection this server accepted got its transport (ServerHooks)."""
        self._active += 1

    def transport_lost(self) -> None:
        """That transport's connection_lost() ran (ServerHooks)."""
        self._active -= 1
        if self._active == 0 and self._closed:
            self._wakeup()

    def _wakeup(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- accepting -----------------------------------------------------------------------

    def _accept_ready(self) -> None:
        if not self._serving:
            return
        endpoint, port = self._endpoint, self._listener.port

        def take(now: int) -> list[Connection]:
            if endpoint.listeners.get(port) is not self._listener:
                return []
            accepted: list[Connection] = []
            while (conn := endpoint.accept(port)) is not None:
                if conn.state is not State.CLOSED:  # reset before accept: nothing to serve
                    accepted.append(conn)
            return accepted

        for conn in self._stack.call(take):
            transport = TcpTransport(self._stack, conn, self._protocol_factory(), self)
            transport.start()

    # -- asyncio.AbstractServer ----------------------------------------------------------

    @property
    def sockets(self) -> tuple[ListeningSocket, ...]:
        if self._closed:
            return ()
        return (ListeningSocket(self._endpoint.address, self._listener.port),)

    @property
    def listener(self) -> Listener:
        return self._listener

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        self._start()

    def _start(self) -> None:
        if self._closed or self._serving:
            return
        self._serving = True
        self._stack.watch(self._key, self._accept_ready)
        self._loop.call_soon(self._accept_ready)

    async def serve_forever(self) -> None:
        if self._serving_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        self._start()
        self._serving_forever = self._loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._serving = False
        self._stack.unwatch(self._key)
        endpoint, port, listener = self._endpoint, self._listener.port, self._listener

        def stop(now: int) -> None:
            if endpoint.listeners.get(port) is listener:
                endpoint.close_listener(port, now=now)

        self._stack.call(stop)
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()
            self._serving_forever = None
        if self._active == 0:
            self._wakeup()

    async def wait_closed(self) -> None:
        if self._closed and self._active == 0:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    def __repr__(self) -> str:
        return f"<tcpstack.aio.Server {self._key[0]}:{self._key[1]} serving={self._serving}>"


class ListeningSocket:
    """Server.sockets entries: where the listener is."""

    def __init__(self, address: str, port: int) -> None:
        self._address = (address, port)

    def getsockname(self) -> tuple[str, int]:
        return self._address

    def fileno(self) -> int:
        return -1

    def __repr__(self) -> str:
        return f"<tcpstack listening socket {self._address[0]}:{self._address[1]}>"


async def create_server(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str | None = None,
    port: int = 0,
    *,
    stack: StackLike = None,
    backlog: int = 100,
    config: Config | None = None,
    reuse_address: bool = False,
    start_serving: bool = True,
) -> Server:
    """Listen on host:port (host: an Endpoint's address; None = the stack's first one;
    port 0 = an ephemeral port). Raises OSError(EADDRINUSE) as bind/listen would."""
    loop = asyncio.get_running_loop()
    chosen = resolve_stack(stack, loop)
    if host in (None, "", "0.0.0.0", "::"):
        endpoints = chosen.endpoints
        if not endpoints:
            raise _os_error(errno.EADDRNOTAVAIL, "the stack has no endpoint")
        want_v6 = host == "::"
        endpoint = next((e for e in endpoints if (":" in e.address) == want_v6), endpoints[0])
    else:
        endpoint = chosen.endpoint_for(host, host)

    def listen(now: int) -> Listener:
        chosen_port = port or _free_port(endpoint)
        try:
            return endpoint.listen(
                chosen_port, backlog, config=config, now=now, reuse_address=reuse_address
            )
        except AddressInUse as error:
            raise _os_error(errno.EADDRINUSE, error.reason) from None

    listener = chosen.call(listen)
    server = Server(chosen, endpoint, listener, protocol_factory)
    if start_serving:
        server._start()
        await asyncio.sleep(0)  # as the stdlib: let the server start
    return server


def _free_port(endpoint: Endpoint) -> int:
    low, high = EPHEMERAL_PORTS
    used = endpoint.local_ports_in_use()
    for candidate in range(low, high + 1):
        if candidate not in used:
            return candidate
    raise _os_error(errno.EADDRINUSE, "no free port")


async def start_server(
    client_connected_cb: ClientConnectedCallback,
    host: str | None = None,
    port: int = 0,
    *,
    limit: int = STREAM_LIMIT,
    stack: StackLike = None,
    backlog: int = 100,
    config: Config | None = None,
    reuse_address: bool = False,
    start_serving: bool = True,
) -> Server:
    """asyncio.start_server over tcpstack: client_connected_cb(reader, writer) for
    every accepted connection (a coroutine function runs as a task)."""
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.BaseProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await create_server(
        factory,
        host,
        port,
        stack=stack,
        backlog=backlog,
        config=config,
        reuse_address=reuse_address,
        start_serving=start_serving,
    )
