"""Every socket option changes behaviour, not just what getsockopt returns."""

from __future__ import annotations

import errno
import struct

import pytest

from tcpstack import socket as ts
from tcpstack.core.events import CloseReason
from tcpstack.core.segment import Flag
from tcpstack.core.state import State
from tcpstack.sim import drop_where
from tcpstack.socket.info import TcpInfo
from tests.socket.support import DELAY, MS, PORT, SECOND, A, B, is_bare_ack, make_net


def linger(onoff: int, seconds: int) -> bytes:
    return struct.pack("ii", onoff, seconds)


# ---------------------------------------------------------------------- TCP_NODELAY


@pytest.mark.parametrize("when", ["before connect", "after connect"])
@pytest.mark.parametrize("nodelay", [False, True])
def test_nodelay_sends_a_second_small_write_at_once(nodelay: bool, when: str) -> None:
    net = make_net()
    listener = net.server()
    client = net.client()
    if when == "before connect":
        client.setsockopt(ts.IPPROTO_TCP, ts.TCP_NODELAY, int(nodelay))
    client.connect((B, PORT))
    listener.accept()
    if when == "after connect":
        client.setsockopt(ts.IPPROTO_TCP, ts.TCP_NODELAY, int(nodelay))
    assert client.getsockopt(ts.IPPROTO_TCP, ts.TCP_NODELAY) == int(nodelay)
    start = net.now
    client.send(b"a")
    client.send(b"b")
    net.network.flush()
    payloads = [seg.payload for _, seg in net.data_from(A, since=start)]
    # Nagle holds the second small segment until the first is acknowledged.
    assert payloads == ([b"a", b"b"] if nodelay else [b"a"])
    net.driver.run_for(100 * MS)
    later = [(t - start, seg.payload) for t, seg in net.data_from(A, since=start)]
    if not nodelay:
        # The server's delayed ACK (40 ms) comes back at 50 ms; then "b" goes.
        assert later == [(0, b"a"), (DELAY + 40 * MS + DELAY, b"b")]


# ---------------------------------------------------------------------- keepalive


@pytest.mark.parametrize(
    ("idle", "interval", "count"), [(10, 2, 3), (20, 2, 3), (10, 5, 3), (10, 2, 6)]
)
def test_keepalive_declares_a_dead_peer_timed_out(idle: int, interval: int, count: int) -> None:
    net = make_net()
    listener = net.server()
    client = net.client()
    client.setsockopt(ts.SOL_SOCKET, ts.SO_KEEPALIVE, 1)
    client.setsockopt(ts.IPPROTO_TCP, ts.TCP_KEEPIDLE, idle)
    client.setsockopt(ts.IPPROTO_TCP, ts.TCP_KEEPINTVL, interval)
    client.setsockopt(ts.IPPROTO_TCP, ts.TCP_KEEPCNT, count)
    client.connect((B, PORT))
    established = net.now  # the SYN,ACK just arrived: the last thing heard from B
    listener.accept()
    net.blackhole()
    with pytest.raises(TimeoutError) as info:
        client.recv(10)
    assert info.value.errno == errno.ETIMEDOUT
    assert net.now == established + (idle + count * interval) * SECOND
    probes = [seg for _, seg in net.segments_from(A, since=established + SECOND)]
    assert len([s for s in probes if not s.flags & Flag.RST]) == count
    assert client.connection is not None
    assert client.connection.close_reason is CloseReason.KEEPALIVE_TIMEOUT


def test_keepalive_off_leaves_a_dead_peer_undetected() -> None:
    net = make_net()
    client, _, _ = net.pair()
    client.setsockopt(ts.IPPROTO_TCP, ts.TCP_KEEPIDLE, 10)
    client.setsockopt(ts.IPPROTO_TCP, ts.TCP_KEEPINTVL, 2)
    client.setsockopt(ts.IPPROTO_TCP, ts.TCP_KEEPCNT, 3)
    assert client.getsockopt(ts.SOL_SOCKET, ts.SO_KEEPALIVE) == 0
    net.blackhole()
    client.settimeout(60)
    with pytest.raises(TimeoutError) as info:
        client.recv(10)
    assert info.value.errno is None  # only the socket timeout: the connection lives on
    assert net.segments_from(A, since=net.now - 59 * SECOND) == []


def test_keepalive_enabled_after_connect() -> None:
    net = make_net()
    client, _, _ = net.pair()
    client.setsockopt(ts.IPPROTO_TCP, ts.TCP_KEEPIDLE, 30)
    client.setsockopt(ts.IPPROTO_TCP, ts.TCP_KEEPINTVL, 1)
    client.setsockopt(ts.IPPROTO_TCP, ts.TCP_KEEPCNT, 1)
    net.blackhole()
    enabled = net.now
    client.setsockopt(ts.SOL_SOCKET, ts.SO_KEEPALIVE, 1)  # idle counts from now on
    with pytest.raises(TimeoutError):
        client.recv(10)
    assert net.now == enabled + 31 * SECOND


# ---------------------------------------------------------------------- TCP_USER_TIMEOUT


def test_user_timeout_ends_a_connection_with_unacknowledged_data() -> None:
    net = make_net()
    client, _, _ = net.pair()
    client.setsockopt(ts.IPPROTO_TCP, ts.TCP_USER_TIMEOUT, 3000)
    assert client.getsockopt(ts.IPPROTO_TCP, ts.TCP_USER_TIMEOUT) == 3000
    net.blackhole()
    sent_at = net.now
    client.sendall(b"never acknowledged")
    with pytest.raises(TimeoutError) as info:
        client.recv(10)
    assert info.value.errno == errno.ETIMEDOUT
    assert net.now == sent_at + 3 * SECOND
    assert client.connection is not None
    assert client.connection.close_reason is CloseReason.USER_TIMEOUT


def test_without_user_timeout_the_connection_keeps_retransmitting() -> None:
    net = make_net()
    client, _, _ = net.pair()
    net.blackhole()
    client.sendall(b"never acknowledged")
    client.settimeout(10)
    with pytest.raises(TimeoutError) as info:
        client.recv(10)
    assert info.value.errno is None
    assert client.tcp_info().state == "ESTABLISHED"


# ---------------------------------------------------------------------- SO_LINGER


def test_linger_zero_resets_and_skips_time_wait() -> None:
    net = make_net()
    client, server, _ = net.pair()
    client.setsockopt(ts.SOL_SOCKET, ts.SO_LINGER, linger(1, 0))
    assert client.getsockopt(ts.SOL_SOCKET, ts.SO_LINGER, 8) == linger(1, 0)
    client.close()
    with pytest.raises(ConnectionResetError) as info:
        server.recv(10)
    assert info.value.errno == errno.ECONNRESET
    conn = client.connection
    assert conn is not None
    assert conn.state is State.CLOSED
    assert State.TIME_WAIT not in conn.state_history
    assert net.a.connection_count() == 0 and not net.a.time_wait  # the 4-tuple is free


def test_without_linger_the_active_closer_waits_in_time_wait() -> None:
    net = make_net()
    client, server, _ = net.pair()
    client.close()
    assert server.recv(10) == b""
    server.close()
    net.driver.run_for(100 * MS)
    assert client.connection is not None
    assert client.connection.state is State.TIME_WAIT
    assert len(net.a.time_wait) == 1


def test_linger_timeout_makes_close_wait_for_the_ack_of_our_fin() -> None:
    net = make_net()
    client, _, _ = net.pair()
    client.setsockopt(ts.SOL_SOCKET, ts.SO_LINGER, linger(1, 5))
    assert client.getsockopt(ts.SOL_SOCKET, ts.SO_LINGER) == 1
    start = net.now
    client.close()
    # Returned when the FIN's ACK came back; the server delays that ACK (40 ms), as
    # Linux does, hoping to send its own FIN with it.
    assert net.now == start + DELAY + 40 * MS + DELAY
    assert client.connection is not None
    assert client.connection.state is State.FIN_WAIT_2


def test_close_without_linger_returns_at_once() -> None:
    net = make_net()
    client, _, _ = net.pair()
    start = net.now
    client.close()
    assert net.now == start
    assert client.connection is not None
    assert client.connection.state is State.FIN_WAIT_1


def test_linger_timeout_expires_against_a_dead_peer() -> None:
    net = make_net()
    client, _, _ = net.pair()
    client.setsockopt(ts.SOL_SOCKET, ts.SO_LINGER, linger(1, 5))
    net.blackhole()
    start = net.now
    client.close()
    assert net.now == start + 5 * SECOND
    conn = client.connection
    assert conn is not None
    assert conn.state is State.FIN_WAIT_1  # still closing normally, no RST (Linux)
    assert not any(seg.flags & Flag.RST for _, seg in net.segments_from(A, since=start))


# ---------------------------------------------------------------------- TCP_LINGER2


@pytest.mark.parametrize(("linger2", "expected"), [(5, 5), (None, 60), (200, 120)])
def test_linger2_sets_the_orphan_fin_wait_2_timeout(linger2: int | None, expected: int) -> None:
    net = make_net()
    client, _, _ = net.pair()
    if linger2 is not None:
        client.setsockopt(ts.IPPROTO_TCP, ts.TCP_LINGER2, linger2)
    assert client.getsockopt(ts.IPPROTO_TCP, ts.TCP_LINGER2) == expected
    conn = client.connection
    assert conn is not None
    client.close()  # the server never closes: we sit in FIN_WAIT_2
    net.driver.wait_until(lambda: conn.state is State.FIN_WAIT_2, None)
    entered = net.now
    net.driver.wait_until(lambda: conn.state is State.CLOSED, None)
    assert net.now == entered + expected * SECOND
    assert conn.close_reason is CloseReason.FIN_WAIT_2_TIMEOUT


def test_negative_linger2_ends_fin_wait_2_at_once() -> None:
    net = make_net()
    client, _, _ = net.pair()
    client.setsockopt(ts.IPPROTO_TCP, ts.TCP_LINGER2, -1)
    assert client.getsockopt(ts.IPPROTO_TCP, ts.TCP_LINGER2) == -1
    conn = client.connection
    assert conn is not None
    client.close()
    net.driver.wait_until(lambda: conn.state is not State.FIN_WAIT_1, None)
    entered = net.now
    net.driver.wait_until(lambda: conn.state is State.CLOSED, None)
    assert net.now == entered


# ---------------------------------------------------------------------- buffers


@pytest.mark.parametrize(("rcvbuf", "window"), [(None, 65535), (8192, 8192), (20000, 20000)])
def test_rcvbuf_sets_the_advertised_window(rcvbuf: int | None, window: int) -> None:
    net = make_net()
    listener = net.server(listen=False)
    if rcvbuf is not None:
        listener.setsockopt(ts.SOL_SOCKET, ts.SO_RCVBUF, rcvbuf)
    listener.bind(("", PORT))
    listener.listen()
    client = net.client()
    client.connect((B, PORT))
    server, _ = listener.accept()
    [syn_ack] = [seg for _, seg in net.segments_from(B) if seg.flags & Flag.SYN]
    assert syn_ack.window == window
    assert client.tcp_info().snd_wnd == window
    expected = rcvbuf if rcvbuf is not None else 262144
    assert server.getsockopt(ts.SOL_SOCKET, ts.SO_RCVBUF) == expected
    # The peer can have no more than the buffer in flight while nobody reads.
    client.setblocking(False)
    client.send(b"x" * 300_000)
    net.driver.run_for(SECOND)
    assert server.tcp_info().receive_buffered == expected


@pytest.mark.parametrize(("sndbuf", "accepted"), [(None, 262144), (4096, 4096), (50000, 50000)])
def test_sndbuf_bounds_what_a_non_blocking_send_takes(sndbuf: int | None, accepted: int) -> None:
    net = make_net()
    listener = net.server()
    client = net.client()
    if sndbuf is not None:
        client.setsockopt(ts.SOL_SOCKET, ts.SO_SNDBUF, sndbuf)
    client.connect((B, PORT))
    listener.accept()
    client.setblocking(False)
    assert client.send(b"x" * 1_000_000) == accepted
    with pytest.raises(BlockingIOError) as info:
        client.send(b"x")
    assert info.value.errno == errno.EAGAIN


def test_sndbuf_changed_after_connect() -> None:
    net = make_net()
    client, _, _ = net.pair()
    client.setsockopt(ts.SOL_SOCKET, ts.SO_SNDBUF, 2048)
    client.setblocking(False)
    assert client.send(b"x" * 10_000) == 2048


# ---------------------------------------------------------------------- TCP_MAXSEG


@pytest.mark.parametrize(("maxseg", "payload"), [(None, 1448), (536, 524), (1000, 988)])
def test_maxseg_limits_segment_sizes(maxseg: int | None, payload: int) -> None:
    net = make_net()
    listener = net.server()
    client = net.client()
    if maxseg is not None:
        client.setsockopt(ts.IPPROTO_TCP, ts.TCP_MAXSEG, maxseg)
    client.connect((B, PORT))
    server, _ = listener.accept()
    [syn] = [seg for _, seg in net.segments_from(A) if seg.flags & Flag.SYN]
    assert syn.options.mss == (maxseg if maxseg is not None else 1460)
    # Both directions: our segments, and the peer's (it obeys our MSS option).
    client.sendall(b"c" * 10_000)
    server.sendall(b"s" * 10_000)
    net.driver.run_for(SECOND)
    assert max(len(seg.payload) for _, seg in net.data_from(A)) == payload
    assert max(len(seg.payload) for _, seg in net.data_from(B)) == payload
    # Connected, getsockopt reports the MSS in use (after the timestamp option).
    assert client.getsockopt(ts.IPPROTO_TCP, ts.TCP_MAXSEG) == payload


# ---------------------------------------------------------------------- TCP_QUICKACK


@pytest.mark.parametrize(("quickack", "ack_delay"), [(False, 40 * MS), (True, 0)])
def test_quickack_acknowledges_at_once(quickack: bool, ack_delay: int) -> None:
    net = make_net()
    client, server, _ = net.pair()
    server.setsockopt(ts.IPPROTO_TCP, ts.TCP_QUICKACK, int(quickack))
    assert server.getsockopt(ts.IPPROTO_TCP, ts.TCP_QUICKACK) == int(quickack)
    for _ in range(3):
        start = net.now
        client.send(b"ping")
        net.driver.run_for(200 * MS)
        acks = [t for t, seg in net.segments_from(B, since=start) if is_bare_ack(seg)]
        assert acks == [start + DELAY + ack_delay]


# ---------------------------------------------------------------------- SO_ERROR


def test_so_error_reports_a_refused_non_blocking_connect() -> None:
    net = make_net()
    client = net.client()
    client.setblocking(False)
    assert client.connect_ex((B, 9)) == errno.EINPROGRESS
    assert client.getsockopt(ts.SOL_SOCKET, ts.SO_ERROR) == 0
    net.driver.run_for(50 * MS)
    assert client.getsockopt(ts.SOL_SOCKET, ts.SO_ERROR) == errno.ECONNREFUSED
    assert client.getsockopt(ts.SOL_SOCKET, ts.SO_ERROR) == 0  # reading clears it


def test_so_error_consumes_a_pending_reset() -> None:
    net = make_net()
    client, server, _ = net.pair()
    server.setsockopt(ts.SOL_SOCKET, ts.SO_LINGER, linger(1, 0))
    server.close()
    net.driver.run_for(50 * MS)
    assert client.getsockopt(ts.SOL_SOCKET, ts.SO_ERROR, 4) == struct.pack("i", errno.ECONNRESET)
    assert client.recv(10) == b""  # the error was reported through SO_ERROR instead


# ---------------------------------------------------------------------- TCP_INFO


def test_tcp_info_reports_state_and_retransmissions() -> None:
    net = make_net()
    listener = net.server()
    info = listener.getsockopt(ts.IPPROTO_TCP, ts.TCP_INFO)
    assert isinstance(info, TcpInfo) and info.state == "LISTEN"
    client = net.client()
    assert client.tcp_info().state == "CLOSED"
    client.connect((B, PORT))
    server, _ = listener.accept()
    first = client.getsockopt(ts.IPPROTO_TCP, ts.TCP_INFO)
    assert isinstance(first, TcpInfo)
    assert first.state == "ESTABLISHED"
    assert first.total_retransmits == 0 and first.unacked == 0
    assert first.srtt == first.rtt == 2 * DELAY

    rule = drop_where(lambda d: d.src == A and bool(d.segment.payload))
    net.network.add_filter(rule)
    client.send(b"lost once")
    during = client.tcp_info()
    assert during.unacked == len(b"lost once")
    assert during.timers["retransmit"] == during.rto == SECOND
    assert server.recv(100) == b"lost once"  # after one retransmission timeout
    net.driver.run_for(100 * MS)
    after = client.tcp_info()
    assert len(rule.hits) == 1
    assert after.total_retransmits == 1
    assert after.unacked == 0
    assert "retransmit" not in after.timers

    client.close()
    net.driver.run_for(50 * MS)
    assert server.tcp_info().state == "CLOSE_WAIT"


# ---------------------------------------------------------------------- SO_REUSEADDR


@pytest.mark.parametrize("reuse", [False, True])
def test_reuseaddr_lets_a_server_restart_over_time_wait(reuse: bool) -> None:
    net = make_net()
    client, server, listener = net.pair()
    server.close()  # the server closes first: its side ends in TIME_WAIT
    assert client.recv(10) == b""
    client.close()
    net.driver.run_for(100 * MS)
    assert server.connection is not None
    assert server.connection.state is State.TIME_WAIT
    listener.close()

    restarted = net.server(listen=False)
    if reuse:
        restarted.setsockopt(ts.SOL_SOCKET, ts.SO_REUSEADDR, 1)
    assert restarted.getsockopt(ts.SOL_SOCKET, ts.SO_REUSEADDR) == int(reuse)
    if not reuse:
        with pytest.raises(OSError) as info:
            restarted.bind(("", PORT))
        assert info.value.errno == errno.EADDRINUSE
        return
    restarted.bind(("", PORT))
    restarted.listen()
    again = net.client()
    again.connect((B, PORT))
    accepted, _ = restarted.accept()
    again.sendall(b"hello")
    assert accepted.recv(10) == b"hello"


# ---------------------------------------------------------------------- inheritance, errors


def test_accepted_sockets_inherit_the_listeners_options() -> None:
    net = make_net()
    listener = net.server(listen=False)
    listener.setsockopt(ts.SOL_SOCKET, ts.SO_LINGER, linger(1, 0))
    listener.bind(("", PORT))
    listener.listen()
    listener.setsockopt(ts.IPPROTO_TCP, ts.TCP_NODELAY, 1)  # set while listening
    client = net.client()
    client.connect((B, PORT))
    server, _ = listener.accept()
    assert server.getsockopt(ts.SOL_SOCKET, ts.SO_LINGER, 8) == linger(1, 0)
    assert server.getsockopt(ts.IPPROTO_TCP, ts.TCP_NODELAY) == 1
    server.close()  # linger 0: a reset
    with pytest.raises(ConnectionResetError):
        client.recv(1)


def test_option_errors() -> None:
    net = make_net()
    sock = net.client()
    bad: list[tuple[int, int, int | bytes]] = [
        (ts.IPPROTO_TCP, ts.TCP_KEEPIDLE, 0),
        (ts.IPPROTO_TCP, ts.TCP_KEEPINTVL, 40000),
        (ts.IPPROTO_TCP, ts.TCP_KEEPCNT, 128),
        (ts.IPPROTO_TCP, ts.TCP_USER_TIMEOUT, -1),
        (ts.IPPROTO_TCP, ts.TCP_MAXSEG, 20),
        (ts.SOL_SOCKET, ts.SO_LINGER, 1),
        (ts.SOL_SOCKET, ts.SO_LINGER, b"\x01\x00"),
        (ts.SOL_SOCKET, ts.SO_KEEPALIVE, b"\x01"),
    ]
    for level, option, value in bad:
        with pytest.raises(OSError) as info:
            sock.setsockopt(level, option, value)
        assert info.value.errno == errno.EINVAL, (option, value)
    for level, option in [
        (ts.SOL_SOCKET, ts.SO_ERROR),
        (ts.IPPROTO_TCP, ts.TCP_INFO),
        (ts.IPPROTO_TCP, 9999),
        (9999, 1),
    ]:
        with pytest.raises(OSError) as unknown:
            sock.setsockopt(level, option, 1)
        assert unknown.value.errno == errno.ENOPROTOOPT
    with pytest.raises(OSError) as get_unknown:
        sock.getsockopt(ts.IPPROTO_TCP, 9999)
    assert get_unknown.value.errno == errno.ENOPROTOOPT
    # Ints may come as native int bytes, as with the stdlib.
    sock.setsockopt(ts.IPPROTO_TCP, ts.TCP_KEEPIDLE, struct.pack("i", 42))
    assert sock.getsockopt(ts.IPPROTO_TCP, ts.TCP_KEEPIDLE) == 42
    assert sock.getsockopt(ts.IPPROTO_TCP, ts.TCP_KEEPIDLE, 4) == struct.pack("i", 42)
    sock.setsockopt(ts.SOL_SOCKET, ts.SO_SNDBUF, 1)
    assert sock.getsockopt(ts.SOL_SOCKET, ts.SO_SNDBUF) == 1024  # clamped
    sock.close()
    with pytest.raises(OSError) as closed:
        sock.setsockopt(ts.IPPROTO_TCP, ts.TCP_NODELAY, 1)
    assert closed.value.errno == errno.EBADF
