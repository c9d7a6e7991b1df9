"""Flow control: zero-window probing (RFC 9293 3.8.6.1), Nagle's algorithm (3.7.4),
sender- and receiver-side silly window avoidance (3.8.6.2.1, 3.8.6.2.2), exact
segments on the virtual clock."""

from __future__ import annotations

from tcpstack.core.config import PLAIN, Config
from tcpstack.core.events import DataAvailable
from tcpstack.core.segment import Options
from tcpstack.core.state import State
from tests.core.harness import ACK, FIN, MS
from tests.core.transfer_support import TransferHarness, pattern

NAGLE = PLAIN.with_changes(nodelay=False)


def _open(config: Config = PLAIN, *, peer_mss: int = 1460, window: int = 65535) -> TransferHarness:
    h = TransferHarness(config)
    h.open_with(Options(mss=peer_mss), window=window)
    return h


# -- zero window: the persist timer (RFC 9293 3.8.6.1) ------------------------------------


def test_zero_window_probes_back_off_exponentially_up_to_max_rto() -> None:
    """RFC 9293 3.8.6.1: with a zero window and data queued, send one octet of new data
    when the window has been zero for an RTO (SHLD-29), at exponentially growing
    intervals (SHLD-30), here capped at max_rto = 120 s like the retransmission timer.
    MUST-37: as long as the probes are answered the connection stays open: probing
    goes on past the 924.6 s R2 budget."""
    h = _open(window=0)
    assert h.conn.snd_wnd == 0
    data = b"hello"
    assert h.conn.send(data, now=h.now) == 5
    h.expect_nothing()
    assert h.conn.timers() == {"persist": 1000 * MS}
    probe = h.data_out(1, b"h")
    deadline: float = 0
    intervals = []
    while deadline < 1_100_000:
        next_deadline = h.next_timer_ms()
        assert next_deadline is not None
        intervals.append(next_deadline - deadline)
        deadline = next_deadline
        h.fire(deadline - 0.001)
        h.expect_nothing()
        h.fire(deadline)
        h.expect(probe)
        h.ack_from_peer(1, at=deadline + 20, window=0)  # answered: still closed
        h.expect_nothing()
        assert h.conn.timers().keys() == {"persist"}
    assert intervals == [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000] + [120_000] * 9
    assert h.state is State.ESTABLISHED


def test_window_reopening_stops_probing_and_sends_from_snd_una() -> None:
    """RFC 9293 3.8.6.1: when the window opens, the queued data goes (from SND.UNA, the
    probe octet included, since the peer did not take it) and the persist timer stops;
    the retransmission timer covers the data (RFC 6298 5.1)."""
    h = _open(window=0)
    data = pattern(3000)
    assert h.conn.send(data, now=h.now) == 3000
    h.fire(1000)
    h.expect(h.data_out(1, data[:1]))
    h.fire(3000)
    h.expect(h.data_out(1, data[:1]))
    h.ack_from_peer(1, at=3500, window=4000)
    h.expect(
        h.data_out(1, data[:1460]),
        h.data_out(1461, data[1460:2920]),
        h.data_out(2921, data[2920:], psh=True),
    )
    assert h.conn.timers() == {"retransmit": 4500 * MS}


def test_a_probe_octet_the_peer_takes_is_not_sent_again() -> None:
    """RFC 9293 3.8.6.1: the probe carries new data; when the peer accepts it (ACK past
    it, window still zero) the next probe carries the next octet."""
    h = _open(window=0)
    assert h.conn.send(b"abc", now=h.now) == 3
    h.fire(1000)
    h.expect(h.data_out(1, b"a"))
    h.ack_from_peer(2, at=1050, window=0)
    h.expect_nothing()
    assert h.conn.send_buffered == 2
    assert h.conn.timers().keys() == {"persist"}
    deadline = h.next_timer_ms()
    assert deadline is not None
    h.fire(deadline)
    h.expect(h.data_out(2, b"b"))
    h.ack_from_peer(2, at=deadline + 10, window=100)
    h.expect(h.data_out(2, b"bc", psh=True))


def test_window_closing_with_nothing_in_flight_arms_the_persist_timer() -> None:
    """RFC 9293 3.8.6.1: the peer acknowledges everything and closes its window while
    more data waits: the retransmission timer stops (RFC 6298 5.2), probing starts."""
    h = _open(peer_mss=100, window=100)
    data = pattern(150)
    assert h.conn.send(data, now=h.now) == 150
    h.expect(h.data_out(1, data[:100]))
    h.ack_from_peer(101, at=200, window=0)
    h.expect_nothing()
    assert h.conn.timers() == {"persist": 1200 * MS}
    h.fire(1200)
    h.expect(h.data_out(101, data[100:101]))
    assert h.conn.timers() == {"persist": 3200 * MS}


# -- Nagle (RFC 9293 3.7.4, RFC 896) ------------------------------------------------------


def test_nagle_holds_small_segments_while_data_is_in_flight() -> None:
    """RFC 9293 3.7.4 (SHLD-7): with unacknowledged data outstanding, a small segment
    waits until the ACK arrives; small writes meanwhile coalesce into one segment."""
    h = _open(NAGLE)
    assert h.conn.send(b"a" * 10, now=h.now) == 10
    h.expect(h.data_out(1, b"a" * 10, psh=True))  # nothing in flight: goes at once
    assert h.conn.send(b"b" * 10, now=h.at(5)) == 10
    h.expect_nothing()
    assert h.conn.send(b"c" * 20, now=h.at(6)) == 20
    h.expect_nothing()
    h.ack_from_peer(11, at=50)
    h.expect(h.data_out(11, b"b" * 10 + b"c" * 20, psh=True))


def test_nagle_lets_full_segments_go_and_holds_the_tail() -> None:
    """RFC 9293 3.7.4: Nagle delays only less-than-full segments: with 10 octets in
    flight, two full 100-octet segments go and the 50-octet tail waits for the ACK."""
    h = _open(NAGLE, peer_mss=100)
    assert h.conn.send(b"x" * 10, now=h.now) == 10
    h.expect(h.data_out(1, b"x" * 10, psh=True))
    data = pattern(250)
    assert h.conn.send(data, now=h.at(1)) == 250
    h.expect(h.data_out(11, data[:100]), h.data_out(111, data[100:200]))
    h.ack_from_peer(111, at=40)
    h.expect_nothing()  # 100 octets still in flight
    h.ack_from_peer(211, at=41)
    h.expect(h.data_out(211, data[200:], psh=True))


def test_nodelay_sends_small_segments_at_once() -> None:
    """TCP_NODELAY: Nagle off (RFC 9293 3.7.4 allows the application to disable it,
    MUST-17): every small write goes out at once."""
    h = _open()
    assert h.conn.send(b"a" * 10, now=h.now) == 10
    h.expect(h.data_out(1, b"a" * 10, psh=True))
    assert h.conn.send(b"b" * 10, now=h.at(5)) == 10
    h.expect(h.data_out(11, b"b" * 10, psh=True))


# -- sender-side SWS avoidance (RFC 9293 3.8.6.2.1) ---------------------------------------


def test_sender_waits_for_a_useful_window() -> None:
    """RFC 9293 3.8.6.2.1 (MUST-38): with data in flight, send only if a full segment
    fits, or at least Fs = 1/2 of the largest window the peer offered (2000 here), or
    the rest of the data; never a sliver of the window. TCP_NODELAY does not change this."""
    h = _open(window=2000)
    data = pattern(5000)
    assert h.conn.send(data, now=h.now) == 5000
    # 540 octets of window are left after one MSS: < 1460 and < 1000, so they wait.
    h.expect(h.data_out(1, data[:1460]))
    h.ack_from_peer(1461, at=10, window=2000)
    h.expect(h.data_out(1461, data[1460:2920]))
    # Window 1100 from 2921: 1100 >= 2000 / 2, so a 1100-octet segment goes.
    h.ack_from_peer(2921, at=20, window=1100)
    h.expect(h.data_out(2921, data[2920:4020]))
    # 100 octets acknowledged with the edge moved by 100: 100 of window, 1000 in flight.
    h.ack_from_peer(3021, at=30, window=1100)
    h.expect_nothing()
    # Everything acknowledged, room for the 980-octet rest: it goes.
    h.ack_from_peer(4021, at=40, window=2000)
    h.expect(h.data_out(4021, data[4020:], psh=True))


# -- receiver-side SWS avoidance (RFC 9293 3.8.6.2.2) -------------------------------------


def test_window_opens_only_in_steps_of_an_mss() -> None:
    """RFC 9293 3.8.6.2.2 (MUST-39): the right edge moves only when it can move by
    min(RCV.BUFF / 2, Eff.snd.MSS) = 1460 octets. After reading 1459 octets the next ACK
    keeps the old edge; after one more octet it moves the edge by 1460. (Reading alone
    sends no bare update here: the window the peer knows is over half the buffer, the
    Linux rule of tcp_cleanup_rbuf.)"""
    h = _open()
    data = pattern(2940)
    h.data_from_peer(1, data[:1460], at=1)
    h.expect(h.bare_ack(1461, window=65535 - 1460))
    h.data_from_peer(1461, data[1460:2920], at=2)
    h.expect(h.bare_ack(2921, window=65535 - 2920))  # the edge: offset 65536
    assert h.events() == [DataAvailable(1460), DataAvailable(2920)]
    assert h.conn.receive(1459, now=h.at(3)) == data[:1459]
    h.expect_nothing()
    h.data_from_peer(2921, data[2920:2930], at=4)
    h.expect(h.bare_ack(2931, window=65536 - 2931))  # 1459 < 1460: the edge stays
    assert h.conn.receive(1, now=h.at(5)) == data[1459:1460]
    h.expect_nothing()
    h.data_from_peer(2931, data[2930:], at=6)
    # 1480 octets buffered: the edge moves by exactly 1460, to 2941 + 64055.
    h.expect(h.bare_ack(2941, window=65535 - 1480))


def test_a_closed_window_reopens_only_when_half_a_small_buffer_is_free() -> None:
    """RFC 9293 3.8.6.2.2: with a 1000-octet buffer the step is min(500, 1460) = 500:
    a full buffer advertises 0 until 500 octets have been read."""
    h = TransferHarness(PLAIN.with_changes(receive_buffer_size=1000))
    h.open_with(Options(mss=1460), ack_window=1000)
    data = pattern(1000)
    h.data_from_peer(1, data, at=1)
    h.expect(h.bare_ack(1001, window=0))
    assert h.conn.receive(300, now=h.at(2)) == data[:300]
    h.expect_nothing()
    # A probe octet meanwhile is answered with the unchanged zero window.
    h.data_from_peer(1001, b"p", at=3)
    h.expect(h.bare_ack(1001, window=0))
    assert h.conn.receive(199, now=h.at(4)) == data[300:499]
    h.expect_nothing()
    assert h.conn.receive(1, now=h.at(5)) == data[499:500]
    h.expect(h.bare_ack(1001, window=500))


def test_arriving_data_never_pulls_the_right_edge_back() -> None:
    """RFC 9293 3.8.6.2.2 / SHLD-14 (do not shrink the window): after a read that was
    too small to announce, data arriving gets a window that keeps the old right edge
    (1001), not the buffer's free space (800)."""
    h = TransferHarness(PLAIN.with_changes(receive_buffer_size=1000))
    h.open_with(Options(mss=1460), ack_window=1000)
    h.data_from_peer(1, b"a" * 400, at=1)
    h.expect(h.bare_ack(401, window=600))
    assert h.conn.receive(now=h.at(2)) == b"a" * 400
    h.expect_nothing()
    h.data_from_peer(401, b"b" * 200, at=3)
    h.expect(h.bare_ack(601, window=400))


def test_out_of_order_fin_cut_off_by_the_window_is_not_taken() -> None:
    """RFC 9293 3.10.7.4 first step: only the part of a segment inside the window is
    processed. An out-of-order segment whose text runs past the right edge is cut
    there, and its FIN (beyond the edge) goes with the cut: when the gap fills, the
    stream must not end at the window's edge."""
    h = TransferHarness(PLAIN.with_changes(receive_buffer_size=1000))
    h.open_with(Options(mss=1460), ack_window=1000)
    data = pattern(1100)
    h.data_from_peer(901, data[900:], at=1, flags=ACK | FIN)  # 901..1100 and FIN
    h.expect(h.bare_ack(1, window=1000))
    h.data_from_peer(1, data[:900], at=2)
    h.expect(h.bare_ack(1001, window=0))  # octets 1..1000, no FIN
    assert h.events() == [DataAvailable(1000)]
    assert h.path[-1] is State.ESTABLISHED
    assert h.conn.receive(now=h.at(3)) == data[:1000]
    h.expect(h.bare_ack(1001, window=1000))
    h.data_from_peer(1001, data[1000:], at=4, flags=ACK | FIN)  # the rest, resent
    h.expect(h.bare_ack(1102, window=900))
    assert h.state is State.CLOSE_WAIT
