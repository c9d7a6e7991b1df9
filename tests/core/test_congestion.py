"""Congestion controllers (tcpstack.core.congestion): NewReno, CUBIC and the no-op.

NewReno is checked against RFC 5681 / RFC 6582 (with RFC 3465's L = 2*SMSS), CUBIC
against RFC 9438, with the cubic curve W(t) = C*(t-K)^3 + W_max computed here.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpstack.core.congestion import (
    CONTROLLERS,
    CongestionControl,
    Cubic,
    NewReno,
    NoCongestionControl,
    initial_window,
    make_controller,
)

MSS = 1000
RTT = 100_000  # µs
SECOND = 1_000_000  # µs
C = 0.4
BETA = 0.7
ALPHA = 3 * (1 - BETA) / (1 + BETA)  # RFC 9438 4.3


def cubic_w(t: float, k: float, w_max: float) -> float:
    """RFC 9438 equation 1, in segments; t and K in seconds."""
    return C * (t - k) ** 3 + w_max


def cubic_k(w_max: float, cwnd_epoch: float) -> float:
    """RFC 9438 equation 2."""
    return float(((w_max - cwnd_epoch) / C) ** (1 / 3))


# ----------------------------------------------------------------------------- common


def test_initial_window_is_ten_segments() -> None:
    assert initial_window(1460) == 14_600
    assert initial_window(536) == 5_360


@pytest.mark.parametrize("cls", [NewReno, Cubic])
@pytest.mark.parametrize("mss", [536, 1000, 1460, 8960])
def test_starts_with_iw_and_huge_ssthresh(cls: type[NewReno] | type[Cubic], mss: int) -> None:
    cc = cls(mss)
    assert cc.cwnd == 10 * mss
    assert cc.ssthresh >= 1 << 30


def test_controllers_satisfy_the_protocol() -> None:
    controllers: list[CongestionControl] = [NewReno(MSS), Cubic(MSS), NoCongestionControl(MSS)]
    assert [cc.name for cc in controllers] == ["newreno", "cubic", "none"]


# ----------------------------------------------------------------------------- make_controller


@pytest.mark.parametrize(
    ("name", "cls"), [("newreno", NewReno), ("cubic", Cubic), ("none", NoCongestionControl)]
)
def test_make_controller_by_name(name: str, cls: type) -> None:
    cc = make_controller(name, 1460)
    assert isinstance(cc, cls)
    assert cc.name == name
    assert make_controller(name, 1460) is not cc  # a fresh one each time


def test_make_controller_passes_mss() -> None:
    assert make_controller("newreno", 1460).cwnd == 14_600
    assert make_controller("cubic", 536).cwnd == 5_360


@pytest.mark.parametrize("name", ["bbr", "", "NewReno", "CUBIC", "reno"])
def test_make_controller_unknown_name(name: str) -> None:
    with pytest.raises(ValueError, match="unknown congestion control") as info:
        make_controller(name, MSS)
    message = str(info.value)
    assert repr(name) in message
    for known in ("cubic", "newreno", "none"):
        assert known in message


def test_controller_registry() -> None:
    assert sorted(CONTROLLERS) == ["cubic", "newreno", "none"]


# ----------------------------------------------------------------------------- NewReno


def reno_in_avoidance(cwnd: int) -> NewReno:
    """A NewReno in congestion avoidance with cwnd == ssthresh == `cwnd`."""
    cc = NewReno(MSS)
    cc.on_fast_retransmit(2 * cwnd, now=0)
    cc.on_recovery_exit(now=0)
    assert cc.cwnd == cc.ssthresh == cwnd
    return cc


def test_newreno_slow_start_grows_by_bytes_acked() -> None:
    cc = NewReno(MSS)
    cc.on_ack(MSS, flight=10 * MSS, now=0, srtt=None)
    assert cc.cwnd == 11 * MSS
    cc.on_ack(300, flight=10 * MSS, now=0, srtt=None)
    assert cc.cwnd == 11 * MSS + 300


@pytest.mark.parametrize("acked", [2 * MSS, 2 * MSS + 1, 5 * MSS, 100 * MSS])
def test_newreno_slow_start_growth_capped_at_two_smss(acked: int) -> None:
    # RFC 3465 L = 2*SMSS: a stretch ACK grows cwnd by at most 2*SMSS.
    cc = NewReno(MSS)
    cc.on_ack(acked, flight=10 * MSS, now=0, srtt=None)
    assert cc.cwnd == 12 * MSS


def test_newreno_slow_start_doubles_per_round() -> None:
    cc = NewReno(MSS)
    for _ in range(10):  # one ACK per segment of the initial window
        cc.on_ack(MSS, flight=cc.cwnd, now=0, srtt=None)
    assert cc.cwnd == 20 * MSS


def test_newreno_slow_start_ends_at_ssthresh() -> None:
    cc = NewReno(MSS)
    cc.on_timeout(flight=8 * MSS, now=0)  # ssthresh 4 MSS, cwnd 1 MSS
    assert (cc.cwnd, cc.ssthresh) == (MSS, 4 * MSS)
    for expected in (2, 3, 4):
        cc.on_ack(MSS, flight=cc.cwnd, now=0, srtt=None)
        assert cc.cwnd == expected * MSS
    # At ssthresh: congestion avoidance, one SMSS per cwnd of bytes acknowledged.
    cc.on_ack(MSS, flight=cc.cwnd, now=0, srtt=None)
    assert cc.cwnd == 4 * MSS


def test_newreno_avoidance_one_smss_per_cwnd_acked() -> None:
    cc = reno_in_avoidance(20 * MSS)
    for _ in range(19):
        cc.on_ack(MSS, flight=cc.cwnd, now=0, srtt=None)
        assert cc.cwnd == 20 * MSS
    cc.on_ack(MSS, flight=cc.cwnd, now=0, srtt=None)
    assert cc.cwnd == 21 * MSS
    # The next increase takes the new, larger cwnd's worth of bytes.
    for _ in range(20):
        cc.on_ack(MSS, flight=cc.cwnd, now=0, srtt=None)
    assert cc.cwnd == 21 * MSS
    cc.on_ack(MSS, flight=cc.cwnd, now=0, srtt=None)
    assert cc.cwnd == 22 * MSS


def test_newreno_avoidance_carries_surplus_bytes() -> None:
    cc = reno_in_avoidance(20 * MSS)
    cc.on_ack(30 * MSS, flight=cc.cwnd, now=0, srtt=None)
    assert cc.cwnd == 21 * MSS  # at most one SMSS per ACK; 10 MSS carried over
    cc.on_ack(10 * MSS, flight=cc.cwnd, now=0, srtt=None)
    assert cc.cwnd == 21 * MSS
    cc.on_ack(MSS, flight=cc.cwnd, now=0, srtt=None)
    assert cc.cwnd == 22 * MSS


@pytest.mark.parametrize(
    ("flight", "ssthresh"),
    [
        (40 * MSS, 20 * MSS),
        (40 * MSS + 1, 20 * MSS),  # FlightSize / 2 rounds down
        (41 * MSS, 20 * MSS + MSS // 2),
        (4 * MSS, 2 * MSS),
        (3 * MSS, 2 * MSS),  # floor of 2*SMSS
        (0, 2 * MSS),
    ],
)
def test_newreno_fast_retransmit(flight: int, ssthresh: int) -> None:
    cc = NewReno(MSS)
    cc.on_fast_retransmit(flight, now=0)
    assert cc.ssthresh == ssthresh
    assert cc.cwnd == ssthresh + 3 * MSS  # RFC 6582 3.2 step 2: inflated by 3 segments
    cc.on_recovery_exit(now=0)
    assert cc.cwnd == ssthresh  # step 3: deflated to ssthresh
    assert cc.ssthresh == ssthresh


def test_newreno_ssthresh_uses_flight_not_cwnd() -> None:
    cc = NewReno(MSS)  # cwnd 10 MSS
    cc.on_fast_retransmit(flight=6 * MSS, now=0)
    assert cc.ssthresh == 3 * MSS


def test_newreno_recovery_exit_resets_avoidance_count() -> None:
    cc = reno_in_avoidance(20 * MSS)
    for _ in range(19):
        cc.on_ack(MSS, flight=cc.cwnd, now=0, srtt=None)
    cc.on_fast_retransmit(flight=40 * MSS, now=0)
    cc.on_recovery_exit(now=0)
    assert cc.cwnd == 20 * MSS
    cc.on_ack(MSS, flight=cc.cwnd, now=0, srtt=None)
    assert cc.cwnd == 20 * MSS  # the 19 MSS counted before the loss are gone


@pytest.mark.parametrize(
    ("flight", "ssthresh"), [(40 * MSS, 20 * MSS), (3 * MSS, 2 * MSS), (0, 2 * MSS)]
)
def test_newreno_timeout(flight: int, ssthresh: int) -> None:
    cc = reno_in_avoidance(30 * MSS)
    cc.on_ack(29 * MSS, flight=cc.cwnd, now=0, srtt=None)
    cc.on_timeout(flight, now=0)
    assert cc.cwnd == MSS  # the loss window, one segment
    assert cc.ssthresh == ssthresh
    if ssthresh > 2 * MSS:
        cc.on_ack(MSS, flight=MSS, now=0, srtt=None)
        assert cc.cwnd == 2 * MSS  # slow start again


def test_newreno_timeout_resets_avoidance_count() -> None:
    cc = reno_in_avoidance(2 * MSS)
    cc.on_ack(MSS, flight=cc.cwnd, now=0, srtt=None)  # half of cwnd counted
    cc.on_timeout(flight=4 * MSS, now=0)  # ssthresh 2 MSS, cwnd 1 MSS
    cc.on_ack(MSS, flight=MSS, now=0, srtt=None)  # slow start to 2 MSS
    assert cc.cwnd == 2 * MSS
    cc.on_ack(MSS, flight=cc.cwnd, now=0, srtt=None)
    assert cc.cwnd == 2 * MSS  # a stale count would have made this 3 MSS


def test_newreno_idle_restart() -> None:
    cc = NewReno(MSS)
    for _ in range(40):
        cc.on_ack(MSS, flight=cc.cwnd, now=0, srtt=None)
    assert cc.cwnd == 50 * MSS
    cc.on_idle_restart(idle=1_000_000, rto=1_000_000, now=0)  # not longer than RTO
    assert cc.cwnd == 50 * MSS
    cc.on_idle_restart(idle=1_000_001, rto=1_000_000, now=0)
    assert cc.cwnd == 10 * MSS  # RFC 5681 4.1: min(IW, cwnd)
    ssthresh = cc.ssthresh
    cc.on_idle_restart(idle=10_000_000, rto=1_000_000, now=0)
    assert cc.cwnd == 10 * MSS
    assert cc.ssthresh == ssthresh


def test_newreno_idle_restart_keeps_a_smaller_window() -> None:
    cc = NewReno(MSS)
    cc.on_timeout(flight=10 * MSS, now=0)
    cc.on_idle_restart(idle=10_000_000, rto=1_000_000, now=0)
    assert cc.cwnd == MSS


acks = st.lists(st.integers(min_value=1, max_value=20 * MSS), min_size=1, max_size=200)


@settings(max_examples=200)
@given(acks, st.integers(min_value=0, max_value=200 * MSS))
def test_newreno_acks_only_grow_cwnd_and_boundedly(ackeds: list[int], flight: int) -> None:
    cc = NewReno(MSS)
    cc.on_fast_retransmit(flight, now=0)
    cc.on_recovery_exit(now=0)
    cc.on_timeout(flight, now=0)  # cwnd 1 MSS: slow start, then avoidance
    for acked in ackeds:
        before = cc.cwnd
        slow_start = before < cc.ssthresh
        cc.on_ack(acked, flight=before, now=0, srtt=None)
        growth = cc.cwnd - before
        assert growth >= 0
        if slow_start:
            assert growth == min(acked, 2 * MSS)
        else:
            assert growth in (0, MSS)


# ----------------------------------------------------------------------------- CUBIC


def cubic_after_loss(cwnd_segments: int, mss: int = MSS) -> Cubic:
    """A CUBIC that slow-started to `cwnd_segments` and then took a fast retransmit."""
    cc = Cubic(mss)
    while cc.cwnd < cwnd_segments * mss:
        cc.on_ack(min(2 * mss, cwnd_segments * mss - cc.cwnd), cc.cwnd, 0, RTT)
    assert cc.cwnd == cwnd_segments * mss
    cc.on_fast_retransmit(cc.cwnd, now=0)
    cc.on_recovery_exit(now=0)
    return cc


def run_rounds(cc: Cubic, start: int, rounds: int, rtt: int = RTT) -> list[tuple[float, float]]:
    """A saturated flow: each round trip acknowledges cwnd segments, one ACK per segment,
    evenly spread. Returns (t in seconds since `start`, cwnd in segments) after each round
    (t is the time of the round's last ACK)."""
    out: list[tuple[float, float]] = []
    now = start
    for rnd in range(rounds):
        n = cc.cwnd // cc.mss
        for i in range(n):
            now = start + rnd * rtt + i * rtt // n
            cc.on_ack(cc.mss, cc.cwnd, now, rtt)
        out.append(((now - start) / SECOND, cc.cwnd / cc.mss))
    return out


def test_cubic_slow_start_like_newreno() -> None:
    cubic, reno = Cubic(MSS), NewReno(MSS)
    for acked in (MSS, 300, 5 * MSS, 2 * MSS, 1):
        cubic.on_ack(acked, cubic.cwnd, 0, RTT)
        reno.on_ack(acked, reno.cwnd, 0, RTT)
        assert cubic.cwnd == reno.cwnd


@pytest.mark.parametrize(
    ("mss", "cwnd", "expected"),
    [
        (1000, 100_000, 70_000),
        (1000, 99_999, 69_999),
        (1000, 3_000, 2_100),
        (1000, 2_600, 2_000),  # at least 2 segments
        # In floating point int(cwnd * 0.7) is one byte short for these:
        (1000, 10_250, 7_175),
        (1460, 8 * 1460, 8_176),
        (1460, 30 * 1460, 30_660),
    ],
)
def test_cubic_loss_ssthresh_is_beta_times_cwnd(mss: int, cwnd: int, expected: int) -> None:
    cc = Cubic(mss)
    cc.cwnd = cwnd
    cc.on_fast_retransmit(flight=cwnd, now=0)
    assert cc.ssthresh == expected
    assert cc.cwnd == expected
    cc.on_recovery_exit(now=0)
    assert cc.cwnd == expected


def test_cubic_loss_floor_of_two_segments() -> None:
    cc = Cubic(MSS)
    cc.cwnd = 2 * MSS
    cc.on_fast_retransmit(flight=2 * MSS, now=0)
    assert cc.ssthresh == 2 * MSS
    assert cc.cwnd == 2 * MSS


def test_cubic_wmax_and_k_after_loss() -> None:
    cc = cubic_after_loss(100)
    assert cc.cwnd == cc.ssthresh == 70 * MSS
    assert cc._w_max == pytest.approx(100.0)
    cc.on_ack(1, cc.cwnd, now=5 * SECOND, srtt=RTT)  # the epoch starts with this ACK
    assert cc._k == pytest.approx(cubic_k(100, 70))
    assert cc._k == pytest.approx(4.2172, abs=1e-4)  # cbrt(30 / 0.4) = cbrt(75)


def test_cubic_first_avoidance_ack_follows_the_curve() -> None:
    # The first ACK aims at W(t + RTT) with t = 0: cwnd grows by (target - cwnd) / cwnd
    # segments per segment acknowledged (RFC 9438 4.4).
    cc = cubic_after_loss(100)
    k = cubic_k(100, 70)
    target = cubic_w(0 + RTT / SECOND, k, 100)
    assert target == pytest.approx(72.08, abs=0.01)
    cc.on_ack(MSS, cc.cwnd, now=5 * SECOND, srtt=RTT)
    expected = 70 + (target - 70) / 70
    assert cc.cwnd == int(expected * MSS)


def test_cubic_growth_capped_at_half_a_segment_per_segment_acked() -> None:
    # RFC 9438 4.2: the target is at most 1.5 * cwnd, so far out on the convex side each
    # acknowledged segment adds (1.5 cwnd - cwnd) / cwnd = half a segment.
    cc = cubic_after_loss(100)
    cc.on_ack(1, cc.cwnd, now=0, srtt=RTT)  # start the epoch
    before = cc.cwnd
    cc.on_ack(MSS, cc.cwnd, now=100 * SECOND, srtt=RTT)
    assert cc.cwnd - before == pytest.approx(MSS / 2, abs=1)


def test_cubic_window_follows_w_of_t() -> None:
    cc = cubic_after_loss(100)
    start = 7 * SECOND
    trace = run_rounds(cc, start, rounds=80)
    k = cubic_k(100, 70)
    for t, cwnd in trace:
        # Aiming at W(t + RTT), cwnd lags it and ends each round just at about W(t).
        assert cwnd == pytest.approx(cubic_w(t, k, 100), abs=0.25), t
        assert cwnd <= cubic_w(t + RTT / SECOND, k, 100) + 0.01
    # A few points by hand: W(1 s) = 100 - 0.4 * 3.2172^3, W(K) = W_max, W(7 s) above it.
    at = dict((round(t, 1), cwnd) for t, cwnd in trace)
    assert at[1.0] == pytest.approx(86.68, abs=0.25)
    assert at[4.2] == pytest.approx(100.0, abs=0.25)
    assert at[7.0] == pytest.approx(108.62, abs=0.25)


def test_cubic_concave_then_convex() -> None:
    cc = cubic_after_loss(100)
    trace = run_rounds(cc, 0, rounds=80)
    k = cubic_k(100, 70)
    cwnds = [cwnd for _, cwnd in trace]
    times = [t for t, _ in trace]
    growth = [b - a for a, b in pairwise(cwnds)]
    assert all(g >= 0 for g in growth)
    for i in range(1, len(growth)):
        t = times[i]
        if t < k - 0.3:
            assert cwnds[i] < 100  # below W_max, approaching it
            assert growth[i] < growth[i - 1]  # concave: slowing down
        elif t > k + 0.3:
            assert cwnds[i] > 100  # probing beyond W_max
            assert growth[i] > growth[i - 1]  # convex: speeding up
    # The plateau: around K the window hardly moves.
    near_k = [g for t, g in zip(times[1:], growth, strict=True) if abs(t - k) < 0.3]
    assert near_k
    assert max(near_k) < 0.05


def test_cubic_fast_convergence() -> None:
    # RFC 9438 4.7: a loss below the previous W_max lowers W_max to cwnd * (1 + beta) / 2.
    cc = cubic_after_loss(100)  # W_max 100, cwnd 70
    cc.on_ack(MSS, cc.cwnd, now=0, srtt=RTT)
    cwnd_seg = cc.cwnd / MSS
    assert cwnd_seg < 100
    cc.on_fast_retransmit(cc.cwnd, now=SECOND)
    assert cc._w_max == pytest.approx(cwnd_seg * (1 + BETA) / 2)
    cc.on_recovery_exit(now=SECOND)
    assert cc.cwnd == int(cwnd_seg * MSS) * 7 // 10
    cc.on_ack(1, cc.cwnd, now=2 * SECOND, srtt=RTT)
    assert cc._k == pytest.approx(cubic_k(cwnd_seg * (1 + BETA) / 2, cc.cwnd / MSS), rel=1e-3)


def test_cubic_no_fast_convergence_above_wmax() -> None:
    cc = cubic_after_loss(100)
    trace = run_rounds(cc, 0, rounds=60)  # past K: cwnd above the old W_max
    cwnd_seg = trace[-1][1]
    assert cwnd_seg > 100
    cc.on_fast_retransmit(cc.cwnd, now=10 * SECOND)
    assert cc._w_max == pytest.approx(cc.cwnd / 0.7 / MSS, rel=1e-3)
    assert cc._w_max == pytest.approx(cwnd_seg, abs=1e-3)


def test_cubic_new_epoch_above_wmax_starts_at_k_zero() -> None:
    cc = cubic_after_loss(100)
    cc.on_idle_restart(idle=10 * SECOND, rto=SECOND, now=0)  # epoch reset
    cc.cwnd = 120 * MSS  # above W_max when the next epoch starts
    cc._cwnd_float = 120.0
    cc.on_ack(1, cc.cwnd, now=SECOND, srtt=RTT)
    assert cc._w_max == pytest.approx(120.0)
    assert cc._k == 0.0


def test_cubic_timeout() -> None:
    cc = cubic_after_loss(100)
    run_rounds(cc, 0, rounds=5)
    cwnd = cc.cwnd
    cc.on_timeout(flight=cwnd, now=SECOND)
    assert cc.cwnd == MSS
    assert cc.ssthresh == cwnd * 7 // 10
    # Slow start from one segment.
    cc.on_ack(MSS, cc.cwnd, now=SECOND, srtt=RTT)
    assert cc.cwnd == 2 * MSS


def test_cubic_first_avoidance_after_timeout_has_k_zero() -> None:
    # RFC 9438 4.8: after an RTO, the first congestion avoidance stage uses K = 0 and
    # W_max = the cwnd at its start: convex growth from there, no return to the old W_max.
    cc = cubic_after_loss(100)
    cc.on_timeout(flight=cc.cwnd, now=0)  # ssthresh 49 segments
    while cc.cwnd < cc.ssthresh:
        cc.on_ack(min(2 * MSS, cc.ssthresh - cc.cwnd), cc.cwnd, now=0, srtt=RTT)
    assert cc.cwnd == 49 * MSS
    trace = run_rounds(cc, SECOND, rounds=60)
    assert cc._k == 0.0
    assert cc._w_max == pytest.approx(49.0)
    for t, cwnd in trace:
        # Early on W(t) = 49 + 0.4 t^3 is flat and the Reno-friendly estimate leads;
        # from about 4 s the cubic curve takes over.
        assert cwnd >= cubic_w(t, 0.0, 49.0) - 0.25, t
        if t >= 4.5:
            assert cwnd == pytest.approx(cubic_w(t, 0.0, 49.0), abs=0.25), t
    # W(6 s) = 49 + 0.4 * 216 = 135.4: far beyond the pre-timeout W_max of 100 (with the
    # old W_max, fast-convergence-lowered to 59.5, and K = 2.97 s it would be near 70).
    assert trace[-1][1] == pytest.approx(135.4, abs=0.5)


def test_cubic_reno_friendly_region_when_the_curve_is_flat() -> None:
    # With time frozen at the epoch start and no RTT, W_cubic stays at the epoch's cwnd:
    # all growth comes from the Reno-friendly estimate W_est (RFC 9438 4.3), which adds
    # alpha_cubic segments per cwnd of segments acknowledged.
    cc = cubic_after_loss(100)
    w_est = cc.cwnd / MSS
    for _ in range(2000):
        w_est += ALPHA * 1 / (cc.cwnd / MSS)
        cc.on_ack(MSS, cc.cwnd, now=SECOND, srtt=0)
        assert cc.cwnd / MSS >= w_est - 1.0
        assert cc.cwnd / MSS <= w_est + 1e-6
    assert cc.cwnd > 80 * MSS


def test_cubic_reno_friendly_region_with_short_rtt() -> None:
    # A small window on a short path: the cubic curve is nearly flat at W_max = 20 for
    # seconds, while Reno-like growth adds about alpha segments per round trip.
    cc = cubic_after_loss(20)
    rtt = 10_000
    w_est = cc.cwnd / MSS
    now = 0
    k = cubic_k(20, 14)
    for rnd in range(300):
        n = cc.cwnd // MSS
        for i in range(n):
            now = rnd * rtt + i * rtt // n
            w_est += ALPHA / (cc.cwnd / MSS)
            cc.on_ack(MSS, cc.cwnd, now, rtt)
            assert cc.cwnd / MSS >= w_est - 1.0
    assert w_est > 150
    assert cc.cwnd / MSS > 6 * cubic_w(now / SECOND + rtt / SECOND, k, 20)


@settings(max_examples=300)
@given(
    st.integers(min_value=4, max_value=300),
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=300_000),  # time step, µs
            st.integers(min_value=1, max_value=3 * MSS),  # bytes acked
            st.one_of(st.none(), st.integers(min_value=0, max_value=2_000_000)),  # srtt
        ),
        min_size=1,
        max_size=150,
    ),
)
def test_cubic_new_acks_never_shrink_cwnd(
    segments: int, steps: list[tuple[int, int, int | None]]
) -> None:
    cc = Cubic(MSS)
    cc.cwnd = segments * MSS
    cc.on_fast_retransmit(cc.cwnd, now=0)
    cc.on_recovery_exit(now=0)
    now = 0
    for dt, acked, srtt in steps:
        now += dt
        before = cc.cwnd
        cc.on_ack(acked, cc.cwnd, now, srtt)
        assert cc.cwnd >= before
        # RFC 9438 4.2: at most 1.5x per RTT, i.e. half a segment per segment acked.
        assert cc.cwnd - before <= acked // 2 + 1
        assert cc.cwnd >= 2 * MSS


def test_cubic_idle_restart() -> None:
    cc = cubic_after_loss(100)
    run_rounds(cc, 0, rounds=3)
    assert cc._epoch_start is not None
    cwnd = cc.cwnd
    cc.on_idle_restart(idle=SECOND, rto=SECOND, now=SECOND)
    assert cc.cwnd == cwnd
    assert cc._epoch_start is not None
    cc.on_idle_restart(idle=SECOND + 1, rto=SECOND, now=SECOND)
    assert cc.cwnd == 10 * MSS  # min(IW, cwnd): below ssthresh, so slow start again
    assert cc._epoch_start is None
    cc.on_ack(MSS, cc.cwnd, now=2 * SECOND, srtt=RTT)
    assert cc.cwnd == 11 * MSS
    assert cc._epoch_start is None


def test_cubic_idle_restart_small_window_starts_a_new_epoch() -> None:
    cc = cubic_after_loss(10)  # cwnd = ssthresh = 7 segments, under IW
    run_rounds(cc, 0, rounds=3)
    cwnd = cc.cwnd
    assert cwnd < 10 * MSS
    cc.on_idle_restart(idle=SECOND + 1, rto=SECOND, now=SECOND)
    assert cc.cwnd == cwnd
    assert cc._epoch_start is None  # a new epoch begins with the next ACK
    cc.on_ack(MSS, cc.cwnd, now=2 * SECOND, srtt=RTT)
    assert cc._epoch_start == 2 * SECOND


# ----------------------------------------------------------------------------- none


@pytest.mark.parametrize("window", [None, 5_000, 1 << 20])
def test_no_congestion_control_never_changes(window: int | None) -> None:
    cc = NoCongestionControl(MSS) if window is None else NoCongestionControl(MSS, window)
    expected = (1 << 30) if window is None else window
    assert cc.cwnd == cc.ssthresh == expected
    cc.on_ack(10 * MSS, flight=expected, now=0, srtt=RTT)
    cc.on_fast_retransmit(flight=expected, now=1)
    cc.on_ack(MSS, flight=expected, now=2, srtt=None)
    cc.on_recovery_exit(now=3)
    cc.on_timeout(flight=expected, now=4)
    cc.on_idle_restart(idle=10 * SECOND, rto=SECOND, now=5)
    assert cc.cwnd == cc.ssthresh == expected
