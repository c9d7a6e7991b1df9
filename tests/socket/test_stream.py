"""The stdlib-shaped socket over the simulator: data, closing, errors, timeouts."""

from __future__ import annotations

import errno

import pytest

from tcpstack import socket as ts
from tcpstack.core.state import State
from tests.socket.support import MS, PORT, SECOND, A, B, make_net


def test_echo_exchange_and_clean_close() -> None:
    net = make_net()
    listener = net.server()
    client = net.client()
    client.connect((B, PORT))
    server, peer = listener.accept()
    assert peer == client.getsockname()
    assert client.getpeername() == (B, PORT) == server.getsockname()
    assert server.getpeername() == client.getsockname()

    message = bytes(range(256)) * 400  # 102,400 bytes: many segments each way
    client.sendall(message)
    received = bytearray()
    while len(received) < len(message):
        chunk = server.recv(65536)
        assert chunk
        received += chunk
    server.sendall(received)
    echoed = bytearray()
    while len(echoed) < len(message):
        echoed += client.recv(65536)
    assert echoed == message

    client.close()
    assert server.recv(1024) == b""  # the client's FIN: end of stream
    assert server.recv(1024) == b""  # and it stays there
    server.close()
    listener.close()
    net.driver.run_for(100 * MS)
    assert client.connection is not None and server.connection is not None
    assert client.connection.state is State.TIME_WAIT  # the active closer waits 2*MSL
    assert server.connection.state is State.CLOSED
    assert server.connection.close_reason is not None
    assert server.connection.close_reason.value == "normal"


def test_recv_into_and_context_manager() -> None:
    net = make_net()
    client, server, listener = net.pair()
    with client, server, listener:
        client.sendall(b"abcdefgh")
        buffer = bytearray(16)
        assert server.recv_into(buffer, 3) == 3
        assert buffer[:3] == b"abc"
        view = memoryview(buffer)[4:]
        assert server.recv_into(view) == 5
        assert buffer[4:9] == b"defgh"
        with pytest.raises(ValueError):
            server.recv_into(bytearray(2), 3)
    with pytest.raises(OSError) as info:
        client.recv(1)
    assert info.value.errno == errno.EBADF
    client.close()  # idempotent


def test_connect_to_closed_port_is_refused() -> None:
    net = make_net()
    client = net.client()
    with pytest.raises(ConnectionRefusedError) as info:
        client.connect((B, 9))
    assert info.value.errno == errno.ECONNREFUSED
    assert net.now == 20 * MS  # SYN out, RST back: one round trip
    # A refused socket may connect again (Linux keeps it bound).
    net.server(9)
    client.connect((B, 9))
    assert client.getpeername() == (B, 9)


def test_connect_ex_returns_errno() -> None:
    net = make_net()
    assert net.client().connect_ex((B, 9)) == errno.ECONNREFUSED
    net.server()
    client = net.client()
    assert client.connect_ex((B, PORT)) == 0
    assert client.connect_ex((B, PORT)) == errno.EISCONN


def test_peer_abort_is_connection_reset() -> None:
    net = make_net()
    client, server, _ = net.pair()
    assert server.connection is not None
    server.setsockopt(ts.SOL_SOCKET, ts.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    server.close()
    with pytest.raises(ConnectionResetError) as info:
        client.recv(100)
    assert info.value.errno == errno.ECONNRESET
    assert client.recv(100) == b""  # reported once; then the stream is over
    with pytest.raises(BrokenPipeError) as pipe:
        client.send(b"x")
    assert pipe.value.errno == errno.EPIPE


def test_send_after_reset_reports_reset_then_broken_pipe() -> None:
    net = make_net()
    client, server, _ = net.pair()
    assert server.connection is not None
    server.connection.abort(now=net.now)
    net.driver.run_for(50 * MS)
    with pytest.raises(ConnectionResetError):
        client.send(b"x")  # Linux: the pending ECONNRESET first
    with pytest.raises(BrokenPipeError):
        client.send(b"x")
    with pytest.raises(BrokenPipeError):
        client.sendall(b"x")


def test_data_before_reset_is_still_readable() -> None:
    net = make_net()
    client, server, _ = net.pair()
    server.sendall(b"last words")
    net.driver.run_for(50 * MS)
    assert server.connection is not None
    server.connection.abort(now=net.now)
    net.driver.run_for(50 * MS)
    assert client.recv(100) == b"last words"
    with pytest.raises(ConnectionResetError):
        client.recv(100)


def test_recv_timeout_fires_at_the_exact_virtual_deadline() -> None:
    net = make_net()
    client, _server, _ = net.pair()
    client.settimeout(2.5)
    assert client.gettimeout() == 2.5
    start = net.now
    with pytest.raises(TimeoutError) as info:
        client.recv(100)
    assert info.value.errno is None  # socket.timeout, not ETIMEDOUT
    assert str(info.value) == "timed out"
    assert net.now == start + 2_500_000
    assert isinstance(info.value, ts.timeout)


def test_recv_returns_as_soon_as_data_arrives() -> None:
    net = make_net()
    client, server, _ = net.pair()
    client.settimeout(5)
    server.send(b"hi")
    start = net.now
    assert client.recv(100) == b"hi"
    assert net.now == start + 10 * MS


def test_non_blocking_recv_accept_and_connect() -> None:
    net = make_net()
    listener = net.server()
    listener.setblocking(False)
    assert not listener.getblocking()
    with pytest.raises(BlockingIOError) as accept_info:
        listener.accept()
    assert accept_info.value.errno == errno.EAGAIN

    client = net.client()
    client.setblocking(False)
    with pytest.raises(BlockingIOError) as connect_info:
        client.connect((B, PORT))
    assert connect_info.value.errno == errno.EINPROGRESS
    assert client.connect_ex((B, PORT)) == errno.EALREADY
    with pytest.raises(BlockingIOError):
        client.recv(10)  # still connecting: EAGAIN, as Linux
    net.driver.run_for(30 * MS)
    assert client.connect_ex((B, PORT)) == 0  # completes the non-blocking connect
    assert client.connect_ex((B, PORT)) == errno.EISCONN
    server, _ = listener.accept()
    start = net.now
    with pytest.raises(BlockingIOError) as recv_info:
        client.recv(10)
    assert recv_info.value.errno == errno.EAGAIN == errno.EWOULDBLOCK
    assert net.now == start  # non-blocking calls never let time pass
    server.send(b"data")
    net.driver.run_for(10 * MS)
    assert client.recv(10) == b"data"


def test_accepted_socket_is_blocking_by_default() -> None:
    net = make_net()
    listener = net.server()
    listener.settimeout(1.0)
    client = net.client()
    client.connect((B, PORT))
    server, _ = listener.accept()
    assert server.gettimeout() is None


def test_accept_timeout() -> None:
    net = make_net()
    listener = net.server()
    listener.settimeout(0.25)
    with pytest.raises(TimeoutError):
        listener.accept()
    assert net.now == 250 * MS


def test_shutdown_write_half_closes() -> None:
    net = make_net()
    client, server, _ = net.pair()
    client.sendall(b"request")
    client.shutdown(ts.SHUT_WR)
    client.shutdown(ts.SHUT_WR)  # again: a no-op
    with pytest.raises(BrokenPipeError) as info:
        client.send(b"more")
    assert info.value.errno == errno.EPIPE
    assert server.recv(100) == b"request"
    assert server.recv(100) == b""
    server.sendall(b"response")  # the other direction still flows
    server.close()
    assert client.recv(100) == b"response"
    assert client.recv(100) == b""


def test_shutdown_read_makes_recv_return_eof() -> None:
    net = make_net()
    client, server, _ = net.pair()
    server.sendall(b"queued")
    net.driver.run_for(20 * MS)
    client.shutdown(ts.SHUT_RD)
    assert client.recv(100) == b"queued"  # what was already received is still read
    client.settimeout(1.0)
    start = net.now
    assert client.recv(100) == b""  # then end of stream at once, no waiting
    assert net.now == start


def test_errors_on_unconnected_and_misused_sockets() -> None:
    net = make_net()
    fresh = net.client()
    for call in (lambda: fresh.recv(1), lambda: fresh.getpeername()):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.ENOTCONN
    # Sending on a socket that never connected is EPIPE on Linux, as for the stdlib
    # socket: BrokenPipeError.
    for send in (lambda: fresh.send(b"x"), lambda: fresh.sendall(b"x")):
        with pytest.raises(BrokenPipeError) as pipe:
            send()
        assert pipe.value.errno == errno.EPIPE
    with pytest.raises(OSError) as shut:
        fresh.shutdown(ts.SHUT_WR)
    assert shut.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as not_listening:
        fresh.accept()
    assert not_listening.value.errno == errno.EINVAL
    with pytest.raises(OSError) as bad_how:
        fresh.shutdown(7)
    assert bad_how.value.errno == errno.EINVAL
    with pytest.raises(OverflowError):
        fresh.bind(("", 70000))
    with pytest.raises(TypeError):
        fresh.connect("10.0.0.2:80")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fresh.recv(-1)
    with pytest.raises(ValueError):
        fresh.settimeout(-1)

    listener = net.server()
    with pytest.raises(OSError) as on_listener:
        listener.connect((B, PORT))
    assert on_listener.value.errno == errno.EISCONN
    with pytest.raises(OSError) as recv_listener:
        listener.recv(1)
    assert recv_listener.value.errno == errno.ENOTCONN
    with pytest.raises(BrokenPipeError):
        listener.send(b"x")

    client, _, _ = net.pair(8080)
    with pytest.raises(OSError) as twice:
        client.connect((B, 8080))
    assert twice.value.errno == errno.EISCONN
    with pytest.raises(OSError) as bind_late:
        client.bind(("", 5000))
    assert bind_late.value.errno == errno.EINVAL
    with pytest.raises(OSError) as listen_late:
        client.listen()
    assert listen_late.value.errno == errno.EINVAL


def test_address_in_use() -> None:
    net = make_net()
    net.server()
    second = net.server(listen=False)
    with pytest.raises(OSError) as info:
        second.bind(("", PORT))
    assert info.value.errno == errno.EADDRINUSE
    # Two sockets bound to one port may not both listen, even with SO_REUSEADDR.
    one, two = net.server(listen=False), net.server(listen=False)
    one.setsockopt(ts.SOL_SOCKET, ts.SO_REUSEADDR, 1)
    two.setsockopt(ts.SOL_SOCKET, ts.SO_REUSEADDR, 1)
    one.bind(("", 81))
    two.bind(("", 81))
    one.listen()
    with pytest.raises(OSError) as listen_info:
        two.listen()
    assert listen_info.value.errno == errno.EADDRINUSE
    # connect() from a bound port onto a 4-tuple that is still in use.
    net.server(90)
    first = net.client()
    first.bind(("", 5000))
    first.connect((B, 90))
    clash = net.client()
    clash.setsockopt(ts.SOL_SOCKET, ts.SO_REUSEADDR, 1)
    first.setsockopt(ts.SOL_SOCKET, ts.SO_REUSEADDR, 1)
    clash.bind(("", 5000))
    with pytest.raises(OSError) as connect_info:
        clash.connect((B, 90))
    assert connect_info.value.errno == errno.EADDRINUSE


def test_bind_names() -> None:
    net = make_net()
    sock = net.client()
    assert sock.getsockname() == ("0.0.0.0", 0)
    sock.bind((A, 0))
    ip, port = sock.getsockname()
    assert ip == A and 32768 <= port <= 60999
    with pytest.raises(OSError) as info:
        sock.bind((A, 0))
    assert info.value.errno == errno.EINVAL
    unknown = ts.socket(driver=net.driver)
    with pytest.raises(OSError) as no_address:
        unknown.bind(("10.9.9.9", 1))
    assert no_address.value.errno == errno.EADDRNOTAVAIL
    assert sock.family == ts.AF_INET and sock.type == ts.SOCK_STREAM
    assert "laddr" in repr(sock)


def test_listen_without_bind_gets_an_ephemeral_port() -> None:
    net = make_net()
    listener = ts.socket(driver=net.driver, address=B)
    listener.listen(5)
    _, port = listener.getsockname()
    client = net.client()
    client.connect((B, port))
    server, _ = listener.accept()
    assert server.getsockname() == (B, port)


def test_listener_close_resets_unaccepted_connections() -> None:
    net = make_net()
    listener = net.server()
    client = net.client()
    client.connect((B, PORT))
    listener.close()
    with pytest.raises(ConnectionResetError):
        client.recv(10)
    again = net.server()  # the port is free again
    assert again.getsockname() == (B, PORT)


def test_sendall_blocks_until_the_peer_reads() -> None:
    net = make_net()
    client, server, _ = net.pair()
    client.setsockopt(ts.SOL_SOCKET, ts.SO_SNDBUF, 8192)
    server.setsockopt(ts.SOL_SOCKET, ts.SO_RCVBUF, 8192)
    client.settimeout(1.0)
    # More than both buffers hold: sendall waits, then the socket timeout fires.
    with pytest.raises(TimeoutError):
        client.sendall(b"x" * 100_000)
    # A blocking send of what fits returns the count, as Linux does.
    client.settimeout(None)
    assert server.recv(100_000)
    assert client.send(b"y" * 10) == 10


def test_blocking_forever_is_reported_not_hung() -> None:
    net = make_net()
    client, _server, _ = net.pair()
    with pytest.raises(ts.WouldBlockForever):
        client.recv(10)  # an idle connection: nothing will ever arrive
    assert net.now < SECOND


def test_default_driver_and_default_timeout() -> None:
    net = make_net()
    with pytest.raises(RuntimeError):
        ts.socket()
    ts.set_default_driver(net.driver)
    ts.setdefaulttimeout(3)
    try:
        assert ts.get_default_driver() is net.driver
        sock = ts.socket(ts.AF_INET, ts.SOCK_STREAM, address=A)
        assert sock.gettimeout() == 3.0
    finally:
        ts.set_default_driver(None)
        ts.setdefaulttimeout(None)
    with pytest.raises(OSError) as info:
        ts.socket(ts.AF_INET6, driver=net.driver, address=A).bind(("", 1))
    assert info.value.errno == errno.EAFNOSUPPORT


def test_connect_to_a_silent_host_times_out_after_the_syn_retries() -> None:
    net = make_net()
    net.blackhole()
    client = net.client()
    with pytest.raises(TimeoutError) as info:
        client.connect((B, PORT))
    assert info.value.errno == errno.ETIMEDOUT
    # Linux's tcp_syn_retries = 6 from a 1 s RTO: 1 + 2 + 4 + ... + 64 = 127 s.
    assert net.now == 127 * SECOND
    assert len(net.segments_from(A)) == 7


def test_socket_timeout_during_connect_leaves_it_connecting() -> None:
    net = make_net()
    net.server()
    client = net.client()
    client.settimeout(0.005)
    with pytest.raises(TimeoutError) as info:
        client.connect((B, PORT))
    assert info.value.errno is None
    assert client.connect_ex((B, PORT)) == errno.EWOULDBLOCK  # still not there at 10 ms
    client.settimeout(None)
    client.connect((B, PORT))  # a blocking connect() waits for the same handshake
    assert client.getpeername() == (B, PORT)


def test_reset_after_the_peers_fin_is_end_of_stream_then_broken_pipe() -> None:
    net = make_net()
    client, server, _ = net.pair()
    client.shutdown(ts.SHUT_WR)
    assert server.recv(10) == b""  # CLOSE_WAIT
    assert client.connection is not None
    client.connection.abort(now=net.now)
    net.driver.run_for(50 * MS)
    assert server.tcp_info().state == "CLOSED"
    assert server.recv(10) == b""
    with pytest.raises(BrokenPipeError):  # Linux's tcp_reset in CLOSE_WAIT: EPIPE
        server.send(b"late")


def test_connect_onto_a_four_tuple_in_time_wait_is_refused_even_with_reuseaddr() -> None:
    """SO_REUSEADDR lets bind() take the port, but the 4-tuple itself is held until
    2*MSL ends (RFC 9293 3.4.2); Linux's connect() then fails with EADDRNOTAVAIL."""
    net = make_net()
    client, server, listener = net.pair()
    port = client.getsockname()[1]
    client.close()
    server.close()
    net.driver.run_for(100 * MS)
    assert client.connection is not None
    assert client.connection.state is State.TIME_WAIT
    again = net.client()
    again.setsockopt(ts.SOL_SOCKET, ts.SO_REUSEADDR, 1)
    again.bind((A, port))
    with pytest.raises(OSError) as raised:
        again.connect((B, PORT))
    assert raised.value.errno == errno.EADDRNOTAVAIL
    # After 2*MSL the same 4-tuple connects.
    net.driver.run_for(60 * SECOND)
    assert client.connection.state_history[-1] is State.CLOSED
    again.connect((B, PORT))
    assert again.getsockname() == (A, port)
    listener.close()


def test_send_msg_oob_marks_urgent_data_read_in_line() -> None:
    """MSG_OOB sends urgent data (RFC 9293 3.8.5): the receiver gets every byte in
    order (SO_OOBINLINE semantics, the only ones here), learns how much of it is urgent
    and where the mark is (sockatmark); recv(MSG_OOB) is EINVAL, as on Linux with
    SO_OOBINLINE set."""
    net = make_net()
    client, server, listener = net.pair()
    with client, server, listener:
        client.sendall(b"normal ")
        assert client.send(b"URGENT", ts.MSG_OOB) == 6
        assert client.connection is not None and server.connection is not None
        net.driver.run_for(100 * MS)
        assert server.connection.receive_buffered == 13
        # The bytes up to and including the last urgent one (MUST-33).
        assert server.connection.urgent_remaining == 13
        assert server.recv(4) == b"norm"
        assert server.connection.urgent_remaining == 9
        assert not server.sockatmark()
        # As on Linux, a read stops just before the last urgent octet (the mark).
        assert server.recv(100) == b"al URGEN"
        assert server.sockatmark()
        assert server.recv(100) == b"T"
        assert server.connection.urgent_remaining == 0
        assert not server.sockatmark()
        with pytest.raises(OSError) as raised:
            server.recv(1, ts.MSG_OOB)
        assert raised.value.errno == errno.EINVAL
        assert server.getsockopt(ts.SOL_SOCKET, ts.SO_OOBINLINE) == 1
        server.setsockopt(ts.SOL_SOCKET, ts.SO_OOBINLINE, 1)
        with pytest.raises(OSError) as refused:
            server.setsockopt(ts.SOL_SOCKET, ts.SO_OOBINLINE, 0)
        assert refused.value.errno == errno.ENOPROTOOPT
        with pytest.raises(OSError) as unsupported:
            client.send(b"x", 0x4)  # MSG_DONTROUTE
        assert unsupported.value.errno == errno.EOPNOTSUPP
