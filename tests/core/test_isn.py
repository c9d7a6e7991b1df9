"""RFC 6528 keyed ISNs: M (a 4 µs clock from `now`) plus a keyed hash of the 4-tuple."""

from __future__ import annotations

import pytest

from tcpstack.core.config import PLAIN
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.isn import CLOCK_TICK, KeyedIsnGenerator
from tcpstack.core.seq import MASK, seq_sub

SECRET = bytes(range(32))
TUPLE = ("10.0.0.1", 40000, "10.0.0.2", 80)


def test_deterministic_for_a_fixed_secret_and_time() -> None:
    a = KeyedIsnGenerator(SECRET)
    b = KeyedIsnGenerator(SECRET)
    assert a(TUPLE, 123_456) == b(TUPLE, 123_456)
    assert 0 <= a(TUPLE, 123_456) <= MASK


def test_differs_per_four_tuple() -> None:
    gen = KeyedIsnGenerator(SECRET)
    variants = [
        TUPLE,
        ("10.0.0.9", 40000, "10.0.0.2", 80),
        ("10.0.0.1", 40001, "10.0.0.2", 80),
        ("10.0.0.1", 40000, "10.0.0.9", 80),
        ("10.0.0.1", 40000, "10.0.0.2", 81),
    ]
    assert len({gen(t, 0) for t in variants}) == len(variants)


def test_differs_per_secret() -> None:
    other = bytes(reversed(SECRET))
    assert KeyedIsnGenerator(SECRET)(TUPLE, 0) != KeyedIsnGenerator(other)(TUPLE, 0)


@pytest.mark.parametrize("now", [0, 4, 1_000_000, 17 * 2**32 + 3])
def test_increases_with_time_by_now_over_4(now: int) -> None:
    gen = KeyedIsnGenerator(SECRET)
    assert seq_sub(gen(TUPLE, now), gen(TUPLE, 0)) == (now // CLOCK_TICK) & MASK
    assert gen(TUPLE, 0) == gen.offset(TUPLE)


def test_short_secret_is_refused_and_long_one_is_hashed() -> None:
    with pytest.raises(ValueError):
        KeyedIsnGenerator(b"short")
    long_secret = bytes(64)
    assert KeyedIsnGenerator(long_secret)(TUPLE, 0) != KeyedIsnGenerator(bytes(32))(TUPLE, 0)


def test_endpoint_uses_it() -> None:
    gen = KeyedIsnGenerator(SECRET)
    endpoint = Endpoint("10.0.0.1", isn_generator=gen, config=PLAIN)
    conn = endpoint.connect("10.0.0.2", 80, now=4_000, local_port=40000)
    assert conn.iss == gen(TUPLE, 4_000)
