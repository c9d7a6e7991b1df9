"""Every drop inside a connection has a named counter, and out-of-window ACKs are rate
limited per connection like Linux's net.ipv4.tcp_invalid_ratelimit.

RFC 9293 3.10.7.4 (first step): an unacceptable segment is answered with
<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and dropped (unless it is a RST). Linux sends that
duplicate ACK at most once per 500 ms per connection when the segment carries no text
(tcp_oow_rate_limited); Config.invalid_ack_ratelimit does the same, and PLAIN (RFC 9293
alone) turns it off.
"""

from __future__ import annotations

from tcpstack.core.config import MILLISECOND, PLAIN, Config
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.ratelimit import ChallengeAckLimiter
from tcpstack.core.segment import Datagram, Flag, Options, Segment
from tcpstack.core.seq import seq_add
from tcpstack.core.state import State
from tcpstack.core.trace import TraceKind
from tcpstack.viz.ss import render_text, snapshot
from tests.core.harness import ACK, FIN, LOCAL_ISS, REMOTE_ISS, RST, SYN, Harness

RATE_LIMITED = PLAIN.with_changes(invalid_ack_ratelimit=500 * MILLISECOND)
# A sequence number far outside any window the harness offers (65535 bytes).
FAR = 1_000_000


def established(config: Config = RATE_LIMITED) -> Harness:
    h = Harness(config)
    h.to_established()
    return h


def out_of_window_ack(h: Harness, payload: bytes = b"") -> Segment:
    return h.peer(ACK, h.remote_seq(1 + FAR), h.local_seq(1), payload=payload)


def test_config_defaults_follow_linux_and_plain_is_pure_rfc() -> None:
    assert Config().invalid_ack_ratelimit == 500 * MILLISECOND
    assert PLAIN.invalid_ack_ratelimit == 0


def test_out_of_window_acks_at_most_one_per_500_ms() -> None:
    h = established()
    dup_ack = h.ours(ACK, h.local_seq(1), h.remote_seq(1))
    h.feed(out_of_window_ack(h), at=1000)
    h.expect(dup_ack)
    # 499.999 ms later: still inside the interval, so no ACK, only counters.
    h.feed(out_of_window_ack(h), at=1499.999)
    h.expect_nothing()
    h.feed(out_of_window_ack(h), at=1499.999)
    h.expect_nothing()
    assert h.conn.stats == {"conn.out_of_window": 3, "invalid_ack.rate_limited": 2}
    # Exactly 500 ms after the last ACK sent: the interval has passed.
    h.feed(out_of_window_ack(h), at=1500)
    h.expect(dup_ack)
    # The interval restarts from that ACK, not from the suppressed segments.
    h.feed(out_of_window_ack(h), at=1999)
    h.expect_nothing()
    h.feed(out_of_window_ack(h), at=2000)
    h.expect(dup_ack)
    assert h.conn.stats == {"conn.out_of_window": 6, "invalid_ack.rate_limited": 3}
    assert h.state is State.ESTABLISHED
    drops = [r for r in h.trace.of_kind(TraceKind.SEGMENT_IN) if r.data.get("counter")]
    assert [r.data["verdict"] for r in drops] == ["ack", "drop", "drop", "ack", "drop", "ack"]


def test_segments_with_text_are_never_rate_limited() -> None:
    """A retransmission carrying data gets its duplicate ACK every time (Linux exempts
    segments whose SEQ space is not empty unless they carry SYN)."""
    h = established()
    dup_ack = h.ours(ACK, h.local_seq(1), h.remote_seq(1))
    h.feed(out_of_window_ack(h), at=10)
    h.expect(dup_ack)
    # An old duplicate with text, entirely below RCV.NXT, 1 ms later: ACKed.
    old = h.peer(ACK, h.remote_seq(1 - 100), h.local_seq(1), payload=b"x" * 50)
    h.feed(old, at=11)
    h.expect(dup_ack)
    h.feed(old, at=12)
    h.expect(dup_ack)
    # A FIN also occupies sequence space: exempt too.
    old_fin = h.peer(FIN | ACK, h.remote_seq(1 - 100), h.local_seq(1))
    h.feed(old_fin, at=13)
    h.expect(dup_ack)
    # A bare ACK is limited again (the last limited ACK went out at 10 ms).
    h.feed(out_of_window_ack(h), at=14)
    h.expect_nothing()
    assert h.conn.stats == {"conn.out_of_window": 5, "invalid_ack.rate_limited": 1}


def test_plain_acks_every_unacceptable_segment() -> None:
    h = established(PLAIN)
    dup_ack = h.ours(ACK, h.local_seq(1), h.remote_seq(1))
    for ms in (1, 1, 2, 3):
        h.feed(out_of_window_ack(h), at=ms)
        h.expect(dup_ack)
    assert h.conn.stats == {"conn.out_of_window": 4}


def test_paws_rejects_are_counted_and_rate_limited() -> None:
    """RFC 7323 5.3 R1: a segment whose TSval is older than TS.Recent is ACKed and
    dropped; Linux counts it (TCPACKSkippedPAWS) under the same 500 ms limit."""
    config = RATE_LIMITED.with_changes(timestamps=True)
    h = Harness(config)
    h.conn.open(now=0)
    syn = h.sent()[0]
    assert syn.options.timestamp is not None
    our_ts0 = syn.options.timestamp[0]  # our TSval at t=0 (a 1 ms clock, RFC 7323 5.4)
    peer_ts = 5000
    h.feed(
        h.peer(SYN | ACK, REMOTE_ISS, h.local_seq(1), options=Options(timestamp=(peer_ts, our_ts0)))
    )
    handshake_ack = h.sent()
    assert [s.flags for s in handshake_ack] == [ACK]
    stale = h.peer(
        ACK, h.remote_seq(1), h.local_seq(1), options=Options(timestamp=(peer_ts - 1, our_ts0))
    )

    def dup_ack(at_ms: int) -> Segment:
        return h.ours(
            ACK,
            h.local_seq(1),
            h.remote_seq(1),
            options=Options(timestamp=(our_ts0 + at_ms, peer_ts)),
        )

    h.feed(stale, at=100)
    h.expect(dup_ack(100))
    h.feed(stale, at=599)
    h.expect_nothing()
    h.feed(stale, at=600)
    h.expect(dup_ack(600))
    assert h.conn.stats == {"conn.paws": 3, "invalid_ack.rate_limited": 1}


def test_each_drop_path_has_its_own_counter() -> None:
    """One named counter per drop reason, each incremented once per dropped segment."""
    h = established(PLAIN)
    far = h.remote_seq(1 + FAR)
    # RST outside the window: silently dropped (RFC 9293 3.10.7.4 first step).
    h.feed(h.peer(RST, far))
    h.expect_nothing()
    # In-window RST, not exactly RCV.NXT: challenge ACK (RFC 5961 3.2).
    h.feed(h.peer(RST, h.remote_seq(2)))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    # SYN in ESTABLISHED, in and out of the window: challenge ACK (RFC 5961 4.2).
    h.feed(h.peer(SYN, h.remote_seq(1)))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    h.feed(h.peer(SYN, far))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    # No ACK bit: dropped (3.10.7.4 fifth step).
    h.feed(h.peer(0, h.remote_seq(1), payload=b"abc"))
    h.expect_nothing()
    # ACK of data never sent: challenge ACK (RFC 5961 5.2).
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(100)))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    # ACK older than SND.UNA - MAX.SND.WND: challenge ACK (RFC 5961 5.2).
    h.feed(h.peer(ACK, h.remote_seq(1), seq_add(LOCAL_ISS, -100_000)))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.conn.stats == {
        "conn.rst_out_of_window": 1,
        "conn.rst_not_exact": 1,
        "conn.syn_synchronized": 1,
        "conn.syn_out_of_window": 1,
        "conn.no_ack": 1,
        "conn.ack_unsent": 1,
        "conn.ack_too_old": 1,
    }
    assert h.state is State.ESTABLISHED


def test_challenge_acks_suppressed_by_the_limiter_keep_their_drop_reason() -> None:
    limiter = ChallengeAckLimiter(1)
    h = Harness(PLAIN, challenge_limiter=limiter)
    h.to_established()
    h.feed(h.peer(RST, h.remote_seq(2)), at=1)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    h.feed(h.peer(RST, h.remote_seq(2)), at=2)
    h.expect_nothing()
    assert h.conn.stats == {"conn.rst_not_exact": 2}
    assert (limiter.sent, limiter.suppressed) == (1, 1)


def test_closed_listen_and_syn_sent_drops_are_counted() -> None:
    closed = Harness(PLAIN)
    closed.feed(closed.peer(RST, 5))
    closed.feed(closed.peer(ACK, 5, 7))
    assert closed.conn.stats == {"conn.closed_rst": 1, "conn.closed_reset": 1}

    listen = Harness(PLAIN)
    listen.to_listen()
    listen.feed(listen.peer(RST, 5))
    listen.feed(listen.peer(ACK, 5, 7))
    listen.feed(listen.peer(SYN | FIN, 5))
    listen.feed(listen.peer(FIN, 5))
    assert listen.conn.stats == {
        "conn.listen_rst": 1,
        "conn.listen_ack": 1,
        "conn.listen_syn_fin": 1,
        "conn.listen_no_syn": 1,
    }

    syn_sent = Harness(PLAIN)
    syn_sent.to_syn_sent()
    syn_sent.feed(syn_sent.peer(ACK, 5, LOCAL_ISS))  # ACK =< ISS
    syn_sent.feed(syn_sent.peer(RST | ACK, 5, LOCAL_ISS))
    syn_sent.feed(syn_sent.peer(RST, 5))
    syn_sent.feed(syn_sent.peer(FIN, 5))
    assert syn_sent.conn.stats == {
        "conn.syn_sent_bad_ack": 1,
        "conn.syn_sent_bad_ack_rst": 1,
        "conn.syn_sent_rst_no_ack": 1,
        "conn.syn_sent_no_syn": 1,
    }


def test_connection_drops_show_in_endpoint_stats_and_ss() -> None:
    server = Endpoint("10.0.0.2", isn_generator=lambda _t, _n: LOCAL_ISS, config=RATE_LIMITED)
    server.listen(80)
    client_isn = 7_000

    def deliver(flags: int, seq: int, ack: int, now: int) -> list[Datagram]:
        seg = Segment(5555, 80, seq, ack, flags, 65535)
        server.receive_datagram(Datagram("10.0.0.1", "10.0.0.2", seg), now=now)
        return server.datagrams_to_send(now=now)

    assert [d.segment.flags for d in deliver(SYN, client_isn, 0, 0)] == [SYN | ACK]
    assert deliver(ACK, client_isn + 1, LOCAL_ISS + 1, 0) == []
    far = client_isn + 1 + FAR
    assert [d.segment.flags for d in deliver(ACK, far, LOCAL_ISS + 1, 1000)] == [Flag.ACK]
    assert deliver(ACK, far, LOCAL_ISS + 1, 2000) == []
    assert server.stats["conn.out_of_window"] == 2
    assert server.stats["invalid_ack.rate_limited"] == 1
    text = render_text(snapshot(server, 2000))
    assert "conn.out_of_window" in text
    assert "invalid_ack.rate_limited" in text


def test_text_after_the_peers_fin_is_counted() -> None:
    """RFC 9293 3.10.7.4 seventh step: in CLOSE_WAIT the peer's FIN has come, so text
    cannot follow; it is ignored, and counted."""
    h = established(PLAIN)
    h.feed(h.peer(FIN | ACK, h.remote_seq(1), h.local_seq(1)))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(2)))
    assert h.state is State.CLOSE_WAIT
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(1), payload=b"late"))
    h.expect_nothing()
    assert h.conn.stats == {"conn.text_after_fin": 1}
    assert h.conn.receive_buffered == 0


def test_text_after_close_resets_and_is_counted() -> None:
    """RFC 9293 3.6.1 / RFC 2525 2.17 (Linux's TCPAbortOnData): text arriving after the
    application closed is answered with RST <SEQ=SND.NXT>."""
    h = Harness(PLAIN.with_changes(half_duplex_close=True))
    h.to_fin_wait_1()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(2), payload=b"data"))
    h.expect(h.ours(RST, h.local_seq(2), window=0))
    assert h.state is State.CLOSED
    assert h.conn.stats == {"conn.text_after_close": 1}
