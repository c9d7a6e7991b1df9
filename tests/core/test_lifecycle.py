"""Lifecycle controls: keepalive, SO_LINGER, half-duplex close, orphan FIN_WAIT_2.

Exact segments and exact deadlines on the virtual clock, from RFC 9293 3.8.4 (keepalive),
3.6.1 (half-duplex close), RFC 2525 2.17, and Linux's tcp_keepalive_timer / tcp_close /
tcp_fin_timeout where RFC 9293 leaves the choice open.
"""

from __future__ import annotations

import pytest

from tcpstack.core.config import GO_KEEPALIVE, PLAIN, SECOND
from tcpstack.core.events import Closed, CloseReason, DataAvailable
from tcpstack.core.segment import Segment
from tcpstack.core.state import State
from tests.core.harness import ACK, FIN, PSH, RST, Harness

KEEPALIVE = PLAIN.with_changes(
    keepalive=True,
    keepalive_idle=7200 * SECOND,
    keepalive_interval=75 * SECOND,
    keepalive_count=9,
)


def probe(h: Harness, payload: bytes = b"") -> Segment:
    """A keepalive probe: SEG.SEQ = SND.NXT - 1, current ACK, no data (RFC 9293 3.8.4)."""
    return h.ours(ACK, h.local_seq(0), h.remote_seq(1), payload=payload)


# ------------------------------------------------------------------------- keepalive


def test_keepalive_is_off_by_default() -> None:
    """MUST-24: keepalives MUST default to off."""
    h = Harness()
    h.to_established()
    assert h.next_timer_ms() is None
    h.fire(10 * 3600 * 1000)
    h.expect_nothing()


def test_dead_peer_is_detected_at_idle_plus_count_times_interval() -> None:
    """Linux defaults: first probe after 7200 s of silence, then 9 probes 75 s apart;
    the connection ends with a RST at exactly 7200 + 9 * 75 = 7875 s (seed C15)."""
    h = Harness(KEEPALIVE)
    h.to_established()
    assert h.next_timer_ms() == 7_200_000
    for k in range(9):
        at = 7_200_000 + k * 75_000
        h.fire(at - 1)
        h.expect_nothing()
        h.fire(at)
        h.expect(probe(h))
        assert h.conn.keepalive_probes_out == k + 1
    h.fire(7_875_000)
    h.expect(h.ours(RST, h.local_seq(1), 0, window=0))
    assert h.path[-1] is State.CLOSED
    assert h.events() == [Closed(CloseReason.KEEPALIVE_TIMEOUT)]


def test_go_profile_detects_a_dead_peer_after_150_seconds() -> None:
    """Go's net package: idle = interval = 15 s (seed C16), 9 probes: 15 + 9 * 15 s."""
    h = Harness(PLAIN.with_changes(**GO_KEEPALIVE))
    h.to_established()
    probes = []
    while h.state is State.ESTABLISHED:
        deadline = h.next_timer_ms()
        assert deadline is not None
        h.fire(deadline)
        probes += [deadline for seg in h.sent() if not seg.flags & RST]
    assert probes == [15_000 + k * 15_000 for k in range(9)]
    assert h.now == 150 * SECOND
    assert h.events() == [Closed(CloseReason.KEEPALIVE_TIMEOUT)]


def test_an_answered_probe_keeps_the_connection_and_restarts_the_idle_clock() -> None:
    h = Harness(KEEPALIVE)
    h.to_established()
    h.fire(7_200_000)
    h.expect(probe(h))
    # The peer's stack answers with an ACK (the probe lies below RCV.NXT over there).
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1)), at=7_200_050)
    h.expect_nothing()
    assert h.conn.keepalive_probes_out == 0
    h.fire(7_275_000)  # the interval timer finds the peer alive: re-arm from the answer
    h.expect_nothing()
    assert h.next_timer_ms() == 7_200_050 + 7_200_000
    assert h.state is State.ESTABLISHED


def test_any_received_segment_restarts_the_idle_clock() -> None:
    """Only silence counts: a bare ACK from the peer at 5000 s moves the first probe
    to 5000 + 7200 s."""
    h = Harness(KEEPALIVE)
    h.to_established()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1)), at=5_000_000)
    h.fire(7_200_000)
    h.expect_nothing()
    assert h.next_timer_ms() == 12_200_000
    h.fire(12_200_000)
    h.expect(probe(h))


def test_probe_can_carry_one_garbage_octet() -> None:
    h = Harness(KEEPALIVE.with_changes(keepalive_garbage_octet=True))
    h.to_established()
    h.fire(7_200_000)
    h.expect(probe(h, b"\x00"))


def test_rebooted_peer_answers_the_probe_with_rst() -> None:
    """The peer lost all state: its stack answers our probe (which has ACK) with
    <SEQ=SEG.ACK><CTL=RST> (3.10.7.1); SEG.ACK of the probe is our RCV.NXT, so the RST
    matches exactly and resets the connection (ECONNRESET)."""
    h = Harness(KEEPALIVE)
    h.to_established()
    h.fire(7_200_000)
    h.expect(probe(h))
    h.feed(h.peer(RST, h.remote_seq(1)), at=7_200_010)
    h.expect_nothing()
    assert h.events() == [Closed(CloseReason.RESET)]


def test_our_side_answers_a_peers_probe_with_an_ack() -> None:
    """A peer's probe (SEG.SEQ = RCV.NXT - 1, no data) is unacceptable: ACK it."""
    h = Harness()
    h.to_established()
    h.feed(h.peer(ACK, h.remote_seq(0), h.local_seq(1)), at=100)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    # With one garbage octet it is an old duplicate ending at RCV.NXT: ACK it too.
    h.feed(h.peer(ACK, h.remote_seq(0), h.local_seq(1), payload=b"\x00"), at=200)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.events() == []


def test_no_probes_while_data_is_in_flight() -> None:
    h = Harness(PLAIN.with_changes(**GO_KEEPALIVE))
    h.to_established()
    h.conn.send(b"x", now=h.now)
    h.sent()
    h.fire(15_000)  # the RTO (1 s) and the keepalive deadline (15 s) have both passed
    assert [seg.payload for seg in h.sent()] == [b"x"]  # a retransmission, no probe
    assert h.conn.keepalive_probes_out == 0
    assert h.next_timer_ms() == 17_000  # the backed-off RTO; keepalive waits behind it


def test_keepalive_with_user_timeout_gives_up_by_time() -> None:
    """Linux: with TCP_USER_TIMEOUT set, it bounds keepalive instead of the count."""
    h = Harness(PLAIN.with_changes(**GO_KEEPALIVE, user_timeout=40 * SECOND))
    h.to_established()
    sent_probes = 0
    while h.state is State.ESTABLISHED:
        deadline = h.next_timer_ms()
        assert deadline is not None
        h.fire(deadline)
        sent_probes += sum(1 for seg in h.sent() if not seg.flags & RST)
    # Probes at 15 and 30 s; at 45 s the silence (45 s) is past 40 s with probes out.
    assert (sent_probes, h.now) == (2, 45 * SECOND)
    assert h.events() == [Closed(CloseReason.USER_TIMEOUT)]


@pytest.mark.parametrize("state", ["CLOSE_WAIT", "FIN_WAIT_2"])
def test_keepalive_probes_half_closed_connections(state: str) -> None:
    h = Harness(PLAIN.with_changes(**GO_KEEPALIVE))
    if state == "CLOSE_WAIT":
        h.to_close_wait()
    else:
        h.to_established()
        h.conn.shutdown(now=h.now)
        h.sent()
        h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(2)))
        assert h.state is State.FIN_WAIT_2
    while h.state is not State.CLOSED:
        deadline = h.next_timer_ms()
        assert deadline is not None
        h.fire(deadline)
        h.sent()
    assert h.path[-2:] == [State[state], State.CLOSED]
    assert h.events()[-1] == Closed(CloseReason.KEEPALIVE_TIMEOUT)


def test_configure_turns_keepalive_on_later() -> None:
    h = Harness()
    h.to_established()
    h.conn.configure(now=h.at(1000), **GO_KEEPALIVE)
    assert h.next_timer_ms() == 16_000
    with pytest.raises(TypeError):
        h.conn.configure(now=h.now, no_such_option=1)


# --------------------------------------------------------------- linger and unread data


def test_linger_zero_close_sends_rst_and_skips_time_wait() -> None:
    """SO_LINGER {on, 0} (seed C13): close() aborts: <SEQ=SND.NXT><CTL=RST>, CLOSED."""
    h = Harness(PLAIN.with_changes(linger=0))
    h.to_established()
    h.conn.send(b"unsent?", now=h.now)
    h.sent()
    h.conn.close(now=h.at(10))
    h.expect(h.ours(RST, h.local_seq(8), 0, window=0))
    assert h.path[-2:] == [State.ESTABLISHED, State.CLOSED]
    assert State.TIME_WAIT not in h.path
    assert h.events() == [Closed(CloseReason.ABORTED)]


def test_close_with_unread_data_resets_when_half_duplex_close_is_on() -> None:
    """RFC 9293 3.6.1 / RFC 2525 2.17 and Linux: unread data at close() means a RST."""
    h = Harness(PLAIN.with_changes(half_duplex_close=True))
    h.to_established()
    h.feed(h.peer(ACK | PSH, h.remote_seq(1), h.local_seq(1), payload=b"never read"))
    h.sent()
    h.conn.close(now=h.at(5))
    h.expect(h.ours(RST, h.local_seq(1), 0, window=0))
    assert h.events()[-1] == Closed(CloseReason.ABORTED)


def test_close_with_unread_data_is_a_normal_close_in_plain_rfc_mode() -> None:
    h = Harness()
    h.to_established()
    h.feed(h.peer(ACK | PSH, h.remote_seq(1), h.local_seq(1), payload=b"kept"))
    h.sent()
    h.conn.close(now=h.at(5))
    h.expect(h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(5), window=65531))
    assert h.state is State.FIN_WAIT_1


@pytest.mark.parametrize("state", ["FIN_WAIT_1", "FIN_WAIT_2"])
def test_text_after_close_is_answered_with_rst(state: str) -> None:
    h = Harness(PLAIN.with_changes(half_duplex_close=True))
    h.to_fin_wait_1()
    if state == "FIN_WAIT_2":
        h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(2)))
    fin_acked = 2 if state == "FIN_WAIT_2" else 1
    h.feed(h.peer(ACK | PSH, h.remote_seq(1), h.local_seq(fin_acked), payload=b"late"), at=50)
    h.expect(h.ours(RST, h.local_seq(2), 0, window=0))
    assert h.path[-2:] == [State[state], State.CLOSED]
    assert h.events()[-1] == Closed(CloseReason.ABORTED)


def test_shutdown_keeps_receiving_after_the_fin() -> None:
    """Half-close: shutdown() sends FIN; the peer's data still arrives and is ACKed."""
    h = Harness(PLAIN.with_changes(half_duplex_close=True))
    h.to_established()
    h.conn.shutdown(now=h.now)
    h.expect(h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(1)))
    h.feed(h.peer(ACK | PSH, h.remote_seq(1), h.local_seq(2), payload=b"still"), at=10)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(6), window=65530))
    assert h.events() == [DataAvailable(5)]
    assert h.conn.receive(now=h.now) == b"still"


# ------------------------------------------------------------------- FIN_WAIT_2 orphans


def test_orphaned_fin_wait_2_times_out_after_fin_timeout() -> None:
    """Linux's tcp_fin_timeout (60 s) ends an orphan's FIN_WAIT_2 (seed C7)."""
    h = Harness(PLAIN.with_changes(fin_wait_2_timeout=60 * SECOND))
    h.to_fin_wait_1()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(2)), at=20)
    assert h.state is State.FIN_WAIT_2
    assert h.next_timer_ms() == 60_020
    h.fire(60_019)
    assert h.state is State.FIN_WAIT_2
    h.fire(60_020)
    h.expect_nothing()
    assert h.path[-2:] == [State.FIN_WAIT_2, State.CLOSED]
    assert h.events() == [Closed(CloseReason.FIN_WAIT_2_TIMEOUT)]


def test_half_closed_fin_wait_2_waits_forever() -> None:
    """The application still holds the connection (shutdown only): RFC 9293 rules, no
    timeout even with fin_wait_2_timeout set."""
    h = Harness(PLAIN.with_changes(fin_wait_2_timeout=60 * SECOND))
    h.to_established()
    h.conn.shutdown(now=h.now)
    h.sent()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(2)), at=20)
    assert h.state is State.FIN_WAIT_2
    assert h.next_timer_ms() is None
    # Closing it later makes it an orphan: the timeout starts then.
    h.conn.close(now=h.at(1000))
    assert h.next_timer_ms() == 61_000


def test_orphan_facing_a_closed_window_gives_up_after_orphan_retries() -> None:
    """Linux's tcp_orphan_retries: the peer ACKs every probe but never opens its window;
    an application that still holds the connection would wait (RFC 9293 3.8.6.1), an
    orphan gives up after 8 probes."""
    h = Harness(PLAIN.with_changes(orphan_retries=8))
    h.to_established()
    h.conn.send(b"x" * 100, now=h.now)
    h.sent()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=0), at=1)  # shrunk to 0
    h.conn.close(now=h.now)
    probes = 0
    for _ in range(50):  # bounded: a regression fails here instead of hanging
        if h.state is not State.FIN_WAIT_1:
            break
        deadline = h.next_timer_ms()
        assert deadline is not None
        h.fire(deadline)
        probes += len(h.sent())
        if h.state is State.FIN_WAIT_1:
            h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=0), at=deadline + 1)
    assert probes == 8
    assert h.events()[-1] == Closed(CloseReason.TIMEOUT)
