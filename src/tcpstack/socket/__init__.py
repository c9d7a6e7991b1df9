"""tcpstack.socket: a blocking, stdlib-shaped TCP socket API over any driver.

    from tcpstack import socket as tsock

    driver = tsock.SimDriver(network)          # or a real-network driver
    srv = tsock.socket(driver=driver, address="10.0.0.2")
    srv.bind(("", 80))
    srv.listen()
    cli = tsock.socket(driver=driver, address="10.0.0.1")
    cli.connect(("10.0.0.2", 80))              # runs the simulator until established
    conn, peer = srv.accept()
    cli.sendall(b"hello")
    assert conn.recv(5) == b"hello"

What matches the stdlib: method names and signatures (bind, listen, accept, connect,
connect_ex, send, sendall, recv, recv_into, shutdown, close, settimeout/gettimeout,
setblocking/getblocking, getsockname/getpeername, context manager), the constants
(re-exported from Python's own `socket` module, same values), and the errors: the
stdlib's exception classes with their errno (ConnectionRefusedError/ECONNREFUSED,
ConnectionResetError/ECONNRESET, TimeoutError/ETIMEDOUT when TCP gives up,
BrokenPipeError/EPIPE, BlockingIOError/EAGAIN or EINPROGRESS, OSError with ENOTCONN,
EISCONN, EALREADY, EADDRINUSE, EINVAL, EBADF). A socket timeout raises
TimeoutError('timed out') with no errno, like the stdlib's `socket.timeout`.

What differs: no file descriptors (no fileno, makefile, select); addresses are IP
literals (no name resolution) and always (ip, port) pairs; getsockopt(IPPROTO_TCP,
TCP_INFO) returns a `TcpInfo` Python object, not Linux's struct bytes; SO_RCVBUF and
SO_SNDBUF are not doubled; see `Socket.setsockopt` for every option's units.

The driver (`Driver`, `SimDriver`) runs the stack and owns the clock; its module
documents the thread-safety contract a real-network driver implements.
"""

from socket import (
    AF_INET,
    AF_INET6,
    IPPROTO_TCP,
    MSG_NOSIGNAL,
    MSG_OOB,
    SHUT_RD,
    SHUT_RDWR,
    SHUT_WR,
    SO_ERROR,
    SO_KEEPALIVE,
    SO_LINGER,
    SO_OOBINLINE,
    SO_RCVBUF,
    SO_REUSEADDR,
    SO_SNDBUF,
    SOCK_STREAM,
    SOL_SOCKET,
    SOMAXCONN,
    TCP_INFO,
    TCP_KEEPCNT,
    TCP_KEEPIDLE,
    TCP_KEEPINTVL,
    TCP_LINGER2,
    TCP_MAXSEG,
    TCP_NODELAY,
    TCP_QUICKACK,
    TCP_USER_TIMEOUT,
    AddressFamily,
    SocketKind,
)

from tcpstack.socket.api import (
    Address,
    Socket,
    get_default_driver,
    getdefaulttimeout,
    set_default_driver,
    setdefaulttimeout,
    socket,
)
from tcpstack.socket.driver import DEFAULT_MAX_BLOCK, Driver, SimDriver, WouldBlockForever
from tcpstack.socket.info import TcpInfo

# The stdlib's aliases.
error = OSError
timeout = TimeoutError

__all__ = [
    "AF_INET",
    "AF_INET6",
    "DEFAULT_MAX_BLOCK",
    "IPPROTO_TCP",
    "MSG_NOSIGNAL",
    "MSG_OOB",
    "SHUT_RD",
    "SHUT_RDWR",
    "SHUT_WR",
    "SOCK_STREAM",
    "SOL_SOCKET",
    "SOMAXCONN",
    "SO_ERROR",
    "SO_KEEPALIVE",
    "SO_LINGER",
    "SO_OOBINLINE",
    "SO_RCVBUF",
    "SO_REUSEADDR",
    "SO_SNDBUF",
    "TCP_INFO",
    "TCP_KEEPCNT",
    "TCP_KEEPIDLE",
    "TCP_KEEPINTVL",
    "TCP_LINGER2",
    "TCP_MAXSEG",
    "TCP_NODELAY",
    "TCP_QUICKACK",
    "TCP_USER_TIMEOUT",
    "Address",
    "AddressFamily",
    "Driver",
    "SimDriver",
    "Socket",
    "SocketKind",
    "TcpInfo",
    "WouldBlockForever",
    "error",
    "get_default_driver",
    "getdefaulttimeout",
    "set_default_driver",
    "setdefaulttimeout",
    "socket",
    "timeout",
]
