"""An asyncio Transport over one tcpstack Connection.

The stdlib's stream classes (`asyncio.StreamReader`, `StreamReaderProtocol`,
`StreamWriter`) run unchanged on top of `TcpTransport`: it calls the protocol's
`connection_made`, `data_received`, `eof_received`, `pause_writing` / `resume_writing`
and `connection_lost` as a socket transport does, with the stdlib's exceptions.

Flow control both ways is TCP's own:

- Reading: `pause_reading()` (the StreamReader calls it when its buffer passes twice
  its limit) stops taking bytes out of the connection's receive buffer, so that buffer
  fills and the advertised window closes; `resume_reading()` reads on.
- Writing: `write()` hands bytes to the connection's send buffer; what does not fit
  waits in the transport. The write buffer size is those waiting bytes plus the send
  buffer's unacknowledged ones, so with the default high-water mark (the send buffer's
  size) the protocol is paused exactly when the send buffer is full and more is
  waiting; `await writer.drain()` then blocks until acknowledgments free the buffer down
  to the low-water mark (a quarter, as the stdlib's default).

Errors (`connection_lost(exc)`), as Linux reports them on a socket: reset ->
ConnectionResetError (ECONNRESET); retransmission, keepalive or user timeout ->
TimeoutError (ETIMEDOUT), or the OSError of an ICMP soft error recorded before (e.g.
EHOSTUNREACH, like Linux's sk_err_soft); an ICMP hard error -> its OSError.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from dataclasses import dataclass
from typing import Any, Protocol

from tcpstack.aio.stack import Stack
from tcpstack.core.connection import Connection
from tcpstack.core.errors import InvalidOperation
from tcpstack.core.events import CloseReason
from tcpstack.core.state import State
from tcpstack.socket.info import TcpInfo, snapshot

__all__ = ["READ_CHUNK", "TcpTransport", "TransportSocket", "close_error"]

# Bytes handed to data_received at a time (the stdlib's socket transports read 256 KiB).
READ_CHUNK = 256 * 1024

_TIMEOUTS = frozenset(
    {CloseReason.TIMEOUT, CloseReason.KEEPALIVE_TIMEOUT, CloseReason.USER_TIMEOUT}
)


def _os_error(code: int, detail: str) -> OSError:
    # OSError(errno, ...) is the matching subclass (ConnectionResetError, TimeoutError).
    return OSError(code, f"{os.strerror(code)} ({detail})")


def close_error(conn: Connection) -> OSError | None:
    """The exception a socket would report for how `conn` closed, or None (normal)."""
    reason = conn.close_reason
    icmp = conn.icmp_error
    if reason is CloseReason.RESET:
        return _os_error(errno.ECONNRESET, "reset by the peer")
    if reason is CloseReason.REFUSED:
        return _os_error(errno.ECONNREFUSED, "RST in answer to our SYN")
    if reason is CloseReason.UNREACHABLE and icmp is not None:
        code = getattr(errno, icmp.errno_name, errno.EHOSTUNREACH)  # ENONET is Linux-only
        return _os_error(code, f"ICMP {icmp.kind.value} from {icmp.reporter or 'the path'}")
    if reason in _TIMEOUTS:
        if icmp is not None:
            # Linux's tcp_write_err: sk_err_soft, if an ICMP error came, else ETIMEDOUT.
            code = getattr(errno, icmp.errno_name, errno.EHOSTUNREACH)
            return _os_error(code, f"{reason.value} after ICMP {icmp.kind.value}")
        return _os_error(errno.ETIMEDOUT, reason.value)
    return None


@dataclass(frozen=True, slots=True)
class TransportSocket:
    """What get_extra_info('socket') returns: socket-like facts about the connection
    (there is no file descriptor). `tcp_info()` is getsockopt(TCP_INFO)."""

    family: socket.AddressFamily
    type: socket.SocketKind
    proto: int
    _connection: Connection
    _stack: Stack

    def fileno(self) -> int:
        return -1

    def getsockname(self) -> tuple[str, int]:
        return (self._connection.local_ip, self._connection.local_port)

    def getpeername(self) -> tuple[str, int]:
        return (self._connection.remote_ip, self._connection.remote_port)

    def tcp_info(self) -> TcpInfo:
        conn = self._connection
        return self._stack.call(lambda now: snapshot(conn, now))


class ServerHooks(Protocol):
    """What a transport tells the server that accepted its connection."""

    def transport_opened(self) -> None: ...

    def transport_lost(self) -> None: ...


def _stream_protocol(protocol: asyncio.BaseProtocol) -> asyncio.Protocol:
    if not isinstance(protocol, asyncio.Protocol):
        raise TypeError(f"tcpstack.aio needs an asyncio.Protocol, not {type(protocol).__name__}")
    return protocol


class TcpTransport(asyncio.Transport):
    """A stream transport over an established tcpstack Connection."""

    def __init__(
        self,
        stack: Stack,
        conn: Connection,
        protocol: asyncio.BaseProtocol,
        server: ServerHooks | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in conn.local_ip else socket.AF_INET
        sock = TransportSocket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, conn, stack)
        super().__init__(
            {
                "peername": (conn.remote_ip, conn.remote_port),
                "sockname": (conn.local_ip, conn.local_port),
                "socket": sock,
                "tcpstack_connection": conn,
                "tcpstack_stack": stack,
            }
        )
        self._stack = stack
        self._loop = stack.loop
        self._conn = conn
        self._protocol = _stream_protocol(protocol)
        self._server = server
        self._waiting = bytearray()  # written, no room in the send buffer yet
        self._closing = False  # close() or abort() called
        self._conn_closed = False  # conn.close() / abort() issued
        self._lost = False  # connection_lost() called
        self._reading_paused = False
        self._writing_paused = False  # protocol.pause_writing() called
        self._eof_wanted = False  # write_eof() called
        self._eof_sent = False
        self._eof_delivered = False
        self._high_water = conn.config.send_buffer_size
        self._low_water = self._high_water // 4
        if server is not None:
            server.transport_opened()

    # -- start ------------------------------------------------------------------------

    def start(self) -> None:
        """Tell the protocol, then watch the connection (and read what already came)."""
        self._protocol.connection_made(self)
        self._stack.watch(self._conn, self._on_wake)
        self._loop.call_soon(self._on_wake)

    # -- asyncio.BaseTransport -------------------------------------------------------

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = _stream_protocol(protocol)

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        """Send what write() queued, then FIN (the stack closes in the background);
        connection_lost(None) follows once the queued bytes are in the send buffer."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._reading_paused = True
        self._on_wake()

    def abort(self) -> None:
        """Reset the connection (RST), drop what is queued; connection_lost(None)."""
        if self._lost:
            return
        self._closing = True
        self._waiting.clear()
        conn = self._conn

        def reset(now: int) -> None:
            if conn.state is not State.CLOSED:
                conn.abort(now=now)

        self._stack.call(reset)
        self._conn_closed = True
        self._loop.call_soon(self._connection_lost, None)

    # -- reading -------------------------------------------------------------------------

    def is_reading(self) -> bool:
        return not self._reading_paused and not self.is_closing()

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if self._reading_paused and not self._closing:
            self._reading_paused = False
            self._loop.call_soon(self._on_wake)

    # -- writing -------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data)!r}")
        if self._eof_wanted:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data or self._closing or self._lost:
            return  # like the stdlib: writes after close() or a lost connection vanish
        self._waiting += data
        self._stack.call(self._push)
        self._check_water()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        """Half-close (SHUT_WR): FIN after the queued bytes; reading goes on."""
        if self._eof_wanted or self._closing or self._lost:
            return
        self._eof_wanted = True
        self._stack.call(self._push)

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        """Bytes not yet acknowledged: waiting in the transport plus in the send buffer."""
        return len(self._waiting) + self._conn.send_buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = self._conn.config.send_buffer_size if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water = high
        self._low_water = low
        self._check_water()

    # -- the work ---------------------------------------------------------------------

    def _push(self, now: int) -> None:
        """Under the stack: move waiting bytes into the send buffer, FIN when asked."""
        conn = self._conn
        waiting = self._waiting
        if waiting and conn.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            room = conn.send_space
            if room:
                with contextlib.suppress(InvalidOperation):
                    taken = conn.send(bytes(waiting[:room]), now=now)
                    del waiting[:taken]
        if waiting:
            return
        if self._eof_wanted and not self._eof_sent:
            self._eof_sent = True
            with contextlib.suppress(InvalidOperation):
                conn.shutdown(now=now)
        if self._closing and not self._conn_closed:
            self._conn_closed = True
            if conn.state is not State.CLOSED:
                with contextlib.suppress(InvalidOperation):
                    conn.close(now=now)

    def _poll(self, now: int) -> tuple[bytes, bool, bool]:
        """Under the stack: drain events, push, read. Returns (data, eof, closed)."""
        conn = self._conn
        while conn.next_event() is not None:
            pass  # the transport reads the connection's state instead
        self._push(now)
        data = b""
        if not self._reading_paused and conn.receive_buffered:
            data = conn.receive(READ_CHUNK, now=now)
        eof = (
            not self._eof_delivered
            and not self._reading_paused
            and conn.peer_closed
            and not conn.receive_buffered
        )
        return data, eof, conn.state is State.CLOSED

    def _on_wake(self) -> None:
        if self._lost:
            return
        data, eof, closed = self._stack.call(self._poll)
        protocol = self._protocol
        if data:
            protocol.data_received(data)
        if eof and not self._lost:
            self._eof_delivered = True
            keep_open = protocol.eof_received()
            if not keep_open:
                self.close()
        self._check_water()
        if self._lost:
            return
        if closed and not self._conn_closed:
            # The stack ended it (reset, timeout, ICMP error, or a normal close after
            # write_eof() and the peer's FIN): report how.
            self._conn_closed = True
            self._connection_lost(close_error(self._conn))
        elif self._closing and self._conn_closed:
            self._connection_lost(None)

    def _check_water(self) -> None:
        size = self.get_write_buffer_size()
        if not self._writing_paused and size > self._high_water and not self._lost:
            self._writing_paused = True
            self._protocol.pause_writing()
        elif self._writing_paused and size <= self._low_water:
            self._writing_paused = False
            self._protocol.resume_writing()

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._stack.unwatch(self._conn)
        try:
            self._protocol.connection_lost(exc)
        finally:
            server = self._server
            self._server = None
            if server is not None:
                server.transport_lost()

    def __repr__(self) -> str:
        conn = self._conn
        return (
            f"<TcpTransport {conn.label} {conn.state.value}{' closing' if self._closing else ''}>"
        )
