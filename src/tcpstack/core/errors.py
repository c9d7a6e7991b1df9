"""Typed errors the core raises to its users (never for anything a peer sends)."""

from __future__ import annotations

from tcpstack.core.state import State


class TcpError(Exception):
    """Base class of every error tcpstack raises."""


class InvalidOperation(TcpError):
    """A user call that the connection's state does not allow (RFC 9293 3.10 'error:').

    The call changed nothing. `call` names the user call, `state` the state it met, and
    `reason` is the RFC's wording of the error.
    """

    def __init__(self, call: str, state: State, reason: str) -> None:
        super().__init__(f"{call}() in {state.value}: {reason}")
        self.call = call
        self.state = state
        self.reason = reason


class AddressInUse(InvalidOperation):
    """The port (listen) or the whole 4-tuple (connect) is taken.

    `state` is the state of what holds it: LISTEN for a listener, TIME_WAIT for a
    connection waiting out 2*MSL (RFC 9293 3.4.2), and so on.
    """


class MalformedSegment(TcpError):
    """Bytes that do not decode to a valid TCP segment.

    `reason` is a short stable name used as the drop counter's key: short_header,
    bad_data_offset, truncated_option, bad_option_length, bad_checksum.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
