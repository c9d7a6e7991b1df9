"""A TIME_WAIT entry answers out-of-window segments with at most one ACK per
Config.invalid_ack_ratelimit, as Linux's TIME_WAIT sockets do.

RFC 9293 3.10.7.4 (first step) answers every unacceptable segment with
<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>. Linux's tcp_timewait_state_process sends that ACK
through tcp_timewait_check_oow_rate_limit: at most one per net.ipv4.tcp_invalid_ratelimit
(500 ms) per TIME_WAIT socket (tw_last_oow_ack_time), counting the skipped ones as
TCPACKSkippedTimeWait; the interval runs from the last ACK sent (0 <= elapsed <
interval holds the next back). tcp_oow_rate_limited limits only segments that occupy
no sequence space (or SYNs): data and FINs are always answered. So the retransmitted
FIN (RFC 9293 3.10.7.4: acknowledge it and restart 2*MSL) always gets its ACK and does
not move the limit's clock. The entry's challenge ACKs (RFC 5961: for an in-window RST,
a SYN that may not reuse the 4-tuple, an ACK of unsent data) share that clock before
they meet the stack-wide limit, as a connection's do (Linux's tcp_send_challenge_ack).
PLAIN (invalid_ack_ratelimit = 0) keeps the RFC: every unacceptable segment gets its ACK.

The entry enters TIME_WAIT at 3 ms (tests.core.test_endpoint._to_time_wait) with
RCV.NXT = PEER_ISS + 2 and a 65,535-byte window (PLAIN, no window scaling).
"""

from __future__ import annotations

from dataclasses import replace

from tcpstack.core.config import MILLISECOND, PLAIN, SECOND
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.segment import Datagram
from tcpstack.core.seq import seq_add
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
    _to_time_wait,
    fixed_isn,
    from_peer,
    make,
    sent,
    to_peer,
)

LIMITED = PLAIN.with_changes(invalid_ack_ratelimit=500 * MILLISECOND)
RCV_NXT = seq_add(PEER_ISS, 2)
T = 10 * MS  # the first out-of-window segment
INTERVAL = 500 * MILLISECOND


def key(port: int = 4000) -> tuple[str, int, str, int]:
    return (HOST, port, PEER, 80)


def beyond_window(port: int = 4000) -> Datagram:
    """A bare ACK past RCV.NXT + RCV.WND (65,535): unacceptable, no text."""
    return from_peer(80, port, ACK, seq_add(RCV_NXT, 70_000), ISS + 2)


def old_bare_ack(port: int = 4000) -> Datagram:
    """A bare ACK below RCV.NXT (an old duplicate): unacceptable, no text."""
    return from_peer(80, port, ACK, seq_add(RCV_NXT, -1), ISS + 2)


def old_data(port: int = 4000) -> Datagram:
    """An old duplicate carrying one octet of data."""
    return from_peer(80, port, ACK, seq_add(RCV_NXT, -2), ISS + 2, payload=b"x")


def retransmitted_fin(port: int = 4000) -> Datagram:
    return from_peer(80, port, FIN | ACK, seq_add(PEER_ISS, 1), ISS + 2)


def time_wait_ack(port: int = 4000) -> Datagram:
    return to_peer(port, 80, ACK, ISS + 2, RCV_NXT)


def test_one_ack_per_500_ms_for_out_of_window_segments_without_text() -> None:
    endpoint, _ = make(config=LIMITED)
    _to_time_wait(endpoint, 4000)
    entry = endpoint.time_wait[key()]
    assert (entry.oow_ack_interval, entry.last_oow_ack) == (INTERVAL, None)
    endpoint.receive_datagram(beyond_window(), now=T)
    assert sent(endpoint, T) == [time_wait_ack()]
    assert endpoint.time_wait[key()].last_oow_ack == T
    # 499.999 ms later: inside the interval, dropped with its own counter.
    endpoint.receive_datagram(beyond_window(), now=T + INTERVAL - 1)
    assert sent(endpoint, T + INTERVAL - 1) == []
    # An old duplicate without text shares the clock.
    endpoint.receive_datagram(old_bare_ack(), now=T + INTERVAL - 1)
    assert sent(endpoint, T + INTERVAL - 1) == []
    assert endpoint.stats["time_wait.ack_rate_limited"] == 2
    assert endpoint.stats["time_wait.ack"] == 1
    assert endpoint.stats["time_wait.drop"] == 0
    assert endpoint.time_wait[key()].last_oow_ack == T  # suppressed ACKs move nothing
    # Exactly 500 ms after the ACK sent: the interval has passed.
    endpoint.receive_datagram(beyond_window(), now=T + INTERVAL)
    assert sent(endpoint, T + INTERVAL) == [time_wait_ack()]
    assert endpoint.stats["time_wait.ack"] == 2
    # The next interval runs from that ACK.
    endpoint.receive_datagram(old_bare_ack(), now=T + 2 * INTERVAL - 1)
    assert sent(endpoint, T + 2 * INTERVAL - 1) == []
    endpoint.receive_datagram(old_bare_ack(), now=T + 2 * INTERVAL)
    assert sent(endpoint, T + 2 * INTERVAL) == [time_wait_ack()]
    assert endpoint.stats["time_wait.ack"] == 3
    assert endpoint.stats["time_wait.ack_rate_limited"] == 3
    assert endpoint.next_timer() == 3 * MS + LIMITED.time_wait_duration  # no restart


def test_old_data_is_always_acked_and_leaves_the_clock_alone() -> None:
    """Linux's tcp_oow_rate_limited: segments that occupy sequence space (but for SYN)
    are not limited, since a duplicate with data may be part of loss recovery."""
    endpoint, _ = make(config=LIMITED)
    _to_time_wait(endpoint, 4000)
    endpoint.receive_datagram(beyond_window(), now=T)
    assert sent(endpoint, T) == [time_wait_ack()]
    for n in (1, 2):
        endpoint.receive_datagram(old_data(), now=T + n)
        assert sent(endpoint, T + n) == [time_wait_ack()]
    assert endpoint.time_wait[key()].last_oow_ack == T
    endpoint.receive_datagram(beyond_window(), now=T + 3)
    assert sent(endpoint, T + 3) == []
    assert endpoint.stats["time_wait.ack"] == 3
    assert endpoint.stats["time_wait.ack_rate_limited"] == 1


def test_retransmitted_fin_is_never_suppressed_and_restarts_2msl() -> None:
    """RFC 9293 3.10.7.4: acknowledge the retransmitted FIN and restart the 2 MSL
    timeout. A FIN occupies sequence space, so Linux never rate limits its ACK; nor
    does it stamp the clock, which keeps running from the last out-of-window ACK (the
    restart keeps the stamp too)."""
    endpoint, _ = make(config=LIMITED)
    _to_time_wait(endpoint, 4000)
    endpoint.receive_datagram(beyond_window(), now=T)
    assert sent(endpoint, T) == [time_wait_ack()]
    for n in (1, 2):
        endpoint.receive_datagram(retransmitted_fin(), now=T + n)
        assert sent(endpoint, T + n) == [time_wait_ack()]
        assert endpoint.next_timer() == T + n + LIMITED.time_wait_duration
    assert endpoint.stats["time_wait.ack_restart"] == 2
    assert endpoint.time_wait[key()].last_oow_ack == T
    endpoint.receive_datagram(beyond_window(), now=T + 3)
    assert sent(endpoint, T + 3) == []
    endpoint.receive_datagram(beyond_window(), now=T + INTERVAL)
    assert sent(endpoint, T + INTERVAL) == [time_wait_ack()]
    assert endpoint.stats["time_wait.ack"] == 2
    assert endpoint.stats["time_wait.ack_rate_limited"] == 1


def test_a_fin_first_does_not_hold_back_the_next_out_of_window_ack() -> None:
    endpoint, _ = make(config=LIMITED)
    _to_time_wait(endpoint, 4000)
    endpoint.receive_datagram(retransmitted_fin(), now=T)
    assert sent(endpoint, T) == [time_wait_ack()]
    assert endpoint.time_wait[key()].last_oow_ack is None
    endpoint.receive_datagram(beyond_window(), now=T + 1)
    assert sent(endpoint, T + 1) == [time_wait_ack()]
    assert endpoint.time_wait[key()].last_oow_ack == T + 1


def test_each_entry_has_its_own_clock() -> None:
    endpoint, _ = make(config=LIMITED)
    for port in (4000, 4001):
        _to_time_wait(endpoint, port)
    for port in (4000, 4001):
        endpoint.receive_datagram(beyond_window(port), now=T)
    assert sent(endpoint, T) == [time_wait_ack(4000), time_wait_ack(4001)]
    endpoint.receive_datagram(beyond_window(4000), now=T + 1)
    assert sent(endpoint, T + 1) == []
    assert endpoint.stats["time_wait.ack_rate_limited"] == 1
    assert endpoint.time_wait[key(4001)].last_oow_ack == T


def test_plain_acks_every_unacceptable_segment() -> None:
    """PLAIN (RFC 9293 alone, invalid_ack_ratelimit = 0): no limit, as before."""
    endpoint, _ = make()
    _to_time_wait(endpoint, 4000)
    assert endpoint.time_wait[key()].oow_ack_interval == 0
    for n in range(4):
        datagram = beyond_window() if n % 2 else old_bare_ack()
        endpoint.receive_datagram(datagram, now=T + n)
        assert sent(endpoint, T + n) == [time_wait_ack()]
    assert endpoint.stats["time_wait.ack"] == 4
    assert endpoint.stats["time_wait.ack_rate_limited"] == 0
    assert endpoint.time_wait[key()].last_oow_ack is None


def test_the_entry_keeps_its_connections_interval() -> None:
    """The limit is the closed connection's Config.invalid_ack_ratelimit, like its 2*MSL,
    whatever the Endpoint's default: a PLAIN connection on a limited Endpoint stays
    unlimited in TIME_WAIT."""
    endpoint, _ = make(config=LIMITED)
    conn = endpoint.connect(PEER, 80, now=0, local_port=4000, config=PLAIN)
    endpoint.receive_datagram(from_peer(80, 4000, SYN | ACK, PEER_ISS, ISS + 1), now=MS)
    conn.close(now=2 * MS)
    endpoint.receive_datagram(retransmitted_fin(), now=3 * MS)
    sent(endpoint, 3 * MS)
    assert endpoint.time_wait[key()].oow_ack_interval == 0
    for n in (0, 1):
        endpoint.receive_datagram(beyond_window(), now=T + n)
        assert sent(endpoint, T + n) == [time_wait_ack()]


def test_the_stamp_is_packed_apart_from_every_other_field() -> None:
    """The stamp (time + 1 in 56 bits, 0 = none) leaves the other fields as they were,
    survives a restart, and a time it cannot hold leaves no stamp (so it holds back no
    ACK). The packed state is as long as its highest set bit: 149 bits of sequence,
    window and timestamp state, 56 for the stamp, then the deadline (60,003,000 µs: 26
    bits), so 231 bits, 8 thirty-bit digits, 56 bytes, with or without a stamp."""
    endpoint, _ = make(config=LIMITED)
    _to_time_wait(endpoint, 4000)
    table = endpoint.time_wait
    before = table[key()]
    assert before.deadline == 60_003_000
    assert dict(table.entry_sizes(key()))["state int"] == 56
    latest = 2**56 - 2
    table.note_oow_ack(key(), latest)
    assert table[key()] == replace(before, last_oow_ack=latest)
    table.note_oow_ack(key(), latest + 1)
    assert table[key()] == before
    table.note_oow_ack(key(), T)
    assert dict(table.entry_sizes(key()))["state int"] == 56
    deadline = table.restart(key(), 5 * SECOND)
    assert deadline == 5 * SECOND + LIMITED.time_wait_duration
    assert table[key()] == replace(before, last_oow_ack=T, deadline=deadline)


def in_window_rst(port: int = 4000) -> Datagram:
    """RST inside the window but not at RCV.NXT: a challenge ACK (RFC 5961 3.2)."""
    return from_peer(80, port, RST, seq_add(RCV_NXT, 1))


def old_syn(port: int = 4000) -> Datagram:
    """A SYN whose ISN is not above RCV.NXT may not reuse the 4-tuple (RFC 6191): a
    challenge ACK (RFC 5961 4.2)."""
    return from_peer(80, port, SYN, PEER_ISS)


def test_challenge_acks_share_the_entrys_clock() -> None:
    """As a connection's challenge ACKs do (Linux's tcp_send_challenge_ack puts every
    challenge ACK through the socket's last_oow_ack_time first): one clock for both."""
    endpoint, _ = make(config=LIMITED)
    _to_time_wait(endpoint, 4000)
    endpoint.receive_datagram(old_syn(), now=T)
    assert sent(endpoint, T) == [time_wait_ack()]
    endpoint.receive_datagram(beyond_window(), now=T + 1)
    endpoint.receive_datagram(in_window_rst(), now=T + 2)
    assert sent(endpoint, T + 2) == []
    assert endpoint.stats["time_wait.ack_rate_limited"] == 2
    assert endpoint.challenge_limiter.sent == 1  # the stack limit was asked once only
    endpoint.receive_datagram(in_window_rst(), now=T + INTERVAL)
    assert sent(endpoint, T + INTERVAL) == [time_wait_ack()]
    assert endpoint.challenge_limiter.sent == 2
    assert endpoint.stats["time_wait.ack"] == 2
    assert key() in endpoint.time_wait


def test_a_challenge_ack_the_stack_limit_holds_back_still_uses_the_entrys_slot() -> None:
    endpoint = Endpoint(HOST, isn_generator=fixed_isn, config=LIMITED, challenge_ack_limit=1)
    _to_time_wait(endpoint, 4000)
    _to_time_wait(endpoint, 4001)
    endpoint.receive_datagram(in_window_rst(4001), now=T)  # spends the stack's budget
    assert sent(endpoint, T) == [time_wait_ack(4001)]
    endpoint.receive_datagram(in_window_rst(4000), now=T + 1)
    assert sent(endpoint, T + 1) == []
    assert endpoint.stats["time_wait.drop"] == 1
    assert endpoint.stats["challenge_ack.rate_limited"] == 1
    assert endpoint.time_wait[key()].last_oow_ack == T + 1
    endpoint.receive_datagram(beyond_window(4000), now=T + 2)
    assert sent(endpoint, T + 2) == []
    assert endpoint.stats["time_wait.ack_rate_limited"] == 1
