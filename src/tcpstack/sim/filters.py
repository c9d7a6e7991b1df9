"""Ready-made filters: lose or hold exactly the segments a test names.

A filter is any callable taking a `Datagram` and returning a `Verdict`. The rules here
match datagrams with a predicate and act on the first `count` matches only, so a test
can say "drop the first segment from B that has FIN set" and nothing else:

    fin_from_b = drop_where(lambda d: d.src == B and d.segment.has(Flag.FIN))
    net.add_filter(fin_from_b)
    ...
    assert len(fin_from_b.hits) == 1
"""

from __future__ import annotations

from collections.abc import Callable

from tcpstack.core.segment import Datagram
from tcpstack.sim.network import Verdict

__all__ = ["Predicate", "Rule", "drop_nth", "drop_where", "hold_where"]

Predicate = Callable[[Datagram], bool]


class Rule:
    """Apply `verdict` to the first `count` datagrams matching `predicate` (all if None).

    `skip` matching datagrams are let through before the rule starts acting, which
    selects e.g. the second retransmission. `hits` lists the datagrams the rule acted
    on, so a test can check that its loss actually happened.
    """

    __slots__ = ("count", "hits", "predicate", "seen", "skip", "verdict")

    def __init__(
        self, predicate: Predicate, verdict: Verdict, *, count: int | None = 1, skip: int = 0
    ) -> None:
        if count is not None and count < 0:
            raise ValueError(f"count must be >= 0 or None, got {count}")
        if skip < 0:
            raise ValueError(f"skip must be >= 0, got {skip}")
        self.predicate = predicate
        self.verdict = verdict
        self.count = count
        self.skip = skip
        self.seen = 0  # matching datagrams seen, including skipped ones
        self.hits: list[Datagram] = []

    @property
    def exhausted(self) -> bool:
        """True once the rule has acted `count` times and will pass everything."""
        return self.count is not None and len(self.hits) >= self.count

    def __call__(self, datagram: Datagram) -> Verdict:
        if self.exhausted or not self.predicate(datagram):
            return Verdict.PASS
        self.seen += 1
        if self.seen <= self.skip:
            return Verdict.PASS
        self.hits.append(datagram)
        return self.verdict


def drop_where(predicate: Predicate, *, count: int | None = 1) -> Rule:
    """Drop the first `count` matching datagrams (every match if count is None)."""
    return Rule(predicate, Verdict.DROP, count=count)


def drop_nth(predicate: Predicate, n: int) -> Rule:
    """Drop only the n-th matching datagram (n = 1 is the first)."""
    if n < 1:
        raise ValueError(f"n counts from 1, got {n}")
    return Rule(predicate, Verdict.DROP, count=1, skip=n - 1)


def hold_where(predicate: Predicate, *, count: int | None = 1) -> Rule:
    """Hold the first `count` matching datagrams until `Network.release`."""
    return Rule(predicate, Verdict.HOLD, count=count)
