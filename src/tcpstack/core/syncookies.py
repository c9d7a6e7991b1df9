"""SYN cookies (RFC 4987 3.6): a listener whose SYN backlog is full keeps no state for a
new SYN; its SYN,ACK's ISN encodes what the handshake needs, and the returning ACK
proves it.

Cookie layout (32 bits), in the manner of Linux's syncookies:

    bits 31..27  t mod 32, t = now // COOKIE_PERIOD (a 64 s counter)
    bits 26..24  index of the peer's MSS in MSS_TABLE (rounded down)
    bits 23..0   keyed hash (BLAKE2s, key = the driver's secret) of the 4-tuple, the
                 peer's ISN, t and the MSS index

The ACK is valid when SEG.ACK - 1 is a cookie whose hash matches, made at most
MAX_AGE_PERIODS counters ago. It is checked at all only while the listener has sent a
cookie within the last RECENT_OVERFLOW_WINDOW (Linux's tcp_synq_no_recent_overflow):
a listener that sent none answers an ACK with RST, as without cookies, so a blind
attacker cannot make a quiet listener hash every ACK it sends, nor open a connection
with a cookie the listener never handed out (Linux commit cb44a08f of 2019, "tcp:
tighten acceptance of ACKs not matching a child socket": such an ACK should not even be
checked).

The 32-bit ISN has no room for the other options of the SYN, so, as Linux does
(cookie_init_timestamp), they travel in the low six bits of the SYN,ACK's TSval when
the SYN carried timestamps (RFC 7323); the peer echoes TSval in the TSecr of its ACK:

    bits 3..0   the peer's window shift (0..14), or 15 = no window scale option
    bit  4      SACK-permitted (RFC 2018)
    bit  5      reserved (Linux: ECN), sent as 0 and ignored

The bits are not covered by the hash: whoever can return a valid cookie could have sent
a SYN with any options anyway. To keep TSval from running ahead of the connection's
timestamp clock (the peer's PAWS would then drop our next segments), the encoded value
is never above the clock: it steps back 64 ticks when setting the bits would raise it.
Without timestamps in the SYN the cookie SYN,ACK offers only MSS, and the connection
runs without window scaling, SACK and timestamps.
"""

from __future__ import annotations

import hashlib

from tcpstack.core.config import SECOND
from tcpstack.core.connection import FourTuple
from tcpstack.core.seq import MASK, seq_gt

COOKIE_PERIOD = 64 * SECOND
MAX_AGE_PERIODS = 2  # a cookie stays valid for the counter it was made in and the next
# How long after its last cookie a listener still checks ACKs as cookies: the longest
# a cookie stays valid (made at the start of a counter, it lasts two whole counters).
# Linux defines TCP_SYNCOOKIE_VALID the same way, MAX_SYNCOOKIE_AGE (2) times
# TCP_SYNCOOKIE_PERIOD (60 s) = 120 s; with 64 s counters here it is 128 s, so the
# gate never refuses a cookie the listener sent and check() still accepts.
RECENT_OVERFLOW_WINDOW = MAX_AGE_PERIODS * COOKIE_PERIOD
# MSS values a cookie can carry (Linux's msstab for IPv4 plus common ones), ascending.
MSS_TABLE = (64, 536, 1220, 1300, 1400, 1440, 1460, 8960)
_HASH_MASK = (1 << 24) - 1
# The TSval bits that carry the SYN's options (see above).
TS_OPTION_BITS = 6
TS_OPTION_MASK = (1 << TS_OPTION_BITS) - 1
_NO_WSCALE = 0xF
_SACK_BIT = 1 << 4
_MAX_WSCALE = 14  # RFC 7323 2.3


def cookies_sent_recently(last_cookie_sent: int | None, now: int) -> bool:
    """Whether a listener whose last cookie left at `last_cookie_sent` (None = never)
    checks an ACK at `now` as a cookie: last <= now <= last + RECENT_OVERFLOW_WINDOW,
    both ends included, as Linux's tcp_synq_no_recent_overflow (whose lower bound is a
    second earlier, for a race between CPUs that a sans-I/O core does not have)."""
    if last_cookie_sent is None:
        return False
    return 0 <= now - last_cookie_sent <= RECENT_OVERFLOW_WINDOW


def encode_ts_options(window_scale: int | None, sack_permitted: bool) -> int:
    """The six TSval bits for a SYN's window scale (None = absent) and SACK-permitted.
    A shift above 14 is recorded as 14, the value RFC 7323 2.3 says to use."""
    bits = _NO_WSCALE if window_scale is None else min(window_scale, _MAX_WSCALE)
    return bits | (_SACK_BIT if sack_permitted else 0)


def decode_ts_options(tsecr: int) -> tuple[int | None, bool]:
    """(peer window shift or None, SACK-permitted) from the TSecr of a cookie's ACK."""
    wscale = tsecr & 0xF
    return (None if wscale == _NO_WSCALE else min(wscale, _MAX_WSCALE)), bool(tsecr & _SACK_BIT)


def cookie_tsval(ts_clock: int, bits: int) -> int:
    """TSval for a cookie SYN,ACK: `ts_clock` (the value the connection's timestamp
    clock has now) with its low six bits replaced by `bits`, never above `ts_clock`."""
    value = (ts_clock & ~TS_OPTION_MASK & MASK) | (bits & TS_OPTION_MASK)
    if seq_gt(value, ts_clock):
        value = (value - (TS_OPTION_MASK + 1)) & MASK
    return value


class SynCookies:
    """Make and check SYN cookies with one secret (given by the driver)."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("SYN cookie secret must be at least 16 bytes")
        self._secret = secret if len(secret) <= 32 else hashlib.blake2s(secret).digest()

    def _hash(self, four_tuple: FourTuple, peer_isn: int, counter: int, mss_index: int) -> int:
        local_ip, local_port, remote_ip, remote_port = four_tuple
        message = (
            f"{local_ip}|{local_port}|{remote_ip}|{remote_port}|{peer_isn}|{counter}|{mss_index}"
        ).encode()
        digest = hashlib.blake2s(message, key=self._secret, digest_size=3).digest()
        return int.from_bytes(digest, "big")

    @staticmethod
    def mss_index(mss: int) -> int:
        """The largest table entry not above `mss` (entry 0 for anything smaller)."""
        index = 0
        for i, value in enumerate(MSS_TABLE):
            if value <= mss:
                index = i
        return index

    def make(self, four_tuple: FourTuple, peer_isn: int, peer_mss: int, now: int) -> int:
        """The ISN for the SYN,ACK answering a SYN with `peer_isn` and `peer_mss`."""
        counter = now // COOKIE_PERIOD
        index = self.mss_index(peer_mss)
        digest = self._hash(four_tuple, peer_isn, counter, index)
        return ((counter & 31) << 27 | index << 24 | digest) & MASK

    def check(self, four_tuple: FourTuple, peer_isn: int, cookie: int, now: int) -> int | None:
        """The MSS a valid cookie carries, or None for a forged or expired one."""
        counter_now = now // COOKIE_PERIOD
        age = (counter_now - (cookie >> 27)) & 31
        if age >= MAX_AGE_PERIODS:
            return None
        counter = counter_now - age
        index = (cookie >> 24) & 7
        if self._hash(four_tuple, peer_isn, counter, index) != cookie & _HASH_MASK:
            return None
        return MSS_TABLE[index]


__all__ = [
    "COOKIE_PERIOD",
    "MSS_TABLE",
    "RECENT_OVERFLOW_WINDOW",
    "TS_OPTION_BITS",
    "SynCookies",
    "cookie_tsval",
    "cookies_sent_recently",
    "decode_ts_options",
    "encode_ts_options",
]
