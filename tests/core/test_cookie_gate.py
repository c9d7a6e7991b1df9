"""A listener checks an ACK as a SYN cookie only while it has sent cookies recently.

Linux's cookie_v4_check returns at once when tcp_synq_no_recent_overflow says the
listener's SYN queue has not overflowed within TCP_SYNCOOKIE_VALID (MAX_SYNCOOKIE_AGE
2 x TCP_SYNCOOKIE_PERIOD 60 s = 120 s, both ends included; the overflow time is
stamped by every cookie made, cookie_init_sequence -> tcp_synq_overflow). The ACK then
meets the listener as it is: RFC 9293 3.10.7.2, an ACK in LISTEN gets
<SEQ=SEG.ACK><CTL=RST>. tcpstack does the same with its own cookie lifetime, two
64 s counters: RECENT_OVERFLOW_WINDOW = 128 s after the listener's last cookie. Such
an ACK is counted as syn_cookie.no_recent_overflow (one counter, and not
syn_cookie.invalid: it was never checked).

The listener has syn_backlog = 1: one half-open handshake (port 5001) fills it, so the
next SYN gets a cookie. L is when that cookie leaves.
"""

from __future__ import annotations

import pytest

from tcpstack.core.config import PLAIN, SECOND
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.segment import Datagram
from tcpstack.core.seq import seq_add
from tcpstack.core.state import State
from tcpstack.core.syncookies import (
    COOKIE_PERIOD,
    MAX_AGE_PERIODS,
    RECENT_OVERFLOW_WINDOW,
    SynCookies,
    cookies_sent_recently,
)
from tests.core.test_endpoint import (
    ACK,
    HOST,
    ISS,
    MSS,
    PEER,
    PEER_ISS,
    RST,
    SYN,
    fixed_isn,
    from_peer,
    sent,
    to_peer,
)

SECRET = b"cookie-gate-secret-0123456789abc"
L = 1 * SECOND  # the listener's (only) cookie leaves at 1 s
W = RECENT_OVERFLOW_WINDOW


def four_tuple(port: int) -> tuple[str, int, str, int]:
    return (HOST, 80, PEER, port)


def cookie_for(port: int, made_at: int) -> int:
    """What the listener answers a SYN from `port` (ISN PEER_ISS, MSS 1460) with at
    `made_at`, computed with its secret."""
    return SynCookies(SECRET).make(four_tuple(port), PEER_ISS, 1460, made_at)


def cookie_ack(port: int, cookie: int) -> Datagram:
    return from_peer(port, 80, ACK, seq_add(PEER_ISS, 1), seq_add(cookie, 1))


def rst_for(port: int, cookie: int) -> Datagram:
    """RFC 9293 3.10.7.2: <SEQ=SEG.ACK><CTL=RST> for an ACK in LISTEN."""
    return to_peer(80, port, RST, seq_add(cookie, 1), window=0)


def listener(*, secret: bytes | None = SECRET) -> Endpoint:
    endpoint = Endpoint(
        HOST, isn_generator=fixed_isn, config=PLAIN, syn_backlog=1, syn_cookie_secret=secret
    )
    endpoint.listen(80)
    endpoint.receive_datagram(from_peer(5001, 80, SYN, PEER_ISS, options=MSS), now=0)
    assert sent(endpoint, 0) == [
        to_peer(80, 5001, SYN | ACK, ISS, seq_add(PEER_ISS, 1), options=MSS)
    ]
    return endpoint


def send_cookie(endpoint: Endpoint, port: int, now: int) -> int:
    endpoint.receive_datagram(from_peer(port, 80, SYN, PEER_ISS, options=MSS), now=now)
    cookie = cookie_for(port, now)
    assert sent(endpoint, now) == [
        to_peer(80, port, SYN | ACK, cookie, seq_add(PEER_ISS, 1), options=MSS)
    ]
    assert endpoint.listeners[80].last_cookie_sent == now
    return cookie


def test_the_window_is_the_longest_a_cookie_lives() -> None:
    """128 s: a cookie made at the very start of a counter is valid through the next
    counter, to 128 s - 1 µs after it was made, and never longer."""
    assert W == MAX_AGE_PERIODS * COOKIE_PERIOD == 128 * SECOND
    cookies = SynCookies(SECRET)
    for made_at in (0, 1, COOKIE_PERIOD - 1, COOKIE_PERIOD, 100 * SECOND):
        cookie = cookies.make(four_tuple(5003), PEER_ISS, 1460, made_at)
        last_valid = (made_at // COOKIE_PERIOD + MAX_AGE_PERIODS) * COOKIE_PERIOD - 1
        assert cookies.check(four_tuple(5003), PEER_ISS, cookie, last_valid) == 1460
        assert cookies.check(four_tuple(5003), PEER_ISS, cookie, last_valid + 1) is None
        assert last_valid < made_at + W


@pytest.mark.parametrize(
    ("now", "checked"),
    [(L - 1, False), (L, True), (L + W - 1, True), (L + W, True), (L + W + 1, False)],
)
def test_gate_edges(now: int, checked: bool) -> None:
    assert cookies_sent_recently(L, now) is checked
    assert cookies_sent_recently(None, now) is False


def test_a_listener_that_never_sent_a_cookie_answers_a_valid_cookie_with_rst() -> None:
    """The SYN backlog is full, but no SYN met it: no cookie left, so even an ACK whose
    cookie the secret would accept is not checked."""
    endpoint = listener()
    cookie = cookie_for(5003, 0)
    assert SynCookies(SECRET).check(four_tuple(5003), PEER_ISS, cookie, 0) == 1460
    endpoint.receive_datagram(cookie_ack(5003, cookie), now=0)
    assert sent(endpoint, 0) == [rst_for(5003, cookie)]
    assert endpoint.stats["syn_cookie.no_recent_overflow"] == 1
    assert endpoint.stats["syn_cookie.invalid"] == 0
    assert endpoint.stats["syn_cookie.accepted"] == 0
    assert four_tuple(5003) not in endpoint.connections
    assert endpoint.listeners[80].last_cookie_sent is None


def test_without_cookies_the_same_ack_gets_the_same_rst() -> None:
    endpoint = listener(secret=None)
    cookie = cookie_for(5003, 0)
    endpoint.receive_datagram(cookie_ack(5003, cookie), now=0)
    assert sent(endpoint, 0) == [rst_for(5003, cookie)]
    assert endpoint.stats["listen_ack"] == 1


def test_inside_the_window_a_cookie_ack_completes_the_handshake() -> None:
    endpoint = listener()
    cookie = send_cookie(endpoint, 5003, L)
    endpoint.receive_datagram(cookie_ack(5003, cookie), now=L + 50 * SECOND)
    assert sent(endpoint, L + 50 * SECOND) == []
    assert endpoint.stats["syn_cookie.accepted"] == 1
    conn = endpoint.accept(80)
    assert conn is not None and conn.four_tuple == four_tuple(5003)
    assert conn.state is State.ESTABLISHED


def test_inside_the_window_a_forged_cookie_is_checked_and_refused() -> None:
    endpoint = listener()
    send_cookie(endpoint, 5003, L)
    forged = from_peer(5004, 80, ACK, seq_add(PEER_ISS, 1), 123_456_789)
    endpoint.receive_datagram(forged, now=L + W)
    assert sent(endpoint, L + W) == [to_peer(80, 5004, RST, 123_456_789, window=0)]
    assert endpoint.stats["syn_cookie.invalid"] == 1
    assert endpoint.stats["syn_cookie.no_recent_overflow"] == 0


def test_a_valid_cookie_at_the_last_instant_of_the_window_is_taken() -> None:
    """At L + 128 s exactly (the window includes its end) a cookie the secret accepts
    opens a connection: one made for port 5004 at L + 100 s (counter 1; at L + 128 s
    = 129 s the counter is 2, one period later, so it is still valid)."""
    endpoint = listener()
    send_cookie(endpoint, 5003, L)
    cookie = cookie_for(5004, L + 100 * SECOND)
    endpoint.receive_datagram(cookie_ack(5004, cookie), now=L + W)
    assert sent(endpoint, L + W) == []
    assert endpoint.stats["syn_cookie.accepted"] == 1
    conn = endpoint.accept(80)
    assert conn is not None and conn.four_tuple == four_tuple(5004)
    assert conn.state is State.ESTABLISHED


def test_a_valid_cookie_after_the_window_has_passed_gets_rst() -> None:
    """One microsecond later the listener no longer checks cookies: the same kind of
    ACK, with a cookie the secret still accepts, is a stray ACK for LISTEN."""
    endpoint = listener()
    send_cookie(endpoint, 5003, L)
    cookie = cookie_for(5004, L + 100 * SECOND)
    after = L + W + 1
    assert SynCookies(SECRET).check(four_tuple(5004), PEER_ISS, cookie, after) == 1460
    endpoint.receive_datagram(cookie_ack(5004, cookie), now=after)
    assert sent(endpoint, after) == [rst_for(5004, cookie)]
    assert endpoint.stats["syn_cookie.no_recent_overflow"] == 1
    assert endpoint.stats["syn_cookie.invalid"] == 0
    assert endpoint.stats["syn_cookie.accepted"] == 0
    assert four_tuple(5004) not in endpoint.connections


def test_every_cookie_sent_moves_the_window() -> None:
    """A second cookie at L + 100 s keeps ACKs checked until L + 228 s."""
    endpoint = listener()
    send_cookie(endpoint, 5003, L)
    second = L + 100 * SECOND
    cookie = send_cookie(endpoint, 5004, second)
    endpoint.receive_datagram(cookie_ack(5006, cookie_for(5006, second)), now=L + W + 1)
    assert sent(endpoint, L + W + 1) == []
    assert endpoint.stats["syn_cookie.accepted"] == 1
    late = second + W + 1
    endpoint.receive_datagram(cookie_ack(5004, cookie), now=late)
    assert sent(endpoint, late) == [rst_for(5004, cookie)]
    assert endpoint.stats["syn_cookie.no_recent_overflow"] == 1


def test_a_new_listener_on_the_port_starts_without_recent_cookies() -> None:
    """The gate belongs to the listener (Linux: the listening socket's overflow stamp):
    a cookie handed out by a listener that was closed is not checked by the next one."""
    endpoint = listener()
    cookie = send_cookie(endpoint, 5003, L)
    endpoint.close_listener(80, now=L + 1)
    endpoint.listen(80, now=L + 2)
    endpoint.receive_datagram(cookie_ack(5003, cookie), now=L + 3)
    assert sent(endpoint, L + 3) == [rst_for(5003, cookie)]
    assert endpoint.stats["syn_cookie.no_recent_overflow"] == 1
