"""SYN flood defences: SYN cookies once a listener's SYN backlog is full (RFC 4987 3.6),
and the Endpoint's hard connection limit."""

from __future__ import annotations

import pytest

from tcpstack.core.config import PLAIN
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.errors import InvalidOperation
from tcpstack.core.events import Established
from tcpstack.core.segment import Datagram, Flag, Options
from tcpstack.core.seq import seq_add
from tcpstack.core.state import State
from tcpstack.core.syncookies import COOKIE_PERIOD, MSS_TABLE, SynCookies
from tests.core.test_endpoint import (
    HOST,
    ISS,
    MSS,
    PEER,
    PEER_ISS,
    events,
    fixed_isn,
    from_peer,
    handshake,
    sent,
    to_peer,
)

SYN, ACK, RST, PSH = Flag.SYN, Flag.ACK, Flag.RST, Flag.PSH
SECRET = b"0123456789abcdef0123456789abcdef"
KEY = (HOST, 80, PEER, 5003)


def cookie_endpoint(**kwargs: int) -> Endpoint:
    endpoint = Endpoint(
        HOST,
        isn_generator=fixed_isn,
        config=PLAIN,
        syn_backlog=2,
        syn_cookie_secret=SECRET,
        **kwargs,  # type: ignore[arg-type]
    )
    endpoint.listen(80)
    for port in (5001, 5002):  # two half-open handshakes fill the SYN backlog
        endpoint.receive_datagram(from_peer(port, 80, SYN, PEER_ISS, options=MSS), now=0)
    assert len(sent(endpoint)) == 2
    return endpoint


def test_cookie_roundtrip_and_mss_encoding() -> None:
    cookies = SynCookies(SECRET)
    for mss in (536, 1460, 1500, 9000, 40):
        cookie = cookies.make(KEY, PEER_ISS, mss, 5)
        expected = max([m for m in MSS_TABLE if m <= mss], default=MSS_TABLE[0])
        assert cookies.check(KEY, PEER_ISS, cookie, 10) == expected
    cookie = cookies.make(KEY, PEER_ISS, 1460, 0)
    assert cookies.check(KEY, PEER_ISS, cookie, COOKIE_PERIOD + 1) == 1460  # next period
    assert cookies.check(KEY, PEER_ISS, cookie, 2 * COOKIE_PERIOD) is None  # expired
    assert cookies.check(KEY, PEER_ISS + 1, cookie, 0) is None  # other peer ISN
    assert cookies.check((HOST, 80, PEER, 5004), PEER_ISS, cookie, 0) is None
    assert SynCookies(bytes(32)).check(KEY, PEER_ISS, cookie, 0) is None  # other secret


def test_third_handshake_completes_through_a_cookie() -> None:
    endpoint = cookie_endpoint()
    cookie = SynCookies(SECRET).make(KEY, PEER_ISS, 1460, 1_000)
    endpoint.receive_datagram(from_peer(5003, 80, SYN, PEER_ISS, options=MSS), now=1_000)
    assert sent(endpoint, 1_000) == [
        to_peer(80, 5003, SYN | ACK, cookie, seq_add(PEER_ISS, 1), options=MSS)
    ]
    assert endpoint.stats["syn_cookie.sent"] == 1
    assert KEY not in endpoint.connections  # no state kept for the SYN
    endpoint.receive_datagram(
        from_peer(5003, 80, ACK | PSH, seq_add(PEER_ISS, 1), seq_add(cookie, 1), payload=b"hello"),
        now=2_000,
    )
    assert endpoint.stats["syn_cookie.accepted"] == 1
    conn = endpoint.accept(80)
    assert conn is not None and conn.four_tuple == KEY
    assert conn.state is State.ESTABLISHED
    assert conn.state_history == [State.CLOSED, State.LISTEN, State.SYN_RECEIVED, State.ESTABLISHED]
    assert conn.snd_mss == 1460
    assert conn.receive(now=2_000) == b"hello"
    assert Established() in events(conn)
    assert sent(endpoint, 2_000) == [
        to_peer(80, 5003, ACK, seq_add(cookie, 1), seq_add(PEER_ISS, 6), window=65530)
    ]
    conn.send(b"hi", now=3_000)
    assert sent(endpoint, 3_000) == [
        to_peer(
            80,
            5003,
            ACK | PSH,
            seq_add(cookie, 1),
            seq_add(PEER_ISS, 6),
            window=65530,
            payload=b"hi",
        )
    ]


def test_forged_ack_with_bad_cookie_gets_rst_and_is_counted() -> None:
    endpoint = cookie_endpoint()
    # A cookie sent to 5003 makes the listener check ACKs as cookies (see
    # test_cookie_gate.py for a listener that sent none).
    endpoint.receive_datagram(from_peer(5003, 80, SYN, PEER_ISS, options=MSS), now=0)
    assert [d.segment.flags for d in sent(endpoint)] == [SYN | ACK]
    forged = from_peer(5003, 80, ACK, seq_add(PEER_ISS, 1), 123_456_789)
    endpoint.receive_datagram(forged, now=0)
    assert sent(endpoint) == [to_peer(80, 5003, RST, 123_456_789, window=0)]
    assert endpoint.stats["syn_cookie.invalid"] == 1
    assert KEY not in endpoint.connections
    assert endpoint.accept(80) is None


def test_valid_cookie_with_full_accept_queue_is_dropped() -> None:
    """The cookie goes out while the accept queue has room; by the time its ACK comes,
    another handshake filled the queue: the ACK is dropped (the peer retransmits it)."""
    endpoint = Endpoint(
        HOST, isn_generator=fixed_isn, config=PLAIN, syn_backlog=1, syn_cookie_secret=SECRET
    )
    endpoint.listen(80, backlog=1)
    endpoint.receive_datagram(from_peer(5001, 80, SYN, PEER_ISS, options=MSS), now=0)
    assert sent(endpoint) == [to_peer(80, 5001, SYN | ACK, ISS, seq_add(PEER_ISS, 1), options=MSS)]
    endpoint.receive_datagram(from_peer(5003, 80, SYN, PEER_ISS, options=MSS), now=0)
    cookie = SynCookies(SECRET).make(KEY, PEER_ISS, 1460, 0)
    assert sent(endpoint) == [
        to_peer(80, 5003, SYN | ACK, cookie, seq_add(PEER_ISS, 1), options=MSS)
    ]
    endpoint.receive_datagram(
        from_peer(5001, 80, ACK, seq_add(PEER_ISS, 1), ISS + 1), now=0
    )  # 5001's handshake completes and fills the accept queue
    endpoint.receive_datagram(
        from_peer(5003, 80, ACK, seq_add(PEER_ISS, 1), seq_add(cookie, 1)), now=0
    )
    assert sent(endpoint) == []
    assert endpoint.stats["syn_cookie.accept_queue_full"] == 1
    assert endpoint.stats["syn_cookie.accepted"] == 0
    assert KEY not in endpoint.connections


def test_without_a_secret_a_full_backlog_drops_syns() -> None:
    endpoint = Endpoint(HOST, isn_generator=fixed_isn, config=PLAIN, syn_backlog=1)
    endpoint.listen(80)
    for port in (5001, 5002):
        endpoint.receive_datagram(from_peer(port, 80, SYN, PEER_ISS, options=MSS), now=0)
    assert len(sent(endpoint)) == 1
    assert endpoint.stats["syn_backlog_full"] == 1


def test_connection_limit_refuses_syn_with_rst_and_connect_raises() -> None:
    endpoint = Endpoint(HOST, isn_generator=fixed_isn, config=PLAIN, max_connections=2)
    endpoint.listen(80)
    handshake(endpoint, 5001)
    handshake(endpoint, 5002)
    sent(endpoint)
    endpoint.receive_datagram(from_peer(5003, 80, SYN, PEER_ISS, options=MSS), now=0)
    assert sent(endpoint) == [to_peer(80, 5003, RST | ACK, 0, seq_add(PEER_ISS, 1), window=0)]
    with pytest.raises(InvalidOperation):
        endpoint.connect("10.0.0.9", 80, now=0)
    assert endpoint.stats["limit.connections"] == 2
    assert len(endpoint.connections) == 2


def test_default_connection_limit_is_set() -> None:
    endpoint = Endpoint(HOST, isn_generator=fixed_isn)
    assert endpoint.max_connections == 65_536


def test_syn_with_options_gets_cookie_mss_only() -> None:
    endpoint = cookie_endpoint()
    options = Options(mss=1400, window_scale=7, sack_permitted=True, timestamp=(5, 0))
    endpoint.receive_datagram(from_peer(5003, 80, SYN, PEER_ISS, options=options), now=0)
    (answer,) = sent(endpoint)
    assert answer.segment.options == MSS
    assert isinstance(answer, Datagram) and answer.dst == PEER
    _ = ISS


def test_endpoint_reassembly_budget_is_shared_and_released() -> None:
    endpoint = Endpoint(HOST, isn_generator=fixed_isn, config=PLAIN, max_reassembly_bytes=100)
    endpoint.listen(80)
    handshake(endpoint, 5001)
    handshake(endpoint, 5002)
    sent(endpoint)
    beyond_gap = seq_add(PEER_ISS, 11)  # ten bytes missing before it
    for port in (5001, 5002):
        endpoint.receive_datagram(
            from_peer(port, 80, ACK, beyond_gap, ISS + 1, payload=b"x" * 60), now=0
        )
    first = endpoint.connections[(HOST, 80, PEER, 5001)]
    second = endpoint.connections[(HOST, 80, PEER, 5002)]
    assert (first.reassembly_held, second.reassembly_held) == (60, 0)
    assert endpoint.stats["limit.reassembly_bytes"] == 1
    assert endpoint.reassembly_budget.held == 60
    # The gap fills: the held bytes move to the receive buffer and the budget is free.
    endpoint.receive_datagram(
        from_peer(5001, 80, ACK, seq_add(PEER_ISS, 1), ISS + 1, payload=b"y" * 10), now=1
    )
    assert first.receive(now=1) == b"y" * 10 + b"x" * 60
    assert endpoint.reassembly_budget.held == 0
    endpoint.receive_datagram(
        from_peer(5002, 80, ACK, beyond_gap, ISS + 1, payload=b"x" * 60), now=2
    )
    assert second.reassembly_held == 60
    second.abort(now=3)  # closing releases what it held
    assert endpoint.reassembly_budget.held == 0
    assert endpoint.reassembly_budget.peak == 60
