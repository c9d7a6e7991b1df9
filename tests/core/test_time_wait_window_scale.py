"""TIME_WAIT judges sequence numbers against RCV.WND, not against the window field.

With window scaling (RFC 7323 2.2) every window field but a SYN's is RCV.WND shifted
right by our shift, so a compact TIME_WAIT entry keeps the shift next to the field and
checks RST (RFC 5961 3.2 / RFC 9293 3.10.7.4 second step) and every other segment
(first step: RCV.NXT =< SEG.SEQ < RCV.NXT + RCV.WND) against field << shift, as
Linux's TIME_WAIT socket keeps tw_rcv_wnd in bytes and tw_rcv_wscale beside it.

Here the receive buffer is 262,144 bytes: RFC 7323 2.3 makes our shift the smallest
that fits it in 16 bits, 3 (262,144 >> 2 = 65,536 is too big), so an empty buffer is
advertised as the field 32,768, and RCV.WND is 262,144. The unscaled field would put
the right edge of the window 229,376 bytes too early.
"""

from __future__ import annotations

from tcpstack.core.config import PLAIN
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.segment import Datagram, Options
from tcpstack.core.seq import seq_add
from tcpstack.core.state import State
from tests.core.test_endpoint import (
    ACK,
    FIN,
    HOST,
    ISS,
    MS,
    PEER,
    PEER_ISS,
    RST,
    SYN,
    from_peer,
    make,
    sent,
    to_peer,
)

SCALED = PLAIN.with_changes(window_scaling=True, receive_buffer_size=262_144)
SHIFT = 3
FIELD = 262_144 >> SHIFT  # 32,768
RCV_WND = 262_144
RCV_NXT = seq_add(PEER_ISS, 2)  # after the peer's SYN and FIN
KEY = (HOST, 4000, PEER, 80)
T = 10 * MS


def scaled_time_wait() -> Endpoint:
    """An active close with window scaling on both sides (the peer's shift is 0)."""
    endpoint, _ = make(config=SCALED)
    conn = endpoint.connect(PEER, 80, now=0, local_port=4000)
    (syn,) = sent(endpoint, 0)
    assert syn.segment.options == Options(mss=1460, window_scale=SHIFT)
    synack = from_peer(
        80, 4000, SYN | ACK, PEER_ISS, ISS + 1, options=Options(mss=1460, window_scale=0)
    )
    endpoint.receive_datagram(synack, now=MS)
    assert sent(endpoint, MS) == [
        to_peer(4000, 80, ACK, ISS + 1, seq_add(PEER_ISS, 1), window=FIELD)
    ]
    conn.close(now=2 * MS)
    assert sent(endpoint, 2 * MS) == [
        to_peer(4000, 80, FIN | ACK, ISS + 1, seq_add(PEER_ISS, 1), window=FIELD)
    ]
    fin = from_peer(80, 4000, FIN | ACK, seq_add(PEER_ISS, 1), ISS + 2)
    endpoint.receive_datagram(fin, now=3 * MS)
    assert sent(endpoint, 3 * MS) == [to_peer(4000, 80, ACK, ISS + 2, RCV_NXT, window=FIELD)]
    assert conn.state is State.TIME_WAIT and endpoint.connections == {}
    return endpoint


def rst(offset: int) -> Datagram:
    return from_peer(80, 4000, RST, seq_add(RCV_NXT, offset))


def bare_ack(offset: int) -> Datagram:
    return from_peer(80, 4000, ACK, seq_add(RCV_NXT, offset), ISS + 2)


# <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> with our (scaled) window field.
TIME_WAIT_ACK = to_peer(4000, 80, ACK, ISS + 2, RCV_NXT, window=FIELD)


def test_the_entry_keeps_the_field_and_our_shift() -> None:
    entry = scaled_time_wait().time_wait[KEY]
    assert (entry.window, entry.rcv_wscale, entry.rcv_wnd) == (FIELD, SHIFT, RCV_WND)


def test_rst_inside_the_scaled_window_but_beyond_the_field_gets_a_challenge_ack() -> None:
    """RFC 5961 3.2: an in-window RST that is not exactly at RCV.NXT is answered with a
    challenge ACK and dropped; the entry stays. 32,768 and 100,000 lie beyond the
    unscaled field (the first one exactly at its edge), 262,143 is the last octet of
    RCV.WND."""
    endpoint = scaled_time_wait()
    for n, offset in enumerate((FIELD, 100_000, RCV_WND - 1), start=1):
        endpoint.receive_datagram(rst(offset), now=T + n)
        assert sent(endpoint, T + n) == [TIME_WAIT_ACK]
        assert endpoint.stats["time_wait.ack"] == n
    assert KEY in endpoint.time_wait
    assert endpoint.stats["time_wait.drop"] == 0
    assert endpoint.stats["challenge_ack.sent"] == 3


def test_rst_beyond_the_scaled_window_is_dropped_with_its_counter() -> None:
    """RFC 5961 3.2 / RFC 9293 3.10.7.4: a RST outside the window is silently dropped."""
    endpoint = scaled_time_wait()
    for n, offset in enumerate((RCV_WND, RCV_WND + 1, 1_000_000), start=1):
        endpoint.receive_datagram(rst(offset), now=T + n)
        assert sent(endpoint, T + n) == []
        assert endpoint.stats["time_wait.drop"] == n
    assert KEY in endpoint.time_wait
    assert endpoint.stats["time_wait.ack"] == 0


def test_rst_at_rcv_nxt_still_ends_the_entry() -> None:
    endpoint = scaled_time_wait()
    endpoint.receive_datagram(rst(0), now=T)
    assert sent(endpoint, T) == []
    assert KEY not in endpoint.time_wait
    assert endpoint.stats["time_wait.kill"] == 1


def test_bare_ack_is_judged_against_the_scaled_window_too() -> None:
    """RFC 9293 3.10.7.4 first step: a bare ACK inside RCV.WND is acceptable and needs no
    answer here; beyond RCV.NXT + RCV.WND it is unacceptable and gets an ACK."""
    endpoint = scaled_time_wait()
    endpoint.receive_datagram(bare_ack(100_000), now=T)
    assert sent(endpoint, T) == []
    assert endpoint.stats["time_wait.drop"] == 1
    endpoint.receive_datagram(bare_ack(RCV_WND - 1), now=T + 1)
    assert sent(endpoint, T + 1) == []
    assert endpoint.stats["time_wait.drop"] == 2
    endpoint.receive_datagram(bare_ack(RCV_WND), now=T + 2)
    assert sent(endpoint, T + 2) == [TIME_WAIT_ACK]
    assert endpoint.stats["time_wait.ack"] == 1


def test_without_window_scaling_the_field_is_the_window() -> None:
    """PLAIN (no RFC 7323): shift 0, RCV.WND = the 65,535-byte field."""
    endpoint, _ = make()
    conn = endpoint.connect(PEER, 80, now=0, local_port=4000)
    endpoint.receive_datagram(from_peer(80, 4000, SYN | ACK, PEER_ISS, ISS + 1), now=MS)
    conn.close(now=2 * MS)
    endpoint.receive_datagram(
        from_peer(80, 4000, FIN | ACK, seq_add(PEER_ISS, 1), ISS + 2), now=3 * MS
    )
    sent(endpoint, 3 * MS)
    entry = endpoint.time_wait[KEY]
    assert (entry.window, entry.rcv_wscale, entry.rcv_wnd) == (65_535, 0, 65_535)
    endpoint.receive_datagram(rst(65_534), now=T)
    assert sent(endpoint, T) == [to_peer(4000, 80, ACK, ISS + 2, RCV_NXT)]
    endpoint.receive_datagram(rst(65_535), now=T + 1)
    assert sent(endpoint, T + 1) == []
    assert (endpoint.stats["time_wait.ack"], endpoint.stats["time_wait.drop"]) == (1, 1)
