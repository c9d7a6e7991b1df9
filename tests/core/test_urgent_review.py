"""Review of urgent data (RFC 9293 3.8.5, 3.10.7.4 sixth step), exact segments.

What tests/core/test_urgent.py leaves out: URG on out-of-order, unacceptable and
zero-window segments, pointers that recede or lie far past the window, reading across
the urgent mark, the step order of events, every state where URG is taken or ignored;
and on the sending side urgent data longer than a segment, SEND of nothing or of more
than the buffer takes, SEND in SYN_SENT and CLOSE_WAIT, the FIN, every kind of
retransmission (RTO, fast retransmit, SACK recovery, zero-window probe), the end of
urgent mode, and SND.UP across the 2**32 wrap.

Facts used, as Linux implements them: tcp_transmit_skb puts URG and SND.UP - SEG.SEQ on
every segment that starts before SND.UP, or 0xFFFF when SND.UP is more than 16 bits
away and SEG.SEQ + 0xFFFF is after tp->snd_nxt (the highest sequence number sent: an
RTO does not move it back, tcp_enter_loss keeps it as high_seq); tcp_nagle_test lets
small segments go in urgent mode; tcp_rcv_state_process runs tcp_urg on a SYN,ACK
("Do step6 onward by hand").
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from tcpstack.core.config import PLAIN
from tcpstack.core.connection import Connection
from tcpstack.core.events import DataAvailable, EndOfStream, Established, UrgentData
from tcpstack.core.segment import Datagram, Flag, Options, Segment
from tcpstack.core.seq import seq_add
from tcpstack.core.state import State
from tests.core.harness import (
    ACK,
    FIN,
    LOCAL_IP,
    LOCAL_PORT,
    MSS_OPTION,
    PSH,
    REMOTE_IP,
    REMOTE_ISS,
    REMOTE_PORT,
    SYN,
    Harness,
)
from tests.core.test_endpoint import HOST, ISS, PEER, PEER_ISS, handshake, make, sent
from tests.core.test_urgent import URG, established, urgent
from tests.core.transfer_support import TransferHarness, pattern

# ------------------------------------------------------------------ receiving


def test_urg_on_a_segment_beyond_a_gap_is_taken_before_its_text_is_reassembled() -> None:
    """3.10.7.4: the sixth step runs for every acceptable segment, in order or not (the
    text is held for reassembly, SHLD-31). SEG.UP = remote 7 is six octets past what the
    application has read, two of them not yet received."""
    h = established()
    h.feed(urgent(h.peer(ACK, h.remote_seq(4), h.local_seq(1), payload=b"def"), 3))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))  # RFC 5681 4.2 duplicate ACK
    assert h.events() == [UrgentData(6)]
    assert h.conn.urgent_remaining == 6
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), payload=b"abc"))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(7)))
    assert h.events() == [DataAvailable(6)]  # the same run: no second signal
    assert h.conn.receive(now=h.now) == b"abcdef"
    assert h.conn.urgent_remaining == 0
    assert h.conn.stats == {}


def test_a_receding_urgent_pointer_is_ignored() -> None:
    """RCV.UP <- max(RCV.UP, SEG.UP) (3.10.7.4); 3.8.5: the pointer cannot recede, and a
    receiver should be robust to invalid values."""
    h = established()
    h.feed(urgent(h.peer(ACK, h.remote_seq(1), h.local_seq(1), payload=b"ab"), 10))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(3)))
    assert h.events() == [UrgentData(10), DataAvailable(2)]
    # SEG.UP = remote 4, behind RCV.UP = remote 11.
    h.feed(urgent(h.peer(ACK, h.remote_seq(3), h.local_seq(1), payload=b"cd"), 1))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(5)))
    assert h.events() == [DataAvailable(4)]
    assert h.conn.urgent_remaining == 10


def test_repeated_0xffff_pointers_move_rcv_up_and_signal_each_advance() -> None:
    """What a Linux sender does while SND.UP is more than 16 bits ahead: each segment
    says SEG.SEQ + 0xFFFF. RCV.UP follows it (max), past the window and past anything
    received, and each advance is signalled (MUST-32: "whenever the urgent pointer
    advances in the data stream", as Linux's SIGURG; 3.8.5's "the update will be
    invisible to the user" is the weaker text); urgent_remaining has the extent."""
    h = established()
    h.feed(urgent(h.peer(ACK, h.remote_seq(1), h.local_seq(1), payload=b"abc"), 0xFFFF))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(4)))
    assert h.events() == [UrgentData(0xFFFF), DataAvailable(3)]
    assert h.conn.receive(now=h.now) == b"abc"
    assert h.conn.urgent_remaining == 0xFFFF - 3
    h.feed(urgent(h.peer(ACK, h.remote_seq(4), h.local_seq(1), payload=b"defg"), 0xFFFF))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(8)))
    assert h.events() == [UrgentData(0xFFFF), DataAvailable(4)]
    # RCV.UP = remote 3 + 0xFFFF + 1 (the second segment starts 3 later).
    assert h.conn.urgent_remaining == 0xFFFF + 3 - 3
    assert h.conn.stats == {}


def test_urg_on_an_unacceptable_segment_is_not_taken() -> None:
    """First step: a segment outside the window is answered with an ACK and dropped
    before the sixth step, URG and all."""
    h = established()
    h.feed(urgent(h.peer(ACK, h.remote_seq(70_000), h.local_seq(1), payload=b"x"), 1))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.events() == []
    assert h.conn.urgent_remaining == 0
    assert h.conn.stats == {"conn.out_of_window": 1}


def test_with_a_zero_window_only_an_in_sequence_segment_gives_its_urg() -> None:
    """MUST-66 (3.4) / 3.10.7.4 first step: with RCV.WND = 0 only SEG.SEQ = RCV.NXT keeps
    the "special allowance" for ACK, URG and RST; one octet further on is unacceptable."""
    h = Harness(replace(PLAIN, receive_buffer_size=4))
    h.to_established()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), payload=b"wxyz"))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(5), window=0))
    assert h.events() == [DataAvailable(4)]
    h.feed(urgent(h.peer(ACK, h.remote_seq(6), h.local_seq(1), payload=b"!"), 1))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(5), window=0))
    assert h.events() == []
    assert h.conn.stats == {"conn.out_of_window": 1}
    h.feed(urgent(h.peer(ACK, h.remote_seq(5), h.local_seq(1)), 2))
    h.expect_nothing()  # an acceptable bare ACK needs no answer
    assert h.events() == [UrgentData(6)]


def test_reading_counts_down_to_the_mark_then_a_new_run_is_signalled() -> None:
    """MUST-33: urgent_remaining after every receive(max_bytes); reading exactly up to
    the mark ends the run, so the next pointer starts a new one (MUST-32)."""
    h = established()
    h.feed(urgent(h.peer(ACK, h.remote_seq(1), h.local_seq(1), payload=b"abcdefgh"), 5))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(9)))
    assert h.events() == [UrgentData(5), DataAvailable(8)]
    remaining = []
    for _ in range(3):
        h.conn.receive(2, now=h.now)
        remaining.append(h.conn.urgent_remaining)
    assert remaining == [3, 1, 0]  # after 2, 4 and 6 octets read: the mark was at 5
    h.feed(urgent(h.peer(ACK, h.remote_seq(9), h.local_seq(1), payload=b"i"), 1))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(10)))
    assert h.events() == [UrgentData(3), DataAvailable(3)]  # "gh" unread, then the 'i'


def test_urg_text_and_fin_are_reported_in_step_order() -> None:
    """Sixth (URG), seventh (text), eighth (FIN) steps of 3.10.7.4 on one segment."""
    h = established()
    h.feed(urgent(h.peer(ACK | FIN, h.remote_seq(1), h.local_seq(1), payload=b"abc"), 3))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(5)))
    assert h.events() == [UrgentData(3), DataAvailable(3), EndOfStream()]
    assert h.state is State.CLOSE_WAIT
    assert h.conn.urgent_remaining == 3


def test_a_pointer_past_the_peers_fin_counts_only_what_is_left_to_read() -> None:
    """3.8.5: a receiver "should be robust to invalid urgent pointer values". SEG.UP =
    remote 11 lies past the FIN (remote 4): no octet there can ever arrive, so once the
    stream has ended MUST-33's "how much urgent data remains to be read" is what is
    buffered; a reader looping until urgent_remaining is 0 must not spin forever."""
    h = established()
    h.feed(urgent(h.peer(ACK | FIN, h.remote_seq(1), h.local_seq(1), payload=b"abc"), 10))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(5)))
    assert h.events() == [UrgentData(10), DataAvailable(3), EndOfStream()]
    assert h.conn.urgent_remaining == 3
    assert h.conn.receive(2, now=h.now) == b"ab"
    assert h.conn.urgent_remaining == 1
    assert h.conn.receive(now=h.now) == b"c"
    assert h.conn.urgent_remaining == 0


def test_after_a_reset_only_buffered_octets_remain_urgent() -> None:
    """RCV.UP 10 octets ahead, then the peer resets: nothing more arrives; what is
    buffered stays readable and is all that remains."""
    h = established()
    h.feed(urgent(h.peer(ACK, h.remote_seq(1), h.local_seq(1), payload=b"ab"), 10))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(3)))
    h.feed(h.peer(Flag.RST, h.remote_seq(3)))
    assert h.state is State.CLOSED
    assert h.conn.urgent_remaining == 2
    assert h.conn.receive(now=h.now) == b"ab"
    assert h.conn.urgent_remaining == 0


@pytest.mark.parametrize("state", [State.FIN_WAIT_1, State.FIN_WAIT_2])
def test_urg_is_taken_in_fin_wait_states(state: State) -> None:
    """3.10.7.4 sixth step: ESTABLISHED, FIN-WAIT-1 and FIN-WAIT-2 take URG."""
    h = Harness()
    if state is State.FIN_WAIT_1:
        h.to_fin_wait_1()
        ack = h.local_seq(1)  # our FIN not acknowledged: we stay in FIN_WAIT_1
    else:
        h.to_fin_wait_2()
        ack = h.local_seq(2)
    h.events()
    h.feed(urgent(h.peer(ACK, h.remote_seq(1), ack, payload=b"ab"), 2))
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(3)))
    assert h.events() == [UrgentData(2), DataAvailable(2)]
    assert h.state is state


@pytest.mark.parametrize("state", [State.CLOSING, State.LAST_ACK])
def test_urg_after_the_peers_fin_is_ignored_in_closing_and_last_ack(state: State) -> None:
    """3.10.7.4 sixth step, CLOSE-WAIT and later: "This should not occur since a FIN has
    been received from the remote side. Ignore the URG." (CLOSE_WAIT: test_urgent.py.)"""
    h = Harness()
    if state is State.CLOSING:
        h.to_closing()
    else:
        h.to_last_ack()
    h.events()
    h.feed(urgent(h.peer(ACK, h.remote_seq(2), h.local_seq(1)), 5))
    h.expect_nothing()
    assert h.events() == []
    assert h.conn.urgent_remaining == 0
    assert h.state is state


def test_urg_on_the_ack_that_completes_a_passive_open_is_taken() -> None:
    """Fifth step in SYN-RECEIVED: "enter ESTABLISHED state and continue processing", so
    the sixth step sees ESTABLISHED and takes the URG."""
    h = Harness()
    h.to_syn_received()
    h.feed(urgent(h.peer(ACK, h.remote_seq(1), h.local_seq(1), payload=b"abc"), 2))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(4)))
    assert h.events() == [Established(), UrgentData(2), DataAvailable(3)]
    assert h.state is State.ESTABLISHED


def test_urg_segments_are_never_counted_as_drops_by_the_endpoint() -> None:
    """One counter per dropped input (tests/security): accepted URG segments, whatever
    their pointer (1, past the data, 0xFFFF), count nothing and deliver their text."""
    endpoint, _ = make()
    endpoint.listen(80)
    handshake(endpoint, 5000)
    conn = endpoint.accept(80)
    assert conn is not None
    peer_seq = seq_add(PEER_ISS, 1)
    for pointer, payload in ((1, b"a"), (40, b"bc"), (0xFFFF, b"def")):
        segment = Segment(5000, 80, peer_seq, ISS + 1, ACK | URG, 65535, pointer, payload=payload)
        endpoint.receive_datagram(Datagram(PEER, HOST, segment), now=0)
        peer_seq = seq_add(peer_seq, len(payload))
        [reply] = sent(endpoint)
        assert (reply.segment.ack, reply.segment.flags) == (peer_seq, ACK)
    assert endpoint.stats == {}
    assert conn.receive(now=0) == b"abcdef"


def test_urg_on_a_syn_ack_with_text_is_taken() -> None:
    """RFC 9293 3.10.7.3: "If there are other controls or text in the segment, then
    continue processing at the sixth step ... where the URG bit is checked"; Linux runs
    tcp_urg on it too. SEG.UP = IRS + 3: the two data octets are urgent."""
    h = Harness()
    h.to_syn_sent()
    synack = h.peer(SYN | ACK, REMOTE_ISS, h.local_seq(1), payload=b"xyz", options=MSS_OPTION)
    h.feed(urgent(synack, 3))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(4)))
    assert h.events() == [Established(), UrgentData(2), DataAvailable(3)]


# ------------------------------------------------------------------ sending


def test_urgent_data_longer_than_a_segment_gives_each_segment_its_pointer() -> None:
    """MUST-31 (urgent data of any length), MUST-62 (the pointer names the octet after
    it): 3000 urgent octets in segments of 1460, 1460 and 80, each SND.UP - SEG.SEQ."""
    h = established()
    data = pattern(3000)
    assert h.conn.send(data, now=h.now, urgent=True) == 3000
    h.expect(
        urgent(h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=data[:1460]), 3000),
        urgent(h.ours(ACK, h.local_seq(1461), h.remote_seq(1), payload=data[1460:2920]), 1540),
        urgent(h.ours(ACK | PSH, h.local_seq(2921), h.remote_seq(1), payload=data[2920:]), 80),
    )


def test_send_urgent_of_nothing_or_into_a_full_buffer_leaves_urgent_mode_alone() -> None:
    """3.8.5: "To send an urgent indication, the user must also send at least one data
    octet" (Linux: MSG_OOB marks nothing when no byte was copied)."""
    h = Harness(replace(PLAIN, send_buffer_size=4))
    h.to_established()
    assert h.conn.send(b"", now=h.now, urgent=True) == 0
    assert h.conn.snd_up is None
    h.expect_nothing()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=0))
    assert h.conn.send(b"abcd", now=h.now) == 4  # fills the buffer; the window is shut
    assert h.conn.send(b"!", now=h.now, urgent=True) == 0
    assert h.conn.snd_up is None
    h.expect_nothing()


def test_send_urgent_partly_taken_points_past_the_octets_taken() -> None:
    """SND.UP follows the last urgent octet the buffer took (Linux: tcp_push with
    MSG_OOB after a partial copy marks write_seq)."""
    h = Harness(replace(PLAIN, send_buffer_size=4))
    h.to_established()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=0))
    assert h.conn.send(b"abcdef", now=h.now, urgent=True) == 4
    assert h.conn.snd_up == h.local_seq(5)
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=10))
    h.expect(urgent(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"abcd"), 4))


def test_urgent_send_in_syn_sent_waits_for_established_and_the_syn_has_no_urg() -> None:
    """3.10.2 SEND in SYN-SENT queues the data; the SYN never carries URG (as Linux), the
    data segment after the SYN,ACK does."""
    h = Harness()
    h.to_syn_sent()
    assert h.conn.send(b"abc", now=h.now, urgent=True) == 3
    assert h.conn.snd_up == h.local_seq(4)
    h.expect_nothing()
    h.fire(1000)  # the SYN is resent without URG
    h.expect(h.ours(SYN, h.local_seq(0), options=MSS_OPTION))
    h.feed(h.peer(SYN | ACK, REMOTE_ISS, h.local_seq(1), options=MSS_OPTION))
    h.expect(urgent(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"abc"), 3))


def test_urgent_send_in_close_wait() -> None:
    h = Harness()
    h.to_close_wait()
    assert h.conn.send(b"ab", now=h.now, urgent=True) == 2
    h.expect(urgent(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(2), payload=b"ab"), 2))


def test_the_fin_with_the_last_urgent_octet_carries_urg_a_later_fin_does_not() -> None:
    """A segment starting before SND.UP is marked, FIN or not; a bare FIN at SND.UP is
    not (Linux: only before(tcb->seq, snd_up))."""
    h = established()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=0))
    h.conn.send(b"ab", now=h.now, urgent=True)
    h.conn.close(now=h.now)
    h.expect_nothing()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=100))
    fin = h.ours(FIN | ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"ab")
    h.expect(urgent(fin, 2))
    assert h.state is State.FIN_WAIT_1
    # Only the data acknowledged: the FIN resent at the RTO starts at SND.UP.
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(3), window=100))
    h.expect_nothing()
    assert h.conn.snd_up is None
    h.fire(1000)
    h.expect(h.ours(FIN | ACK, h.local_seq(3), h.remote_seq(1)))


def test_an_rto_retransmission_carries_urg_until_snd_una_reaches_snd_up() -> None:
    """Urgent mode lasts while SND.UNA < SND.UP (Linux's tcp_urg_mode): a partial ACK
    keeps it, so the resent segment is marked; the ACK of SND.UP ends it."""
    h = established()
    data = pattern(3000)
    h.conn.send(data, now=h.now, urgent=True)
    h.sent()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1461)), at=10)
    h.expect_nothing()
    assert h.conn.snd_up == h.local_seq(3001)
    h.fire(1010)  # RTO 1 s after the partial ACK restarted the timer
    h.expect(
        urgent(h.ours(ACK, h.local_seq(1461), h.remote_seq(1), payload=data[1460:2920]), 1540),
        urgent(h.ours(ACK | PSH, h.local_seq(2921), h.remote_seq(1), payload=data[2920:]), 80),
    )
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(3001)), at=1020)
    assert h.conn.snd_up is None
    h.conn.send(b"more", now=h.now)
    h.expect(h.ours(ACK | PSH, h.local_seq(3001), h.remote_seq(1), payload=b"more"))


def test_a_fast_retransmission_carries_urg() -> None:
    """RFC 5681 3.2: the third duplicate ACK resends SND.UNA's segment, still marked."""
    h = TransferHarness(PLAIN.with_changes(congestion_control="newreno"))
    h.open_with(Options(mss=100))
    data = pattern(500)
    h.conn.send(data, now=h.now, urgent=True)
    h.expect(
        *(
            urgent(h.data_out(1 + i, data[i : i + 100], psh=i == 400), 500 - i)
            for i in range(0, 500, 100)
        )
    )
    for t in (50, 51):
        h.ack_from_peer(1, at=t)
        h.expect_nothing()
    h.ack_from_peer(1, at=52)
    h.expect(urgent(h.data_out(1, data[:100]), 500))
    assert h.conn.in_recovery


def test_a_sack_recovery_retransmission_carries_urg() -> None:
    """RFC 6675: octets 101-500 SACKed, the hole 1-100 resent, marked with SND.UP - 1."""
    h = TransferHarness(PLAIN.with_changes(congestion_control="newreno", sack=True))
    h.open_with(Options(mss=100, sack_permitted=True))
    data = pattern(500)
    h.conn.send(data, now=h.now, urgent=True)
    assert len(h.sent()) == 5
    for t, right in ((50, 201), (51, 301), (52, 401)):
        blocks = Options(sack_blocks=((h.local_seq(101), h.local_seq(right)),))
        h.ack_from_peer(1, at=t, options=blocks)
    h.expect(urgent(h.data_out(1, data[:100]), 500))
    assert h.conn.in_recovery


def test_a_zero_window_probe_carries_urg() -> None:
    """3.8.6.1: the probe octet at SND.UNA lies before SND.UP, so it is marked; the
    peer learns of the urgent data while its window is shut."""
    h = established()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=0))
    h.conn.send(b"abc", now=h.now, urgent=True)
    h.expect_nothing()
    assert h.next_timer_ms() == 1000
    h.fire(1000)
    h.expect(urgent(h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=b"a"), 3))


def test_after_an_rto_no_0xffff_pointer_names_data_already_sent() -> None:
    """Linux sends 0xFFFF only while SEG.SEQ + 0xFFFF is after tp->snd_nxt, which an
    RTO leaves at the highest octet sent. 65535 octets went out before the urgent '!'
    (SND.UP = local 65537): resent after the timeout, the first segment (SND.UP 65536
    ahead) would point at local 65536, an octet already sent, so it goes unmarked; the
    others are within 16 bits of SND.UP and carry the exact pointer."""
    h = Harness(replace(PLAIN, send_buffer_size=262_144))
    h.to_established()
    bulk = pattern(65_535)
    assert h.conn.send(bulk, now=h.now) == 65_535
    first_flight = h.sent()
    assert sum(len(s.payload) for s in first_flight) == 65_535
    assert h.conn.send(b"!", now=h.now, urgent=True) == 1
    h.expect_nothing()  # the window is full
    h.fire(1000)
    resent = h.sent()
    expected = []
    for index in range(44):  # 44 full segments: the last 1295 octets wait (SWS)
        offset = 1 + index * 1460
        seg = h.ours(ACK, h.local_seq(offset), h.remote_seq(1), payload=bulk[offset - 1 :][:1460])
        pointer = 65_537 - offset
        expected.append(urgent(seg, pointer) if pointer <= 0xFFFF else seg)
    assert resent == expected


def test_snd_up_across_the_sequence_number_wrap() -> None:
    """ISS = 2**32 - 2: the urgent octets sit on both sides of the wrap, SND.UP = 3."""
    iss = 2**32 - 2
    h = Harness()
    h.conn = Connection(
        (LOCAL_IP, LOCAL_PORT),
        (REMOTE_IP, REMOTE_PORT),
        config=PLAIN,
        isn_generator=lambda _tuple, _now: iss,
    )
    h.conn.open(now=0)
    h.expect(h.ours(SYN, iss, options=MSS_OPTION))
    h.feed(h.peer(SYN | ACK, REMOTE_ISS, seq_add(iss, 1), options=MSS_OPTION))
    h.expect(h.ours(ACK, seq_add(iss, 1), h.remote_seq(1)))
    assert h.conn.send(b"abcd", now=h.now, urgent=True) == 4
    assert h.conn.snd_up == 3
    h.expect(urgent(h.ours(ACK | PSH, 2**32 - 1, h.remote_seq(1), payload=b"abcd"), 4))
    h.feed(h.peer(ACK, h.remote_seq(1), 1))  # two octets acknowledged, across the wrap
    assert h.conn.snd_up == 3
    h.fire(1000)
    h.expect(urgent(h.ours(ACK | PSH, 1, h.remote_seq(1), payload=b"cd"), 2))
    h.feed(h.peer(ACK, h.remote_seq(1), 3))
    assert h.conn.snd_up is None


def test_urgent_data_is_not_held_back_by_nagle() -> None:
    h = Harness(PLAIN.with_changes(nodelay=False))
    h.to_established()
    h.conn.send(b"a", now=h.now)
    h.expect(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"a"))
    h.conn.send(b"!", now=h.now, urgent=True)
    h.expect(urgent(h.ours(ACK | PSH, h.local_seq(2), h.remote_seq(1), payload=b"!"), 1))
