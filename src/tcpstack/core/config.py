"""Tunables of a connection, with the defaults of RFC 9293, RFC 6298 and Linux.

Every time is an int of microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

SECOND = 1_000_000
MILLISECOND = 1_000


@dataclass(frozen=True, slots=True)
class Config:
    # Our MSS option: the driver's MTU minus 40 bytes of IPv4 and TCP headers.
    mss: int = 1460
    # RFC 9293 3.7.1 (MUST-15): without an MSS option the peer's MSS is 536 (IPv4).
    default_peer_mss: int = 536
    # The smallest peer MSS we believe; smaller values are raised to it, like Linux's
    # net.ipv4.tcp_min_snd_mss (48), so a peer cannot make us send 1-byte segments.
    min_peer_mss: int = 48
    send_buffer_size: int = 262144
    # Window scaling (RFC 7323) lets the receive buffer exceed 65535.
    receive_buffer_size: int = 262144
    # Maximum segment lifetime. TIME_WAIT lasts 2*MSL: 60 s with 30 s, like Linux's
    # fixed TCP_TIMEWAIT_LEN (RFC 9293 3.4.2 suggests 2 minutes for MSL).
    msl: int = 30 * SECOND
    # RFC 6298 2.1: initial RTO 1 s; 2.4: minimum 1 s (Linux uses 200 ms); 2.5: a
    # maximum of at least 60 s (Linux: 120 s).
    initial_rto: int = 1 * SECOND
    min_rto: int = 1 * SECOND
    max_rto: int = 120 * SECOND
    # Retransmission limits (RFC 9293 3.8.3 R2), as Linux's sysctls: tcp_syn_retries=6,
    # tcp_synack_retries=5 count retransmissions; tcp_retries2=15 is turned into a time
    # budget the way Linux does it (about 924.6 s).
    syn_retries: int = 6
    synack_retries: int = 5
    data_retries: int = 15
    # RFC 9293 3.8.3 R1: after this many retransmissions the connection tells its
    # tracer that the path may be broken (Linux's tcp_retries1 = 3).
    r1_retries: int = 3
    # TCP_USER_TIMEOUT (RFC 5482): give up when data stays unacknowledged this long;
    # 0 = off (the R2 budget applies).
    user_timeout: int = 0
    # RFC 7323 options and SACK (RFC 2018), offered on SYN, used when both agree.
    window_scaling: bool = True
    timestamps: bool = True
    sack: bool = True
    # "newreno", "cubic" (Linux's default) or "none" (a fixed huge window, for tests).
    congestion_control: str = "cubic"
    # Nagle's algorithm (RFC 9293 3.7.4) unless TCP_NODELAY.
    nodelay: bool = False
    # Delayed ACK (RFC 9293 3.8.6.3, RFC 5681 4.2): ACK every second full-sized
    # segment, or after this delay (Linux's minimum ATO is 40 ms; the RFC allows 500).
    delayed_ack: bool = True
    delayed_ack_timeout: int = 40 * MILLISECOND
    # TCP_QUICKACK: acknowledge every segment at once.
    quickack: bool = False
    # Out-of-order data held for reassembly: bytes are bounded by the receive buffer,
    # blocks (gaps) by this.
    max_reassembly_blocks: int = 64

    @property
    def time_wait_duration(self) -> int:
        return 2 * self.msl

    def with_changes(self, **changes: object) -> Config:
        """A copy with some fields changed (dataclasses.replace, typed loosely)."""
        return replace(self, **changes)  # type: ignore[arg-type]


# RFC 9293 alone: no RFC 7323/2018 options, no congestion control, no delayed ACK and no
# Nagle. Exact-segment tests of the basic state machine use it so each segment they
# expect comes from RFC 9293 3.10 and nothing else.
PLAIN = Config(
    send_buffer_size=65536,
    receive_buffer_size=65535,
    window_scaling=False,
    timestamps=False,
    sack=False,
    congestion_control="none",
    nodelay=True,
    delayed_ack=False,
)
