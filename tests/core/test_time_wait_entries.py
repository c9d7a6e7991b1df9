"""The Endpoint's compact TIME_WAIT entries: exact segments and deadlines.

A connection that enters TIME_WAIT becomes a TimeWaitEntry (core/timewait.py). These
tests drive it with exact peer segments: the retransmitted FIN (RFC 9293 3.10.7.4,
seed C11a), RST (and the RFC 1337 switch), a new incarnation's SYN (RFC 6191), the
limit on entries (Linux's tcp_max_tw_buckets) and SO_REUSEADDR for listen().
"""

from __future__ import annotations

import gc

import pytest

from tcpstack.core.config import PLAIN, SECOND
from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.errors import AddressInUse
from tcpstack.core.events import Closed, CloseReason
from tcpstack.core.segment import Options
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
    _to_time_wait,
    events,
    from_peer,
    make,
    sent,
    to_peer,
)

TW_END = 3 * MS + PLAIN.time_wait_duration  # _to_time_wait enters TIME_WAIT at 3 ms


def ack_from_time_wait(port: int = 4000) -> object:
    return to_peer(port, 80, ACK, ISS + 2, seq_add(PEER_ISS, 2))


def test_time_wait_becomes_a_compact_entry_and_ends_after_2msl() -> None:
    endpoint, _ = make()
    conn = _to_time_wait(endpoint, 4000)
    assert endpoint.connections == {}
    assert list(endpoint.time_wait) == [(HOST, 4000, PEER, 80)]
    assert endpoint.next_timer() == TW_END
    endpoint.handle_timer(now=TW_END - 1)
    assert conn.state is State.TIME_WAIT
    endpoint.handle_timer(now=TW_END)
    assert endpoint.time_wait == {}
    assert conn.state_history[-2:] == [State.TIME_WAIT, State.CLOSED]
    assert events(conn)[-1] == Closed(CloseReason.NORMAL)
    assert endpoint.next_timer() is None


def test_retransmitted_fin_is_acked_and_restarts_2msl() -> None:
    endpoint, _ = make()
    _to_time_wait(endpoint, 4000)
    fin = from_peer(80, 4000, FIN | ACK, seq_add(PEER_ISS, 1), ISS + 2)
    endpoint.receive_datagram(fin, now=1 * SECOND)
    assert sent(endpoint, 1 * SECOND) == [ack_from_time_wait()]
    assert endpoint.next_timer() == 1 * SECOND + PLAIN.time_wait_duration
    assert endpoint.stats["time_wait.ack_restart"] == 1


def test_old_duplicate_gets_an_ack_without_restart() -> None:
    endpoint, _ = make()
    _to_time_wait(endpoint, 4000)
    old = from_peer(80, 4000, ACK, PEER_ISS, ISS + 2, payload=b"x")
    endpoint.receive_datagram(old, now=5 * MS)
    assert sent(endpoint, 5 * MS) == [ack_from_time_wait()]
    assert endpoint.next_timer() == TW_END


def test_ack_of_unsent_data_gets_a_rate_limited_challenge_ack() -> None:
    endpoint, _ = make()
    _to_time_wait(endpoint, 4000)
    # RFC 9293 3.10.7.4 fifth check / RFC 5961 5.2: SEG.ACK > SND.NXT -> ACK back, drop.
    future = from_peer(80, 4000, ACK, seq_add(PEER_ISS, 2), ISS + 500)
    endpoint.receive_datagram(future, now=5 * MS)
    assert sent(endpoint, 5 * MS) == [ack_from_time_wait()]
    assert endpoint.next_timer() == TW_END  # no restart
    assert endpoint.stats["time_wait.ack"] == 1
    # The answer is a challenge ACK: once the stack's budget is spent, silence.
    limit = endpoint.challenge_limiter.limit
    for _ in range(limit + 1):
        endpoint.receive_datagram(future, now=6 * MS)
    assert len(sent(endpoint, 6 * MS)) == limit - 1
    assert endpoint.stats["time_wait.drop"] == 2
    # A bare ACK at RCV.NXT acknowledging exactly SND.NXT needs no answer.
    endpoint.receive_datagram(from_peer(80, 4000, ACK, seq_add(PEER_ISS, 2), ISS + 2), now=7 * MS)
    assert sent(endpoint, 7 * MS) == []


def test_rst_at_rcv_nxt_ends_time_wait_early() -> None:
    """Without RFC 1337's fix an exact RST "assassinates" TIME_WAIT (Linux default)."""
    endpoint, _ = make()
    conn = _to_time_wait(endpoint, 4000)
    endpoint.receive_datagram(from_peer(80, 4000, RST, seq_add(PEER_ISS, 2)), now=10 * MS)
    assert sent(endpoint, 10 * MS) == []
    assert endpoint.time_wait == {}
    assert conn.state is State.CLOSED
    assert events(conn)[-1] == Closed(CloseReason.NORMAL)


def test_rfc1337_switch_ignores_rst_in_time_wait() -> None:
    endpoint = Endpoint(HOST, isn_generator=lambda _t, _n: ISS, config=PLAIN, rfc1337=True)
    conn = _to_time_wait(endpoint, 4000)
    endpoint.receive_datagram(from_peer(80, 4000, RST, seq_add(PEER_ISS, 2)), now=10 * MS)
    assert sent(endpoint, 10 * MS) == []
    assert list(endpoint.time_wait) == [(HOST, 4000, PEER, 80)]
    assert conn.state is State.TIME_WAIT
    assert endpoint.stats["time_wait.drop"] == 1


def test_syn_above_rcv_nxt_reuses_the_four_tuple() -> None:
    """RFC 6191 without timestamps: a SYN whose ISN lies above RCV.NXT starts a new
    incarnation at once; the listener answers it."""
    endpoint, _ = make()
    endpoint.listen(4000, reuse_address=True)
    conn = _to_time_wait(endpoint, 4000)
    new_isn = seq_add(PEER_ISS, 100_000)
    endpoint.receive_datagram(from_peer(80, 4000, SYN, new_isn), now=20 * MS)
    out = sent(endpoint, 20 * MS)
    assert [(d.segment.flags, d.segment.ack) for d in out] == [(SYN | ACK, seq_add(new_isn, 1))]
    assert endpoint.time_wait == {}
    assert conn.state is State.CLOSED
    assert endpoint.connections[(HOST, 4000, PEER, 80)].state is State.SYN_RECEIVED


def test_syn_below_rcv_nxt_is_answered_with_an_ack() -> None:
    endpoint, _ = make()
    endpoint.listen(4000, reuse_address=True)
    _to_time_wait(endpoint, 4000)
    endpoint.receive_datagram(from_peer(80, 4000, SYN, PEER_ISS), now=20 * MS)
    assert sent(endpoint, 20 * MS) == [ack_from_time_wait()]
    assert list(endpoint.time_wait) == [(HOST, 4000, PEER, 80)]


def to_time_wait_with_timestamps(endpoint: Endpoint, ts_peer: int) -> Connection:
    """Like _to_time_wait, with timestamps on both sides; TS.Recent ends at ts_peer + 3."""
    conn = endpoint.connect(PEER, 80, now=0, local_port=4000)
    synack = from_peer(
        80, 4000, SYN | ACK, PEER_ISS, ISS + 1, options=Options(mss=1460, timestamp=(ts_peer, 1))
    )
    endpoint.receive_datagram(synack, now=MS)
    conn.close(now=2 * MS)
    sent(endpoint, 2 * MS)
    fin = from_peer(
        80,
        4000,
        FIN | ACK,
        seq_add(PEER_ISS, 1),
        ISS + 2,
        options=Options(timestamp=(ts_peer + 3, 1)),
    )
    endpoint.receive_datagram(fin, now=3 * MS)
    sent(endpoint, 3 * MS)
    assert conn.state is State.TIME_WAIT
    assert endpoint.time_wait[conn.four_tuple].ts_recent == ts_peer + 3
    return conn


@pytest.mark.parametrize(("tsval_delta", "reused"), [(+1, True), (-1, False)])
def test_syn_with_timestamps_is_judged_by_its_timestamp(tsval_delta: int, reused: bool) -> None:
    """RFC 6191 with timestamps: a newer TSval than TS.Recent allows reuse, even with a
    lower ISN; an older one gets an ACK (carrying our timestamps)."""
    config = PLAIN.with_changes(timestamps=True)
    endpoint, _ = make(config=config)
    endpoint.listen(4000, reuse_address=True)
    ts_peer = 50_000
    conn = to_time_wait_with_timestamps(endpoint, ts_peer)
    syn = from_peer(
        80, 4000, SYN, PEER_ISS, options=Options(timestamp=(ts_peer + 3 + tsval_delta, 0))
    )
    endpoint.receive_datagram(syn, now=20 * MS)
    out = sent(endpoint, 20 * MS)
    if reused:
        assert [d.segment.flags for d in out] == [SYN | ACK]
        assert conn.state_history[-1] is State.CLOSED
    else:
        assert [d.segment.flags for d in out] == [ACK]
        timestamp = out[0].segment.options.timestamp
        assert timestamp is not None and timestamp[1] == ts_peer + 3
        assert conn.state is State.TIME_WAIT


def test_limit_on_time_wait_entries_closes_the_overflow_at_once() -> None:
    """Like tcp_max_tw_buckets: past the limit a connection skips TIME_WAIT."""
    endpoint = Endpoint(HOST, isn_generator=lambda _t, _n: ISS, config=PLAIN, max_time_wait=2)
    conns = [_to_time_wait(endpoint, port) for port in (4000, 4001)]
    assert len(endpoint.time_wait) == 2
    third = endpoint.connect(PEER, 80, now=0, local_port=4002)
    endpoint.receive_datagram(from_peer(80, 4002, SYN | ACK, PEER_ISS, ISS + 1), now=MS)
    third.close(now=2 * MS)
    sent(endpoint, 2 * MS)
    endpoint.receive_datagram(
        from_peer(80, 4002, FIN | ACK, seq_add(PEER_ISS, 1), ISS + 2), now=3 * MS
    )
    assert sent(endpoint, 3 * MS) == [to_peer(4002, 80, ACK, ISS + 2, seq_add(PEER_ISS, 2))]
    assert len(endpoint.time_wait) == 2
    assert third.state_history[-2:] == [State.TIME_WAIT, State.CLOSED]
    assert endpoint.stats["time_wait_overflow"] == 1
    assert all(c.state is State.TIME_WAIT for c in conns)


def test_listen_on_a_port_with_time_wait_needs_reuse_address() -> None:
    endpoint, _ = make()
    _to_time_wait(endpoint, 4000)
    with pytest.raises(AddressInUse) as raised:
        endpoint.listen(4000)
    assert (raised.value.call, raised.value.state) == ("listen", State.TIME_WAIT)
    assert 4000 not in endpoint.listeners
    endpoint.listen(4000, reuse_address=True)
    assert 4000 in endpoint.listeners


def test_an_entry_does_not_keep_the_applications_connection_alive() -> None:
    # No tracer (it would hold the segments) and no woken set (no application reads it).
    endpoint = Endpoint(HOST, isn_generator=lambda _t, _n: ISS, config=PLAIN, track_woken=False)
    _to_time_wait(endpoint, 4000)  # the returned Connection is dropped at once
    # A stale timer-heap entry (its old retransmission deadline, 1.002 s) still refers
    # to it until that deadline passes and the entry is skipped.
    endpoint.handle_timer(now=2 * SECOND)
    gc.collect()
    entry = endpoint.time_wait[(HOST, 4000, PEER, 80)]
    assert entry.connection() is None
    endpoint.handle_timer(now=TW_END)  # ends quietly: nobody to tell
    assert endpoint.time_wait == {}


def test_local_ports_in_use_follow_adds_removals_and_expiry() -> None:
    # bind()/listen()/connect() ask the table per port instead of walking it.
    endpoint, _ = make()
    _to_time_wait(endpoint, 4000)
    _to_time_wait(endpoint, 4001)
    table = endpoint.time_wait
    assert table.uses_local_port(4000) and table.uses_local_port(4001)
    assert not table.uses_local_port(4002)
    assert sorted(table.local_ports()) == [4000, 4001]
    table.remove((HOST, 4000, PEER, 80))
    assert not table.uses_local_port(4000)
    assert list(table.local_ports()) == [4001]
    endpoint.handle_timer(now=endpoint.next_timer() or 0)
    assert not table.uses_local_port(4001)
    assert list(table.local_ports()) == []


def test_local_ports_in_use_cover_listeners_connections_and_time_wait() -> None:
    endpoint, _ = make()
    endpoint.listen(80)
    _to_time_wait(endpoint, 4000)
    endpoint.connect(PEER, 80, now=0, local_port=4001)
    assert endpoint.local_ports_in_use() == {80, 4000, 4001}
