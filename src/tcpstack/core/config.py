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
    # RFC 9293 3.7.1 (MUST-15): without an MSS option the peer's MSS is 536 (576 - 40)
    # over IPv4 and 1220 (1280 - 60) over IPv6; see default_peer_mss_for.
    default_peer_mss: int = 536
    default_peer_mss_ipv6: int = 1220
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
    # Probes into a closed window that an orphaned connection (closed by the
    # application) sends before it gives up: Linux's tcp_orphan_retries (0 means 8).
    # None = RFC 9293 3.8.6.1 (MUST-37): keep probing while the peer answers.
    orphan_retries: int | None = 8
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
    # TCP keepalive (RFC 9293 3.8.4; seed C15): off by default (MUST-24's "MUST default
    # to off"); after `keepalive_idle` without receiving any segment, a probe every
    # `keepalive_interval`; `keepalive_count` unanswered probes end the connection.
    # Linux's defaults: 7200 s / 75 s / 9 (tcp_keepalive_time/intvl/probes).
    keepalive: bool = False
    keepalive_idle: int = 7200 * SECOND
    keepalive_interval: int = 75 * SECOND
    keepalive_count: int = 9
    # Send one garbage octet in each probe, for peers that ignore zero-length probes
    # (RFC 9293 3.8.4 mentions such implementations).
    keepalive_garbage_octet: bool = False
    # SO_LINGER: None = off. 0 = close() resets the connection (RST, no TIME_WAIT). N > 0
    # = a blocking close() waits up to N µs for the FIN to be acknowledged; like Linux,
    # the connection then closes normally in the background (no RST).
    linger: int | None = None
    # FIN_WAIT_2 of a connection the application has closed (an orphan): Linux's
    # tcp_fin_timeout / TCP_LINGER2, 60 s. None = RFC 9293 (wait forever). A half-closed
    # connection the application still holds (shutdown) always waits forever.
    fin_wait_2_timeout: int | None = 60 * SECOND
    # RFC 9293 3.6.1's half-duplex close, as Linux does it: close() with received data
    # unread, or text arriving after close(), resets the connection so the peer learns
    # that data was lost (RFC 2525 2.17). False = keep receiving after close.
    half_duplex_close: bool = True
    # RFC 9293 3.10.7.4 answers every unacceptable segment with an ACK; Linux sends at
    # most one such ACK per connection per net.ipv4.tcp_invalid_ratelimit (500 ms) for
    # segments without text, so a peer (or two confused stacks) cannot start an ACK
    # storm. The same interval, on the same per-connection clock, limits RFC 5961
    # challenge ACKs (with text or not) before the Endpoint's stack-wide limit, as in
    # Linux's tcp_send_challenge_ack (RFC 5961 7). 0 = off: every unacceptable segment
    # is ACKed, as the RFC says, and challenge ACKs meet only the stack-wide limit.
    invalid_ack_ratelimit: int = 500 * MILLISECOND

    def default_peer_mss_for(self, remote_ip: str) -> int:
        """The peer's MSS when its SYN has no MSS option (MUST-15), by address family."""
        return self.default_peer_mss_ipv6 if ":" in remote_ip else self.default_peer_mss

    @property
    def time_wait_duration(self) -> int:
        return 2 * self.msl

    def with_changes(self, **changes: object) -> Config:
        """A copy with some fields changed (dataclasses.replace, typed loosely)."""
        return replace(self, **changes)  # type: ignore[arg-type]


# Go's net package: keepalive on for dialed and accepted connections, 15 s idle and
# 15 s interval (seed C16); the probe count stays the operating system's (9 on Linux).
GO_KEEPALIVE = {
    "keepalive": True,
    "keepalive_idle": 15 * SECOND,
    "keepalive_interval": 15 * SECOND,
    "keepalive_count": 9,
}


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
    fin_wait_2_timeout=None,
    half_duplex_close=False,
    orphan_retries=None,
    invalid_ack_ratelimit=0,
)
