"""SYN options and what they change: MSS (RFC 9293 3.7.1), window scaling (RFC 7323 2),
timestamps and PAWS (RFC 7323 3-5), SACK-permitted (RFC 2018 2), exact segments."""

from __future__ import annotations

import pytest

from tcpstack.core.config import PLAIN
from tcpstack.core.events import Closed, CloseReason, DataAvailable
from tcpstack.core.segment import Options
from tcpstack.core.state import State
from tests.core.harness import ACK, FIN, LOCAL_ISS, REMOTE_ISS, RST, SYN
from tests.core.transfer_support import TransferHarness, pattern

SCALED = PLAIN.with_changes(window_scaling=True, receive_buffer_size=262144)
STAMPED = PLAIN.with_changes(timestamps=True)


def _send_and_expect(h: TransferHarness, size: int, segment_sizes: list[int]) -> None:
    """Send `size` bytes; expect segments of exactly these payload sizes, PSH on the last."""
    data = pattern(size)
    assert h.conn.send(data, now=h.now) == size
    expected = []
    offset = 0
    for n in segment_sizes:
        last = offset + n == size
        expected.append(h.data_out(1 + offset, data[offset : offset + n], psh=last))
        offset += n
    assert offset == size
    h.expect(*expected)


# -- MSS (RFC 9293 3.7.1) -----------------------------------------------------------------


def test_our_syn_carries_our_mss() -> None:
    """RFC 9293 3.7.1 (SHLD-5): the SYN announces the MSS we can receive."""
    h = TransferHarness(PLAIN.with_changes(mss=8960))
    h.open_with(Options(mss=1460))


def test_segments_use_the_peer_mss() -> None:
    """RFC 9293 3.7.1: segments carry at most SendMSS octets (the peer's MSS option)."""
    h = TransferHarness()
    h.open_with(Options(mss=1000))
    _send_and_expect(h, 2500, [1000, 1000, 500])


def test_without_an_mss_option_the_peer_mss_is_536() -> None:
    """RFC 9293 3.7.1 (MUST-15): with no MSS option, SendMSS is 536 (IPv4)."""
    h = TransferHarness()
    h.open_with(Options())
    assert h.conn.effective_mss == 536
    _send_and_expect(h, 1200, [536, 536, 128])


def test_a_tiny_peer_mss_is_raised_to_min_peer_mss() -> None:
    """A peer MSS of 10 is raised to Config.min_peer_mss = 48 (Linux's tcp_min_snd_mss),
    so a peer cannot make us send 10-octet segments (RFC 9293 3.7.1 leaves the floor to
    the implementation; CVE-2019-11479)."""
    h = TransferHarness()
    h.open_with(Options(mss=10))
    assert h.conn.effective_mss == 48
    _send_and_expect(h, 100, [48, 48, 4])


def test_min_peer_mss_is_configurable() -> None:
    h = TransferHarness(PLAIN.with_changes(min_peer_mss=100))
    h.open_with(Options(mss=60))
    _send_and_expect(h, 250, [100, 100, 50])


def test_a_peer_mss_above_ours_is_capped_by_our_mtu() -> None:
    """RFC 9293 3.7.1: Eff.snd.MSS = min(SendMSS + 20, MMS_S) - 20 - options; MMS_S is
    what our own link carries (Config.mss + 20)."""
    h = TransferHarness()
    h.open_with(Options(mss=9000))
    _send_and_expect(h, 3000, [1460, 1460, 80])


def test_with_timestamps_each_segment_carries_mss_minus_12_octets() -> None:
    """RFC 9293 3.7.1: the TCP options of every segment (here the 10-octet timestamp
    option padded to 12, RFC 7323 3.2) come out of the MSS: 1000 - 12 = 988."""
    h = TransferHarness(STAMPED)
    h.open_with(Options(mss=1000), peer_ts=h.peer_tsval(0))
    assert h.conn.effective_mss == 988
    data = pattern(2000)
    assert h.conn.send(data, now=h.now) == 2000
    ts = h.our_ts(h.peer_tsval(0))
    h.expect(
        h.data_out(1, data[:988], options=ts),
        h.data_out(989, data[988:1976], options=ts),
        h.data_out(1977, data[1976:], psh=True, options=ts),
    )


# -- window scaling (RFC 7323 2) ------------------------------------------------------------


def test_window_scaling_applies_after_both_syns_carry_it() -> None:
    """RFC 7323 2.2: our SYN offers shift 3 (a 256 KiB buffer needs it); the peer's
    SYN,ACK offers 2. The SYN,ACK's own window is not scaled (1000); later window fields
    are shifted by 2 (1000 -> 4000). 2.3: we advertise RCV.WND >> 3 = 32768."""
    h = TransferHarness(SCALED)
    h.open_with(Options(mss=1460, window_scale=2), window=1000, ack_window=262144 >> 3)
    assert (h.conn.snd_wscale, h.conn.rcv_wscale) == (2, 3)
    assert h.conn.snd_wnd == 1000
    h.ack_from_peer(1, at=5, window=1000)
    assert h.conn.snd_wnd == 4000
    _send_and_expect(h, 3000, [1460, 1460, 80])
    assert h.conn.window_field() == 32768


def test_the_syn_window_limits_what_goes_out_before_the_first_update() -> None:
    """RFC 7323 2.2: the window in a SYN,ACK is never scaled: 1000 octets, not 4000."""
    h = TransferHarness(SCALED)
    h.open_with(Options(mss=1460, window_scale=2), window=1000, ack_window=262144 >> 3)
    data = pattern(3000)
    assert h.conn.send(data, now=h.now) == 3000
    # 1000 octets fill the offered window, at least half the largest window seen
    # (sender-side SWS, RFC 9293 3.8.6.2.1), so they go.
    h.expect(h.data_out(1, data[:1000]))
    h.ack_from_peer(1001, at=10, window=1000)  # now 1000 << 2
    h.expect(h.data_out(1001, data[1000:2460]), h.data_out(2461, data[2460:], psh=True))


def test_without_the_peer_option_neither_side_scales() -> None:
    """RFC 7323 2.2: scaling needs the option in both SYNs; the peer's SYN,ACK has none,
    so its window fields are taken as they are and ours carry at most 65535."""
    h = TransferHarness(SCALED)
    h.open_with(Options(mss=1460), window=1000, ack_window=65535)
    assert (h.conn.snd_wscale, h.conn.rcv_wscale) == (0, 0)
    h.ack_from_peer(1, at=5, window=1000)
    assert h.conn.snd_wnd == 1000
    h.data_from_peer(1, b"x" * 100, at=6)
    # 262044 octets free, but the unscaled field said 65535 and the right edge moves
    # only in steps of an MSS (RFC 9293 3.8.6.2.2): 65535 - 100.
    h.expect(h.bare_ack(101, window=65435))


def test_a_shift_above_14_is_taken_as_14() -> None:
    """RFC 7323 2.3: a shift count above 14 MUST be treated as 14."""
    h = TransferHarness(SCALED)
    h.open_with(Options(mss=1460, window_scale=15), ack_window=262144 >> 3)
    assert h.conn.snd_wscale == 14
    h.ack_from_peer(1, at=5, window=3)
    assert h.conn.snd_wnd == 3 << 14


def test_our_scaled_window_rounds_up_so_the_right_edge_never_moves_left() -> None:
    """RFC 7323 2.3: the advertised field is RCV.WND >> shift. Rounding down after an
    odd-sized arrival would pull the right edge back by up to 7 octets, shrinking the
    window (RFC 9293 3.8.6, SHLD-14; RFC 7323 2.4); the field rounds up instead."""
    h = TransferHarness(SCALED)
    h.open_with(Options(mss=1460, window_scale=0), ack_window=32768)
    h.data_from_peer(1, b"a" * 1000, at=1)
    h.expect(h.bare_ack(1001, window=(262144 - 1000) >> 3))  # 261144 / 8 = 32643 exactly
    h.data_from_peer(1001, b"b", at=2)
    # 261143 free: 32642 would end the window 7 octets before the edge offered; 32643.
    h.expect(h.bare_ack(1002, window=32643))


def test_passive_open_offers_window_scale_only_if_the_syn_did() -> None:
    """RFC 7323 2.2: a SYN,ACK carries the Window Scale option only if the SYN did;
    the SYN's window (1000) is taken unscaled, the ACK's (10 << 7) scaled."""
    h = TransferHarness(SCALED)
    h.to_listen()
    h.feed(h.peer(SYN, REMOTE_ISS, window=1000, options=Options(mss=1460, window_scale=7)))
    h.expect(
        h.ours(
            SYN | ACK,
            LOCAL_ISS,
            h.remote_seq(1),
            window=65535,
            options=Options(mss=1460, window_scale=3),
        )
    )
    assert h.conn.snd_wnd == 1000
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=10), at=1)
    assert h.state is State.ESTABLISHED
    assert h.conn.snd_wnd == 10 << 7
    assert h.conn.window_field() == 262144 >> 3

    plain = TransferHarness(SCALED)
    plain.to_listen()
    plain.feed(plain.peer(SYN, REMOTE_ISS, window=1000, options=Options(mss=1460)))
    plain.expect(
        plain.ours(
            SYN | ACK, LOCAL_ISS, plain.remote_seq(1), window=65535, options=Options(mss=1460)
        )
    )
    plain.feed(plain.peer(ACK, plain.remote_seq(1), plain.local_seq(1), window=10), at=1)
    assert plain.conn.snd_wnd == 10
    assert plain.conn.window_field() == 65535


# -- timestamps (RFC 7323 3, 4) -------------------------------------------------------------


def test_every_segment_carries_timestamps_once_negotiated() -> None:
    """RFC 7323 3.2: once both SYNs carried TSopt, it MUST be sent in every non-<RST>
    segment; TSval is our clock (1 ms ticks, 5.4), TSecr is TS.Recent (4.3)."""
    h = TransferHarness(STAMPED)
    h.open_with(Options(mss=1460), peer_ts=h.peer_tsval(0), at=3)
    ecr = h.peer_tsval(0)
    h.at(10)
    assert h.conn.send(b"ping", now=h.now) == 4
    h.expect(h.data_out(1, b"ping", psh=True, options=h.our_ts(ecr)))
    h.fire(1010)  # the retransmission carries a fresh TSval
    h.expect(h.data_out(1, b"ping", psh=True, options=h.our_ts(ecr, 1010)))
    ts = Options(timestamp=(h.peer_tsval(1020), h.tsval(1010)))
    h.data_from_peer(1, b"pong", ack=5, at=1020, options=ts)
    h.expect(h.bare_ack(5, seq=5, options=h.our_ts(h.peer_tsval(1020))))
    h.at(1030)
    h.conn.close(now=h.now)
    h.expect(
        h.ours(FIN | ACK, h.local_seq(5), h.remote_seq(5), options=h.our_ts(h.peer_tsval(1020)))
    )


def test_no_timestamps_at_all_when_the_peer_did_not_offer_them() -> None:
    """RFC 7323 3.2: TSopt is sent on non-SYN segments only if both SYNs carried it; the
    MSS then loses no option space."""
    h = TransferHarness(STAMPED)
    h.open_with(Options(mss=1460))
    assert not h.conn.ts_enabled
    _send_and_expect(h, 1460, [1460])
    h.data_from_peer(1, b"x", ack=1461, at=5)
    h.expect(h.bare_ack(2, seq=1461))


def test_passive_open_echoes_the_syn_timestamp_only_if_offered() -> None:
    """RFC 7323 3.2: a SYN,ACK carries TSopt only when the SYN did; its TSecr echoes the
    SYN's TSval."""
    h = TransferHarness(STAMPED)
    h.to_listen()
    h.feed(h.peer(SYN, REMOTE_ISS, options=Options(mss=1460, timestamp=(555, 0))), at=2)
    [syn_ack] = h.sent()
    assert syn_ack.options.timestamp is not None
    h.ts0 = syn_ack.options.timestamp[0] - 2
    assert syn_ack == h.ours(
        SYN | ACK,
        LOCAL_ISS,
        h.remote_seq(1),
        window=65535,
        options=Options(mss=1460, timestamp=(h.tsval(2), 555)),
    )

    plain = TransferHarness(STAMPED)
    plain.to_listen()
    plain.feed(plain.peer(SYN, REMOTE_ISS, options=Options(mss=1460)), at=2)
    plain.expect(
        plain.ours(
            SYN | ACK, LOCAL_ISS, plain.remote_seq(1), window=65535, options=Options(mss=1460)
        )
    )


def test_ts_recent_is_not_taken_from_an_out_of_order_segment() -> None:
    """RFC 7323 4.3: TS.Recent takes SEG.TSval only if SEG.SEQ =< Last.ACK.sent. An
    out-of-order segment (beyond the last ACK) is echoed with the older TS.Recent; the
    segment that fills the hole starts at Last.ACK.sent, so its TSval is recorded."""
    h = TransferHarness(STAMPED)
    h.open_with(Options(mss=1460), peer_ts=h.peer_tsval(0))
    h.data_from_peer(
        1, b"A" * 100, at=10, options=Options(timestamp=(h.peer_tsval(10), h.tsval(0)))
    )
    h.expect(h.bare_ack(101, options=h.our_ts(h.peer_tsval(10))))
    # B (101..200) is lost; C arrives with a later TSval, beyond Last.ACK.sent = 101.
    h.data_from_peer(
        201, b"C" * 100, at=30, options=Options(timestamp=(h.peer_tsval(30), h.tsval(0)))
    )
    h.expect(h.bare_ack(101, options=h.our_ts(h.peer_tsval(10))))
    # B again (TSval 40): SEG.SEQ = 101 =< Last.ACK.sent, TS.Recent = 40.
    h.data_from_peer(
        101, b"B" * 100, at=40, options=Options(timestamp=(h.peer_tsval(40), h.tsval(0)))
    )
    h.expect(h.bare_ack(301, options=h.our_ts(h.peer_tsval(40))))
    assert h.conn.ts_recent == h.peer_tsval(40)


# -- PAWS (RFC 7323 5) ----------------------------------------------------------------------


def test_paws_drops_a_segment_with_an_older_timestamp_and_acks_it() -> None:
    """RFC 7323 5.3 R1: SEG.TSval < TS.Recent: the segment is not acceptable; send an
    ACK (RFC 9293 3.10.7.4) and drop it, even though its sequence numbers are fine."""
    h = TransferHarness(STAMPED)
    h.open_with(Options(mss=1460), peer_ts=h.peer_tsval(100))
    ecr = h.tsval(0)
    old = Options(timestamp=(h.peer_tsval(99), ecr))
    h.data_from_peer(1, b"stale", at=10, options=old)
    h.expect(h.bare_ack(1, options=h.our_ts(h.peer_tsval(100))))
    assert h.events() == []
    assert h.conn.receive_buffered == 0
    assert h.conn.ts_recent == h.peer_tsval(100)
    # The same octets with a current timestamp are taken (equal to TS.Recent is fine).
    h.data_from_peer(1, b"fresh", at=20, options=Options(timestamp=(h.peer_tsval(100), ecr)))
    h.expect(h.bare_ack(6, options=h.our_ts(h.peer_tsval(100))))
    assert h.events() == [DataAvailable(5)]


def test_paws_drops_an_old_ack_without_using_it() -> None:
    """RFC 7323 5.3 R1: the dropped segment's ACK field is not processed either."""
    h = TransferHarness(STAMPED)
    h.open_with(Options(mss=1460), peer_ts=h.peer_tsval(100))
    assert h.conn.send(b"abc", now=h.now) == 3
    h.sent()
    h.ack_from_peer(4, at=10, options=Options(timestamp=(h.peer_tsval(50), h.tsval(0))))
    h.expect(h.bare_ack(1, seq=4, options=h.our_ts(h.peer_tsval(100))))
    assert h.conn.snd_una == h.local_seq(1)


def test_paws_compares_timestamps_modulo_2_32() -> None:
    """RFC 7323 5.2-5.3: timestamps are compared as 32-bit serial numbers, so a TSval
    that wrapped past 2**32 is newer, and one just below TS.Recent is older."""
    h = TransferHarness(STAMPED)
    recent = 2**32 - 5
    h.open_with(Options(mss=1460), peer_ts=recent)
    ecr = h.tsval(0)
    h.data_from_peer(1, b"wrapped", at=10, options=Options(timestamp=(3, ecr)))
    h.expect(h.bare_ack(8, options=h.our_ts(3)))
    assert h.conn.ts_recent == 3
    h.data_from_peer(8, b"old", at=11, options=Options(timestamp=(2**32 - 1, ecr)))
    h.expect(h.bare_ack(8, options=h.our_ts(3)))
    assert h.conn.receive_buffered == 7


def test_paws_does_not_apply_to_rst() -> None:
    """RFC 7323 5.3 R1 applies only "if the RST bit is not set": an RST at RCV.NXT with
    an old TSval still resets the connection (RFC 9293 3.10.7.4 second step)."""
    h = TransferHarness(STAMPED)
    h.open_with(Options(mss=1460), peer_ts=h.peer_tsval(100))
    h.feed(
        h.peer(RST | ACK, h.remote_seq(1), h.local_seq(1), options=Options(timestamp=(1, 0))),
        at=5,
    )
    h.expect_nothing()
    assert h.events() == [Closed(CloseReason.RESET)]


# -- SACK-permitted (RFC 2018 2) ------------------------------------------------------------


@pytest.mark.parametrize("peer_sack", [False, True])
def test_sack_is_used_only_when_both_syns_permit_it(peer_sack: bool) -> None:
    """RFC 2018 2: SACK-permitted in both SYNs, or no SACK options at all. Without it our
    duplicate ACK for out-of-order data carries no blocks."""
    h = TransferHarness(PLAIN.with_changes(sack=True))
    h.open_with(Options(mss=1460, sack_permitted=peer_sack))
    assert h.conn.sack_enabled is peer_sack
    h.data_from_peer(101, b"x" * 100, at=5)
    blocks = ((h.remote_seq(101), h.remote_seq(201)),) if peer_sack else ()
    h.expect(h.bare_ack(1, options=Options(sack_blocks=blocks)))


def test_sack_permitted_in_our_syn_ack_only_if_the_syn_had_it() -> None:
    """RFC 2018 2: SACK-permitted "MAY be sent in a SYN by a TCP that has been extended
    to receive ... SACK", and in the SYN,ACK only in answer to one."""
    for offered in (False, True):
        h = TransferHarness(PLAIN.with_changes(sack=True))
        h.to_listen()
        h.feed(h.peer(SYN, REMOTE_ISS, options=Options(mss=1460, sack_permitted=offered)))
        h.expect(
            h.ours(
                SYN | ACK,
                LOCAL_ISS,
                h.remote_seq(1),
                window=65535,
                options=Options(mss=1460, sack_permitted=offered),
            )
        )


def test_all_options_together_in_the_syn() -> None:
    """Our SYN with every option on (RFC 9293 3.7.1, RFC 7323 2.2 and 3.2, RFC 2018 2),
    and a handshake ACK carrying the echo of the peer's TSval."""
    config = PLAIN.with_changes(window_scaling=True, timestamps=True, sack=True)
    h = TransferHarness(config)
    peer = Options(mss=1460, window_scale=7, sack_permitted=True)
    h.open_with(peer, peer_ts=h.peer_tsval(0), at=1)
    assert (h.conn.ts_enabled, h.conn.sack_enabled, h.conn.snd_wscale) == (True, True, 7)
    # 65535-octet buffer: shift 0 offered, and offered windows stay unscaled.
    assert h.conn.rcv_wscale == 0
    assert h.conn.effective_mss == 1448
