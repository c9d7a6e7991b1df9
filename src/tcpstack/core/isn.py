"""RFC 6528 initial sequence numbers: ISN = M + F(localip, localport, remoteip, remoteport,
secretkey).

M is a clock that ticks every 4 µs (RFC 6528 3, as RFC 793 asked); F is a keyed hash of
the 4-tuple (BLAKE2s keyed with the secret), so an off-path attacker can neither predict
an ISN nor learn one connection's from another's (RFC 9293 3.4.1, MUST-8 and MUST-9).
The core never makes the secret: drivers pass one in (from the `secrets` module), and
time comes only from `now`.
"""

from __future__ import annotations

import hashlib

from tcpstack.core.connection import FourTuple
from tcpstack.core.seq import MASK

# RFC 6528 3: M is a timer that ticks every 4 microseconds.
CLOCK_TICK = 4
MIN_SECRET_BYTES = 16


class KeyedIsnGenerator:
    """An IsnGenerator: call it with (4-tuple, now) to get an ISN."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"ISN secret must be at least {MIN_SECRET_BYTES} bytes")
        # BLAKE2s takes keys of up to 32 bytes; a longer secret is hashed down first.
        self._secret = secret if len(secret) <= 32 else hashlib.blake2s(secret).digest()

    def offset(self, four_tuple: FourTuple) -> int:
        """F(localip, localport, remoteip, remoteport, secretkey): 32 bits."""
        local_ip, local_port, remote_ip, remote_port = four_tuple
        message = f"{local_ip}|{local_port}|{remote_ip}|{remote_port}".encode()
        digest = hashlib.blake2s(message, key=self._secret, digest_size=4).digest()
        return int.from_bytes(digest, "big")

    def __call__(self, four_tuple: FourTuple, now: int) -> int:
        return (now // CLOCK_TICK + self.offset(four_tuple)) & MASK


__all__ = ["CLOCK_TICK", "KeyedIsnGenerator"]
