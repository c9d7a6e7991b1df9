"""ESTABLISHED: RFC 9293 3.10.7.4 (segments), 3.10.2-3.10.5 (user calls), RFC 6298
(retransmission timer) and RFC 9293 3.8.6 (windows), exact segments."""

from __future__ import annotations

import pytest

from tcpstack.core.config import MILLISECOND, PLAIN, SECOND, Config
from tcpstack.core.errors import InvalidOperation
from tcpstack.core.events import (
    Closed,
    CloseReason,
    DataAvailable,
    EndOfStream,
    Established,
    SendSpaceAvailable,
)
from tcpstack.core.segment import Options
from tcpstack.core.state import State
from tests.core.harness import (
    ACK,
    FIN,
    LOCAL_ISS,
    MS,
    MSS_OPTION,
    PSH,
    REMOTE_ISS,
    RST,
    SYN,
    Harness,
)

ACTIVE = [State.CLOSED, State.SYN_SENT, State.ESTABLISHED]


def _established(
    config: Config | None = None,
    *,
    peer_mss: int = 1460,
    peer_window: int = 65535,
    at: float = 0,
) -> Harness:
    """Active open whose SYN,ACK (peer MSS and window as given) arrives at `at` ms."""
    h = Harness(config)
    h.to_syn_sent()
    h.feed(
        h.peer(
            SYN | ACK,
            REMOTE_ISS,
            h.local_seq(1),
            window=peer_window,
            options=Options(mss=peer_mss),
        ),
        at=at,
    )
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.path == ACTIVE
    assert h.events() == [Established()]
    return h


def _established_with_receive_buffer(size: int) -> Harness:
    h = Harness(PLAIN.with_changes(receive_buffer_size=size))
    h.to_syn_sent()
    h.feed(h.peer(SYN | ACK, REMOTE_ISS, h.local_seq(1), options=MSS_OPTION))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1), window=size))
    assert h.events() == [Established()]
    return h


def _data(h: Harness, offset: int, payload: bytes, *, ack: int = 1, flags: int = ACK) -> None:
    """Feed peer text at remote offset `offset`, acknowledging our offset `ack`."""
    h.feed(h.peer(flags, h.remote_seq(offset), h.local_seq(ack), payload=payload))


def test_both_ways_of_reaching_established_arm_no_timer() -> None:
    for passive in (False, True):
        h = Harness()
        h.to_established(passive=passive)
        assert h.next_timer_ms() is None
        assert h.conn.snd_una == h.conn.snd_nxt == h.local_seq(1)
        assert h.conn.rcv_nxt == h.remote_seq(1)


# -- receiving: seventh step (segment text) ---------------------------------------------


def test_data_in_order_is_buffered_acked_and_reported() -> None:
    """3.10.7.4 seventh step: move the text to the receive buffer, advance RCV.NXT,
    adjust RCV.WND to the buffer space left, send <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>."""
    h = Harness()
    h.to_established()
    _data(h, 1, b"hello", flags=ACK | PSH)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(6), window=65535 - 5))
    assert h.events() == [DataAvailable(5)]
    assert h.conn.receive_buffered == 5
    # The remote ISN is 2**32 - 3: the five octets occupy 2**32 - 2 .. 2 and RCV.NXT wraps.
    assert h.conn.rcv_nxt == 3
    assert h.path == ACTIVE


def test_receive_returns_the_data_and_small_reads_send_no_window_update() -> None:
    h = Harness()
    h.to_established()
    _data(h, 1, b"hello")
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(6), window=65530))
    h.events()
    assert h.conn.receive(3, now=h.now) == b"hel"
    assert h.conn.receive(now=h.now) == b"lo"
    assert h.conn.receive(now=h.now) == b""
    # Opening the window by 5 octets is below min(buffer/2, MSS): no update
    # (receiver-side silly window avoidance, RFC 9293 3.8.6.2.2).
    h.expect_nothing()


def test_window_update_once_reading_opens_the_window_by_an_mss() -> None:
    """Reading sends a bare window update only when the window the peer knows is down to
    half the buffer or less and would at least double (Linux's tcp_cleanup_rbuf), and
    the edge moves by at least min(buffer / 2, MSS) (RFC 9293 3.8.6.2.2)."""
    h = Harness()
    h.to_established()
    _data(h, 1, b"a" * 1460)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1461), window=65535 - 1460))
    _data(h, 1461, b"b" * 600)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(2061), window=65535 - 2060))
    assert h.events() == [DataAvailable(1460), DataAvailable(2060)]
    assert h.conn.receive(now=h.at(5)) == b"a" * 1460 + b"b" * 600
    h.expect_nothing()  # the peer still knows 63,475 > 65,535 // 2: no bare update
    # The next ACKs carry the edge the first read opened (2,060 >= one MSS). Fill the
    # window until the peer knows only 65,535 - (40,000 - 2,060) = 27,595 octets
    # (<= half), then read.
    offset = 2061
    while offset < 40_001:
        size = min(1460, 40_001 - offset)
        _data(h, offset, b"c" * size)
        offset += size
    h.sent()
    assert h.conn.window_field() == 27_595
    h.conn.receive(now=h.at(10))
    # 65,535 >= 2 * 27,595: the update goes at once.
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(40_001), window=65535))


def test_window_update_threshold_is_half_a_small_buffer() -> None:
    h = _established_with_receive_buffer(1000)
    _data(h, 1, b"x" * 400)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(401), window=600))
    assert h.conn.receive(now=h.now) == b"x" * 400
    h.expect_nothing()  # 400 < min(1000 // 2, 1460)
    _data(h, 401, b"y" * 200)
    # 3.8.6.2.2 keeps RCV.NXT + RCV.WND fixed at 1001 on every segment, not only on
    # window updates: BUFF - USER - WND = 1000 - 200 - 400 = 400 < 500, so WND = 400.
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(601), window=400))
    assert h.conn.receive(now=h.now) == b"y" * 200
    # Now the edge can move from 1001 to 601 + 1000 = 1601: 600 >= 500, an update.
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(601), window=1000))
    _data(h, 601, b"z" * 500)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1101), window=500))
    assert h.conn.receive(now=h.now) == b"z" * 500
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1101), window=1000))


def test_text_beyond_the_window_is_trimmed_and_a_full_buffer_advertises_zero() -> None:
    """3.10.7.4 first step: a segment overlapping the window's right edge is trimmed to
    the window ("only the portion within the window is processed")."""
    h = _established_with_receive_buffer(1000)
    data = bytes(range(250)) * 6
    _data(h, 1, data)  # 1500 octets into a 1000-octet window
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1001), window=0))
    assert h.events() == [DataAvailable(1000)]
    assert h.conn.receive(now=h.now) == data[:1000]
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1001), window=1000))


def test_zero_window_probe_gets_an_ack_and_its_octet_is_not_taken() -> None:
    """3.10.7.4 first step: with RCV.WND = 0 no text is acceptable, but the "special
    allowance" keeps the ACK, and the unacceptable text is answered with an ACK; that
    ACK is what the prober learns the window from (3.8.6.1)."""
    h = _established_with_receive_buffer(1000)
    _data(h, 1, bytes(1000))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1001), window=0))
    h.events()
    h.feed(h.peer(ACK, h.remote_seq(1001), h.local_seq(1), window=1234, payload=b"p"))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1001), window=0))
    assert h.conn.snd_wnd == 1234  # the ACK field was processed
    assert h.conn.receive_buffered == 1000
    assert h.events() == []
    # A bare ACK at RCV.NXT is acceptable with a zero window and needs no answer.
    h.feed(h.peer(ACK, h.remote_seq(1001), h.local_seq(1), window=2000))
    h.expect_nothing()
    assert h.conn.snd_wnd == 2000


def test_overlapping_segment_delivers_only_the_new_octets() -> None:
    """3.10.7.4 first step: text before RCV.NXT is trimmed, the rest delivered."""
    h = Harness()
    h.to_established()
    _data(h, 1, b"hello")
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(6), window=65530))
    _data(h, 3, b"llo wor")
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(10), window=65526))
    assert h.events() == [DataAvailable(5), DataAvailable(9)]
    assert h.conn.receive(now=h.now) == b"hello wor"


def test_old_duplicate_gets_an_ack_and_delivers_nothing() -> None:
    """3.10.7.4 first step: an unacceptable segment is answered with
    <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and dropped."""
    h = Harness()
    h.to_established()
    _data(h, 1, b"hello")
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(6), window=65530))
    h.events()
    _data(h, 1, b"hello")
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(6), window=65530))
    assert h.events() == []
    assert h.conn.receive(now=h.now) == b"hello"


@pytest.mark.parametrize("offset", [65536, 70_000, 2**31 - 10])
def test_segment_beyond_the_window_gets_an_ack(offset: int) -> None:
    h = Harness()
    h.to_established()
    _data(h, offset, b"far")
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.conn.receive_buffered == 0
    assert h.events() == []
    assert h.path == ACTIVE


def test_out_of_order_segment_is_held_and_the_gap_fill_delivers_both() -> None:
    """Text past RCV.NXT waits in the reassembly queue with an immediate duplicate ACK
    (RFC 5681 4.2); the segment that fills the gap releases it all, ACKed at once."""
    h = Harness()
    h.to_established()
    _data(h, 6, b"world")
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.events() == []
    assert h.conn.reassembly_held == 5
    _data(h, 1, b"hello")
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(11), window=65525))
    assert h.conn.reassembly_held == 0
    assert h.conn.receive(now=h.now) == b"helloworld"


def test_out_of_order_fin_is_not_taken_and_gets_a_duplicate_ack() -> None:
    """A FIN past RCV.NXT is not processed (3.10.7.4 eighth step processes FINs in
    sequence); like out-of-order text it gets an immediate duplicate ACK."""
    h = Harness()
    h.to_established()
    h.feed(h.peer(FIN | ACK, h.remote_seq(6), h.local_seq(1)))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.path == ACTIVE
    assert h.events() == []


# -- receiving: eighth step (FIN) -------------------------------------------------------


def test_fin_enters_close_wait_and_reports_end_of_stream() -> None:
    """3.10.7.4 eighth step: advance RCV.NXT over the FIN, send an ACK for it, signal
    "connection closing"; ESTABLISHED -> CLOSE_WAIT."""
    h = Harness()
    h.to_established()
    h.feed(h.peer(FIN | ACK, h.remote_seq(1), h.local_seq(1)), at=7)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(2)))
    assert h.path == [*ACTIVE, State.CLOSE_WAIT]
    assert h.events() == [EndOfStream()]
    assert h.conn.peer_closed
    assert h.conn.receive(now=h.now) == b""
    assert h.next_timer_ms() is None


def test_fin_with_data_delivers_the_data_then_the_end_of_stream() -> None:
    h = Harness()
    h.to_established()
    h.feed(h.peer(FIN | PSH | ACK, h.remote_seq(1), h.local_seq(1), payload=b"bye"))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(5), window=65532))
    assert h.path == [*ACTIVE, State.CLOSE_WAIT]
    assert h.events() == [DataAvailable(3), EndOfStream()]
    assert h.conn.receive(now=h.now) == b"bye"
    assert h.conn.receive(now=h.now) == b""


def test_fin_whose_text_is_cut_by_the_window_is_not_taken() -> None:
    h = _established_with_receive_buffer(1000)
    h.feed(h.peer(FIN | ACK, h.remote_seq(1), h.local_seq(1), payload=b"q" * 1200))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1001), window=0))
    assert h.path == ACTIVE
    assert h.events() == [DataAvailable(1000)]


# -- first and second steps: RST --------------------------------------------------------


@pytest.mark.parametrize("flags", [RST, RST | ACK])
def test_rst_at_rcv_nxt_resets_the_connection(flags: int) -> None:
    """3.10.7.4 second step, ESTABLISHED: RST with SEG.SEQ == RCV.NXT -> "any outstanding
    RECEIVEs and SEND should receive 'reset' responses ... enter the CLOSED state"."""
    h = Harness()
    h.to_established()
    assert h.conn.send(b"in flight", now=h.now) == 9
    h.expect(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"in flight"))
    assert h.next_timer_ms() == 1000
    h.feed(h.peer(flags, h.remote_seq(1), h.local_seq(1)), at=50)
    h.expect_nothing()
    assert h.path == [*ACTIVE, State.CLOSED]
    assert h.events() == [Closed(CloseReason.RESET)]
    assert h.next_timer_ms() is None
    assert h.conn.send_buffered == 0


@pytest.mark.parametrize("offset", [2, 1_000, 65_535])
def test_rst_in_window_but_not_at_rcv_nxt_gets_a_challenge_ack(offset: int) -> None:
    """3.10.7.4 second step (RFC 5961 3.2, MUST): <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>."""
    h = Harness()
    h.to_established()
    h.feed(h.peer(RST, h.remote_seq(offset)), at=3)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.path == ACTIVE
    assert h.events() == []


@pytest.mark.parametrize("offset", [0, -1_000, 65_536, 2**31])
def test_rst_outside_the_window_is_dropped_silently(offset: int) -> None:
    """3.10.7.4 first step: "If the RST bit is set and the sequence number is outside
    the current receive window, silently drop the segment"."""
    h = Harness()
    h.to_established()
    h.feed(h.peer(RST | ACK, h.remote_seq(offset), h.local_seq(1)), at=3)
    h.expect_nothing()
    assert h.path == ACTIVE
    assert h.events() == []


# -- fourth step: SYN -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "offset"), [(SYN, 1), (SYN, 500), (SYN | ACK, 1), (SYN, 0), (SYN | ACK, 0)]
)
def test_syn_gets_a_challenge_ack(flags: int, offset: int) -> None:
    """3.10.7.4 fourth step (RFC 5961 4.2): a SYN in a synchronized state, in the window
    or not, gets <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and is dropped."""
    h = Harness()
    h.to_established()
    h.feed(h.peer(flags, h.remote_seq(offset), h.local_seq(1), options=MSS_OPTION), at=4)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.path == ACTIVE
    assert h.events() == []
    assert h.conn.rcv_nxt == h.remote_seq(1)


# -- fifth step: ACK --------------------------------------------------------------------


def test_segment_without_ack_is_dropped() -> None:
    h = Harness()
    h.to_established()
    h.feed(h.peer(PSH, h.remote_seq(1), payload=b"noack"))
    h.expect_nothing()
    assert h.conn.receive_buffered == 0
    assert h.events() == []


def test_ack_of_something_not_yet_sent_gets_an_ack_and_the_segment_is_dropped() -> None:
    """3.10.7.4 fifth step: "If the ACK acks something not yet sent (SEG.ACK > SND.NXT)
    then send an ACK, drop the segment, and return"."""
    h = Harness()
    h.to_established()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(10), payload=b"data"), at=2)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.conn.receive_buffered == 0
    assert h.conn.snd_una == h.local_seq(1)
    assert h.events() == []


def test_duplicate_ack_is_ignored_but_its_text_is_taken() -> None:
    """3.10.7.4 fifth step: "If the ACK is a duplicate (SEG.ACK =< SND.UNA), it can be
    ignored"; processing goes on with the text."""
    h = Harness()
    h.to_established()
    assert h.conn.send(b"abc", now=h.now) == 3
    h.expect(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"abc"))
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(4)), at=10)
    h.expect_nothing()
    _data(h, 1, b"xyz", ack=1)
    h.expect(h.ours(ACK, h.local_seq(4), h.remote_seq(4), window=65532))
    assert h.conn.snd_una == h.local_seq(4)
    assert h.events() == [DataAvailable(3)]


# -- sending ----------------------------------------------------------------------------


def test_send_segments_at_the_peer_mss_with_psh_on_the_last() -> None:
    """Segments carry at most the peer's MSS (RFC 9293 3.7.1); PSH marks the end of what
    the application gave (3.9.1.2)."""
    h = _established(peer_mss=100)
    data = bytes(range(250))
    assert h.conn.send(data, now=h.now) == 250
    h.expect(
        h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=data[:100]),
        h.ours(ACK, h.local_seq(101), h.remote_seq(1), payload=data[100:200]),
        h.ours(ACK | PSH, h.local_seq(201), h.remote_seq(1), payload=data[200:]),
    )
    assert h.conn.snd_nxt == h.local_seq(251)
    assert h.conn.snd_una == h.local_seq(1)
    assert h.next_timer_ms() == 1000
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(251)), at=20)
    h.expect_nothing()
    assert h.next_timer_ms() is None
    assert h.conn.send_buffered == 0


def test_send_is_limited_by_the_peer_window() -> None:
    """RFC 9293 3.8.6: send no more than SND.UNA + SND.WND; 3.8.6.2.1: the 50 octets left
    in the window are less than half the largest window (75) while data is in flight,
    so they wait instead of going as a runt."""
    h = _established(peer_mss=100, peer_window=150)
    data = bytes(range(250))
    assert h.conn.send(data, now=h.now) == 250
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=data[:100]))
    # The peer takes 100 octets and keeps a 150-octet window: 150 more may go, a full
    # segment and the last 50 octets (all that is queued, TCP_NODELAY in PLAIN).
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(101), window=150), at=30)
    h.expect(
        h.ours(ACK, h.local_seq(101), h.remote_seq(1), payload=data[100:200]),
        h.ours(ACK | PSH, h.local_seq(201), h.remote_seq(1), payload=data[200:]),
    )
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(251), window=150), at=60)
    h.expect_nothing()
    assert h.next_timer_ms() is None


def test_send_returns_what_the_buffer_took_then_reports_space() -> None:
    h = _established(PLAIN.with_changes(send_buffer_size=1000))
    data = b"s" * 1500
    assert h.conn.send(data, now=h.now) == 1000
    h.expect(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"s" * 1000))
    assert h.conn.send(b"more", now=h.now) == 0
    h.expect_nothing()
    assert h.conn.send_space == 0
    assert h.events() == []
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(401)), at=40)
    h.expect_nothing()
    assert h.events() == [SendSpaceAvailable(400)]
    assert h.conn.send(data[1000:1400], now=h.now) == 400
    h.expect(h.ours(ACK | PSH, h.local_seq(1001), h.remote_seq(1), payload=b"s" * 400))
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1401)), at=80)
    h.expect_nothing()
    assert h.events() == []  # send() took everything since: no event owed
    assert h.conn.send_space == 1000


def test_data_and_ack_of_peer_data_share_a_segment() -> None:
    h = Harness()
    h.to_established()
    _data(h, 1, b"ping")
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(5), window=65531))
    assert h.conn.receive(now=h.now) == b"ping"
    assert h.conn.send(b"pong", now=h.now) == 4
    h.expect(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(5), payload=b"pong"))


# -- retransmission (RFC 6298) ---------------------------------------------------------


def test_data_is_retransmitted_with_exponential_backoff_then_times_out() -> None:
    """RFC 6298 5.4-5.6: on expiry resend the earliest unacknowledged segment (SND.NXT
    goes back to SND.UNA) and double the RTO, up to max_rto = 120 s. RFC 9293 3.8.3 R2
    as Linux measures tcp_retries2 = 15: a time budget of 924.6 s (200 ms doubling 9
    times, then six 120 s steps) from the first unanswered transmission."""
    h = Harness()
    h.to_established()
    assert h.conn.send(b"hello", now=h.now) == 5
    segment = h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"hello")
    h.expect(segment)
    deadline = 0
    rto = 1000
    resent_at = []
    while deadline + rto < 924_600:
        deadline += rto
        assert h.next_timer_ms() == deadline
        h.fire(deadline - 1)
        h.expect_nothing()
        h.fire(deadline)
        h.expect(segment)
        resent_at.append(deadline // 1000)
        assert h.conn.snd_nxt == h.local_seq(6)
        rto = min(rto * 2, 120_000)
        assert h.conn.rto == rto * MILLISECOND
    assert resent_at == [1, 3, 7, 15, 31, 63, 127, 247, 367, 487, 607, 727, 847]
    deadline += rto
    assert deadline == 967_000  # the first expiry past the 924.6 s budget
    assert h.next_timer_ms() == deadline
    h.fire(deadline)
    h.expect_nothing()
    assert h.path == [*ACTIVE, State.CLOSED]
    assert h.events() == [Closed(CloseReason.TIMEOUT)]
    assert h.next_timer_ms() is None


def test_data_retries_is_configurable() -> None:
    """data_retries = 2 gives Linux's budget of (2**3 - 1) * 200 ms = 1.4 s."""
    h = _established(PLAIN.with_changes(data_retries=2))
    assert h.conn.send(b"x", now=h.now) == 1
    segment = h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"x")
    h.expect(segment)
    h.fire(1000)
    h.expect(segment)  # 1 s < 1.4 s: resend
    assert h.next_timer_ms() == 3000
    h.fire(3000)
    h.expect_nothing()  # 3 s >= 1.4 s: give up
    assert h.events() == [Closed(CloseReason.TIMEOUT)]


def test_ack_after_a_retransmission_restarts_the_budget() -> None:
    """data_retries = 4: budget (2**5 - 1) * 200 ms = 6.2 s, counted from the head
    segment's transmission, so an ACK of new data starts it over."""
    h = _established(PLAIN.with_changes(data_retries=4))
    assert h.conn.send(b"a", now=h.now) == 1
    h.expect(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"a"))
    h.fire(1000)
    h.fire(3000)
    h.sent()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(2)), at=3100)
    assert h.next_timer_ms() is None
    assert h.conn.send(b"b", now=h.now) == 1
    h.expect(h.ours(ACK | PSH, h.local_seq(2), h.remote_seq(1), payload=b"b"))
    # No RTT sample was taken (Karn), so the backed-off RTO of 4 s stays.
    assert h.next_timer_ms() == 7100
    h.fire(7100)
    assert h.state is State.ESTABLISHED  # 4 s of the fresh 6.2 s budget used
    h.fire(15_100)
    assert h.events() == [Closed(CloseReason.TIMEOUT)]


def test_rto_after_a_sample_is_bounded_by_the_default_min_rto() -> None:
    """RFC 6298 2.2: first sample R -> SRTT = R, RTTVAR = R/2, RTO = SRTT + 4*RTTVAR =
    300 ms; 2.4: rounded up to the 1 s minimum."""
    h = _established(at=100)
    assert h.conn.srtt == 100 * MS
    assert h.conn.rto == 1 * SECOND
    assert h.conn.send(b"t", now=h.now) == 1
    h.sent()
    assert h.next_timer_ms() == 1100


def test_rtt_samples_follow_rfc_6298() -> None:
    """RFC 6298 2.2-2.3 with alpha = 1/8, beta = 1/4, K = 4 and min_rto lowered."""
    h = _established(PLAIN.with_changes(min_rto=10 * MILLISECOND), at=100)
    # First sample (the SYN,ACK, 100 ms): SRTT = 100, RTTVAR = 50, RTO = 300 ms.
    assert h.conn.srtt == 100 * MS
    assert h.conn.rto == 300 * MS
    assert h.conn.send(b"one", now=h.now) == 3
    h.expect(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"one"))
    assert h.next_timer_ms() == 400
    # Second sample 60 ms: RTTVAR = 3/4*50 + 1/4*|100-60| = 47.5, SRTT = 7/8*100 + 1/8*60
    # = 95, RTO = 95 + 4*47.5 = 285 ms.
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(4)), at=160)
    h.expect_nothing()
    assert h.conn.srtt == 95 * MS
    assert h.conn.rto == 285 * MS
    assert h.next_timer_ms() is None
    assert h.conn.send(b"two", now=h.now) == 3
    h.sent()
    assert h.next_timer_ms() == 445


def test_karns_rule_no_sample_from_a_retransmitted_segment() -> None:
    """RFC 6298 3 (Karn): an ACK of a retransmitted segment gives no sample and the
    backed-off RTO stays until a segment sent once is acknowledged (5.7 note)."""
    h = _established(PLAIN.with_changes(min_rto=10 * MILLISECOND), at=100)
    assert h.conn.send(b"k", now=h.now) == 1
    segment = h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"k")
    h.expect(segment)
    assert h.next_timer_ms() == 400
    h.fire(400)
    h.expect(segment)
    assert h.conn.rto == 600 * MS
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(2)), at=450)
    h.expect_nothing()
    assert h.conn.srtt == 100 * MS  # unchanged: no sample
    assert h.conn.rto == 600 * MS
    assert h.conn.send(b"l", now=h.now) == 1
    h.expect(h.ours(ACK | PSH, h.local_seq(2), h.remote_seq(1), payload=b"l"))
    assert h.next_timer_ms() == 1050
    # A segment sent once: sample 50 ms -> RTTVAR = (3*50 + 50)/4 = 50, SRTT = 93.75,
    # RTO = 293.75 ms.
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(3)), at=500)
    assert h.conn.srtt == 93_750
    assert h.conn.rto == 293_750


def test_rto_is_three_seconds_after_a_handshake_without_sample() -> None:
    """RFC 6298 5.7: the SYN timed out, so once data transmission begins the RTO is
    re-initialised to 3 s (Linux: TCP_TIMEOUT_FALLBACK)."""
    h = Harness()
    h.to_syn_sent()
    h.fire(1000)
    h.expect(h.ours(SYN, LOCAL_ISS, options=MSS_OPTION))
    h.feed(h.peer(SYN | ACK, REMOTE_ISS, h.local_seq(1), options=MSS_OPTION), at=1100)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.conn.srtt is None  # Karn: the resent SYN gives no sample
    assert h.conn.rto == 3 * SECOND
    assert h.conn.send(b"d", now=h.now) == 1
    h.sent()
    assert h.next_timer_ms() == 4100


def test_partial_ack_restarts_the_timer() -> None:
    """RFC 6298 5.3: an ACK of new data restarts the timer with the current RTO."""
    h = _established(peer_mss=100)
    data = bytes(200)
    assert h.conn.send(data, now=h.now) == 200
    assert len(h.sent()) == 2
    assert h.next_timer_ms() == 1000
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(101)), at=300)
    h.expect_nothing()
    assert h.next_timer_ms() == 1300
    h.fire(1300)
    h.expect(h.ours(ACK | PSH, h.local_seq(101), h.remote_seq(1), payload=data[100:]))
    assert h.next_timer_ms() == 3300


# -- zero window (RFC 9293 3.8.6.1) -----------------------------------------------------


def test_zero_window_is_probed_with_backoff_until_it_opens() -> None:
    """RFC 9293 3.8.6.1 (MUST-36, SHLD-29, SHLD-30): with a zero window and data waiting,
    probe with one new octet after an RTO, backing off exponentially; when the window
    opens, send from SND.UNA."""
    h = Harness()
    h.to_established()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=0), at=10)
    h.expect_nothing()
    assert h.conn.snd_wnd == 0
    assert h.conn.send(b"hello", now=h.now) == 5
    h.expect_nothing()
    assert h.next_timer_ms() == 1010
    assert h.conn.timers() == {"persist": 1010 * MS}
    probe = h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=b"h")
    h.fire(1010)
    h.expect(probe)
    assert h.next_timer_ms() == 3010
    # The peer answers the probe: still no room, octet not taken.
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=0), at=1050)
    h.expect_nothing()
    h.fire(3010)
    h.expect(probe)
    assert h.next_timer_ms() == 7010
    # The window opens: everything goes from SND.UNA, probing stops, the RTO runs.
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=1000), at=7100)
    h.expect(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"hello"))
    assert h.conn.timers() == {"retransmit": 8100 * MS}
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(6), window=1000), at=7200)
    h.expect_nothing()
    assert h.next_timer_ms() is None


def test_window_shrinking_to_zero_mid_transfer_arms_the_probe_once_acked() -> None:
    h = _established(peer_mss=100, peer_window=100)
    data = bytes(range(150))
    assert h.conn.send(data, now=h.now) == 150
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=data[:100]))
    assert h.conn.timers() == {"retransmit": 1000 * MS}
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(101), window=0), at=100)
    h.expect_nothing()
    assert h.conn.timers() == {"persist": 1100 * MS}
    h.fire(1100)
    h.expect(h.ours(ACK, h.local_seq(101), h.remote_seq(1), payload=data[100:101]))
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(101), window=500), at=1200)
    h.expect(h.ours(ACK | PSH, h.local_seq(101), h.remote_seq(1), payload=data[100:]))


# -- user calls (3.10.2-3.10.5) --------------------------------------------------------


def test_abort_sends_rst_at_snd_nxt() -> None:
    """3.10.5 ESTABLISHED: "Send a reset segment: <SEQ=SND.NXT><CTL=RST>", flush the
    queues, enter CLOSED."""
    h = Harness()
    h.to_established()
    assert h.conn.send(b"unacked", now=h.now) == 7
    h.sent()
    h.conn.abort(now=h.at(5))
    h.expect(h.ours(RST, h.local_seq(8), window=0))
    assert h.path == [*ACTIVE, State.CLOSED]
    assert h.events() == [Closed(CloseReason.ABORTED)]
    assert h.next_timer_ms() is None
    assert h.conn.send_buffered == 0


def test_close_sends_fin_after_the_queued_data() -> None:
    """3.10.4 ESTABLISHED: "Queue this until all preceding SENDs have been segmentized,
    then form a FIN segment and send it", enter FIN_WAIT_1."""
    h = _established(peer_mss=100, peer_window=100)
    data = bytes(range(150))
    assert h.conn.send(data, now=h.now) == 150
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=data[:100]))
    h.conn.close(now=h.now)
    h.expect_nothing()  # 50 octets wait for window: the FIN waits behind them
    assert h.path == [*ACTIVE, State.FIN_WAIT_1]
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(101), window=100), at=50)
    h.expect(h.ours(ACK | PSH | FIN, h.local_seq(101), h.remote_seq(1), payload=data[100:]))
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(152), window=100), at=100)
    h.expect_nothing()
    assert h.path == [*ACTIVE, State.FIN_WAIT_1, State.FIN_WAIT_2]


def test_shutdown_then_send_is_an_error() -> None:
    """3.10.2 FIN-WAIT-1: SEND after CLOSE is "error: connection closing"."""
    h = Harness()
    h.to_established()
    h.conn.shutdown(now=h.now)
    h.expect(h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.path == [*ACTIVE, State.FIN_WAIT_1]
    with pytest.raises(InvalidOperation) as raised:
        h.conn.send(b"late", now=h.now)
    assert raised.value.call == "send"
    assert raised.value.state is State.FIN_WAIT_1
    assert raised.value.reason == "connection closing"
    h.expect_nothing()
    assert h.conn.send_buffered == 0
    # The receive side stays open after a shutdown.
    _data(h, 1, b"still", ack=2)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(6), window=65530))
    assert h.path == [*ACTIVE, State.FIN_WAIT_1, State.FIN_WAIT_2]


def test_close_after_shutdown_sends_nothing_more() -> None:
    h = Harness()
    h.to_established()
    h.conn.shutdown(now=h.now)
    h.expect(h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(1)))
    h.conn.close(now=h.now)
    h.expect_nothing()
    with pytest.raises(InvalidOperation) as raised:
        h.conn.close(now=h.now)
    assert (raised.value.call, raised.value.state) == ("close", State.FIN_WAIT_1)


def test_close_twice_is_an_error_that_changes_nothing() -> None:
    h = Harness()
    h.to_established()
    h.conn.close(now=h.now)
    h.expect(h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(1)))
    with pytest.raises(InvalidOperation) as raised:
        h.conn.close(now=h.now)
    assert raised.value.call == "close"
    assert raised.value.state is State.FIN_WAIT_1
    h.expect_nothing()
    assert h.path == [*ACTIVE, State.FIN_WAIT_1]
    assert h.events() == []


@pytest.mark.parametrize("call", ["open", "listen"])
def test_open_on_an_established_connection_is_an_error(call: str) -> None:
    h = Harness()
    h.to_established()
    with pytest.raises(InvalidOperation) as raised:
        getattr(h.conn, call)(now=h.now)
    assert (raised.value.call, raised.value.state) == (call, State.ESTABLISHED)
    h.expect_nothing()
    assert h.path == ACTIVE
