"""The blocking, stdlib-shaped socket over a `Driver` (see `tcpstack.socket`)."""

from __future__ import annotations

import builtins
import contextlib
import errno
import functools
import os
import socket as _std
import struct
import weakref
from collections.abc import Callable
from enum import Enum
from types import TracebackType
from typing import TYPE_CHECKING, Final, TypeVar, overload

from tcpstack.core.config import Config
from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import EPHEMERAL_PORTS, Endpoint, Listener
from tcpstack.core.errors import AddressInUse, InvalidOperation
from tcpstack.core.events import CloseReason
from tcpstack.core.state import State
from tcpstack.socket.driver import Driver
from tcpstack.socket.info import TcpInfo, snapshot
from tcpstack.socket.options import CONFIG_OPTIONS, linger_bytes, option_error, option_int

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = [
    "Address",
    "Socket",
    "get_default_driver",
    "getdefaulttimeout",
    "set_default_driver",
    "setdefaulttimeout",
    "socket",
]

T = TypeVar("T")

Address = tuple[str, int]
"""(ip, port). AF_INET6 sockets return 2-tuples too: flowinfo and scope_id are not
modelled (they may be given, as 4-tuples, and are ignored)."""

MICROSECONDS: Final = 1_000_000

# Why a connection closed -> the errno a socket reports (Linux's tcp_reset, tcp_write_err).
_CLOSE_ERRNO: Final = {
    CloseReason.RESET: errno.ECONNRESET,
    CloseReason.REFUSED: errno.ECONNREFUSED,
    CloseReason.TIMEOUT: errno.ETIMEDOUT,
    CloseReason.KEEPALIVE_TIMEOUT: errno.ETIMEDOUT,
    CloseReason.USER_TIMEOUT: errno.ETIMEDOUT,
}
_HANDSHAKE: Final = frozenset({State.SYN_SENT, State.SYN_RECEIVED})
_CAN_SEND: Final = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})
# Our FIN is acknowledged (or the connection is over): a lingering close() may return.
_FIN_DONE: Final = frozenset({State.FIN_WAIT_2, State.TIME_WAIT, State.CLOSED})
# States in which there is no peer to name (getpeername -> ENOTCONN).
_NO_PEER: Final = frozenset({State.CLOSED, State.LISTEN, State.SYN_SENT, State.TIME_WAIT})

_SOL_SOCKET: Final = _std.SOL_SOCKET
_IPPROTO_TCP: Final = _std.IPPROTO_TCP
_FLAGS_ALLOWED: Final = _std.MSG_NOSIGNAL  # no signals here: accepted and ignored
# send(MSG_OOB): the bytes are urgent data (Connection.send(urgent=True)). Receiving has
# SO_OOBINLINE semantics only: urgent octets stay in the stream (RFC 6093's advice), so
# recv(MSG_OOB) fails with EINVAL as on Linux with SO_OOBINLINE set.
_SEND_FLAGS_ALLOWED: Final = _FLAGS_ALLOWED | _std.MSG_OOB


def _error(code: int, detail: str | None = None) -> OSError:
    """The stdlib's OSError subclass for `code` (OSError maps errno to the subclass)."""
    message = os.strerror(code) if detail is None else f"{os.strerror(code)}: {detail}"
    return OSError(code, message)


def _socket_timeout() -> TimeoutError:
    # Like the stdlib's socket.timeout: TimeoutError("timed out"), errno None.
    return TimeoutError("timed out")


# ---------------------------------------------------------------------- defaults

_default_driver: Driver | None = None
_default_timeout: float | None = None


def set_default_driver(driver: Driver | None) -> None:
    """The driver socket() uses when none is passed (None: require driver=)."""
    global _default_driver
    _default_driver = driver


def get_default_driver() -> Driver | None:
    return _default_driver


def _check_timeout(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"Timeout value must be int, float or None, not {type(value).__name__}")
    if value < 0:
        raise ValueError("Timeout value out of range")
    return float(value)


def setdefaulttimeout(timeout: float | None) -> None:
    """The timeout new sockets start with (None: blocking), as the stdlib's."""
    global _default_timeout
    _default_timeout = _check_timeout(timeout)


def getdefaulttimeout() -> float | None:
    return _default_timeout


# ---------------------------------------------------------------------- ports


class _PortTable:
    """Ports that sockets of one Endpoint hold by bind() (the core knows only
    listeners and connections), and the cursor of the next ephemeral port."""

    __slots__ = ("bound", "cursor")

    def __init__(self) -> None:
        self.bound: dict[int, weakref.WeakSet[Socket]] = {}
        self.cursor = EPHEMERAL_PORTS[0]


_PORTS: weakref.WeakKeyDictionary[Endpoint, _PortTable] = weakref.WeakKeyDictionary()


def _ports(endpoint: Endpoint) -> _PortTable:
    table = _PORTS.get(endpoint)
    if table is None:
        table = _PORTS[endpoint] = _PortTable()
    return table


class _Phase(Enum):
    IDLE = "idle"  # fresh, bound, or after a failed connect
    CONNECTING = "connecting"
    CONNECTED = "connected"
    LISTENING = "listening"


# ---------------------------------------------------------------------- the socket


class Socket:
    """A TCP socket with the stdlib's methods, errors and option names.

    Create one with `tcpstack.socket.socket(...)`. Every blocking method runs the driver
    until it can return; the timeout set with settimeout() (seconds, as the stdlib) is
    measured on the driver's clock: virtual time under `SimDriver`.
    """

    def __init__(
        self,
        driver: Driver,
        family: int = _std.AF_INET,
        type: int = _std.SOCK_STREAM,
        proto: int = 0,
        *,
        address: str | None = None,
    ) -> None:
        if family not in (_std.AF_INET, _std.AF_INET6):
            raise _error(errno.EAFNOSUPPORT, f"family {family}")
        if type != _std.SOCK_STREAM:
            raise _error(errno.ESOCKTNOSUPPORT, "tcpstack sockets are SOCK_STREAM only")
        if proto not in (0, _std.IPPROTO_TCP):
            raise _error(errno.EPROTONOSUPPORT, f"protocol {proto}")
        self._driver = driver
        self._family = _std.AddressFamily(family)
        self._proto = proto
        self._address = address
        self._endpoint: Endpoint | None = None
        self._timeout: float | None = _default_timeout
        self._closed = False
        self._phase = _Phase.IDLE
        self._local: Address | None = None
        self._listener: Listener | None = None
        self._conn: Connection | None = None
        self._close_seen = False  # the connection's Closed reason was turned into an errno
        self._pending_error = 0  # SO_ERROR: reported (and cleared) by the next call
        self._shut_rd = False
        self._shut_wr = False
        self._reuse = False
        self._changes: dict[str, object] = {}  # Config fields set by setsockopt

    # ------------------------------------------------------------------ plumbing

    def _call(self, fn: Callable[[int], T]) -> T:
        return self._driver.call(fn)

    def _check_open(self) -> None:
        if self._closed:
            raise _error(errno.EBADF)

    def _resolve(self) -> Endpoint:
        if self._endpoint is None:
            endpoint = self._driver.endpoint_for(self._address)
            v6 = ":" in endpoint.address
            if v6 != (self._family == _std.AF_INET6):
                raise _error(
                    errno.EAFNOSUPPORT, f"{self._family.name} socket on {endpoint.address}"
                )
            self._endpoint = endpoint
        return self._endpoint

    def _parse(self, address: object, call: str) -> Address:
        sizes = (2, 4) if self._family == _std.AF_INET6 else (2,)
        if not isinstance(address, tuple) or len(address) not in sizes:
            raise TypeError(
                f"{call}(): {self._family.name} address must be tuple of "
                f"{' or '.join(map(str, sizes))} items, not {address!r}"
            )
        host, port = address[0], address[1]
        if not isinstance(host, str):
            raise TypeError(f"{call}(): host must be str, not {type(host).__name__}")
        if not isinstance(port, int) or isinstance(port, bool):
            raise TypeError(f"{call}(): port must be int, not {type(port).__name__}")
        if not 0 <= port <= 65535:
            raise OverflowError(f"{call}(): port must be 0-65535.")
        return host, port

    def _timeout_us(self) -> int | None:
        return None if self._timeout is None else round(self._timeout * MICROSECONDS)

    def _deadline(self) -> int | None:
        timeout = self._timeout_us()
        return None if timeout is None else self._driver.now() + timeout

    def _block(self, ready: Callable[[], bool], deadline: int | None) -> None:
        """Return once ready() holds (evaluated under the driver's lock).

        Non-blocking: BlockingIOError(EAGAIN) if not ready now; with a timeout:
        TimeoutError('timed out') at the deadline.
        """
        if self._call(lambda now: ready()):
            return
        if self._timeout == 0.0:
            raise _error(errno.EAGAIN)
        remaining = None if deadline is None else max(deadline - self._driver.now(), 0)
        if not self._driver.wait_until(ready, remaining):
            raise _socket_timeout()

    def _sync(self) -> None:
        """Drain the connection's events and turn its close reason into SO_ERROR once.

        Runs under the driver's lock (inside call() or a wait predicate). The socket
        reads the connection's state directly; events are drained so they do not pile
        up.
        """
        conn = self._conn
        if conn is None:
            return
        while conn.next_event() is not None:
            pass
        if conn.state is State.CLOSED and not self._close_seen:
            self._close_seen = True
            reason = conn.close_reason
            code = _CLOSE_ERRNO.get(reason) if reason is not None else None
            history = conn.state_history
            if (
                reason is CloseReason.RESET
                and len(history) >= 2
                and history[-2] is State.CLOSE_WAIT
            ):
                code = errno.EPIPE  # Linux's tcp_reset: the peer had already closed
            icmp = conn.icmp_error
            if icmp is not None and (reason is CloseReason.UNREACHABLE or code == errno.ETIMEDOUT):
                # An ICMP hard error, or a timeout after a soft one (Linux's sk_err_soft).
                code = getattr(errno, icmp.errno_name, errno.EHOSTUNREACH)  # ENONET is Linux-only
            if code:
                self._pending_error = code

    def _state_after_sync(self, now: int) -> State | None:
        """Under the driver's lock: sync, then the connection's state (None: none)."""
        self._sync()
        return None if self._conn is None else self._conn.state

    def _take_error(self) -> int:
        code = self._pending_error
        self._pending_error = 0
        return code

    def _raise_pending(self) -> None:
        code = self._take_error()
        if code:
            raise _error(code)

    def _default_config(self) -> Config:
        try:
            return self._resolve().config
        except OSError:
            return Config()

    def _config(self) -> Config:
        """The options in effect: the connection's, the listener's, or those a new
        connection would get."""
        if self._conn is not None:
            return self._conn.config
        if self._listener is not None and self._listener.config is not None:
            return self._listener.config
        return self._default_config().with_changes(**self._changes)

    # ------------------------------------------------------------------ ports

    def _port_conflict(self, endpoint: Endpoint, table: _PortTable, port: int) -> str | None:
        """Why `port` cannot be bound, or None (Linux's bind rule, simplified: with
        SO_REUSEADDR only listeners and sockets bound without it conflict)."""
        if port in endpoint.listeners:
            return f"port {port} has a listener"
        for other in table.bound.get(port, ()):
            if other is not self and not (
                self._reuse and other._reuse and other._phase is not _Phase.LISTENING
            ):
                return f"port {port} is bound by another socket"
        if not self._reuse:
            for key, conn in endpoint.connections.items():
                if key[1] == port:
                    return f"port {port} is used by a connection in {conn.state.value}"
            if endpoint.time_wait.uses_local_port(port):
                return f"port {port} is used by a connection in TIME_WAIT"
        return None

    def _pick_port(self, endpoint: Endpoint, table: _PortTable) -> int:
        low, high = EPHEMERAL_PORTS
        used = endpoint.local_ports_in_use()
        used.update(port for port, holders in table.bound.items() if holders)
        span = high - low + 1
        start = table.cursor
        for i in range(span):
            port = low + (start - low + i) % span
            if port not in used:
                table.cursor = low + (port - low + 1) % span
                return port
        raise _error(errno.EADDRINUSE, "no free ephemeral port")

    def _hold_port(self, endpoint: Endpoint, port: int) -> int:
        """Under the driver's lock: take `port` (0 = an ephemeral one) for this socket."""
        table = _ports(endpoint)
        if port == 0:
            port = self._pick_port(endpoint, table)
        else:
            conflict = self._port_conflict(endpoint, table, port)
            if conflict is not None:
                raise _error(errno.EADDRINUSE, conflict)
        table.bound.setdefault(port, weakref.WeakSet()).add(self)
        self._local = (endpoint.address, port)
        return port

    def _release_port(self) -> None:
        if self._local is None or self._endpoint is None:
            return
        holders = _ports(self._endpoint).bound.get(self._local[1])
        if holders is not None:
            holders.discard(self)

    # ------------------------------------------------------------------ naming

    @property
    def family(self) -> _std.AddressFamily:
        return self._family

    @property
    def type(self) -> _std.SocketKind:
        return _std.SocketKind.SOCK_STREAM

    @property
    def proto(self) -> int:
        return self._proto

    @property
    def timeout(self) -> float | None:
        return self._timeout

    @property
    def connection(self) -> Connection | None:
        """The core Connection under this socket (None before connect/accept), for
        inspection in tests and tools. It outlives close() while the stack finishes
        closing it."""
        return self._conn

    def getsockname(self) -> Address:
        self._check_open()
        if self._local is None:
            return ("::", 0) if self._family == _std.AF_INET6 else ("0.0.0.0", 0)
        return self._local

    def getpeername(self) -> Address:
        self._check_open()
        conn = self._conn
        if (
            conn is None
            or self._phase is not _Phase.CONNECTED
            or self._call(self._state_after_sync) in _NO_PEER
        ):
            raise _error(errno.ENOTCONN)
        return (conn.remote_ip, conn.remote_port)

    def __repr__(self) -> str:
        if self._closed:
            return "<tcpstack.socket.Socket [closed]>"
        parts = [f"family={self._family.name}", "type=SOCK_STREAM"]
        if self._local is not None:
            parts.append(f"laddr={self._local}")
        conn = self._conn
        if conn is not None:
            parts.append(f"raddr={(conn.remote_ip, conn.remote_port)}")
            parts.append(f"state={conn.state.value}")
        elif self._phase is _Phase.LISTENING:
            parts.append("state=LISTEN")
        return f"<tcpstack.socket.Socket {' '.join(parts)}>"

    # ------------------------------------------------------------------ timeouts

    def settimeout(self, value: float | None) -> None:
        """None: block; 0: non-blocking; > 0: seconds on the driver's clock."""
        self._timeout = _check_timeout(value)

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    # ------------------------------------------------------------------ passive side

    def bind(self, address: Address | tuple[str, int, int, int]) -> None:
        """Take a local (ip, port); ip '' / '0.0.0.0' / '::' means the socket's own
        endpoint, port 0 an ephemeral port. EADDRINUSE follows Linux's rule (see
        SO_REUSEADDR on setsockopt)."""
        self._check_open()
        host, port = self._parse(address, "bind")
        if self._local is not None or self._phase is not _Phase.IDLE or self._conn is not None:
            raise _error(errno.EINVAL, "already bound")
        if host not in ("", "0.0.0.0", "::"):
            if self._endpoint is not None and self._endpoint.address != host:
                raise _error(errno.EADDRNOTAVAIL, f"this socket's address is not {host}")
            self._address = host
        endpoint = self._resolve()
        self._call(lambda now: self._hold_port(endpoint, port))

    def listen(self, backlog: int = 128) -> None:
        """Accept connections; an unbound socket gets an ephemeral port first."""
        self._check_open()
        backlog = max(backlog, 0)
        if self._phase is _Phase.LISTENING:
            listener = self._listener
            assert listener is not None

            def resize(now: int) -> None:
                listener.backlog = max(backlog, 1)  # like Linux: listen() again resizes

            self._call(resize)
            return
        if self._phase is not _Phase.IDLE or self._conn is not None:
            raise _error(errno.EINVAL, "socket is connected")
        if self._local is None:
            self.bind(("", 0))
        endpoint = self._resolve()
        assert self._local is not None
        port = self._local[1]
        config = self._default_config().with_changes(**self._changes)

        def start(now: int) -> Listener:
            try:
                return endpoint.listen(
                    port, backlog, config=config, now=now, reuse_address=self._reuse
                )
            except AddressInUse as error:
                raise _error(errno.EADDRINUSE, error.reason) from None

        self._listener = self._call(start)
        self._phase = _Phase.LISTENING

    def accept(self) -> tuple[Socket, Address]:
        """The next established connection: (new socket, (peer ip, peer port))."""
        self._check_open()
        listener = self._listener
        if self._phase is not _Phase.LISTENING or listener is None:
            raise _error(errno.EINVAL, "socket is not listening")
        endpoint = self._resolve()
        deadline = self._deadline()
        while True:
            self._block(lambda: bool(listener.accept_queue), deadline)

            def take(now: int) -> Connection | None:
                try:
                    return endpoint.accept(listener.port)
                except InvalidOperation:
                    raise _error(errno.EINVAL, "socket is not listening") from None

            conn = self._call(take)
            if conn is not None:
                break
        child = Socket(self._driver, self._family, _std.SOCK_STREAM, self._proto)
        child._address = self._address
        child._endpoint = endpoint
        child._reuse = self._reuse
        child._changes = dict(self._changes)
        child._local = (conn.local_ip, conn.local_port)
        child._conn = conn
        child._phase = _Phase.CONNECTED
        self._call(lambda now: child._sync())
        return child, (conn.remote_ip, conn.remote_port)

    # ------------------------------------------------------------------ active side

    def connect(self, address: Address | tuple[str, int, int, int]) -> None:
        """Active open; blocks until established (or raises the stdlib's error:
        ConnectionRefusedError, TimeoutError(ETIMEDOUT), BlockingIOError(EINPROGRESS)
        when non-blocking, TimeoutError('timed out') at the socket timeout)."""
        self._check_open()
        host, port = self._parse(address, "connect")
        if self._phase is _Phase.CONNECTED or self._phase is _Phase.LISTENING:
            raise _error(errno.EISCONN)
        if self._phase is _Phase.CONNECTING:
            self._finish_connect(self._deadline(), errno.EALREADY)
            return
        if not host:
            raise _error(errno.EINVAL, "connect() needs a host")
        endpoint = self._resolve()
        config = self._default_config().with_changes(**self._changes)

        def start(now: int) -> Connection:
            local_port = self._local[1] if self._local is not None else None
            if local_port is None:
                local_port = self._hold_port(endpoint, 0)
            try:
                return endpoint.connect(host, port, now=now, local_port=local_port, config=config)
            except AddressInUse as error:
                # A 4-tuple still in TIME_WAIT is refused even with SO_REUSEADDR, as on
                # Linux (whose connect() says EADDRNOTAVAIL there unless tcp_tw_reuse
                # and timestamps allow it); SO_REUSEADDR only frees bind() and listen().
                if error.state is State.TIME_WAIT:
                    raise _error(errno.EADDRNOTAVAIL, error.reason) from None
                raise _error(errno.EADDRINUSE, error.reason) from None

        self._conn = self._call(start)
        self._close_seen = False
        self._pending_error = 0
        self._shut_rd = self._shut_wr = False
        self._phase = _Phase.CONNECTING
        self._finish_connect(self._deadline(), errno.EINPROGRESS)

    def _finish_connect(self, deadline: int | None, would_block: int) -> None:
        conn = self._conn
        assert conn is not None

        def done() -> bool:
            self._sync()
            return conn.state not in _HANDSHAKE

        try:
            self._block(done, deadline)
        except BlockingIOError:
            raise _error(would_block) from None
        if self._call(self._state_after_sync) is State.CLOSED:
            # Failed: the socket may connect again (Linux keeps it bound).
            self._phase = _Phase.IDLE
            self._conn = None
            code = self._take_error() or errno.ECONNABORTED
            raise _error(code)
        self._phase = _Phase.CONNECTED

    def connect_ex(self, address: Address | tuple[str, int, int, int]) -> int:
        """connect() returning the errno instead of raising it (0 = connected).

        As the stdlib's, a socket timeout gives EWOULDBLOCK (EAGAIN); address errors
        (TypeError, OverflowError) still raise.
        """
        try:
            self.connect(address)
        except OSError as error:
            if error.errno is None:
                return errno.EWOULDBLOCK
            return error.errno
        return 0

    # ------------------------------------------------------------------ data

    def _connected(self, call: str) -> Connection:
        self._check_open()
        conn = self._conn
        if conn is None or self._phase not in (_Phase.CONNECTING, _Phase.CONNECTED):
            # Linux: sending on a TCP socket that never connected (or a listener) fails
            # with EPIPE (tcp_sendmsg -> sk_stream_wait_connect), receiving with ENOTCONN.
            code = errno.EPIPE if call.startswith("send") else errno.ENOTCONN
            raise _error(code, f"{call}() on an unconnected socket")
        return conn

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Up to `bufsize` bytes; b'' at end of stream (after the peer's FIN and the
        buffer drained, after shutdown(SHUT_RD), or once a reset was reported)."""
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        conn = self._connected("recv")
        if flags & _std.MSG_OOB:
            raise _error(errno.EINVAL, "urgent data is read in line (SO_OOBINLINE)")
        if flags & ~_FLAGS_ALLOWED:
            raise _error(errno.EOPNOTSUPP, f"recv flags {flags:#x}")

        def readable() -> bool:
            self._sync()
            return bool(
                conn.receive_buffered
                or conn.peer_closed
                or conn.state is State.CLOSED
                or self._pending_error
                or self._shut_rd
            )

        self._block(readable, self._deadline())
        return self._call(lambda now: self._take(conn, bufsize, now))

    def _take(self, conn: Connection, bufsize: int, now: int) -> bytes:
        self._sync()
        if conn.receive_buffered:
            urgent = conn.urgent_remaining
            if urgent > 1:
                # Like Linux's tcp_recvmsg: a read stops just before the last urgent
                # octet (the mark), so sockatmark() can tell the reader it got there.
                bufsize = min(bufsize, urgent - 1)
            return conn.receive(bufsize, now=now) if bufsize else b""
        if not conn.peer_closed:
            # After the peer's FIN, end of stream wins over a later reset (Linux checks
            # SOCK_DONE before sk_err); send() still reports it.
            self._raise_pending()
        return b""

    def sockatmark(self) -> bool:
        """True when the next byte recv() returns is the peer's last urgent octet (the
        BSD "mark"; sockatmark(3), Linux's SIOCATMARK). Reads stop just before it."""
        conn = self._connected("sockatmark")
        return self._call(lambda now: conn.urgent_remaining == 1)

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        """recv() into `buffer` (at most `nbytes`, 0 = its length); returns the count."""
        view = memoryview(buffer).cast("B")
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        if nbytes == 0:
            nbytes = len(view)
        elif nbytes > len(view):
            raise ValueError("buffer too small for requested bytes")
        data = self.recv(nbytes, flags)
        view[: len(data)] = data
        return len(data)

    def _writable(self, conn: Connection) -> Callable[[], bool]:
        def writable() -> bool:
            self._sync()
            state = conn.state
            return bool(
                self._pending_error
                or self._shut_wr
                or (state not in _HANDSHAKE and (state not in _CAN_SEND or conn.send_space > 0))
            )

        return writable

    def _push(
        self, conn: Connection, view: memoryview, partial: bool, now: int, *, urgent: bool = False
    ) -> int:
        """Queue what fits; raise the pending error / EPIPE unless some bytes already
        went in this call (then return 0 and report the error next time, as Linux)."""
        self._sync()
        if self._pending_error or self._shut_wr or conn.state not in _CAN_SEND:
            if partial:
                return 0
            self._raise_pending()
            raise _error(errno.EPIPE)
        chunk = bytes(view[: conn.send_space])
        if not chunk:
            return 0
        try:
            return conn.send(chunk, now=now, urgent=urgent)
        except InvalidOperation:
            if partial:
                return 0
            raise _error(errno.EPIPE) from None

    def send(self, data: ReadableBuffer, flags: int = 0) -> int:
        """Queue bytes; returns how many were taken.

        Blocking (no timeout): waits until all are queued (as Linux). With a timeout:
        waits for room once, then takes what fits. Non-blocking: takes what fits, or
        BlockingIOError(EAGAIN). BrokenPipeError after shutdown(SHUT_WR); after a reset
        the first call reports ConnectionResetError, later ones BrokenPipeError.
        MSG_OOB sends the bytes as urgent data (RFC 9293 3.8.5; the urgent pointer
        follows the last byte queued, as Linux marks it).
        """
        conn = self._connected("send")
        if flags & ~_SEND_FLAGS_ALLOWED:
            raise _error(errno.EOPNOTSUPP, f"send flags {flags:#x}")
        urgent = bool(flags & _std.MSG_OOB)
        view = memoryview(data).cast("B")
        deadline = self._deadline()
        writable = self._writable(conn)
        total = 0
        while True:
            try:
                self._block(writable, deadline)
            except (BlockingIOError, TimeoutError):
                if total:
                    return total
                raise
            sent = self._call(
                functools.partial(self._push, conn, view[total:], total > 0, urgent=urgent)
            )
            total += sent
            if total >= len(view) or self._timeout is not None or (sent == 0 and total):
                return total

    def sendall(self, data: ReadableBuffer, flags: int = 0) -> None:
        """Queue every byte, blocking as needed; the timeout bounds the whole call."""
        conn = self._connected("sendall")
        if flags & ~_SEND_FLAGS_ALLOWED:
            raise _error(errno.EOPNOTSUPP, f"send flags {flags:#x}")
        urgent = bool(flags & _std.MSG_OOB)
        view = memoryview(data).cast("B")
        deadline = self._deadline()
        writable = self._writable(conn)
        total = 0
        while True:
            self._block(writable, deadline)
            total += self._call(
                functools.partial(self._push, conn, view[total:], False, urgent=urgent)
            )
            if total >= len(view):
                return

    def shutdown(self, how: int) -> None:
        """SHUT_WR sends our FIN after the queued data; SHUT_RD makes recv() return
        b'' once the buffer is drained; SHUT_RDWR both."""
        self._check_open()
        if how not in (_std.SHUT_RD, _std.SHUT_WR, _std.SHUT_RDWR):
            raise _error(errno.EINVAL, f"shutdown how={how}")
        conn = self._connected("shutdown")
        if self._call(self._state_after_sync) is State.CLOSED:
            raise _error(errno.ENOTCONN)
        if how in (_std.SHUT_RD, _std.SHUT_RDWR):
            self._shut_rd = True
        if how in (_std.SHUT_WR, _std.SHUT_RDWR) and not self._shut_wr:
            self._shut_wr = True

            def fin(now: int) -> None:
                # Already closing: shutdown() again is a no-op, as on Linux.
                with contextlib.suppress(InvalidOperation):
                    conn.shutdown(now=now)

            self._call(fin)

    def close(self) -> None:
        """Release the socket; idempotent.

        A connection closes in the background (FIN, then FIN_WAIT/TIME_WAIT in the
        stack). SO_LINGER {1, 0} resets it instead; SO_LINGER {1, N} makes close() wait
        up to N seconds for our FIN to be acknowledged (in every mode, like Linux) and
        then return, the stack going on closing normally.
        """
        if self._closed:
            return
        self._closed = True
        if self._endpoint is not None:
            self._call(lambda now: self._release_port())
        listener = self._listener
        if self._phase is _Phase.LISTENING and listener is not None:
            endpoint = self._endpoint
            assert endpoint is not None

            def stop(now: int) -> None:
                if endpoint.listeners.get(listener.port) is listener:
                    endpoint.close_listener(listener.port, now=now)

            self._call(stop)
            return
        conn = self._conn
        if conn is None:
            return

        def release(now: int) -> int | None:
            self._sync()
            if conn.state is State.CLOSED:
                return None
            linger = conn.config.linger
            # Already closing (shutdown, or the stack got there first): nothing to do.
            with contextlib.suppress(InvalidOperation):
                conn.close(now=now)
            return linger

        linger = self._call(release)
        if linger:
            self._driver.wait_until(lambda: conn.state in _FIN_DONE, linger)

    def __enter__(self) -> Socket:
        return self

    def __exit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ options

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        """Set an option, with the stdlib's names and Linux's units.

        SOL_SOCKET: SO_KEEPALIVE, SO_LINGER (struct.pack('ii', onoff, seconds)),
        SO_REUSEADDR, SO_RCVBUF and SO_SNDBUF (bytes; the value is the buffer size,
        not doubled as Linux does; clamped to 1 KiB .. 1 GiB). IPPROTO_TCP: TCP_NODELAY,
        TCP_KEEPIDLE / TCP_KEEPINTVL (s), TCP_KEEPCNT, TCP_USER_TIMEOUT (ms),
        TCP_LINGER2 (s; 0 = the stack's default, < 0 = an orphan's FIN_WAIT_2 ends at
        once), TCP_MAXSEG (88..32767, 0 = default), TCP_QUICKACK (stays on until
        cleared). Options set before connect()/listen() go into the connection's
        Config; later ones reconfigure it (Connection.configure) or, on a listener,
        apply to connections it accepts from then on.

        SO_REUSEADDR: bind() then ignores connections on the port (TIME_WAIT
        included) and other SO_REUSEADDR sockets that are not listening.
        """
        self._check_open()
        key = (level, option)
        if key == (_SOL_SOCKET, _std.SO_REUSEADDR):
            self._reuse = option_int(value, "SO_REUSEADDR") != 0
            return
        if key == (_SOL_SOCKET, _std.SO_OOBINLINE):
            if option_int(value, "SO_OOBINLINE") == 0:
                raise option_error(errno.ENOPROTOOPT, "urgent data is always read in line")
            return
        spec = CONFIG_OPTIONS.get(key)
        if spec is None:
            raise option_error(errno.ENOPROTOOPT, f"level {level} option {option}")
        changes = spec.to_changes(value, self._default_config())
        self._changes.update(changes)
        listener, conn = self._listener, self._conn

        def apply(now: int) -> None:
            if listener is not None and listener.config is not None:
                listener.config = listener.config.with_changes(**changes)
            if conn is not None and conn.state is not State.CLOSED:
                conn.configure(now=now, **changes)

        self._call(apply)

    @overload
    def getsockopt(self, level: int, option: int) -> int | TcpInfo: ...

    @overload
    def getsockopt(self, level: int, option: int, buflen: int) -> bytes | TcpInfo: ...

    def getsockopt(
        self, level: int, option: int, buflen: int | None = None
    ) -> int | bytes | TcpInfo:
        """An option's value: an int, or its bytes when `buflen` is given (SO_LINGER
        as struct linger). SO_ERROR reports and clears the pending error.
        (IPPROTO_TCP, TCP_INFO) returns a `TcpInfo` object, not Linux's struct bytes.
        """
        self._check_open()
        key = (level, option)
        if key == (_IPPROTO_TCP, _std.TCP_INFO):
            return self.tcp_info()
        if buflen is not None and not 0 < buflen <= 1024:
            raise _error(errno.EINVAL, "getsockopt buflen out of range")
        value: int
        if key == (_SOL_SOCKET, _std.SO_REUSEADDR):
            value = int(self._reuse)
        elif key == (_SOL_SOCKET, _std.SO_OOBINLINE):
            value = 1  # urgent data is always read in line
        elif key == (_SOL_SOCKET, _std.SO_ERROR):
            value = self._call(self._so_error)
        elif key == (_SOL_SOCKET, _std.SO_LINGER) and buflen is not None:
            return linger_bytes(self._config())[:buflen]
        elif key == (_IPPROTO_TCP, _std.TCP_MAXSEG) and (mss := self._call(self._mss_in_use)):
            value = mss
        else:
            spec = CONFIG_OPTIONS.get(key)
            if spec is None:
                raise option_error(errno.ENOPROTOOPT, f"level {level} option {option}")
            value = spec.from_config(self._config())
        if buflen is None:
            return value
        return struct.pack("i", value)[:buflen]

    def _so_error(self, now: int) -> int:
        self._sync()
        return self._take_error()

    def _mss_in_use(self, now: int) -> int | None:
        """Connected: the MSS segments carry (after options), as Linux reports it."""
        conn = self._conn
        if conn is None or conn.state in _HANDSHAKE or conn.state is State.CLOSED:
            return None
        return conn.effective_mss

    def tcp_info(self) -> TcpInfo:
        """getsockopt(IPPROTO_TCP, TCP_INFO) with its precise type."""
        self._check_open()
        conn = self._conn
        if conn is not None:
            return self._call(lambda now: snapshot(conn, now))
        state = "LISTEN" if self._phase is _Phase.LISTENING else "CLOSED"
        return TcpInfo(state=state, now=self._driver.now())


def socket(
    family: int = _std.AF_INET,
    type: int = _std.SOCK_STREAM,
    proto: int = 0,
    *,
    driver: Driver | None = None,
    address: str | None = None,
) -> Socket:
    """A new TCP socket over `driver` (default: set_default_driver()'s).

    `address` picks the local endpoint (IP) it lives on; without it, bind() to an IP or
    the driver's default endpoint decides.
    """
    chosen = driver if driver is not None else _default_driver
    if chosen is None:
        raise RuntimeError("no driver: pass driver= or call set_default_driver() first")
    return Socket(chosen, family, type, proto, address=address)
