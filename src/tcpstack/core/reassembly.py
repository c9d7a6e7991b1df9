"""Out-of-order segment reassembly with hard limits (RFC 9293 3.10.7.4 seventh step).

Segments that arrive beyond RCV.NXT are held here until the gap before them fills.
Positions are stream offsets (bytes since the first data byte, unbounded ints), so the
code never compares sequence numbers across the 2**32 wrap; the connection converts.

Held data is bounded twice: by bytes (`max_bytes`) and by the number of separate blocks
(`max_blocks`, i.e. gaps). A peer that sends only out-of-order data can therefore never
make us hold more than that; what does not fit is dropped (and the sender retransmits).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence

# Out-of-order bytes one Endpoint holds for all its connections together.
DEFAULT_ENDPOINT_REASSEMBLY_BYTES = 64 * 1024 * 1024

# What an empty queue holds: shared and immutable, so that a connection that never
# receives out-of-order data allocates no lists (issue 9, memory per idle connection).
_EMPTY: tuple[()] = ()


class ReassemblyBudget:
    """A byte budget for out-of-order data shared by an Endpoint's connections, so that
    many connections each filling their own limit cannot exhaust memory together.
    Refusals are counted as limit.reassembly_bytes in `stats` when given."""

    __slots__ = ("held", "limit", "peak", "refused", "stats")

    def __init__(self, limit: int, *, stats: Counter[str] | None = None) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0
        self.refused = 0
        self.stats = stats

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            self.refused += 1
            if self.stats is not None:
                self.stats["limit.reassembly_bytes"] += 1
            return False
        self.held += size
        self.peak = max(self.peak, self.held)
        return True

    def release(self, size: int) -> None:
        self.held -= size


class Reassembly:
    """Disjoint, sorted blocks of out-of-order data: starts[i] .. starts[i]+len(data[i])."""

    __slots__ = ("_budget", "_data", "_recent", "_starts", "held", "max_blocks", "max_bytes")

    def __init__(
        self, max_bytes: int, max_blocks: int = 64, budget: ReassemblyBudget | None = None
    ) -> None:
        self.max_bytes = max_bytes
        self._budget = budget
        self.max_blocks = max_blocks
        # Lists from the first held block on; _EMPTY until then and after clear().
        self._starts: Sequence[int] = _EMPTY
        self._data: Sequence[bytes] = _EMPTY
        self.held = 0  # bytes held
        # Start offsets of blocks in the order they last grew, newest last, so SACK can
        # report the most recently received block first (RFC 2018 section 4).
        self._recent: Sequence[int] = _EMPTY

    def __len__(self) -> int:
        return len(self._starts)

    def blocks(self) -> list[tuple[int, int]]:
        """The held blocks as (start, end) offsets, lowest first."""
        return [(s, s + len(d)) for s, d in zip(self._starts, self._data, strict=True)]

    def add(self, start: int, data: bytes, expected: int) -> int:
        """Hold `data` at offset `start` (> expected, the offset of RCV.NXT).

        Overlaps with held blocks are merged (the bytes are the same by TCP's contract;
        the held copy wins). Returns how many new bytes were stored; 0 when the limits
        refused it.
        """
        end = start + len(data)
        if end <= expected or not data:
            return 0
        if start < expected:
            data = data[expected - start :]
            start = expected
        starts, blocks, recent = self._lists()
        # Find every held block that touches [start, end).
        first = bisect_left(starts, start)
        if first > 0 and starts[first - 1] + len(blocks[first - 1]) >= start:
            first -= 1
        last = first
        while last < len(starts) and starts[last] <= end:
            last += 1
        merged_start = min(start, starts[first]) if first < last else start
        merged_end = end
        if first < last:
            merged_end = max(end, starts[last - 1] + len(blocks[last - 1]))
        # Build the merged block: held bytes win where they overlap the new ones.
        piece = bytearray(merged_end - merged_start)
        piece[start - merged_start : end - merged_start] = data
        old_bytes = 0
        for i in range(first, last):
            offset = starts[i] - merged_start
            piece[offset : offset + len(blocks[i])] = blocks[i]
            old_bytes += len(blocks[i])
        added = len(piece) - old_bytes
        if added == 0:
            self._touch(starts[first], merged_start)
            return 0
        new_count = len(starts) - (last - first) + 1
        if self.held + added > self.max_bytes or new_count > self.max_blocks:
            return 0
        if self._budget is not None and not self._budget.take(added):
            return 0
        for i in range(first, last):
            self._forget_recent(starts[i])
        starts[first:last] = [merged_start]
        blocks[first:last] = [bytes(piece)]
        self.held += added
        recent.append(merged_start)
        return added

    def pop_ready(self, expected: int) -> bytes:
        """Remove and return the bytes that now continue the stream at `expected`."""
        if not self._starts:
            return b""
        starts, data, _ = self._lists()
        # Blocks that in-order data has already passed entirely are stale: drop them all,
        # or the caller would see b"" while a later block already continues the stream.
        while starts and starts[0] + len(data[0]) <= expected:
            self._release(len(data[0]))
            self._forget_recent(starts[0])
            del starts[0]
            del data[0]
        if not starts or starts[0] > expected:
            return b""
        block = data[0]
        skip = expected - starts[0]
        del starts[0]
        del data[0]
        self._release(len(block))
        self._forget_recent(expected - skip)
        return block[skip:] if skip > 0 else block

    def sack_blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to `limit` blocks, the most recently changed first (RFC 2018 section 4)."""
        by_start = dict(zip(self._starts, self._data, strict=True))
        out: list[tuple[int, int]] = []
        for start in reversed(self._recent):
            data = by_start.get(start)
            if data is not None:
                out.append((start, start + len(data)))
                if len(out) == limit:
                    break
        return out

    def clear(self) -> None:
        self._starts = self._data = self._recent = _EMPTY
        self._release(self.held)

    def _lists(self) -> tuple[list[int], list[bytes], list[int]]:
        """The queue as lists that can be changed in place (made on first use)."""
        starts, data, recent = self._starts, self._data, self._recent
        if isinstance(starts, list) and isinstance(data, list) and isinstance(recent, list):
            return starts, data, recent
        new_starts: list[int] = []
        new_data: list[bytes] = []
        new_recent: list[int] = []
        self._starts, self._data, self._recent = new_starts, new_data, new_recent
        return new_starts, new_data, new_recent

    def _release(self, size: int) -> None:
        self.held -= size
        if self._budget is not None:
            self._budget.release(size)

    def _touch(self, old_start: int, new_start: int) -> None:
        self._forget_recent(old_start)
        self._lists()[2].append(new_start)

    def _forget_recent(self, start: int) -> None:
        if start in self._recent:
            self._lists()[2].remove(start)
