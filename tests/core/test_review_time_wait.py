"""Review of the compact TIME_WAIT entries against RFC 9293 3.10.7.4, RFC 6191, RFC 5961
and ICMP delivery (RFC 9293 3.9.2.2): exact segments, exact deadlines.

Every connection here ends as in tests/core/test_endpoint.py's `_to_time_wait`: we
close first, RCV.NXT = PEER_ISS + 2 and SND.NXT = ISS + 2 in the entry.
"""

from __future__ import annotations

from tcpstack.core.config import PLAIN, SECOND, Config
from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.icmp import IcmpKind, IcmpReport
from tcpstack.core.segment import Datagram, Options, Segment
from tcpstack.core.seq import seq_add
from tcpstack.core.state import State
from tcpstack.core.trace import TraceKind
from tests.core.test_endpoint import (
    ACK,
    FIN,
    HOST,
    ISS,
    MS,
    PEER,
    PEER_ISS,
    SYN,
    _to_time_wait,
    from_peer,
    make,
    sent,
    to_peer,
)
from tests.core.test_time_wait_entries import (
    TW_END,
    ack_from_time_wait,
    to_time_wait_with_timestamps,
)

KEY = (HOST, 4000, PEER, 80)


def test_syn_with_equal_timestamp_and_higher_isn_reuses_the_four_tuple() -> None:
    """RFC 6191 2, second rule with timestamps: TSval equal to TS.Recent and SEG.SEQ above
    the previous incarnation's RCV.NXT -> honour the SYN (Linux does too: an equal TSval
    is not a PAWS reject, and the ISN is after tw_rcv_nxt)."""
    endpoint, _ = make(config=PLAIN.with_changes(timestamps=True))
    endpoint.listen(4000, reuse_address=True)
    to_time_wait_with_timestamps(endpoint, 50_000)
    new_isn = seq_add(PEER_ISS, 100_000)
    syn = from_peer(80, 4000, SYN, new_isn, options=Options(timestamp=(50_003, 0)))
    endpoint.receive_datagram(syn, now=20 * MS)
    out = sent(endpoint, 20 * MS)
    assert [(d.segment.flags, d.segment.ack) for d in out] == [(SYN | ACK, seq_add(new_isn, 1))]
    assert KEY not in endpoint.time_wait
    assert endpoint.connections[KEY].state is State.SYN_RECEIVED


def test_syn_with_equal_timestamp_and_old_isn_keeps_time_wait() -> None:
    """RFC 6191 2: equal TSval and SEG.SEQ not above RCV.NXT -> the entry stays."""
    endpoint, _ = make(config=PLAIN.with_changes(timestamps=True))
    endpoint.listen(4000, reuse_address=True)
    to_time_wait_with_timestamps(endpoint, 50_000)
    syn = from_peer(80, 4000, SYN, PEER_ISS, options=Options(timestamp=(50_003, 0)))
    endpoint.receive_datagram(syn, now=20 * MS)
    assert [d.segment.flags for d in sent(endpoint, 20 * MS)] == [ACK]
    assert KEY in endpoint.time_wait


def test_ack_for_an_unusable_syn_is_a_rate_limited_challenge_ack() -> None:
    """RFC 9293 3.10.7.4 fourth step: a SYN in TIME-WAIT that may not open a new
    incarnation is handled per RFC 5961 (4.2: challenge ACK), and RFC 5961 7 limits
    challenge ACKs: past the stack's budget a flood of such SYNs draws no more ACKs.
    (Linux limits them too, per TIME_WAIT socket: tcp_timewait_check_oow_rate_limit.)"""
    endpoint, _ = make()
    _to_time_wait(endpoint, 4000)
    old_syn = from_peer(80, 4000, SYN, PEER_ISS)
    endpoint.receive_datagram(old_syn, now=5 * MS)
    assert sent(endpoint, 5 * MS) == [ack_from_time_wait()]
    limit = endpoint.challenge_limiter.limit
    for _ in range(limit + 1):
        endpoint.receive_datagram(old_syn, now=6 * MS)
    assert len(sent(endpoint, 6 * MS)) == limit - 1
    assert endpoint.stats["time_wait.drop"] == 2
    assert KEY in endpoint.time_wait
    assert endpoint.next_timer() == TW_END  # no restart


def test_bare_segment_beyond_the_window_gets_an_ack() -> None:
    """RFC 9293 3.10.7.4 first step: an unacceptable segment (here SEG.SEQ far beyond
    RCV.NXT + RCV.WND, no text) is answered with <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>,
    in TIME-WAIT as elsewhere (Linux ACKs it too); 2*MSL does not restart."""
    endpoint, _ = make()
    _to_time_wait(endpoint, 4000)
    window = endpoint.time_wait[KEY].window
    beyond = from_peer(80, 4000, ACK, seq_add(PEER_ISS, 2 + window + 10), ISS + 2)
    endpoint.receive_datagram(beyond, now=5 * MS)
    assert sent(endpoint, 5 * MS) == [ack_from_time_wait()]
    assert endpoint.next_timer() == TW_END
    # In the window but not the FIN: acceptable, nothing to answer (3.10.7.4 fifth step).
    inside = from_peer(80, 4000, ACK, seq_add(PEER_ISS, 2 + window - 1), ISS + 2)
    endpoint.receive_datagram(inside, now=6 * MS)
    assert sent(endpoint, 6 * MS) == []


def test_icmp_error_for_a_time_wait_four_tuple_changes_nothing() -> None:
    """RFC 9293 3.9.2.2 / RFC 5927 4.1: a TIME_WAIT entry has nothing in flight, so no
    ICMP error can concern it; the entry, its deadline and the held Connection stay."""
    endpoint, _ = make()
    conn = _to_time_wait(endpoint, 4000)
    for kind in IcmpKind:
        report = IcmpReport(HOST, 4000, PEER, 80, ISS + 1, kind, 576, "10.9.9.9")
        assert endpoint.receive_icmp_error(report, now=10 * MS) == "no_connection"
    assert endpoint.stats["icmp.no_connection"] == len(IcmpKind)
    assert sent(endpoint, 10 * MS) == []
    assert list(endpoint.time_wait) == [KEY]
    assert endpoint.next_timer() == TW_END
    assert conn.state is State.TIME_WAIT and conn.icmp_error is None
    assert endpoint.connections == {}


def test_entries_at_port_and_sequence_extremes_round_trip() -> None:
    """Ports 1 and 65535 and sequence numbers next to 2**32 survive the packing."""
    endpoint = Endpoint(
        HOST, isn_generator=lambda _t, _n: 2**32 - 1, config=PLAIN, ephemeral_ports=(1, 65535)
    )
    conn = endpoint.connect(PEER, 65535, now=0, local_port=1)
    endpoint.receive_datagram(from_peer(65535, 1, SYN | ACK, 2**32 - 1, 0), now=MS)
    conn.close(now=2 * MS)
    assert [d.segment for d in sent(endpoint, 2 * MS)][-1].seq == 0
    endpoint.receive_datagram(from_peer(65535, 1, FIN | ACK, 0, 1), now=3 * MS)
    assert sent(endpoint, 3 * MS) == [to_peer(1, 65535, ACK, 1, 1)]
    assert list(endpoint.time_wait) == [(HOST, 1, PEER, 65535)]
    entry = endpoint.time_wait[(HOST, 1, PEER, 65535)]
    assert (entry.snd_nxt, entry.rcv_nxt) == (1, 1)
    endpoint.receive_datagram(from_peer(65535, 1, FIN | ACK, 0, 1), now=4 * MS)
    assert sent(endpoint, 4 * MS) == [to_peer(1, 65535, ACK, 1, 1)]
    assert endpoint.next_timer() == 4 * MS + PLAIN.time_wait_duration


def _close_to_time_wait(endpoint: Endpoint, port: int, config: Config, at: int) -> Connection:
    """_to_time_wait with its own Config and clock: SYN at `at`, TIME_WAIT at at + 3 ms."""
    conn = endpoint.connect(PEER, 80, now=at, local_port=port, config=config)
    endpoint.receive_datagram(from_peer(80, port, SYN | ACK, PEER_ISS, ISS + 1), now=at + MS)
    conn.close(now=at + 2 * MS)
    sent(endpoint, at + 2 * MS)
    fin = from_peer(80, port, FIN | ACK, seq_add(PEER_ISS, 1), ISS + 2)
    endpoint.receive_datagram(fin, now=at + 3 * MS)
    assert sent(endpoint, at + 3 * MS) == [to_peer(port, 80, ACK, ISS + 2, seq_add(PEER_ISS, 2))]
    assert conn.state is State.TIME_WAIT
    return conn


def test_entries_of_different_durations_expire_at_their_own_deadlines() -> None:
    """2*MSL per connection (RFC 9293 3.4.2): a 60 s entry filed before a 2 s one ends
    after it; a restart (retransmitted FIN, 3.10.7.4) moves only its own deadline and
    the old position in the expiry order is skipped."""
    endpoint, _ = make()
    long = _close_to_time_wait(endpoint, 4000, PLAIN, 0)  # ends at 3 ms + 60 s
    short_config = PLAIN.with_changes(msl=1 * SECOND)
    short = _close_to_time_wait(endpoint, 4001, short_config, 10 * MS)  # 13 ms + 2 s
    assert endpoint.next_timer() == 13 * MS + 2 * SECOND
    # The short one's FIN again at 1 s: its 2*MSL restarts from there.
    fin = from_peer(80, 4001, FIN | ACK, seq_add(PEER_ISS, 1), ISS + 2)
    endpoint.receive_datagram(fin, now=1 * SECOND)
    assert sent(endpoint, 1 * SECOND) == [to_peer(4001, 80, ACK, ISS + 2, seq_add(PEER_ISS, 2))]
    assert endpoint.next_timer() == 3 * SECOND
    endpoint.handle_timer(now=13 * MS + 2 * SECOND)  # the old deadline: nothing ends
    assert short.state is State.TIME_WAIT and len(endpoint.time_wait) == 2
    endpoint.handle_timer(now=3 * SECOND)
    assert short.state_history[-2:] == [State.TIME_WAIT, State.CLOSED]
    assert long.state is State.TIME_WAIT
    assert list(endpoint.time_wait) == [KEY]
    assert endpoint.next_timer() == TW_END
    endpoint.handle_timer(now=TW_END)
    assert long.state_history[-2:] == [State.TIME_WAIT, State.CLOSED]
    assert endpoint.next_timer() is None


def test_ipv6_entry_round_trips_and_answers_its_fin() -> None:
    host, peer = "2001:db8::2", "2001:db8::1"
    endpoint = Endpoint(host, isn_generator=lambda _t, _n: ISS, config=PLAIN)
    conn = endpoint.connect(peer, 80, now=0, local_port=65535)
    syn_ack = Segment(80, 65535, PEER_ISS, ISS + 1, SYN | ACK, 65535)
    endpoint.receive_datagram(Datagram(peer, host, syn_ack), now=MS)
    conn.close(now=2 * MS)
    endpoint.datagrams_to_send(now=2 * MS)
    fin = Segment(80, 65535, seq_add(PEER_ISS, 1), ISS + 2, FIN | ACK, 65535)
    endpoint.receive_datagram(Datagram(peer, host, fin), now=3 * MS)
    ack = Segment(65535, 80, ISS + 2, seq_add(PEER_ISS, 2), ACK, 65535)
    assert endpoint.datagrams_to_send(now=3 * MS) == [Datagram(host, peer, ack)]
    assert list(endpoint.time_wait) == [(host, 65535, peer, 80)]
    endpoint.receive_datagram(Datagram(peer, host, fin), now=4 * MS)
    assert endpoint.datagrams_to_send(now=4 * MS) == [Datagram(host, peer, ack)]
    assert endpoint.time_wait[(host, 65535, peer, 80)].deadline == 4 * MS + 60 * SECOND


def test_reused_four_tuple_starts_above_the_old_snd_nxt() -> None:
    """RFC 1122 4.2.2.13: a new SYN may reopen a 4-tuple in TIME-WAIT only if our new
    ISN lies above the largest sequence number of the old incarnation (SND.NXT = ISS + 2
    here), so our old segments cannot fall in the new window. The ISN generator gives
    ISS again; like Linux (tw_snd_nxt + 65535 + 2) the new ISN is SND.NXT + 65537."""
    endpoint, _ = make()
    endpoint.listen(4000, reuse_address=True)
    _to_time_wait(endpoint, 4000)
    new_isn = seq_add(PEER_ISS, 100_000)
    endpoint.receive_datagram(from_peer(80, 4000, SYN, new_isn), now=20 * MS)
    new_iss = ISS + 2 + 65537
    synack = to_peer(4000, 80, SYN | ACK, new_iss, seq_add(new_isn, 1), options=Options(mss=1460))
    assert sent(endpoint, 20 * MS) == [synack]
    child = endpoint.connections[KEY]
    assert child.iss == new_iss and child.state is State.SYN_RECEIVED
    endpoint.receive_datagram(
        from_peer(80, 4000, ACK, seq_add(new_isn, 1), new_iss + 1), now=21 * MS
    )
    assert endpoint.accept(4000) is child
    assert child.state_history[-2:] == [State.SYN_RECEIVED, State.ESTABLISHED]


def test_reused_four_tuple_keeps_a_generated_isn_that_is_already_above() -> None:
    isns = iter([ISS, ISS + 1_000_000])
    endpoint = Endpoint(HOST, isn_generator=lambda _t, _n: next(isns), config=PLAIN)
    endpoint.listen(4000, reuse_address=True)
    _to_time_wait(endpoint, 4000)
    new_isn = seq_add(PEER_ISS, 100_000)
    endpoint.receive_datagram(from_peer(80, 4000, SYN, new_isn), now=20 * MS)
    (synack,) = sent(endpoint, 20 * MS)
    assert synack.segment.seq == ISS + 1_000_000


def test_scoped_ipv6_peers_keep_separate_entries() -> None:
    """fe80::1%eth0 and fe80::1%eth1 are different peers (RFC 4007 11: the zone is part
    of a link-local address): each keeps its own entry, listed under its own name."""
    host = "fe80::2"
    endpoint = Endpoint(host, isn_generator=lambda _t, _n: ISS, config=PLAIN)
    peers = ["fe80::1%eth0", "fe80::1%eth1"]
    for peer in peers:
        conn = endpoint.connect(peer, 80, now=0, local_port=4000)
        syn_ack = Segment(80, 4000, PEER_ISS, ISS + 1, SYN | ACK, 65535)
        endpoint.receive_datagram(Datagram(peer, host, syn_ack), now=MS)
        conn.close(now=2 * MS)
        endpoint.datagrams_to_send(now=2 * MS)
        fin = Segment(80, 4000, seq_add(PEER_ISS, 1), ISS + 2, FIN | ACK, 65535)
        endpoint.receive_datagram(Datagram(peer, host, fin), now=3 * MS)
        endpoint.datagrams_to_send(now=3 * MS)
        assert conn.state is State.TIME_WAIT
    assert sorted(endpoint.time_wait) == [(host, 4000, peer, 80) for peer in peers]


def test_entries_due_in_one_late_timer_call_end_in_deadline_order() -> None:
    """A driver that wakes late (both deadlines passed) still ends the entries in the
    order of their 2*MSL deadlines, across durations: the 2 s entry filed after the
    10 s one ended first, so its TIME_WAIT -> CLOSED comes first."""
    endpoint, trace = make()
    _close_to_time_wait(endpoint, 4000, PLAIN.with_changes(msl=5 * SECOND), 0)  # 10.003 s
    _close_to_time_wait(endpoint, 4001, PLAIN.with_changes(msl=1 * SECOND), 5 * SECOND)
    assert endpoint.next_timer() == 5 * SECOND + 3 * MS + 2 * SECOND
    endpoint.handle_timer(now=20 * SECOND)
    closes = [
        record.conn
        for record in trace.of_kind(TraceKind.STATE)
        if record.data.get("from") == "TIME_WAIT"
    ]
    assert closes == [f"{HOST}:4001>{PEER}:80", f"{HOST}:4000>{PEER}:80"]
