"""Events a connection reports to its application, read with Connection.next_event()."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class CloseReason(Enum):
    """Why a connection reached CLOSED; reported exactly once per connection."""

    NORMAL = "normal"  # both FINs exchanged and acknowledged
    RESET = "reset"  # the peer reset a synchronized connection (ECONNRESET)
    REFUSED = "refused"  # RST in answer to our SYN (ECONNREFUSED)
    TIMEOUT = "timeout"  # retransmissions exhausted (ETIMEDOUT)
    KEEPALIVE_TIMEOUT = "keepalive_timeout"
    USER_TIMEOUT = "user_timeout"
    ABORTED = "aborted"  # our application called abort()
    LINGER_EXPIRED = "linger_expired"
    FIN_WAIT_2_TIMEOUT = "fin_wait_2_timeout"
    UNREACHABLE = "unreachable"  # an ICMP hard error answered our SYN (Connection.icmp_error)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Established:
    """The handshake completed: data can flow both ways."""


@dataclass(frozen=True, slots=True)
class DataAvailable:
    """New in-order bytes wait in the receive buffer; read them with receive()."""

    readable: int


@dataclass(frozen=True, slots=True)
class SendSpaceAvailable:
    """The send buffer has room again after send() accepted less than it was given."""

    free: int


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The peer sent FIN: after the buffered bytes, receive() returns b''."""


@dataclass(frozen=True, slots=True)
class UrgentData:
    """The peer marked urgent data ahead of what the application has read (RFC 9293
    3.8.5): reported when urgent data appears and whenever the peer's urgent pointer
    advances (MUST-32), not for a pointer it already sent. The urgent bytes stay in the
    stream, in order; `remaining` is how many bytes, from the next one receive()
    returns, run up to and including the last urgent one (MUST-33; also
    `Connection.urgent_remaining`, which counts down as the application reads)."""

    remaining: int


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection reached CLOSED. Emitted exactly once."""

    reason: CloseReason


Event = Established | DataAvailable | SendSpaceAvailable | UrgentData | EndOfStream | Closed
