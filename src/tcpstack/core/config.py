"""Tunables of a connection, with the defaults of RFC 9293, RFC 6298 and Linux.

Every time is an int of microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

SECOND = 1_000_000
MILLISECOND = 1_000


@dataclass(frozen=True, slots=True)
class Config:
    # Our MSS option: the driver's MTU minus 40 bytes of IPv4 and TCP headers.
    mss: int = 1460
    # RFC 9293 3.7.1 (MUST-15): without an MSS option the peer's MSS is 536 (IPv4).
    default_peer_mss: int = 536
    send_buffer_size: int = 65536
    # Without window scaling the window field tops out at 65535 (RFC 9293 3.1).
    receive_buffer_size: int = 65535
    # Maximum segment lifetime. TIME_WAIT lasts 2*MSL: 60 s with 30 s, like Linux's
    # fixed TCP_TIMEWAIT_LEN (RFC 9293 3.4.2 suggests 2 minutes for MSL).
    msl: int = 30 * SECOND
    # RFC 6298 2.1: initial RTO 1 s; 2.4: minimum 1 s; 2.5: a maximum of at least 60 s.
    initial_rto: int = 1 * SECOND
    min_rto: int = 1 * SECOND
    max_rto: int = 120 * SECOND
    # Retransmission limits (RFC 9293 3.8.3 R2), counted as in Linux's sysctls:
    # tcp_syn_retries=6, tcp_synack_retries=5, tcp_retries2=15.
    syn_retries: int = 6
    synack_retries: int = 5
    data_retries: int = 15

    @property
    def time_wait_duration(self) -> int:
        return 2 * self.msl
