"""A small deterministic two-endpoint network for attack scenarios: zero-latency delivery
between endpoints on a 1 ms virtual clock, with spoofed traffic injected by the test."""

from __future__ import annotations

from collections import Counter

from tcpstack.core.endpoint import Endpoint
from tcpstack.core.segment import Datagram

MS = 1_000
SECOND = 1_000_000


class Network:
    """Endpoints by address; datagrams to an unknown address are counted and lost."""

    def __init__(self, *endpoints: Endpoint) -> None:
        self.endpoints = {e.address: e for e in endpoints}
        self.lost = 0  # datagrams to nobody
        self.sent: Counter[str] = Counter()  # datagrams sent, by source address

    def settle(self, now: int) -> None:
        """Deliver until no endpoint has anything left to send."""
        for _ in range(1000):
            moved = False
            for endpoint in list(self.endpoints.values()):
                for datagram in endpoint.datagrams_to_send(now=now):
                    moved = True
                    self.sent[datagram.src] += 1
                    self.deliver(datagram, now)
            if not moved:
                return
        raise AssertionError("network did not settle")

    def deliver(self, datagram: Datagram, now: int) -> None:
        target = self.endpoints.get(datagram.dst)
        if target is None:
            self.lost += 1
            return
        target.receive_datagram(datagram, now=now)

    def tick(self, now: int) -> None:
        for endpoint in self.endpoints.values():
            deadline = endpoint.next_timer()
            if deadline is not None and deadline <= now:
                endpoint.handle_timer(now=now)
        self.settle(now)
