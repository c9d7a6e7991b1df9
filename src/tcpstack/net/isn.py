"""Initial sequence numbers for real networks: RFC 6528's keyed hash.

ISN = M + F(localip, localport, remoteip, remoteport, secretkey), where M is a timer
ticking every 4 microseconds (RFC 9293 3.4.1) and F a keyed hash (here BLAKE2s with a
random 16-byte key chosen per generator). Off-path attackers cannot guess the ISN of a
connection, and a new incarnation of a 4-tuple still starts above the old one's.
"""

from __future__ import annotations

import hashlib
import secrets

from tcpstack.core.connection import FourTuple

__all__ = ["Rfc6528Isn"]


class Rfc6528Isn:
    """An `IsnGenerator` for Endpoint/Connection: call with (4-tuple, now in µs)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(16)

    def __call__(self, four_tuple: FourTuple, now: int) -> int:
        local_ip, local_port, remote_ip, remote_port = four_tuple
        text = f"{local_ip}|{local_port}|{remote_ip}|{remote_port}".encode()
        digest = hashlib.blake2s(text, key=self._key, digest_size=4).digest()
        return (now // 4 + int.from_bytes(digest, "big")) & 0xFFFFFFFF
