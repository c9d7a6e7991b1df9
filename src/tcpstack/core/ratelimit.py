"""RFC 5961 section 7: a rate limit on challenge ACKs, shared by an Endpoint's connections.

A blind attacker who can make a connection send challenge ACKs (in-window RST, SYN in a
synchronized state, an ACK outside SND.UNA - MAX.SND.WND .. SND.NXT) must not be able to
turn it into an amplifier. Like Linux's net.ipv4.tcp_challenge_ack_limit the limit is a
number of challenge ACKs per second for the whole stack; an Endpoint makes one limiter and
passes it to every connection it creates. Time comes only from `now` (µs).

It is the second of two limits, as in Linux's tcp_send_challenge_ack: a connection first
applies its own (Connection._challenge_ack: one challenge ACK per
Config.invalid_ack_ratelimit, 500 ms), and only the challenge ACKs that pass it reach
this limiter (the Endpoint's compact TIME_WAIT entries keep a clock of their own for
the same interval, as Linux's tw_last_oow_ack_time, see core/timewait.py). Linux 6.0 and later
leave the stack-wide limit off by default (tcp_challenge_ack_limit = INT_MAX; a counter
shared by every connection is a side channel, and per-connection limits bound each
connection anyway). tcpstack keeps it at Linux's earlier default of 1000 a second as the
stack's share of RFC 5961 7's ACK throttling (which an implementation SHOULD include),
and counts exactly (Linux draws each second's budget at random between half and one and
a half times the limit; the core has no randomness).
"""

from __future__ import annotations

from collections import Counter

from tcpstack.core.config import SECOND

# Linux's default tcp_challenge_ack_limit from 2016 ("tcp: make challenge acks less
# predictable", 1000 per second) until 6.0 made the default INT_MAX (off).
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
