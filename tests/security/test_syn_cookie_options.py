"""SYN cookies keep window scaling, SACK and timestamps (RFC 4987 3.6, RFC 7323, RFC 2018).

The cookie (the SYN,ACK's ISN) carries the MSS; when the SYN has timestamps, the SYN's
window shift and SACK-permitted ride in the low six bits of the SYN,ACK's TSval and come
back in the TSecr of the peer's ACK (core/syncookies.py). The connection completed from
the cookie then uses all three, exactly as one completed from a SYN_RECEIVED entry.
"""

from __future__ import annotations

from tcpstack.core.config import Config
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.segment import Datagram, Flag, Options, Segment
from tcpstack.core.seq import MASK, seq_add
from tcpstack.core.state import State
from tcpstack.core.syncookies import (
    SynCookies,
    cookie_tsval,
    decode_ts_options,
    encode_ts_options,
)

HOST = "10.0.0.2"
PEER = "10.0.0.1"
SECRET = b"cookie-secret-0123456789abcdef!!"
PEER_PORT = 40_000
KEY = (HOST, 80, PEER, PEER_PORT)
PEER_ISN = 2**32 - 10  # the peer's data crosses the sequence wrap
PEER_TSVAL = 777_000
NOW = 5_000_000  # 5 s on the virtual clock
SYN, ACK, PSH = Flag.SYN, Flag.ACK, Flag.PSH
# Config() has a 262144-byte receive buffer: the smallest shift that fits it in 16 bits
# is 3 (262144 >> 3 = 32768 <= 65535, 262144 >> 2 = 65536 > 65535; RFC 7323 2.3).
OUR_SHIFT = 3


def cookie_server() -> Endpoint:
    # syn_backlog=0: every SYN is answered with a cookie (Linux's tcp_syncookies=2).
    server = Endpoint(
        HOST,
        isn_generator=lambda _t, _n: 1,
        config=Config(),
        syn_backlog=0,
        syn_cookie_secret=SECRET,
    )
    server.listen(80)
    return server


def from_peer(flags: int, seq: int, ack: int, options: Options, payload: bytes = b"") -> Datagram:
    return Datagram(PEER, HOST, Segment(PEER_PORT, 80, seq, ack, flags, 1000, 0, options, payload))


def our_ts_clock(cookie: int, now: int) -> int:
    """The connection's timestamp clock (1 ms ticks from a per-connection offset; the
    offset mixes the ISN, here the cookie: Connection._choose_iss)."""
    return (now // 1000 + ((cookie * 0x9E3779B1) & MASK)) & MASK


def test_tsval_bits_by_hand() -> None:
    # Window shift in bits 3..0 (15 = none), SACK-permitted in bit 4.
    assert encode_ts_options(7, True) == 0b01_0111
    assert encode_ts_options(None, False) == 0b00_1111
    assert encode_ts_options(20, False) == 14  # RFC 7323 2.3: above 14 means 14
    assert decode_ts_options(0xABCD_EF00 | 0b01_0111) == (7, True)
    assert decode_ts_options(0b10_1111) == (None, False)  # bit 5 (reserved) ignored
    # The low six bits are replaced; the value never exceeds the clock (PAWS at the
    # peer): 1000 = 960 + 40, so 960 | 0x17 = 983 <= 1000 stays; from 960 it would be
    # 983 > 960, so 64 ticks earlier: 919.
    assert cookie_tsval(1000, 0x17) == 983
    assert cookie_tsval(960, 0x17) == 919
    assert cookie_tsval(5, 0x3F) == 2**32 - 1  # 63 > 5: back 64, across the wrap


def test_cookie_handshake_keeps_wscale_sack_and_timestamps() -> None:
    server = cookie_server()
    syn_options = Options(mss=1460, window_scale=7, sack_permitted=True, timestamp=(PEER_TSVAL, 0))
    server.receive_datagram(from_peer(SYN, PEER_ISN, 0, syn_options), now=NOW)
    cookie = SynCookies(SECRET).make(KEY, PEER_ISN, 1460, NOW)
    clock = our_ts_clock(cookie, NOW)
    tsval = (clock & ~0x3F) | 0b01_0111  # shift 7, SACK-permitted
    if (tsval - clock) & MASK < 2**31 and tsval != clock:
        tsval = (tsval - 64) & MASK
    synack = Segment(
        80,
        PEER_PORT,
        cookie,
        seq_add(PEER_ISN, 1),
        SYN | ACK,
        65535,  # RFC 7323 2.2: a SYN's window is never scaled
        0,
        Options(
            mss=1460, window_scale=OUR_SHIFT, sack_permitted=True, timestamp=(tsval, PEER_TSVAL)
        ),
    )
    assert [d.segment for d in server.datagrams_to_send(now=NOW)] == [synack]
    assert server.stats["syn_cookie.sent"] == 1
    assert KEY not in server.connections

    # The third segment: TSecr echoes our TSval; its window of 1000 is scaled by 7.
    later = NOW + 30_000
    ack_options = Options(timestamp=(PEER_TSVAL + 30, tsval))
    server.receive_datagram(
        from_peer(ACK, seq_add(PEER_ISN, 1), seq_add(cookie, 1), ack_options), now=later
    )
    assert server.stats["syn_cookie.accepted"] == 1
    conn = server.accept(80)
    assert conn is not None and conn.state is State.ESTABLISHED
    assert conn.state_history == [State.CLOSED, State.LISTEN, State.SYN_RECEIVED, State.ESTABLISHED]
    assert (conn.snd_mss, conn.snd_wscale, conn.rcv_wscale) == (1460, 7, OUR_SHIFT)
    assert conn.ts_enabled and conn.sack_enabled
    assert conn.snd_wnd == 1000 << 7
    assert conn.ts_recent == PEER_TSVAL + 30
    assert server.datagrams_to_send(now=later) == []

    conn.send(b"hi", now=later)
    data = Segment(
        80,
        PEER_PORT,
        seq_add(cookie, 1),
        seq_add(PEER_ISN, 1),
        ACK | PSH,
        262144 >> OUR_SHIFT,  # the whole buffer, scaled by our shift (RFC 7323 2.3)
        0,
        Options(timestamp=(our_ts_clock(cookie, later), PEER_TSVAL + 30)),
        b"hi",
    )
    assert [d.segment for d in server.datagrams_to_send(now=later)] == [data]
    # The connection's TSval never goes below the SYN,ACK's (the peer's PAWS).
    assert (our_ts_clock(cookie, later) - tsval) & MASK < 2**31

    # SACK works as receiver: out-of-order data is answered at once with a SACK block
    # (RFC 2018 4; RFC 5681 4.2), next to the timestamps.
    later += 1000
    ooo = from_peer(
        ACK,
        seq_add(PEER_ISN, 11),
        seq_add(cookie, 3),
        Options(timestamp=(PEER_TSVAL + 31, our_ts_clock(cookie, later))),
        b"12345",
    )
    server.receive_datagram(ooo, now=later)
    sack_ack = Segment(
        80,
        PEER_PORT,
        seq_add(cookie, 3),
        seq_add(PEER_ISN, 1),
        ACK,
        262144 >> OUR_SHIFT,
        0,
        Options(
            timestamp=(our_ts_clock(cookie, later), PEER_TSVAL + 30),
            sack_blocks=((seq_add(PEER_ISN, 11), seq_add(PEER_ISN, 16)),),
        ),
    )
    assert [d.segment for d in server.datagrams_to_send(now=later)] == [sack_ack]


def test_cookie_without_timestamps_offers_mss_only() -> None:
    server = cookie_server()
    syn_options = Options(mss=1400, window_scale=7, sack_permitted=True)
    server.receive_datagram(from_peer(SYN, PEER_ISN, 0, syn_options), now=NOW)
    cookie = SynCookies(SECRET).make(KEY, PEER_ISN, 1400, NOW)
    synack = Segment(
        80, PEER_PORT, cookie, seq_add(PEER_ISN, 1), SYN | ACK, 65535, 0, Options(mss=1460)
    )
    assert [d.segment for d in server.datagrams_to_send(now=NOW)] == [synack]
    server.receive_datagram(
        from_peer(ACK, seq_add(PEER_ISN, 1), seq_add(cookie, 1), Options()), now=NOW + 1000
    )
    conn = server.accept(80)
    assert conn is not None and conn.state is State.ESTABLISHED
    assert (conn.snd_mss, conn.snd_wscale, conn.rcv_wscale) == (1400, 0, 0)
    assert not conn.ts_enabled and not conn.sack_enabled
    assert conn.snd_wnd == 1000


def test_cookie_with_timestamps_only() -> None:
    server = cookie_server()
    server.receive_datagram(
        from_peer(SYN, PEER_ISN, 0, Options(mss=1460, timestamp=(PEER_TSVAL, 0))), now=NOW
    )
    (synack,) = [d.segment for d in server.datagrams_to_send(now=NOW)]
    assert synack.options.window_scale is None and not synack.options.sack_permitted
    assert synack.options.timestamp is not None
    tsval = synack.options.timestamp[0]
    assert tsval & 0x3F == 0b00_1111  # no window scale, no SACK
    server.receive_datagram(
        from_peer(
            ACK,
            seq_add(PEER_ISN, 1),
            seq_add(synack.seq, 1),
            Options(timestamp=(PEER_TSVAL + 1, tsval)),
        ),
        now=NOW + 1000,
    )
    conn = server.accept(80)
    assert conn is not None and conn.state is State.ESTABLISHED
    assert conn.ts_enabled and not conn.sack_enabled
    assert (conn.snd_wscale, conn.rcv_wscale) == (0, 0)
    assert conn.snd_wnd == 1000


def test_forged_cookie_with_option_bits_is_still_rejected() -> None:
    server = cookie_server()
    # A cookie SYN,ACK first: only then are ACKs checked as cookies (Linux's
    # tcp_synq_no_recent_overflow; tests/core/test_cookie_gate.py).
    server.receive_datagram(from_peer(SYN, PEER_ISN, 0, Options(mss=1460)), now=NOW)
    server.datagrams_to_send(now=NOW)
    forged = from_peer(ACK, seq_add(PEER_ISN, 1), 123_456_789, Options(timestamp=(1, 0b01_0111)))
    server.receive_datagram(forged, now=NOW)
    assert [d.segment for d in server.datagrams_to_send(now=NOW)] == [
        Segment(80, PEER_PORT, 123_456_789, 0, Flag.RST)
    ]
    assert server.stats["syn_cookie.invalid"] == 1
    assert server.connection_count() == 0
