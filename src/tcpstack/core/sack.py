"""The sender's SACK scoreboard (RFC 2018, loss recovery per RFC 6675).

Positions are stream offsets (bytes since our first data byte, unbounded ints) so that
nothing compares sequence numbers across the wrap; the connection converts. The board
holds the ranges the peer reported in SACK blocks above SND.UNA.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

# RFC 6675 DupThresh: three duplicate ACKs, or SACKs covering that much data.
DUP_THRESH = 3

# The ranges of an empty board: shared and immutable, so that a connection that never
# sees a SACK block allocates no lists (issue 9, memory per idle connection).
_NO_RANGES: tuple[int, ...] = ()


class Scoreboard:
    """Disjoint, sorted SACKed ranges [start, end) above the cumulative ACK."""

    __slots__ = ("_ends", "_starts", "sacked")

    def __init__(self) -> None:
        # Lists from the first SACK block on; _NO_RANGES until then and after clear().
        self._starts: Sequence[int] = _NO_RANGES
        self._ends: Sequence[int] = _NO_RANGES
        self.sacked = 0  # bytes covered

    def __len__(self) -> int:
        return len(self._starts)

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    @property
    def highest(self) -> int | None:
        """The end of the highest SACKed range (RFC 6675 HighACK's companion)."""
        return self._ends[-1] if self._ends else None

    def clear(self) -> None:
        self._starts = self._ends = _NO_RANGES
        self.sacked = 0

    def _lists(self) -> tuple[list[int], list[int]]:
        """The ranges as lists that can be changed in place (made on first use)."""
        starts, ends = self._starts, self._ends
        if isinstance(starts, list) and isinstance(ends, list):
            return starts, ends
        new_starts: list[int] = []
        new_ends: list[int] = []
        self._starts, self._ends = new_starts, new_ends
        return new_starts, new_ends

    def add(self, start: int, end: int) -> None:
        """Record one SACK block (already validated to lie within the flight)."""
        if end <= start:
            return
        starts, ends = self._lists()
        i = bisect_left(ends, start)  # first range that ends at or after start
        j = i
        while j < len(starts) and starts[j] <= end:
            j += 1
        if i < j:
            start = min(start, starts[i])
            end = max(end, ends[j - 1])
            self.sacked -= sum(ends[k] - starts[k] for k in range(i, j))
        starts[i:j] = [start]
        ends[i:j] = [end]
        self.sacked += end - start

    def advance(self, una: int) -> None:
        """The cumulative ACK moved to `una`: forget everything below it."""
        if not self._starts:
            return
        starts, ends = self._lists()
        while starts and ends[0] <= una:
            self.sacked -= ends[0] - starts[0]
            del starts[0]
            del ends[0]
        if starts and starts[0] < una:
            self.sacked -= una - starts[0]
            starts[0] = una

    def is_sacked(self, offset: int) -> bool:
        i = bisect_left(self._ends, offset + 1)
        return i < len(self._starts) and self._starts[i] <= offset

    def sacked_above(self, offset: int) -> int:
        """Bytes SACKed at or above `offset`."""
        total = 0
        for start, end in zip(self._starts, self._ends, strict=True):
            if end > offset:
                total += end - max(start, offset)
        return total

    def is_lost(self, offset: int, mss: int) -> bool:
        """RFC 6675 IsLost(): DupThresh discontiguous SACKed ranges above `offset`, or
        more than (DupThresh - 1) * SMSS bytes SACKed above it."""
        above = [s for s in self._starts if s > offset]
        if len(above) >= DUP_THRESH:
            return True
        return self.sacked_above(offset + 1) > (DUP_THRESH - 1) * mss

    def next_hole(self, start: int, limit: int) -> tuple[int, int] | None:
        """The first unSACKed range at or after `start` and below `limit`."""
        pos = start
        for s, e in zip(self._starts, self._ends, strict=True):
            if e <= pos:
                continue
            if s > pos:
                return (pos, min(s, limit)) if pos < limit else None
            pos = e
        return None if pos >= limit else (pos, limit)
