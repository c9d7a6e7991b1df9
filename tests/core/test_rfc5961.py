"""RFC 5961: challenge ACKs, their rate limit (section 7) and the ACK check (section 5).

Exact segments with the harness (a bare Connection given a limiter) and with an
Endpoint, whose limiter its connections share.
"""

from __future__ import annotations

from tcpstack.core.config import PLAIN
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.ratelimit import DEFAULT_CHALLENGE_ACK_LIMIT, ChallengeAckLimiter
from tcpstack.core.seq import seq_add
from tcpstack.core.state import State
from tcpstack.core.trace import TraceKind
from tests.core.harness import ACK, PSH, RST, SYN, Harness
from tests.core.test_endpoint import (
    HOST,
    ISS,
    PEER_ISS,
    from_peer,
    handshake,
    sent,
    to_peer,
)


def established(limit: int) -> tuple[Harness, ChallengeAckLimiter]:
    limiter = ChallengeAckLimiter(limit)
    h = Harness(challenge_limiter=limiter)
    h.to_established()
    return h, limiter


def test_limiter_counts_per_one_second_window() -> None:
    limiter = ChallengeAckLimiter(2)
    assert [limiter.allow(t) for t in (0, 10, 20, 999_999)] == [True, True, False, False]
    assert limiter.allow(1_000_000)  # a new window starts at the first call past 1 s
    assert (limiter.sent, limiter.suppressed, limiter.peak_per_window) == (3, 2, 2)


def test_default_limit_is_linux_1000_per_second() -> None:
    assert DEFAULT_CHALLENGE_ACK_LIMIT == 1000
    endpoint = Endpoint(HOST, isn_generator=lambda _t, _n: ISS)
    assert endpoint.challenge_limiter.limit == 1000


def test_in_window_rst_challenge_acks_are_rate_limited() -> None:
    h, limiter = established(2)
    challenge = h.ours(ACK, h.local_seq(1), h.remote_seq(1))
    for _ in range(2):
        h.feed(h.peer(RST, h.remote_seq(100)), at=5)
        h.expect(challenge)
    h.feed(h.peer(RST, h.remote_seq(100)), at=6)
    h.expect_nothing()  # third in the same second: dropped silently
    assert h.state is State.ESTABLISHED
    h.feed(h.peer(RST, h.remote_seq(100)), at=1005)  # one second after the window began
    h.expect(challenge)
    assert (limiter.sent, limiter.suppressed) == (3, 1)


def test_syn_challenge_acks_are_rate_limited() -> None:
    h, limiter = established(1)
    h.feed(h.peer(SYN, h.remote_seq(7)))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    h.feed(h.peer(SYN, h.remote_seq(7)))
    h.expect_nothing()
    assert h.state is State.ESTABLISHED
    assert limiter.suppressed == 1


def test_ack_above_snd_nxt_is_a_rate_limited_challenge() -> None:
    h, limiter = established(1)
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(500), payload=b"x"))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(500), payload=b"x"))
    h.expect_nothing()
    assert h.conn.receive_buffered == 0  # the text went with the segment
    assert limiter.suppressed == 1


def test_ack_below_snd_una_minus_max_snd_wnd_is_dropped_with_challenge() -> None:
    # RFC 5961 5.2: acceptable is SND.UNA - MAX.SND.WND =< SEG.ACK =< SND.NXT. The peer
    # offered 65535, so an ACK 65536 below SND.UNA is forged: its text is not taken.
    h = Harness()
    h.to_established()
    too_old = seq_add(h.local_seq(1), -65536)
    h.feed(h.peer(ACK | PSH, h.remote_seq(1), too_old, payload=b"evil"))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.conn.receive_buffered == 0
    assert h.trace.of_kind(TraceKind.SEGMENT_IN)[-1].data["verdict"] == "challenge"
    # At the edge (exactly SND.UNA - MAX.SND.WND) the ACK is an old duplicate: taken.
    edge = seq_add(h.local_seq(1), -65535)
    h.feed(h.peer(ACK | PSH, h.remote_seq(1), edge, payload=b"good"))
    assert h.conn.receive(now=h.now) == b"good"


def test_endpoint_connections_share_one_limiter() -> None:
    endpoint = Endpoint(HOST, isn_generator=lambda _t, _n: ISS, config=PLAIN, challenge_ack_limit=3)
    endpoint.listen(80)
    handshake(endpoint, 5001)
    handshake(endpoint, 5002)
    assert sent(endpoint) == []
    in_window_rst = seq_add(PEER_ISS, 100)
    for port in (5001, 5002, 5001, 5002, 5001):
        endpoint.receive_datagram(from_peer(port, 80, RST, in_window_rst), now=10)
    # Output is collected connection by connection: 5001's two, then 5002's one.
    challenges = sent(endpoint, 10)
    assert challenges == [
        to_peer(80, port, ACK, ISS + 1, seq_add(PEER_ISS, 1)) for port in (5001, 5001, 5002)
    ]
    assert endpoint.stats["challenge_ack.sent"] == 3
    assert endpoint.stats["challenge_ack.rate_limited"] == 2
    assert all(c.state is State.ESTABLISHED for c in endpoint.connections.values())
