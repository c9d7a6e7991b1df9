"""Pluggable congestion control: NewReno (RFC 5681), CUBIC (RFC 9438) and a no-op.

The connection owns loss detection and recovery (fast retransmit, NewReno partial
ACKs, SACK recovery); a controller only decides cwnd and ssthresh from what the
connection tells it. All sizes are bytes; times are µs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class CongestionControl(Protocol):
    """What a connection asks of its congestion controller."""

    name: str
    cwnd: int
    ssthresh: int

    def on_ack(self, acked: int, flight: int, now: int, srtt: int | None) -> None:
        """New data acknowledged outside loss recovery."""

    def on_fast_retransmit(self, flight: int, now: int) -> None:
        """Loss detected by duplicate ACKs or SACK: enter recovery."""

    def on_recovery_exit(self, now: int) -> None:
        """Recovery ended (a full ACK covered the recovery point)."""

    def on_timeout(self, flight: int, now: int) -> None:
        """The retransmission timer expired."""

    def on_idle_restart(self, idle: int, rto: int, now: int) -> None:
        """Sending resumes after `idle` µs without sending (RFC 5681 4.1)."""


def initial_window(mss: int) -> int:
    """Linux's initial window of 10 segments (RFC 6928)."""
    return 10 * mss


class NewReno:
    """RFC 5681 slow start and congestion avoidance with RFC 6582 recovery sizing."""

    name = "newreno"
    __slots__ = ("_avoidance_acked", "cwnd", "mss", "ssthresh")

    def __init__(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = initial_window(mss)
        # RFC 5681 3.1: ssthresh starts arbitrarily high.
        self.ssthresh = 1 << 30
        self._avoidance_acked = 0

    def on_ack(self, acked: int, flight: int, now: int, srtt: int | None) -> None:
        if self.cwnd < self.ssthresh:
            # RFC 5681 3.1 (with RFC 3465's L = 2*SMSS): grow by the bytes acknowledged.
            self.cwnd += min(acked, 2 * self.mss)
        else:
            # Congestion avoidance: about one SMSS per RTT (RFC 5681 equation 3,
            # counted in bytes acknowledged as RFC 3465 recommends).
            self._avoidance_acked += acked
            if self._avoidance_acked >= self.cwnd:
                self._avoidance_acked -= self.cwnd
                self.cwnd += self.mss

    def on_fast_retransmit(self, flight: int, now: int) -> None:
        # RFC 5681 equation 4: ssthresh = max(FlightSize / 2, 2*SMSS); RFC 6582 3.2 step 2.
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh + 3 * self.mss

    def on_recovery_exit(self, now: int) -> None:
        # RFC 6582 3.2 step 3: deflate the window to ssthresh.
        self.cwnd = self.ssthresh
        self._avoidance_acked = 0

    def on_timeout(self, flight: int, now: int) -> None:
        # RFC 5681 equation 4 and 3.1: cwnd drops to the loss window of one segment.
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._avoidance_acked = 0

    def on_idle_restart(self, idle: int, rto: int, now: int) -> None:
        # RFC 5681 4.1: after an idle period longer than RTO, restart from
        # min(IW, cwnd) (Linux halves per RTO idle; the RFC rule is the simpler bound).
        if idle > rto:
            self.cwnd = min(self.cwnd, initial_window(self.mss))


class Cubic:
    """CUBIC (RFC 9438): window growth as a cubic function of time since the last loss.

    Window arithmetic is in segments as floats (the cube root has no integer form);
    cwnd is kept in bytes. beta_cubic = 0.7, C = 0.4 (RFC 9438 4.6, 5).
    """

    name = "cubic"
    C = 0.4
    BETA = 0.7
    __slots__ = ("_cwnd_float", "_epoch_start", "_k", "_w_est", "_w_max", "cwnd", "mss", "ssthresh")

    def __init__(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = initial_window(mss)
        self.ssthresh = 1 << 30
        self._w_max = 0.0  # segments, window before the last reduction
        self._k = 0.0  # seconds
        self._epoch_start: int | None = None
        self._w_est = 0.0  # Reno-friendly estimate (RFC 9438 4.3)
        self._cwnd_float = float(self.cwnd) / mss

    def on_ack(self, acked: int, flight: int, now: int, srtt: int | None) -> None:
        mss = self.mss
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, 2 * mss)
            self._cwnd_float = self.cwnd / mss
            return
        if self._epoch_start is None:
            # RFC 9438 4.2: a new congestion avoidance epoch starts now.
            self._epoch_start = now
            cwnd_seg = self.cwnd / mss
            if self._w_max < cwnd_seg:
                self._w_max = cwnd_seg
                self._k = 0.0
            else:
                self._k = ((self._w_max - cwnd_seg) / self.C) ** (1.0 / 3.0)
            self._w_est = cwnd_seg
        rtt = (srtt if srtt is not None else 100_000) / 1_000_000
        t = (now - self._epoch_start) / 1_000_000
        target = self.C * (t + rtt - self._k) ** 3 + self._w_max  # RFC 9438 equation 1
        cwnd_seg = self._cwnd_float
        # RFC 9438 4.3: the Reno-friendly region, alpha = 3(1-beta)/(1+beta).
        alpha = 3.0 * (1.0 - self.BETA) / (1.0 + self.BETA)
        self._w_est += alpha * (acked / mss) / cwnd_seg
        if self._w_est > target:
            # Grow toward W_est; never shrink on a new ACK (a falling srtt can lower the
            # target below a cwnd that W_est has not reached yet).
            if self._w_est > cwnd_seg:
                cwnd_seg += (acked / mss) * (self._w_est - cwnd_seg) / cwnd_seg
        elif target > cwnd_seg:
            # RFC 9438 4.4/4.5: grow by (target - cwnd)/cwnd per segment acknowledged,
            # at most 1.5x per RTT.
            target = min(target, 1.5 * cwnd_seg)
            cwnd_seg += (acked / mss) * (target - cwnd_seg) / cwnd_seg
        self._cwnd_float = max(cwnd_seg, 2.0)
        self.cwnd = max(int(self._cwnd_float * mss), 2 * mss)

    def _reduce(self, flight: int) -> None:
        cwnd_seg = self.cwnd / self.mss
        # RFC 9438 4.7 fast convergence.
        if cwnd_seg < self._w_max:
            self._w_max = cwnd_seg * (1.0 + self.BETA) / 2.0
        else:
            self._w_max = cwnd_seg
        # cwnd * BETA in exact integers (int(2600 * 0.7) is 1819 in floating point).
        self.ssthresh = max(self.cwnd * 7 // 10, 2 * self.mss)
        self._epoch_start = None

    def on_fast_retransmit(self, flight: int, now: int) -> None:
        self._reduce(flight)
        self.cwnd = self.ssthresh
        self._cwnd_float = self.cwnd / self.mss

    def on_recovery_exit(self, now: int) -> None:
        self.cwnd = self.ssthresh
        self._cwnd_float = self.cwnd / self.mss

    def on_timeout(self, flight: int, now: int) -> None:
        # RFC 9438 4.8: on RTO, reduce like a loss, then cwnd to one segment. The first
        # congestion avoidance stage after it uses K = 0 and W_max = the cwnd at its start:
        # clearing W_max makes the next epoch start do exactly that.
        self._reduce(flight)
        self._w_max = 0.0
        self.cwnd = self.mss
        self._cwnd_float = 1.0

    def on_idle_restart(self, idle: int, rto: int, now: int) -> None:
        if idle > rto:
            self.cwnd = min(self.cwnd, initial_window(self.mss))
            self._cwnd_float = self.cwnd / self.mss
            self._epoch_start = None


class NoCongestionControl:
    """A window that never changes: for exact-segment tests of other mechanisms."""

    name = "none"
    __slots__ = ("cwnd", "mss", "ssthresh")

    def __init__(self, mss: int, window: int = 1 << 30) -> None:
        self.mss = mss
        self.cwnd = window
        self.ssthresh = window

    def on_ack(self, acked: int, flight: int, now: int, srtt: int | None) -> None:
        return None

    def on_fast_retransmit(self, flight: int, now: int) -> None:
        return None

    def on_recovery_exit(self, now: int) -> None:
        return None

    def on_timeout(self, flight: int, now: int) -> None:
        return None

    def on_idle_restart(self, idle: int, rto: int, now: int) -> None:
        return None


CONTROLLERS: dict[str, Callable[[int], CongestionControl]] = {
    "newreno": NewReno,
    "cubic": Cubic,
    "none": NoCongestionControl,
}


def make_controller(name: str, mss: int) -> CongestionControl:
    """A fresh controller by name ('newreno', 'cubic', 'none')."""
    factory = CONTROLLERS.get(name)
    if factory is None:
        raise ValueError(f"unknown congestion control {name!r}; one of {sorted(CONTROLLERS)}")
    return factory(mss)
