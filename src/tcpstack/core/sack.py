"""The sender's SACK scoreboard (RFC 2018, loss recovery per RFC 6675).

Positions are stream offsets (bytes since our first data byte, unbounded ints) so that
nothing compares sequence numbers across the wrap; the connection converts. The board
holds the ranges the peer reported in SACK blocks above SND.UNA.
"""

from __future__ import annotations

from bisect import bisect_left

# RFC 6675 DupThresh: three duplicate ACKs, or SACKs covering that much data.
DUP_THRESH = 3


class Scoreboard:
    """Disjoint, sorted SACKed ranges [start, end) above the cumulative ACK."""

    __slots__ = ("_ends", "_starts", "sacked")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
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
        self._starts.clear()
        self._ends.clear()
        self.sacked = 0

    def add(self, start: int, end: int) -> None:
        """Record one SACK block (already validated to lie within the flight)."""
        if end <= start:
            return
        starts, ends = self._starts, self._ends
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
        starts, ends = self._starts, self._ends
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
