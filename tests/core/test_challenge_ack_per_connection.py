"""RFC 5961 section 7: challenge ACKs are rate limited per connection first, then by the
Endpoint's stack-wide limiter, as Linux's tcp_send_challenge_ack does.

The per-connection limit is Config.invalid_ack_ratelimit (Linux's
net.ipv4.tcp_invalid_ratelimit, 500 ms) on one clock per connection (Linux's
last_oow_ack_time) that challenge ACKs share with the ACKs for out-of-window segments.
Linux applies it to every challenge ACK, segments with text included; the out-of-window
ACKs exempt segments with text (and without SYN). PLAIN (RFC 9293 alone) turns it off.
Exact segments at exact virtual-clock times (tests/core/harness.py).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tcpstack.core.config import MILLISECOND, PLAIN
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.ratelimit import ChallengeAckLimiter
from tcpstack.core.segment import Segment
from tcpstack.core.seq import seq_add
from tcpstack.core.state import State
from tcpstack.core.trace import TraceKind
from tests.core.harness import ACK, PSH, RST, SYN, Harness
from tests.core.test_endpoint import HOST, ISS, MS, PEER_ISS, from_peer, handshake, sent, to_peer

# PLAIN (exact segments from RFC 9293 alone) with Linux's default per-connection limit.
LINUX_LIMITED = PLAIN.with_changes(invalid_ack_ratelimit=500 * MILLISECOND)


def established(limit: int = 1000) -> tuple[Harness, ChallengeAckLimiter]:
    limiter = ChallengeAckLimiter(limit)
    h = Harness(LINUX_LIMITED, challenge_limiter=limiter)
    h.to_established()
    return h, limiter


def challenge(h: Harness) -> Segment:
    """<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> of an established connection with no data."""
    return h.ours(ACK, h.local_seq(1), h.remote_seq(1))


# Every segment that calls for a challenge ACK, with the reason counter of its drop.
TRIGGERS: dict[str, tuple[Callable[[Harness], Segment], str]] = {
    # RFC 5961 3.2: RST in the window but not at RCV.NXT.
    "rst_in_window": (lambda h: h.peer(RST, h.remote_seq(100)), "conn.rst_not_exact"),
    # RFC 5961 4.2: SYN in a synchronized state, in the window or not.
    "syn_in_window": (lambda h: h.peer(SYN, h.remote_seq(7)), "conn.syn_synchronized"),
    "syn_out_of_window": (
        lambda h: h.peer(SYN, h.remote_seq(1_000_000)),
        "conn.syn_out_of_window",
    ),
    # RFC 5961 5.2: an ACK above SND.NXT or below SND.UNA - MAX.SND.WND (65535 here).
    "ack_unsent": (lambda h: h.peer(ACK, h.remote_seq(1), h.local_seq(500)), "conn.ack_unsent"),
    "ack_too_old": (
        lambda h: h.peer(ACK, h.remote_seq(1), seq_add(h.local_seq(1), -65536)),
        "conn.ack_too_old",
    ),
}


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_one_challenge_ack_per_500_ms_per_connection(trigger: str) -> None:
    make_segment, reason = TRIGGERS[trigger]
    h, limiter = established()
    h.feed(make_segment(h), at=10)
    h.expect(challenge(h))
    h.feed(make_segment(h), at=509.999)  # 499.999 ms later: held back
    h.expect_nothing()
    record = h.trace.of_kind(TraceKind.SEGMENT_IN)[-1]
    assert (record.data["verdict"], record.data["counter"]) == ("drop", reason)
    h.feed(make_segment(h), at=510)  # 500 ms later: answered
    h.expect(challenge(h))
    h.feed(make_segment(h), at=1009.999)  # 499.999 ms after that one: held back
    h.expect_nothing()
    assert h.conn.stats == {reason: 4, "challenge_ack.conn_rate_limited": 2}
    # The stack-wide limiter only saw the two that passed, and allowed both.
    assert (limiter.sent, limiter.suppressed) == (2, 0)
    assert h.state is State.ESTABLISHED


def test_out_of_window_ack_and_challenge_ack_share_one_clock() -> None:
    """Linux's last_oow_ack_time: whichever went out last starts the 500 ms for both."""
    h, limiter = established()
    out_of_window = h.peer(ACK, h.remote_seq(1_000_000), h.local_seq(1))
    in_window_rst = h.peer(RST, h.remote_seq(100))
    h.feed(out_of_window, at=10)
    h.expect(challenge(h))  # the duplicate ACK is the same segment
    h.feed(in_window_rst, at=509.999)  # challenge ACK held back by the ACK at 10 ms
    h.expect_nothing()
    h.feed(in_window_rst, at=510)
    h.expect(challenge(h))
    h.feed(out_of_window, at=1009.999)  # out-of-window ACK held back by the challenge
    h.expect_nothing()
    h.feed(out_of_window, at=1010)
    h.expect(challenge(h))
    assert h.conn.stats == {
        "conn.out_of_window": 3,
        "conn.rst_not_exact": 2,
        "challenge_ack.conn_rate_limited": 1,
        "invalid_ack.rate_limited": 1,
    }
    assert (limiter.sent, limiter.suppressed) == (1, 0)


def test_a_segment_with_text_is_limited_per_connection_too() -> None:
    """Linux applies the per-connection limit to every challenge ACK (since its 2016
    "enable per-socket rate limiting of all 'challenge acks'"): a data segment whose ACK
    is above SND.NXT (RFC 5961 5.2) gets one at most every 500 ms, and its text is
    dropped either way. An out-of-window data segment in between is ACKed regardless
    (a duplicate ACK that loss recovery needs) and does not move the clock."""
    h, limiter = established()
    forged = h.peer(ACK | PSH, h.remote_seq(1), h.local_seq(500), payload=b"evil")
    h.feed(forged, at=10)
    h.expect(challenge(h))
    h.feed(forged, at=11)
    h.expect_nothing()
    beyond_window = h.peer(ACK | PSH, h.remote_seq(1_000_000), h.local_seq(1), payload=b"new")
    h.feed(beyond_window, at=12)
    h.expect(challenge(h))
    h.feed(beyond_window, at=13)
    h.expect(challenge(h))
    h.feed(forged, at=510)  # 500 ms after the challenge ACK at 10 ms
    h.expect(challenge(h))
    assert h.conn.receive_buffered == 0
    assert h.conn.stats == {
        "conn.ack_unsent": 3,
        "conn.out_of_window": 2,
        "challenge_ack.conn_rate_limited": 1,
    }
    assert (limiter.sent, limiter.suppressed) == (2, 0)


def test_a_challenge_ack_held_back_stack_wide_still_starts_the_connection_clock() -> None:
    """As in Linux: the per-connection check passes (and records the time) before the
    stack-wide budget is asked, so an ACK that budget refused still counts as the
    connection's one per 500 ms."""
    h, limiter = established(limit=1)
    in_window_rst = h.peer(RST, h.remote_seq(100))
    h.feed(in_window_rst, at=10)
    h.expect(challenge(h))
    h.feed(in_window_rst, at=510)  # passes per connection; the stack budget of 1 is spent
    h.expect_nothing()
    assert (limiter.sent, limiter.suppressed) == (1, 1)
    h.feed(in_window_rst, at=1009.999)  # 499.999 ms after 510: held back per connection
    h.expect_nothing()
    assert h.conn.stats["challenge_ack.conn_rate_limited"] == 1
    h.feed(in_window_rst, at=1010)  # 500 ms after 510, and a new stack-wide second
    h.expect(challenge(h))
    assert h.conn.stats == {"conn.rst_not_exact": 4, "challenge_ack.conn_rate_limited": 1}
    assert (limiter.sent, limiter.suppressed) == (2, 1)


def test_plain_profile_has_no_per_connection_limit() -> None:
    """invalid_ack_ratelimit = 0 (PLAIN): every challenge ACK and every out-of-window
    ACK goes out; only the stack-wide limiter applies, as before."""
    assert PLAIN.invalid_ack_ratelimit == 0
    limiter = ChallengeAckLimiter(3)
    h = Harness(PLAIN, challenge_limiter=limiter)
    h.to_established()
    in_window_rst = h.peer(RST, h.remote_seq(100))
    out_of_window = h.peer(ACK, h.remote_seq(1_000_000), h.local_seq(1))
    for at in (10, 10, 11):
        h.feed(in_window_rst, at=at)
        h.expect(challenge(h))
        h.feed(out_of_window, at=at)
        h.expect(challenge(h))
    h.feed(in_window_rst, at=12)  # the stack budget of 3 a second is spent
    h.expect_nothing()
    assert h.conn.stats == {"conn.rst_not_exact": 4, "conn.out_of_window": 3}
    assert (limiter.sent, limiter.suppressed) == (3, 1)


def test_bare_connection_without_limiter_keeps_the_per_connection_limit() -> None:
    h = Harness(LINUX_LIMITED)
    h.to_established()
    syn = h.peer(SYN, h.remote_seq(7))
    h.feed(syn, at=10)
    h.expect(challenge(h))
    h.feed(syn, at=20)
    h.expect_nothing()
    h.feed(syn, at=510)
    h.expect(challenge(h))
    assert h.conn.stats == {"conn.syn_synchronized": 3, "challenge_ack.conn_rate_limited": 1}


def test_connections_have_their_own_budgets_under_one_stack_limit() -> None:
    """Two connections, a stack-wide limit of 3 a second: each connection gets one
    challenge ACK per 500 ms of its own, and the stack caps the sum."""
    endpoint = Endpoint(
        HOST, isn_generator=lambda _t, _n: ISS, config=LINUX_LIMITED, challenge_ack_limit=3
    )
    endpoint.listen(80)
    handshake(endpoint, 5001)
    handshake(endpoint, 5002)
    in_window_rst = seq_add(PEER_ISS, 100)
    rcv_nxt = seq_add(PEER_ISS, 1)

    def attack(now: int, *ports: int) -> list[int]:
        """In-window RSTs to `ports` at `now`; the ports the challenge ACKs went to."""
        for port in ports:
            endpoint.receive_datagram(from_peer(port, 80, RST, in_window_rst), now=now)
        out = sent(endpoint, now)
        assert all(d == to_peer(80, d.segment.dst_port, ACK, ISS + 1, rcv_nxt) for d in out)
        return [d.segment.dst_port for d in out]

    # Each connection's first passes; its second in the same ms is held back per
    # connection (and so does not spend the stack budget: 2 of 3 used).
    assert attack(10 * MS, 5001, 5002, 5001, 5002) == [5001, 5002]
    assert endpoint.stats["challenge_ack.conn_rate_limited"] == 2
    # 500 ms on, both pass per connection; the stack has 1 left until 1010 ms.
    assert attack(510 * MS, 5001, 5002) == [5001]
    assert endpoint.stats["challenge_ack.rate_limited"] == 1
    # 5002's refused ACK at 510 ms still started its 500 ms: held back per connection.
    assert attack(600 * MS, 5002) == []
    # A new stack window at 1010 ms, and 500 ms since 5002's last: it passes.
    assert attack(1010 * MS, 5002) == [5002]
    assert endpoint.stats["challenge_ack.sent"] == 4
    assert endpoint.stats["challenge_ack.rate_limited"] == 1
    assert endpoint.stats["challenge_ack.conn_rate_limited"] == 3
    assert endpoint.stats["conn.rst_not_exact"] == 8
    assert all(c.state is State.ESTABLISHED for c in endpoint.connections.values())
