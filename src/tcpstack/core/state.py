"""The eleven TCP states and the transition table (RFC 9293 figure 5 and section 3.10).

Every state change in the core is a lookup in TRANSITIONS: (state, trigger) -> next
state. A missing key is a bug in tcpstack, not in the peer, so it raises. The table is
also the source of the state diagram that the visualisation draws.
"""

from __future__ import annotations

from enum import Enum


class State(Enum):
    """RFC 9293 3.3.2 connection states, spelled as Linux's ss/netstat print them."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN_SENT"
    SYN_RECEIVED = "SYN_RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN_WAIT_1"
    FIN_WAIT_2 = "FIN_WAIT_2"
    CLOSE_WAIT = "CLOSE_WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"

    def __str__(self) -> str:
        return self.value

    # Members are singletons: identity hashing (in C) is correct and avoids Enum's
    # Python-level __hash__ on every `state in SOME_SET` test of the hot path.
    __hash__ = object.__hash__


class Trigger(Enum):
    """What caused a state change: a user call, an arriving segment, or a timer."""

    OPEN_PASSIVE = "passive OPEN"
    OPEN_ACTIVE = "active OPEN / snd SYN"
    SEND_FROM_LISTEN = "SEND / snd SYN"
    CLOSE = "CLOSE"
    CLOSE_SEND_FIN = "CLOSE / snd FIN"
    ABORT = "ABORT / snd RST"
    RCV_SYN = "rcv SYN / snd SYN,ACK"
    RCV_SYN_ACK = "rcv SYN,ACK / snd ACK"
    RCV_ACK_OF_SYN = "rcv ACK of SYN"
    RCV_FIN = "rcv FIN / snd ACK"
    RCV_ACK_OF_FIN = "rcv ACK of FIN"
    RCV_FIN_ACK_OF_FIN = "rcv FIN,ACK of FIN / snd ACK"
    RCV_RST = "rcv RST"
    RCV_RST_RETURN_TO_LISTEN = "rcv RST (passive open)"
    RCV_SYN_RETURN_TO_LISTEN = "rcv SYN (passive open)"
    TIMEOUT_2MSL = "timeout 2*MSL"
    TIMEOUT_RETRANSMIT = "retransmission timeout"
    TIMEOUT_KEEPALIVE = "keepalive probes unanswered / snd RST"
    TIMEOUT_FIN_WAIT_2 = "orphan FIN_WAIT_2 timeout"
    RCV_DATA_AFTER_CLOSE = "rcv data after close / snd RST"
    RCV_SYN_REUSE = "rcv SYN of a new incarnation (RFC 6191)"
    TIME_WAIT_LIMIT = "no room for TIME_WAIT (tcp_max_tw_buckets)"
    RCV_ICMP_HARD_ERROR = "rcv ICMP hard error (RFC 1122 4.2.3.9)"

    def __str__(self) -> str:
        return self.value


S = State
T = Trigger

# States in which a connection has exchanged SYNs (RFC 9293 3.10.7.4 "synchronized states").
SYNCHRONIZED_STATES = frozenset(
    {
        S.ESTABLISHED,
        S.FIN_WAIT_1,
        S.FIN_WAIT_2,
        S.CLOSE_WAIT,
        S.CLOSING,
        S.LAST_ACK,
        S.TIME_WAIT,
    }
)

# States that still have a retransmission queue worth timing out.
_RETRANSMITTING = (
    S.SYN_SENT,
    S.SYN_RECEIVED,
    S.ESTABLISHED,
    S.FIN_WAIT_1,
    S.CLOSE_WAIT,
    S.CLOSING,
    S.LAST_ACK,
)

# States in which keepalive probes an idle connection (as Linux: not before the
# handshake completes, and only while nothing is in flight).
_KEEPALIVE_STATES = (S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_2)
KEEPALIVE_STATES = frozenset(_KEEPALIVE_STATES)

TRANSITIONS: dict[tuple[State, Trigger], State] = {
    # Opening (figure 5, upper half).
    (S.CLOSED, T.OPEN_PASSIVE): S.LISTEN,
    (S.CLOSED, T.OPEN_ACTIVE): S.SYN_SENT,
    (S.LISTEN, T.RCV_SYN): S.SYN_RECEIVED,
    (S.LISTEN, T.SEND_FROM_LISTEN): S.SYN_SENT,
    (S.LISTEN, T.CLOSE): S.CLOSED,
    (S.SYN_SENT, T.RCV_SYN): S.SYN_RECEIVED,  # simultaneous open
    (S.SYN_SENT, T.RCV_SYN_ACK): S.ESTABLISHED,
    (S.SYN_SENT, T.CLOSE): S.CLOSED,
    (S.SYN_RECEIVED, T.RCV_ACK_OF_SYN): S.ESTABLISHED,
    (S.SYN_RECEIVED, T.CLOSE_SEND_FIN): S.FIN_WAIT_1,
    # RFC 9293 3.10.7.4 second and fourth steps: a connection that came from a passive
    # OPEN goes back to LISTEN on RST or SYN.
    (S.SYN_RECEIVED, T.RCV_RST_RETURN_TO_LISTEN): S.LISTEN,
    (S.SYN_RECEIVED, T.RCV_SYN_RETURN_TO_LISTEN): S.LISTEN,
    # Closing (figure 5, lower half).
    (S.ESTABLISHED, T.CLOSE_SEND_FIN): S.FIN_WAIT_1,
    (S.ESTABLISHED, T.RCV_FIN): S.CLOSE_WAIT,
    (S.FIN_WAIT_1, T.RCV_ACK_OF_FIN): S.FIN_WAIT_2,
    (S.FIN_WAIT_1, T.RCV_FIN): S.CLOSING,
    (S.FIN_WAIT_1, T.RCV_FIN_ACK_OF_FIN): S.TIME_WAIT,
    (S.FIN_WAIT_2, T.RCV_FIN): S.TIME_WAIT,
    (S.CLOSE_WAIT, T.CLOSE_SEND_FIN): S.LAST_ACK,
    (S.CLOSING, T.RCV_ACK_OF_FIN): S.TIME_WAIT,
    (S.LAST_ACK, T.RCV_ACK_OF_FIN): S.CLOSED,
    (S.TIME_WAIT, T.TIMEOUT_2MSL): S.CLOSED,
    # Section 3.10: reset (3.10.7.3, 3.10.7.4 second step), abort (3.10.5) and the
    # retransmission give-up (3.8.3 R2) end a connection from these states.
    (S.SYN_SENT, T.RCV_RST): S.CLOSED,
    (S.LISTEN, T.ABORT): S.CLOSED,
    **{(state, T.RCV_RST): S.CLOSED for state in (S.SYN_RECEIVED, *SYNCHRONIZED_STATES)},
    **{(state, T.ABORT): S.CLOSED for state in (S.SYN_SENT, S.SYN_RECEIVED, *SYNCHRONIZED_STATES)},
    **{(state, T.TIMEOUT_RETRANSMIT): S.CLOSED for state in _RETRANSMITTING},
    # Lifecycle controls beyond RFC 9293 figure 5, as Linux has them: keepalive gives up
    # (RFC 9293 3.8.4), an orphaned FIN_WAIT_2 times out (tcp_fin_timeout), and text
    # arriving after the application closed is answered with RST (RFC 9293 3.6.1).
    **{(state, T.TIMEOUT_KEEPALIVE): S.CLOSED for state in _KEEPALIVE_STATES},
    (S.FIN_WAIT_2, T.TIMEOUT_FIN_WAIT_2): S.CLOSED,
    (S.FIN_WAIT_1, T.RCV_DATA_AFTER_CLOSE): S.CLOSED,
    (S.FIN_WAIT_2, T.RCV_DATA_AFTER_CLOSE): S.CLOSED,
    # An Endpoint's TIME_WAIT entry can end early: a new SYN may reuse the 4-tuple
    # (RFC 6191), or the table of entries is full (Linux's tcp_max_tw_buckets).
    (S.TIME_WAIT, T.RCV_SYN_REUSE): S.CLOSED,
    (S.TIME_WAIT, T.TIME_WAIT_LIMIT): S.CLOSED,
    # An ICMP port/protocol unreachable (or administratively prohibited) for our SYN
    # ends the attempt (RFC 9293 SHLD-26, RFC 1122 4.2.3.9; Linux's tcp_v4_err).
    (S.SYN_SENT, T.RCV_ICMP_HARD_ERROR): S.CLOSED,
}


def next_state(state: State, trigger: Trigger) -> State:
    """The state that `trigger` leads to from `state`; KeyError means a tcpstack bug."""
    return TRANSITIONS[(state, trigger)]
