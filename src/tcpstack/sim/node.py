"""What the simulator needs from a TCP stack: the `Node` protocol.

`tcpstack.core.endpoint.Endpoint` fits this protocol structurally (it does not inherit
from anything here), and so do the small scripted nodes tests use
(`tcpstack.sim.testing.ScriptedNode`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from tcpstack.core.segment import Datagram, Segment

__all__ = ["Encoder", "Node"]

Encoder = Callable[[Segment, str, str], bytes]
"""`encode_segment(segment, src_ip, dst_ip) -> bytes`: how wire mode turns a segment into
bytes. The default is `tcpstack.core.codec.encode_segment`; tests may inject another."""


class Node(Protocol):
    """One host on the simulated network: a TCP stack bound to one IP address.

    Every call receives `now`, the simulator's virtual clock in microseconds; a node
    never reads a clock of its own. The contract the simulator relies on:

    - `datagrams_to_send(now=)` drains (returns and forgets) what the node wants to send.
    - `receive_datagram` (object mode) / `receive_bytes` (wire mode) hand the node one
      arriving datagram. In wire mode the node decodes the bytes itself and must
      tolerate malformed or corrupted input (that is its business, not the network's).
      In object mode the `Datagram` may be shared with other receivers (duplicates are
      the same object), so a node must not mutate it.
    - `next_timer()` is pure: the absolute deadline (µs) of the node's earliest timer,
      or None. The simulator re-reads it after every interaction.
    - `handle_timer(now=)` handles every timer due at `now`; an early call is a no-op.
    """

    @property
    def address(self) -> str:
        """The node's IP address as text, e.g. '10.0.0.1' or 'fd00::1'."""
        ...

    def datagrams_to_send(self, *, now: int) -> Iterable[Datagram]: ...

    def receive_datagram(self, datagram: Datagram, *, now: int) -> None: ...

    def receive_bytes(self, src: str, dst: str, data: bytes, *, now: int) -> None: ...

    def next_timer(self) -> int | None: ...

    def handle_timer(self, *, now: int) -> None: ...
