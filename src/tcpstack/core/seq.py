"""Sequence-number arithmetic modulo 2**32 (RFC 9293 section 3.4).

Sequence numbers wrap, so "less than" means "less than within half the space":
a < b when (b - a) mod 2**32 is in 1 .. 2**31 - 1. All comparisons in the core go
through these helpers; comparing raw ints would break at the wrap.
"""

from __future__ import annotations

MOD = 1 << 32
MASK = MOD - 1
HALF = 1 << 31


def seq_add(a: int, n: int) -> int:
    """a + n modulo 2**32 (n may be negative)."""
    return (a + n) & MASK


def seq_sub(a: int, b: int) -> int:
    """Distance from b forward to a, modulo 2**32, in 0 .. 2**32 - 1."""
    return (a - b) & MASK


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b in -2**31 .. 2**31 - 1 (the RFC's "a - b" on sequence space)."""
    d = (a - b) & MASK
    return d - MOD if d >= HALF else d


def seq_lt(a: int, b: int) -> bool:
    """a < b in sequence space."""
    return 0 < ((b - a) & MASK) < HALF


def seq_le(a: int, b: int) -> bool:
    """a =< b in sequence space."""
    return ((b - a) & MASK) < HALF


def seq_gt(a: int, b: int) -> bool:
    """a > b in sequence space."""
    return 0 < ((a - b) & MASK) < HALF


def seq_ge(a: int, b: int) -> bool:
    """a >= b in sequence space."""
    return ((a - b) & MASK) < HALF


def seq_in_window(x: int, start: int, length: int) -> bool:
    """start =< x < start + length (RFC 9293 3.4 window test); empty when length is 0."""
    return ((x - start) & MASK) < length


def seq_max(a: int, b: int) -> int:
    return a if seq_ge(a, b) else b


def seq_min(a: int, b: int) -> int:
    return a if seq_le(a, b) else b
