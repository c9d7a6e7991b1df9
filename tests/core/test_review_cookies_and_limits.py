"""Review of SYN cookies with options over IPv6 (RFC 4987 3.6, RFC 7323) and of the
per-connection limit on ACKs for out-of-window segments (Config.invalid_ack_ratelimit,
Linux's tcp_oow_rate_limited), which challenge ACKs share before RFC 5961's per-stack
limit.
"""

from __future__ import annotations

from tcpstack.core.config import MILLISECOND, PLAIN, Config
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.ratelimit import ChallengeAckLimiter
from tcpstack.core.segment import Datagram, Options, Segment
from tcpstack.core.seq import MASK, seq_add
from tcpstack.core.state import State
from tcpstack.core.syncookies import SynCookies, cookie_tsval, encode_ts_options
from tests.core.harness import ACK, SYN, Harness
from tests.core.test_endpoint import ISS, MS, PEER, PEER_ISS, from_peer, make, sent

HOST6, PEER6 = "2001:db8::2", "2001:db8::1"
SECRET = b"review-cookie-secret-0123456789!"
PEER_TSVAL = 4_000_000_000  # close to 2**32: the peer's clock wraps soon
NOW = 7_000_000


def test_ipv6_cookie_keeps_window_scale_sack_and_timestamps() -> None:
    server = Endpoint(
        HOST6,
        isn_generator=lambda _t, _n: 1,
        config=Config(),
        syn_backlog=0,
        syn_cookie_secret=SECRET,
    )
    server.listen(443)
    key = (HOST6, 443, PEER6, 50_000)
    syn_options = Options(mss=1440, window_scale=2, sack_permitted=True, timestamp=(PEER_TSVAL, 0))
    syn = Segment(50_000, 443, PEER_ISS, 0, SYN, 64800, 0, syn_options)
    server.receive_datagram(Datagram(PEER6, HOST6, syn), now=NOW)
    cookie = SynCookies(SECRET).make(key, PEER_ISS, 1440, NOW)
    clock = (NOW // 1000 + ((cookie * 0x9E3779B1) & MASK)) & MASK
    tsval = cookie_tsval(clock, encode_ts_options(2, True))
    assert tsval & 0x3F == 0b01_0010 and (clock - tsval) & MASK < 64
    (answer,) = server.datagrams_to_send(now=NOW)
    assert answer == Datagram(
        HOST6,
        PEER6,
        Segment(
            443,
            50_000,
            cookie,
            seq_add(PEER_ISS, 1),
            SYN | ACK,
            65535,
            0,
            Options(mss=1460, window_scale=3, sack_permitted=True, timestamp=(tsval, PEER_TSVAL)),
        ),
    )
    assert server.connections == {}
    # The ACK carries data at once; its TSval crossed 2**32 (RFC 7323 5.3: PAWS compares
    # modulo 2**32) and its window 100 is scaled by 2.
    ts_ack = (PEER_TSVAL + 400_000_000) & MASK
    ack = Segment(
        50_000,
        443,
        seq_add(PEER_ISS, 1),
        seq_add(cookie, 1),
        ACK,
        100,
        0,
        Options(timestamp=(ts_ack, tsval)),
        b"GET",
    )
    server.receive_datagram(Datagram(PEER6, HOST6, ack), now=NOW + 20 * MS)
    conn = server.accept(443)
    assert conn is not None and conn.state is State.ESTABLISHED
    assert (conn.snd_mss, conn.snd_wscale, conn.rcv_wscale, conn.snd_wnd) == (1440, 2, 3, 400)
    assert conn.ts_enabled and conn.sack_enabled and conn.ts_recent == ts_ack
    assert conn.rcv_nxt == seq_add(PEER_ISS, 4)
    # The next data segment, one tick later, passes PAWS and is taken.
    more = Segment(
        50_000,
        443,
        seq_add(PEER_ISS, 4),
        seq_add(cookie, 1),
        ACK,
        100,
        0,
        Options(timestamp=((ts_ack + 1) & MASK, tsval)),
        b" /",
    )
    server.receive_datagram(Datagram(PEER6, HOST6, more), now=NOW + 21 * MS)
    assert conn.rcv_nxt == seq_add(PEER_ISS, 6)
    assert conn.stats["conn.paws"] == 0


def test_out_of_window_ack_limit_is_per_connection() -> None:
    """Linux keeps last_oow_ack_time per socket: one connection's suppressed ACK does not
    silence another's."""
    config = PLAIN.with_changes(invalid_ack_ratelimit=500 * MILLISECOND)
    endpoint, _ = make(config=config)
    conns = []
    for port in (4000, 4001):
        conns.append(endpoint.connect(PEER, 80, now=0, local_port=port))
        endpoint.receive_datagram(from_peer(80, port, SYN | ACK, PEER_ISS, ISS + 1), now=MS)
    sent(endpoint, MS)
    far = seq_add(PEER_ISS, 1_000_000)
    for port in (4000, 4001):
        endpoint.receive_datagram(from_peer(80, port, ACK, far, ISS + 1), now=10 * MS)
    assert [d.segment.dst_port for d in sent(endpoint, 10 * MS)] == [80, 80]
    for port in (4000, 4001):
        endpoint.receive_datagram(from_peer(80, port, ACK, far, ISS + 1), now=11 * MS)
    assert sent(endpoint, 11 * MS) == []
    assert endpoint.stats["invalid_ack.rate_limited"] == 2
    assert endpoint.stats["conn.out_of_window"] == 4


def test_challenge_acks_share_the_out_of_window_limit_then_meet_the_stack_limiter() -> None:
    """RFC 5961 7 as Linux's tcp_send_challenge_ack has it: the per-connection limit
    first, on the clock the out-of-window ACKs use (last_oow_ack_time), then the stack
    budget. The out-of-window ACK at 10 ms holds back the challenge ACK for a SYN (RFC
    5961 4.2) at 11 ms; the one at 510 ms goes out and spends the stack budget of 1,
    which holds back the next at 1010 ms (the window it opened lasts until 1510 ms)."""
    limiter = ChallengeAckLimiter(limit=1)
    h = Harness(
        PLAIN.with_changes(invalid_ack_ratelimit=500 * MILLISECOND), challenge_limiter=limiter
    )
    h.to_established()
    dup_ack = h.ours(ACK, h.local_seq(1), h.remote_seq(1))
    h.feed(h.peer(ACK, h.remote_seq(1_000_000), h.local_seq(1)), at=10)
    h.expect(dup_ack)
    h.feed(h.peer(SYN, h.remote_seq(5)), at=11)
    h.expect_nothing()
    h.feed(h.peer(SYN, h.remote_seq(6)), at=510)
    h.expect(dup_ack)
    h.feed(h.peer(SYN, h.remote_seq(7)), at=1010)
    h.expect_nothing()
    assert h.conn.stats == {
        "conn.out_of_window": 1,
        "conn.syn_synchronized": 3,
        "challenge_ack.conn_rate_limited": 1,
    }
    assert (limiter.sent, limiter.suppressed) == (1, 1)
    assert h.state is State.ESTABLISHED
