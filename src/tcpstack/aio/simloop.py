"""An asyncio event loop whose clock is the simulator's virtual clock.

`SimEventLoop(network)` is a stdlib `SelectorEventLoop` with two changes: `time()` is
`network.now` in seconds, and its selector, instead of sleeping until the next asyncio
timer, runs the simulation up to that instant, stopping early as soon as a connection
wakes (a segment arrived, a TCP timer fired). Woken connections go to the loop's
`SimStack`, which schedules the transports and servers watching them. So

- `await asyncio.sleep(5)` takes five seconds of virtual time and no real time;
- a coroutine blocked in `reader.read()` resumes at the exact virtual microsecond the
  segment arrives; `loop.time()` then says when;
- everything runs in one thread in an order fixed by the network's seed: a test that
  passes once passes every time.

When asyncio has nothing scheduled and the network nothing in flight and no timer
armed, the program waits for something that cannot happen: the selector raises
`SimulationDeadlock` instead of hanging. (Other threads cannot wake a simulation:
run_in_executor and call_soon_threadsafe still work, but only while the simulation has
something to do.)

    network = Network(seed=1)
    ...
    with asyncio.Runner(loop_factory=lambda: SimEventLoop(network)) as runner:
        runner.run(main())          # or tcpstack.aio.run(main(), network)
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from tcpstack.aio.stack import SimStack
from tcpstack.core.connection import Connection
from tcpstack.sim.network import Network

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

__all__ = ["DEFAULT_MAX_WAIT", "SimEventLoop", "SimulationDeadlock", "run"]

T = TypeVar("T")


MICROSECONDS = 1_000_000
# The longest one select() lets virtual time run with nothing scheduled in asyncio: a
# week (a connection whose keepalive answers every two hours keeps a network busy).
DEFAULT_MAX_WAIT = 7 * 24 * 3600 * MICROSECONDS


class SimulationDeadlock(RuntimeError):
    """asyncio waits for the network, but nothing is in flight and no timer is armed."""


class _SimSelector(selectors.BaseSelector):
    """Registrations go to a real selector (the loop's self-pipe); select() runs the
    simulation for the time asyncio would have slept."""

    def __init__(self, network: Network, max_wait: int) -> None:
        self._real = selectors.DefaultSelector()
        self._network = network
        self._max_wait = max_wait
        self.stack: SimStack | None = None

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        stack = self.stack
        network = self._network
        if stack is None:
            return self._real.select(timeout)
        woken: list[Connection] = []

        def progressed() -> bool:
            woken.extend(stack.collect_woken())
            return bool(woken)

        now = network.now
        if timeout is None:
            network.flush()
            if not progressed() and self._idle():
                ready = self._real.select(0)
                if ready:
                    return ready
                raise SimulationDeadlock(
                    f"at t={now} us asyncio waits for the network, but nothing is in "
                    "flight and no timer is armed"
                )
            limit = now + self._max_wait
        else:
            # Rounded to the µs: the loop's clock resolution (1 µs) covers the rest.
            limit = now + max(round(timeout * MICROSECONDS), 0)
        network.run_until(progressed, limit)
        if woken:
            stack.dispatch(woken)
        return self._real.select(0)

    def _idle(self) -> bool:
        network = self._network
        if network.pending_deliveries:
            return False
        return all(node.next_timer() is None for node in network.nodes)


class SimEventLoop(asyncio.SelectorEventLoop):
    """A SelectorEventLoop on the simulator's virtual clock (see the module docstring).

    `stack` is the SimStack that `tcpstack.aio` functions use by default on this loop.
    """

    def __init__(self, network: Network, *, max_wait: int = DEFAULT_MAX_WAIT) -> None:
        selector = _SimSelector(network, max_wait)
        super().__init__(selector)
        self.network = network
        self.stack = SimStack(network, self)
        selector.stack = self.stack
        # Timers due within 1 µs of virtual time run (the clock counts whole µs).
        self._clock_resolution = 1e-6

    def time(self) -> float:
        return self.network.now / MICROSECONDS


def run(main: Coroutine[Any, Any, T], network: Network, *, debug: bool | None = None) -> T:
    """asyncio.run(main) on a SimEventLoop over `network` (virtual time)."""
    with asyncio.Runner(debug=debug, loop_factory=lambda: SimEventLoop(network)) as runner:
        return runner.run(main)
