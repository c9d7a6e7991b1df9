"""The TimeWaitTable behind Endpoint.time_wait: packed entries, FIFO expiry.

Entries are packed ints and expire from one FIFO per TIME_WAIT duration (issue 9,
memory per entry). These tests pin what that packing and ordering must preserve: the
exact 4-tuples and sequence state of each entry, and exact 2*MSL deadlines (RFC 9293
3.10.8) when durations differ, when a retransmitted FIN restarts one entry (3.10.7.4),
and when a 4-tuple ends early and comes back.
"""

from __future__ import annotations

from tcpstack.core.config import PLAIN, SECOND, Config
from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.segment import Datagram, Flag, Options, Segment
from tcpstack.core.seq import seq_add
from tcpstack.core.state import State
from tcpstack.core.timewait import TimeWaitEntry, _Expiries

MS = 1_000
ISS = 1_000
PEER_ISS = 5_000
DURATION = PLAIN.time_wait_duration


def closed_first(
    endpoint: Endpoint, peer: str, local_port: int, start: int, config: Config | None = None
) -> Connection:
    """Connect to peer:80 at `start`, close first, take the peer's FIN,ACK at start+3 ms:
    TIME_WAIT from start + 3 ms on."""
    conn = endpoint.connect(peer, 80, now=start, local_port=local_port, config=config)
    syn_ack = Segment(80, local_port, PEER_ISS, ISS + 1, Flag.SYN | Flag.ACK, 65535)
    syn_ack.options = Options(mss=1460)
    endpoint.receive_datagram(Datagram(peer, endpoint.address, syn_ack), now=start + MS)
    conn.close(now=start + 2 * MS)
    endpoint.datagrams_to_send(now=start + 2 * MS)
    fin = Segment(80, local_port, seq_add(PEER_ISS, 1), ISS + 2, Flag.FIN | Flag.ACK, 65535)
    endpoint.receive_datagram(Datagram(peer, endpoint.address, fin), now=start + 3 * MS)
    endpoint.datagrams_to_send(now=start + 3 * MS)
    assert conn.state is State.TIME_WAIT
    return conn


def state(conn: Connection) -> State:
    """The state now (a call, so that mypy does not narrow it across timer runs)."""
    return conn.state


def make(address: str) -> Endpoint:
    return Endpoint(address, isn_generator=lambda _t, _n: ISS, config=PLAIN)


def test_entries_keep_their_exact_four_tuples_and_state() -> None:
    for host, peer in (("10.0.0.1", "10.0.0.2"), ("fd00::1", "fd00::2"), ("left", "right")):
        endpoint = make(host)
        closed_first(endpoint, peer, 4000, 0)
        key = (host, 4000, peer, 80)
        assert list(endpoint.time_wait) == [key]
        assert key in endpoint.time_wait
        assert (host, 4000, peer, 81) not in endpoint.time_wait
        assert endpoint.time_wait[key] == TimeWaitEntry(
            snd_nxt=ISS + 2,
            rcv_nxt=PEER_ISS + 2,
            window=PLAIN.receive_buffer_size,
            rcv_wscale=0,  # PLAIN: no window scaling
            ts_recent=0,
            ts_offset=-1,
            duration=DURATION,
            oow_ack_interval=0,  # PLAIN: every out-of-window segment gets its ACK
            last_oow_ack=None,
            deadline=3 * MS + DURATION,
        )


def test_entries_of_different_durations_expire_at_their_own_deadlines() -> None:
    endpoint = make("10.0.0.1")
    short = closed_first(endpoint, "10.0.0.2", 4000, 0, PLAIN.with_changes(msl=SECOND // 2))
    long = closed_first(endpoint, "10.0.0.2", 4001, 0)
    assert endpoint.next_timer() == 3 * MS + SECOND
    endpoint.handle_timer(now=3 * MS + SECOND)
    assert (short.state, long.state) == (State.CLOSED, State.TIME_WAIT)
    assert endpoint.next_timer() == 3 * MS + DURATION
    endpoint.handle_timer(now=3 * MS + DURATION)
    assert long.state is State.CLOSED
    assert len(endpoint.time_wait) == 0 and endpoint.next_timer() is None


def test_a_restarted_entry_outlives_its_first_deadline() -> None:
    endpoint = make("10.0.0.1")
    restarted = closed_first(endpoint, "10.0.0.2", 4000, 0)
    other = closed_first(endpoint, "10.0.0.2", 4001, 0)
    fin = Segment(80, 4000, seq_add(PEER_ISS, 1), ISS + 2, Flag.FIN | Flag.ACK, 65535)
    endpoint.receive_datagram(Datagram("10.0.0.2", "10.0.0.1", fin), now=SECOND)
    assert endpoint.next_timer() == 3 * MS + DURATION  # `other` still comes first
    endpoint.handle_timer(now=3 * MS + DURATION)
    assert (restarted.state, other.state) == (State.TIME_WAIT, State.CLOSED)
    assert endpoint.next_timer() == SECOND + DURATION
    endpoint.handle_timer(now=SECOND + DURATION - 1)
    assert state(restarted) is State.TIME_WAIT
    endpoint.handle_timer(now=SECOND + DURATION)
    assert state(restarted) is State.CLOSED


def test_a_four_tuple_back_in_time_wait_is_not_ended_by_its_old_deadline() -> None:
    endpoint = make("10.0.0.1")
    first = closed_first(endpoint, "10.0.0.2", 4000, 0)
    # An RST at RCV.NXT ends the entry early (RFC 9293 3.10.7.4, no RFC 1337 fix)...
    rst = Segment(80, 4000, seq_add(PEER_ISS, 2), 0, Flag.RST, 0)
    endpoint.receive_datagram(Datagram("10.0.0.2", "10.0.0.1", rst), now=10 * MS)
    assert first.state is State.CLOSED and len(endpoint.time_wait) == 0
    # ...and a new incarnation of the same 4-tuple reaches TIME_WAIT 20 ms later.
    second = closed_first(endpoint, "10.0.0.2", 4000, 20 * MS)
    assert endpoint.next_timer() == 23 * MS + DURATION
    endpoint.handle_timer(now=3 * MS + DURATION)
    assert state(second) is State.TIME_WAIT
    endpoint.handle_timer(now=23 * MS + DURATION)
    assert state(second) is State.CLOSED


def test_a_deadline_filed_late_is_put_in_order() -> None:
    expiries = _Expiries()
    for key, deadline in ((1, 10), (2, 30), (3, 20), (4, 30), (5, 5)):
        expiries.push(key, deadline)
    order = []
    while expiries:
        order.append(expiries.first())
        expiries.pop_first()
    assert order == [(5, 5), (1, 10), (3, 20), (2, 30), (4, 30)]
