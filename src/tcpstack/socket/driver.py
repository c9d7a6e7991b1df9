"""What a `tcpstack.socket.Socket` needs from whatever runs the stack: the `Driver`.

The core is sans-I/O: it never reads a clock and never waits. A blocking socket call
therefore needs someone who owns the clock and can let time pass until the socket's
condition holds (data arrived, the handshake completed, the send buffer drained). That
someone is a driver. `SimDriver` drives the deterministic simulator (virtual time: a
blocking recv() advances the virtual clock); a real-network driver (a TUN event loop)
implements the same four methods.

Thread-safety contract (what a threaded driver must guarantee, and what sockets rely on):

- The stack (Endpoints and their Connections) is touched by the socket layer only inside
  `call(fn)` and inside the `predicate` given to `wait_until`. A driver whose event loop
  runs in another thread runs both with the lock that also guards its own
  receive/timer/transmit work, so the core is never entered by two threads at once.
- After `call(fn)` returns, whatever fn made the stack want (segments to send, a timer
  moved earlier) must take effect without further socket calls: a threaded driver wakes
  its loop so it collects `datagrams_to_send()` and re-reads `next_timer()`. The
  simulator gets this for free: it flushes every node before each step.
- `wait_until(predicate, timeout)` re-evaluates `predicate` (under that lock) whenever
  the stack may have changed, and returns True as soon as it holds, False when `timeout`
  µs of the driver's clock passed first. Predicates are cheap, never block and never
  call back into the driver. A threaded driver typically waits on a condition variable
  that its loop notifies after each batch of work.
- `timeout=None` means wait without limit. A driver that can prove nothing will ever
  happen (the simulator: no datagram in flight and no timer armed) raises
  `WouldBlockForever` instead of hanging; a real network simply blocks.

One Socket is not meant to be used by several threads at once (its own bookkeeping is
not locked); many sockets over one driver, in as many threads, are fine.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Protocol, TypeVar

from tcpstack.core.endpoint import Endpoint
from tcpstack.sim.network import Network

__all__ = ["DEFAULT_MAX_BLOCK", "Driver", "SimDriver", "WouldBlockForever"]

T = TypeVar("T")

# The longest a SimDriver lets a call without timeout block, in virtual µs: a week. A
# socket that waits longer is waiting for something that will not come (a live peer
# answering keepalive probes every two hours would otherwise keep it busy forever).
DEFAULT_MAX_BLOCK = 7 * 24 * 3600 * 1_000_000


class WouldBlockForever(RuntimeError):
    """A blocking call without timeout waits for something that can never happen.

    Raised by the simulator driver when nothing is in flight and no timer is armed (or
    after `max_block` virtual µs). It is a bug in the test or program, not a network
    condition, hence not an OSError.
    """


class Driver(Protocol):
    """Runs the stack for sockets: owns the clock, the endpoints and the waiting."""

    def now(self) -> int:
        """The driver's clock, in µs (virtual for the simulator)."""
        ...

    def endpoint_for(self, address: str | None) -> Endpoint:
        """The Endpoint (TCP stack) bound to `address`; None asks for the default one.

        Raises OSError(EADDRNOTAVAIL) when there is none.
        """
        ...

    def call(self, fn: Callable[[int], T]) -> T:
        """Run fn(now) with exclusive access to the stack and make its effects go out."""
        ...

    def wait_until(self, predicate: Callable[[], bool], timeout: int | None) -> bool:
        """Let the stack run until predicate() (True) or `timeout` µs passed (False)."""
        ...


class SimDriver:
    """A `Driver` over a `tcpstack.sim.Network` whose nodes are Endpoints.

    Sockets run in the test's own thread; a blocking call runs the network (virtual
    time) until it can return. `timeout` µs of virtual time are waited exactly: a
    socket timeout fires at precisely its virtual deadline.

    Nodes may be bare `Endpoint`s or objects with an `endpoint` attribute (such as the
    scenarios' `Host`). `default_address` names the endpoint a socket without an address
    uses; without it a network with exactly one endpoint makes that one the default.
    """

    def __init__(
        self,
        network: Network,
        *,
        default_address: str | None = None,
        max_block: int = DEFAULT_MAX_BLOCK,
    ) -> None:
        self.network = network
        self.default_address = default_address
        self.max_block = max_block

    def now(self) -> int:
        return self.network.now

    def endpoint_for(self, address: str | None) -> Endpoint:
        if address is None:
            address = self.default_address
        if address is None:
            endpoints = [e for e in map(_endpoint_of, self.network.nodes) if e is not None]
            if len(endpoints) == 1:
                return endpoints[0]
            raise OSError(
                errno.EADDRNOTAVAIL,
                f"{os.strerror(errno.EADDRNOTAVAIL)}: no default address "
                "(pass address= to socket(), bind to an IP, or set default_address)",
            )
        try:
            node = self.network.node(address)
        except KeyError:
            node = None
        endpoint = _endpoint_of(node) if node is not None else None
        if endpoint is None:
            raise OSError(
                errno.EADDRNOTAVAIL,
                f"{os.strerror(errno.EADDRNOTAVAIL)}: no endpoint with address {address}",
            )
        return endpoint

    def call(self, fn: Callable[[int], T]) -> T:
        # Single-threaded: the network collects the output at its next flush.
        return fn(self.network.now)

    def wait_until(self, predicate: Callable[[], bool], timeout: int | None) -> bool:
        network = self.network
        if timeout is not None:
            if timeout < 0:
                raise ValueError(f"timeout must not be negative, got {timeout}")
            return network.run_until(predicate, limit=network.now + timeout)
        stuck = False

        def done() -> bool:
            nonlocal stuck
            if predicate():
                return True
            if self._nothing_can_happen():
                stuck = True
                return True
            return False

        start = network.now
        if network.run_until(done, limit=start + self.max_block) and not stuck:
            return True
        if stuck:
            raise WouldBlockForever(
                f"blocking call at t={network.now} us waits for something that cannot "
                "happen: no datagram in flight and no timer armed"
            )
        raise WouldBlockForever(
            f"blocking call still waiting after {self.max_block} us of virtual time "
            f"(since t={start} us)"
        )

    def run_for(self, duration: int) -> None:
        """Let `duration` µs of virtual time pass (for non-blocking programs)."""
        self.network.run_for(duration)

    def _nothing_can_happen(self) -> bool:
        network = self.network
        if network.pending_deliveries:
            return False
        return all(node.next_timer() is None for node in network.nodes)


def _endpoint_of(node: object) -> Endpoint | None:
    if isinstance(node, Endpoint):
        return node
    inner = getattr(node, "endpoint", None)
    return inner if isinstance(inner, Endpoint) else None
