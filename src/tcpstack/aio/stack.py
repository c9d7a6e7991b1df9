"""What the asyncio layer needs from whatever runs the TCP stack: a `Stack`.

A Stack is a `tcpstack.socket` Driver (the clock, the Endpoints, `call(fn)` for exclusive
access) plus wake-ups: transports and servers `watch` a connection (or a listener's
address and port) and their callback is scheduled on the asyncio loop whenever the
Endpoint reports that connection as woken (an arriving segment, a timer, a user call).
Callbacks always run in the asyncio loop's thread, outside any stack lock; they touch
the core only through `call`.

Two stacks:

- `SimStack`: the deterministic simulator. It belongs to a `SimEventLoop`, whose
  selector advances the simulation (virtual time) and reports the woken connections
  here; everything runs in one thread, in an order fixed by the seed.
- `NetStack`: a `tcpstack.net.loop.NetLoop` (the Linux TUN driver) running in its own
  thread. A handler on the NetLoop hands woken connections to the asyncio loop with
  `call_soon_threadsafe`; `call` takes the NetLoop's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import weakref
from collections.abc import Callable, Iterable
from typing import ClassVar, TypeVar

from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.net.loop import NetLoop
from tcpstack.sim.network import Network

__all__ = ["ListenerKey", "NetStack", "SimStack", "Stack", "endpoints_of"]

T = TypeVar("T")

ListenerKey = tuple[str, int]
"""(local address, port) of a listener: children it spawns wake its watcher."""

WakeCallback = Callable[[], None]


class Stack:
    """Base of the stacks: the watcher table and the dispatch of woken connections."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._connection_watchers: dict[Connection, WakeCallback] = {}
        self._listener_watchers: dict[ListenerKey, WakeCallback] = {}

    # -- what subclasses provide ------------------------------------------------------

    def now(self) -> int:
        raise NotImplementedError

    @property
    def endpoints(self) -> list[Endpoint]:
        raise NotImplementedError

    def call(self, fn: Callable[[int], T]) -> T:
        """Run fn(now) with exclusive access to the stack; its output goes out."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------

    def endpoint_for(self, local_ip: str | None, remote_ip: str) -> Endpoint:
        """The Endpoint with address `local_ip`, or (None) the first one of the remote
        address's family."""
        endpoints = self.endpoints
        if local_ip not in (None, "", "0.0.0.0", "::"):
            for endpoint in endpoints:
                if endpoint.address == local_ip:
                    return endpoint
            raise _no_address(f"no endpoint with address {local_ip}")
        v6 = ":" in remote_ip
        for endpoint in endpoints:
            if (":" in endpoint.address) == v6:
                return endpoint
        raise _no_address(f"no endpoint of {remote_ip}'s address family")

    def watch(self, target: Connection | ListenerKey, callback: WakeCallback) -> None:
        """Schedule callback() on the asyncio loop whenever `target` wakes (for a
        ListenerKey: whenever a connection on that address and port that nobody
        watches wakes, e.g. a child finishing its handshake)."""
        if isinstance(target, Connection):
            self._connection_watchers[target] = callback
        else:
            self._listener_watchers[target] = callback

    def unwatch(self, target: Connection | ListenerKey) -> None:
        if isinstance(target, Connection):
            self._connection_watchers.pop(target, None)
        else:
            self._listener_watchers.pop(target, None)

    def dispatch(self, woken: Iterable[Connection]) -> None:
        """Schedule the callbacks of the watched connections among `woken` (each once),
        in the loop's thread."""
        scheduled: set[WakeCallback] = set()
        connection_watchers = self._connection_watchers
        listener_watchers = self._listener_watchers
        for conn in woken:
            callback = connection_watchers.get(conn)
            if callback is None and listener_watchers:
                callback = listener_watchers.get((conn.local_ip, conn.local_port))
            if callback is not None and callback not in scheduled:
                scheduled.add(callback)
                self.loop.call_soon(callback)


def _no_address(detail: str) -> OSError:
    code = errno.EADDRNOTAVAIL
    return OSError(code, f"{os.strerror(code)}: {detail}")


def endpoints_of(network: Network) -> list[Endpoint]:
    """The Endpoints among a simulator's nodes (bare, or a node's `endpoint`)."""
    found: list[Endpoint] = []
    for node in network.nodes:
        if isinstance(node, Endpoint):
            found.append(node)
        else:
            inner = getattr(node, "endpoint", None)
            if isinstance(inner, Endpoint):
                found.append(inner)
    return found


class SimStack(Stack):
    """The simulator as a Stack; made by (and only used with) a `SimEventLoop`."""

    def __init__(self, network: Network, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.network = network

    def now(self) -> int:
        return self.network.now

    @property
    def endpoints(self) -> list[Endpoint]:
        return endpoints_of(self.network)

    def call(self, fn: Callable[[int], T]) -> T:
        # One thread: the network collects the output at its next flush (the next
        # select of the SimEventLoop), before the clock moves.
        return fn(self.network.now)

    def collect_woken(self) -> list[Connection]:
        """Drain every Endpoint's woken connections (called by the SimEventLoop)."""
        woken: list[Connection] = []
        for endpoint in self.endpoints:
            woken.extend(endpoint.woken_connections())
        return woken


class NetStack(Stack):
    """A NetLoop (the real network, in its own thread) as a Stack for one asyncio loop.

    Use `NetStack.of(netloop)` (what `stack=netloop` does): one NetStack per NetLoop
    and asyncio loop. The NetLoop is started in a thread if it is not running.
    """

    _instances: ClassVar[weakref.WeakKeyDictionary[NetLoop, NetStack]] = weakref.WeakKeyDictionary()

    def __init__(self, netloop: NetLoop, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.netloop = netloop
        self._attached = True
        with netloop.lock:
            netloop.handlers.append(self._handler)
        if not netloop.running:
            netloop.start()

    @classmethod
    def of(cls, netloop: NetLoop, loop: asyncio.AbstractEventLoop | None = None) -> NetStack:
        loop = loop if loop is not None else asyncio.get_running_loop()
        current = cls._instances.get(netloop)
        if current is not None and current.loop is loop and current._attached:
            return current
        if current is not None:
            current.detach()
        made = cls(netloop, loop)
        cls._instances[netloop] = made
        return made

    def now(self) -> int:
        return self.netloop.now()

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self.netloop.endpoints.values())

    def call(self, fn: Callable[[int], T]) -> T:
        return self.netloop.call(fn)

    def detach(self) -> None:
        """Stop receiving wake-ups (the asyncio loop is gone or another took over)."""
        if not self._attached:
            return
        self._attached = False
        with self.netloop.lock, contextlib.suppress(ValueError):
            self.netloop.handlers.remove(self._handler)

    def _handler(self, woken: list[Connection], now: int) -> None:
        # In the NetLoop's thread, its lock held: only hand over, never block.
        if not self._attached:
            return
        try:
            self.loop.call_soon_threadsafe(self.dispatch, woken)
        except RuntimeError:
            # The asyncio loop is closed: nobody is left to wake.
            self._attached = False
            with contextlib.suppress(ValueError):
                self.netloop.handlers.remove(self._handler)
