"""RFC 5961 section 7: a rate limit on challenge ACKs, shared by an Endpoint's connections.

A blind attacker who can make a connection send challenge ACKs (in-window RST, SYN in a
synchronized state, an ACK outside SND.UNA - MAX.SND.WND .. SND.NXT) must not be able to
turn it into an amplifier. Like Linux's net.ipv4.tcp_challenge_ack_limit the limit is a
number of challenge ACKs per second for the whole stack; an Endpoint makes one limiter and
passes it to every connection it creates. Time comes only from `now` (µs).
"""

from __future__ import annotations

from collections import Counter

from tcpstack.core.config import SECOND

# Linux's default tcp_challenge_ack_limit (since 4.7: 1000 per second).
DEFAULT_CHALLENGE_ACK_LIMIT = 1000


class ChallengeAckLimiter:
    """At most `limit` challenge ACKs per one-second window of `now`.

    `sent` and `suppressed` count the decisions; when `stats` is given (an Endpoint's
    counters) they are also added there as challenge_ack.sent / challenge_ack.rate_limited.
    """

    __slots__ = (
        "_count",
        "_window_start",
        "limit",
        "peak_per_window",
        "sent",
        "stats",
        "suppressed",
    )

    def __init__(
        self, limit: int = DEFAULT_CHALLENGE_ACK_LIMIT, *, stats: Counter[str] | None = None
    ) -> None:
        if limit < 0:
            raise ValueError(f"challenge ACK limit {limit} must not be negative")
        self.limit = limit
        self.stats = stats
        self._window_start: int | None = None
        self._count = 0
        self.sent = 0
        self.suppressed = 0
        self.peak_per_window = 0  # the most challenge ACKs allowed in any one window

    def allow(self, now: int) -> bool:
        """Whether one more challenge ACK may go out at `now`; counts the decision."""
        start = self._window_start
        if start is None or now - start >= SECOND or now < start:
            self._window_start = now
            self._count = 0
        if self._count >= self.limit:
            self.suppressed += 1
            if self.stats is not None:
                self.stats["challenge_ack.rate_limited"] += 1
            return False
        self._count += 1
        self.peak_per_window = max(self.peak_per_window, self._count)
        self.sent += 1
        if self.stats is not None:
            self.stats["challenge_ack.sent"] += 1
        return True


__all__ = ["DEFAULT_CHALLENGE_ACK_LIMIT", "ChallengeAckLimiter"]
