"""Urgent data (RFC 9293 3.8.5, MUST-30..33, MUST-62, MUST-66), exact segments.

The urgent pointer names the octet following the urgent data (MUST-62): SEG.UP =
SEG.SEQ + the urgent field. Urgent octets stay in the stream, in order; the application
is told when urgent data appears and whenever the pointer advances (UrgentData,
MUST-32), and can ask how much is left
(Connection.urgent_remaining, MUST-33). Sending: send(urgent=True) moves SND.UP past the
bytes it queued, and every segment starting before SND.UP carries URG with the pointer
SND.UP - SEG.SEQ, as Linux sends it.
"""

from __future__ import annotations

from dataclasses import replace

from tcpstack.core.config import PLAIN
from tcpstack.core.events import DataAvailable, UrgentData
from tcpstack.core.segment import Flag, Segment
from tcpstack.core.state import State
from tests.core.harness import ACK, PSH, Harness

URG = Flag.URG


def urgent(seg: Segment, pointer: int) -> Segment:
    return replace(seg, flags=seg.flags | URG, urgent=pointer)


def established() -> Harness:
    h = Harness()
    h.to_established()
    return h


# ------------------------------------------------------------------ receiving


def test_urgent_data_within_one_segment_is_signalled_and_read_in_line() -> None:
    h = established()
    h.feed(urgent(h.peer(ACK, h.remote_seq(1), h.local_seq(1), payload=b"abcdef"), 3))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(7)))
    # Sixth step (URG) before the seventh (text): the signal comes first.
    assert h.events() == [UrgentData(3), DataAvailable(6)]
    assert h.conn.urgent_remaining == 3
    assert h.conn.receive(2, now=h.now) == b"ab"
    assert h.conn.urgent_remaining == 1
    assert h.conn.receive(now=h.now) == b"cdef"  # the urgent octets stay in the stream
    assert h.conn.urgent_remaining == 0


def test_urgent_data_spanning_segments_is_signalled_once_must_31() -> None:
    """A pointer past the segment's own data (Linux sends SND.UP - SEG.SEQ on every
    segment before the urgent data's end; urgent data of any length, MUST-31) is
    ordinary input, not an error. The same SEG.UP again is not an advance."""
    h = established()
    h.feed(urgent(h.peer(ACK, h.remote_seq(1), h.local_seq(1), payload=b"abc"), 10))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(4)))
    assert h.events() == [UrgentData(10), DataAvailable(3)]
    # Same SEG.UP (remote 11) from the next segment: the same run, no second signal.
    h.feed(urgent(h.peer(ACK, h.remote_seq(4), h.local_seq(1), payload=b"defghij"), 7))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(11)))
    assert h.events() == [DataAvailable(10)]
    h.feed(h.peer(ACK | PSH, h.remote_seq(11), h.local_seq(1), payload=b"klm"))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(14)))
    assert h.events() == [DataAvailable(13)]
    assert h.conn.urgent_remaining == 10
    assert h.conn.receive(now=h.now) == b"abcdefghijklm"
    assert h.conn.urgent_remaining == 0


def test_a_further_pointer_while_unread_is_signalled_as_an_advance_must_32() -> None:
    h = established()
    h.feed(urgent(h.peer(ACK, h.remote_seq(1), h.local_seq(1), payload=b"abcd"), 2))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(5)))
    assert h.events() == [UrgentData(2), DataAvailable(4)]
    h.feed(urgent(h.peer(ACK, h.remote_seq(5), h.local_seq(1), payload=b"efgh"), 4))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(9)))
    # MUST-32: "whenever the urgent pointer advances in the data stream" (Linux: SIGURG).
    assert h.events() == [UrgentData(8), DataAvailable(8)]
    assert h.conn.urgent_remaining == 8


def test_a_new_run_after_the_application_read_past_the_last_is_signalled_again() -> None:
    h = established()
    h.feed(urgent(h.peer(ACK, h.remote_seq(1), h.local_seq(1), payload=b"ab"), 1))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(3)))
    assert h.events() == [UrgentData(1), DataAvailable(2)]
    assert h.conn.receive(now=h.now) == b"ab"
    h.feed(urgent(h.peer(ACK, h.remote_seq(3), h.local_seq(1), payload=b"cd"), 2))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(5)))
    assert h.events() == [UrgentData(2), DataAvailable(2)]


def test_a_pointer_to_data_already_read_is_not_signalled() -> None:
    h = established()
    h.feed(urgent(h.peer(ACK, h.remote_seq(1), h.local_seq(1), payload=b"abc"), 3))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(4)))
    h.events()
    assert h.conn.receive(now=h.now) == b"abc"
    # A retransmission of the same segment: old data, old pointer.
    h.feed(urgent(h.peer(ACK, h.remote_seq(1), h.local_seq(1), payload=b"abc"), 3))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(4)))
    assert h.events() == []
    assert h.conn.urgent_remaining == 0


def test_urgent_pointer_is_taken_with_a_zero_receive_window_must_66() -> None:
    """RFC 9293 3.4 (MUST-66): with RCV.WND = 0 an in-sequence segment's URG is still
    processed, though its text is not acceptable."""
    h = Harness(replace(PLAIN, receive_buffer_size=4))
    h.to_established()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), payload=b"wxyz"))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(5), window=0))
    assert h.events() == [DataAvailable(4)]
    h.feed(urgent(h.peer(ACK, h.remote_seq(5), h.local_seq(1), payload=b"!"), 1))
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(5), window=0))
    assert h.events() == [UrgentData(5)]
    assert h.conn.urgent_remaining == 5  # "wxyz" unread, then the '!' still to come


def test_urg_after_the_peers_fin_is_ignored() -> None:
    """3.10.7.4 sixth step, CLOSE-WAIT and later: the FIN came, URG is ignored."""
    h = Harness()
    h.to_close_wait()
    h.events()
    h.feed(urgent(h.peer(ACK, h.remote_seq(2), h.local_seq(1)), 5))
    h.expect_nothing()
    assert h.events() == []
    assert h.conn.urgent_remaining == 0
    assert h.state is State.CLOSE_WAIT


# ------------------------------------------------------------------ sending


def test_send_urgent_marks_the_segment_and_acknowledgment_ends_urgent_mode() -> None:
    h = established()
    assert h.conn.send(b"hello", now=h.now, urgent=True) == 5
    assert h.conn.snd_up == h.local_seq(6)
    h.expect(urgent(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"hello"), 5))
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(6)))
    h.expect_nothing()
    assert h.conn.snd_up is None
    h.conn.send(b"x", now=h.now)
    h.expect(h.ours(ACK | PSH, h.local_seq(6), h.remote_seq(1), payload=b"x"))


def test_urgent_data_behind_queued_data_marks_every_segment_before_it() -> None:
    h = established()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=4))
    h.conn.send(b"abcdefgh", now=h.now)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=b"abcd"))
    h.conn.send(b"!", now=h.now, urgent=True)
    h.expect_nothing()  # the window is full
    assert h.conn.snd_up == h.local_seq(10)
    # Data from the peer: our bare ACK already carries the urgent pointer (5 past SND.MAX).
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=4, payload=b"?"))
    h.expect(urgent(h.ours(ACK, h.local_seq(5), h.remote_seq(2)), 5))
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(5), window=4))
    # The pointer lies past this segment's own data: the '!' follows in the next one.
    h.expect(urgent(h.ours(ACK, h.local_seq(5), h.remote_seq(2), payload=b"efgh"), 5))
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(9), window=4))
    h.expect(urgent(h.ours(ACK | PSH, h.local_seq(9), h.remote_seq(2), payload=b"!"), 1))
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(10), window=4))
    h.expect_nothing()
    assert h.conn.snd_up is None


def test_a_pointer_beyond_16_bits_is_sent_as_0xffff() -> None:
    """Linux (tcp_transmit_skb) sends 0xFFFF when SND.UP is more than 16 bits ahead."""
    h = Harness(replace(PLAIN, send_buffer_size=262_144))
    h.to_established()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=0))
    h.expect_nothing()
    assert h.conn.send(bytes(200_000), now=h.now) == 200_000
    h.conn.send(b"!", now=h.now, urgent=True)
    h.expect_nothing()  # the window is closed (the persist timer will probe)
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=0, payload=b"?"))
    # SND.UP is 200,001 ahead of SND.MAX: the field says 0xFFFF.
    h.expect(urgent(h.ours(ACK, h.local_seq(1), h.remote_seq(2)), 0xFFFF))


def test_syn_and_rst_never_carry_urg() -> None:
    h = established()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=0))
    h.conn.send(b"abc", now=h.now, urgent=True)
    h.expect_nothing()
    h.conn.abort(now=h.now)
    h.expect(h.ours(Flag.RST, h.local_seq(1), window=0))
