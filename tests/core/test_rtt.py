"""RTO computation (tcpstack.core.rtt, RFC 6298), in integer microseconds.

Expected values are worked out by hand from RFC 6298 section 2:
    first sample R:  SRTT = R, RTTVAR = R/2
    later sample R': RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R'| (with the old SRTT),
                     SRTT = 7/8 SRTT + 1/8 R'
    RTO = SRTT + max(G, 4 * RTTVAR), G = 1 µs, bounded by [min_rto, max_rto]
with every division rounding down.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpstack.core.rtt import RttEstimator

MS = 1_000  # µs
SECOND = 1_000_000  # µs


def linux_like() -> RttEstimator:
    return RttEstimator(initial_rto=SECOND, min_rto=200 * MS, max_rto=120 * SECOND)


def unbounded() -> RttEstimator:
    return RttEstimator(initial_rto=SECOND, min_rto=1, max_rto=1 << 62)


def test_before_any_sample() -> None:
    est = linux_like()
    assert est.srtt is None
    assert est.rttvar == 0
    assert est.rto == SECOND  # RFC 6298 2.1: the initial RTO
    assert est.backoffs == 0
    assert est.min_rto == 200 * MS
    assert est.max_rto == 120 * SECOND


def test_k_is_four() -> None:
    assert RttEstimator.K == 4


def test_first_sample() -> None:
    est = linux_like()
    est.sample(100 * MS)
    assert est.srtt == 100_000
    assert est.rttvar == 50_000
    assert est.rto == 300_000  # 100_000 + 4 * 50_000


def test_first_sample_odd_halves_down() -> None:
    est = unbounded()
    est.sample(7)
    assert est.srtt == 7
    assert est.rttvar == 3
    assert est.rto == 19  # 7 + 4 * 3


def test_sequence_of_samples_exact() -> None:
    est = linux_like()
    est.sample(100_000)
    # 60_000: RTTVAR = (3 * 50_000 + |100_000 - 60_000|) / 4 = 190_000 / 4 = 47_500
    #         SRTT   = (7 * 100_000 + 60_000) / 8 = 760_000 / 8 = 95_000
    est.sample(60_000)
    assert (est.srtt, est.rttvar, est.rto) == (95_000, 47_500, 285_000)
    # 140_000: RTTVAR = (3 * 47_500 + 45_000) / 4 = 187_500 / 4 = 46_875
    #          SRTT   = (7 * 95_000 + 140_000) / 8 = 805_000 / 8 = 100_625
    est.sample(140_000)
    assert (est.srtt, est.rttvar, est.rto) == (100_625, 46_875, 288_125)
    # 100_625 (no error): RTTVAR = 3 * 46_875 / 4 = 140_625 / 4 = 35_156 (floor)
    #                     SRTT unchanged
    est.sample(100_625)
    assert (est.srtt, est.rttvar, est.rto) == (100_625, 35_156, 241_249)
    # 20_000: RTTVAR = (105_468 + 80_625) / 4 = 186_093 / 4 = 46_523 (floor)
    #         SRTT   = (704_375 + 20_000) / 8 = 724_375 / 8 = 90_546 (floor)
    est.sample(20_000)
    assert (est.srtt, est.rttvar, est.rto) == (90_546, 46_523, 276_638)


def test_sequence_with_small_values_rounds_down() -> None:
    est = unbounded()
    est.sample(7)  # 7, 3
    est.sample(10)  # RTTVAR (9 + 3) / 4 = 3; SRTT (49 + 10) / 8 = 59 / 8 = 7
    assert (est.srtt, est.rttvar, est.rto) == (7, 3, 19)
    est.sample(15)  # RTTVAR (9 + 8) / 4 = 17 / 4 = 4; SRTT (49 + 15) / 8 = 8
    assert (est.srtt, est.rttvar, est.rto) == (8, 4, 24)


def test_variance_decays_to_the_clock_granularity() -> None:
    # A constant RTT of 8 µs: RTTVAR 4 -> 3 -> 2 -> 1 -> 0, and then RTO = SRTT + G.
    est = unbounded()
    seen = []
    for _ in range(6):
        est.sample(8)
        seen.append((est.srtt, est.rttvar, est.rto))
    assert seen == [
        (8, 4, 24),
        (8, 3, 20),
        (8, 2, 16),
        (8, 1, 12),
        (8, 0, 9),  # max(G, 4 * 0) = G = 1
        (8, 0, 9),
    ]


def test_zero_sample_counts_as_one_microsecond() -> None:
    est = unbounded()
    est.sample(0)
    assert (est.srtt, est.rttvar, est.rto) == (1, 0, 2)
    est.sample(-5)
    assert (est.srtt, est.rttvar, est.rto) == (1, 0, 2)


def test_rto_bounded_below() -> None:
    # RFC 6298 2.4: RTO is rounded up to the minimum.
    est = linux_like()
    est.sample(10 * MS)  # 10 ms + 20 ms = 30 ms
    assert est.srtt == 10 * MS
    assert est.rttvar == 5 * MS
    assert est.rto == 200 * MS


def test_rto_bounded_above() -> None:
    est = RttEstimator(initial_rto=SECOND, min_rto=200 * MS, max_rto=60 * SECOND)
    est.sample(50 * SECOND)  # 50 s + 100 s
    assert est.srtt == 50 * SECOND
    assert est.rto == 60 * SECOND


def test_back_off_doubles() -> None:
    est = linux_like()
    est.sample(100 * MS)
    assert est.rto == 300 * MS
    est.back_off()
    assert est.rto == 600 * MS
    assert est.backoffs == 1
    est.back_off()
    assert est.rto == 1_200 * MS
    assert est.backoffs == 2
    # Backing off leaves the estimate itself alone.
    assert (est.srtt, est.rttvar) == (100 * MS, 50 * MS)


def test_back_off_before_any_sample() -> None:
    est = linux_like()
    est.back_off()
    assert est.rto == 2 * SECOND
    est.back_off()
    assert est.rto == 4 * SECOND
    assert est.srtt is None


def test_back_off_capped_at_max() -> None:
    est = RttEstimator(initial_rto=SECOND, min_rto=200 * MS, max_rto=60 * SECOND)
    rtos = []
    for _ in range(8):
        est.back_off()
        rtos.append(est.rto)
    assert rtos == [s * SECOND for s in (2, 4, 8, 16, 32, 60, 60, 60)]
    assert est.backoffs == 8


def test_sample_resets_backoff() -> None:
    est = linux_like()
    est.sample(100 * MS)
    for _ in range(3):
        est.back_off()
    assert est.rto == 2_400 * MS
    assert est.backoffs == 3
    est.sample(100 * MS)  # RTTVAR (150_000 + 0) / 4 = 37_500; SRTT 100_000
    assert est.backoffs == 0
    assert est.rto == 250 * MS


@pytest.mark.parametrize("min_rto", [1, 200 * MS, SECOND])
def test_min_rto_respected(min_rto: int) -> None:
    est = RttEstimator(initial_rto=SECOND, min_rto=min_rto, max_rto=120 * SECOND)
    est.sample(1)
    assert est.rto == max(min_rto, 1 + 1)  # SRTT 1, RTTVAR 0: 1 + G


def reference(samples: list[int]) -> tuple[int, int, int]:
    """RFC 6298 section 2 in integers, each division rounding down."""
    srtt = max(samples[0], 1)
    rttvar = srtt // 2
    for r in samples[1:]:
        r = max(r, 1)
        rttvar = (3 * rttvar + abs(srtt - r)) // 4
        srtt = (7 * srtt + r) // 8
    return srtt, rttvar, srtt + max(1, 4 * rttvar)


@given(
    st.lists(st.integers(min_value=0, max_value=10 * SECOND), min_size=1, max_size=50),
    st.integers(min_value=1, max_value=SECOND),
    st.integers(min_value=1, max_value=200 * SECOND),
)
def test_matches_rfc_6298_and_stays_bounded(
    samples: list[int], min_rto: int, max_extra: int
) -> None:
    max_rto = min_rto + max_extra
    est = RttEstimator(initial_rto=SECOND, min_rto=min_rto, max_rto=max_rto)
    for i, r in enumerate(samples):
        est.sample(r)
        srtt, rttvar, rto = reference(samples[: i + 1])
        assert (est.srtt, est.rttvar) == (srtt, rttvar)
        assert est.rto == min(max(rto, min_rto), max_rto)
        assert est.backoffs == 0
    for _ in range(10):
        before = est.rto
        est.back_off()
        assert est.rto == min(2 * before, max_rto)
        assert min_rto <= est.rto <= max_rto
