"""tcpstack.aio: asyncio streams over tcpstack.

    reader, writer = await tcpstack.aio.open_connection("10.0.0.2", 7, stack=netloop)
    server = await tcpstack.aio.start_server(handle, "10.0.0.2", 7, stack=netloop)

`open_connection` / `start_server` (and `create_connection` / `create_server`) return
the stdlib's own `asyncio.StreamReader` / `asyncio.StreamWriter`, over a transport
(`TcpTransport`) backed by a tcpstack Connection, with TCP's flow control behind
`writer.drain()` and the stdlib's exceptions (see `tcpstack.aio.transport`).

Where the stack runs (`stack=`):

- the simulator: run the program in a `SimEventLoop(network)` (or `tcpstack.aio.run`),
  whose clock is the network's virtual clock; `stack` may then be omitted;
- the real network: a `tcpstack.net.loop.NetLoop` (TUN driver), e.g. `NetHost.loop`;
  it runs in its own thread and wakes the asyncio loop.
"""

from tcpstack.aio.simloop import DEFAULT_MAX_WAIT, SimEventLoop, SimulationDeadlock, run
from tcpstack.aio.stack import NetStack, SimStack, Stack
from tcpstack.aio.streams import (
    STREAM_LIMIT,
    ListeningSocket,
    Server,
    create_connection,
    create_server,
    open_connection,
    resolve_stack,
    start_server,
)
from tcpstack.aio.transport import TcpTransport, TransportSocket, close_error

__all__ = [
    "DEFAULT_MAX_WAIT",
    "STREAM_LIMIT",
    "ListeningSocket",
    "NetStack",
    "Server",
    "SimEventLoop",
    "SimStack",
    "SimulationDeadlock",
    "Stack",
    "TcpTransport",
    "TransportSocket",
    "close_error",
    "create_connection",
    "create_server",
    "open_connection",
    "resolve_stack",
    "run",
    "start_server",
]
