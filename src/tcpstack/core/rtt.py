"""Retransmission timeout computation (RFC 6298)."""

from __future__ import annotations


class RttEstimator:
    """SRTT, RTTVAR and RTO as RFC 6298 section 2 computes them, in microseconds.

    Backoff (section 5.5) doubles the RTO on each expiry; a new sample (which Karn's rule
    only takes from segments that were never retransmitted) resets it.
    """

    __slots__ = ("_backoff", "max_rto", "min_rto", "rto", "rttvar", "srtt")

    # RFC 6298 2.1-2.3 constants: alpha = 1/8, beta = 1/4, K = 4. Clock granularity G is
    # a microsecond here, so the max(G, K*RTTVAR) term reduces to K*RTTVAR.
    K = 4

    def __init__(self, initial_rto: int, min_rto: int, max_rto: int) -> None:
        self.srtt: int | None = None
        self.rttvar: int = 0
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.rto = initial_rto
        self._backoff = 0

    def sample(self, rtt: int) -> None:
        """Fold one round-trip measurement (µs) into the estimate (RFC 6298 2.2, 2.3)."""
        rtt = max(rtt, 1)
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt // 2
        else:
            self.rttvar = (3 * self.rttvar + abs(self.srtt - rtt)) // 4
            self.srtt = (7 * self.srtt + rtt) // 8
        self._backoff = 0
        self.rto = self._bounded(self.srtt + max(1, self.K * self.rttvar))

    def back_off(self) -> None:
        """RFC 6298 5.5: on expiry, RTO <- RTO * 2, capped at the maximum."""
        self._backoff += 1
        self.rto = self._bounded(self.rto * 2)

    @property
    def backoffs(self) -> int:
        return self._backoff

    def _bounded(self, rto: int) -> int:
        # RFC 6298 2.4 (minimum) and 2.5 (a maximum of at least 60 s may be placed).
        return min(max(rto, self.min_rto), self.max_rto)
