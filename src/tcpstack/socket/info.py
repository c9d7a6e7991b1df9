"""TCP_INFO for tcpstack sockets: a typed Python snapshot, not Linux's `struct tcp_info`.

`Socket.getsockopt(IPPROTO_TCP, TCP_INFO)` (or `Socket.tcp_info()`) returns a `TcpInfo`
object. Unlike Linux, whose TCP_INFO is a packed C struct read with `buflen`, this is a
frozen dataclass with names: no struct.unpack, and times in µs, sizes in bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tcpstack.core.connection import Connection
from tcpstack.core.seq import seq_sub

__all__ = ["TcpInfo", "snapshot"]


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """One connection's state and counters at `now` (all times in µs, sizes in bytes).

    Fields that Linux reports in packets (unacked, cwnd) are bytes here; `timers` maps
    each armed timer's name (retransmit, persist, delayed_ack, keepalive, fin_wait_2,
    time_wait) to the time left until it fires.
    """

    state: str  # the State's name as ss prints it: "ESTABLISHED", "LISTEN", ...
    now: int = 0
    rto: int = 0
    srtt: int | None = None  # None until the first RTT sample
    rttvar: int = 0
    cwnd: int = 0
    ssthresh: int = 0
    snd_mss: int = 0  # payload bytes per full segment we send (after options)
    snd_wnd: int = 0  # the peer's offered window
    rcv_wnd: int = 0  # the window we offer
    unacked: int = 0  # bytes sent and not yet acknowledged (SYN/FIN count as one)
    send_buffered: int = 0  # bytes in the send buffer (queued or unacknowledged)
    receive_buffered: int = 0  # bytes received in order and not yet read
    retransmits: int = 0  # consecutive retransmission timeouts of the current head
    total_retransmits: int = 0
    keepalive_probes_out: int = 0  # probes sent since the peer was last heard
    timers: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    close_reason: str | None = None  # why it reached CLOSED, once it has

    @property
    def rtt(self) -> int | None:
        """Linux's tcpi_rtt is the smoothed RTT: an alias of `srtt`."""
        return self.srtt


def snapshot(conn: Connection, now: int) -> TcpInfo:
    """A TcpInfo of `conn` as seen at `now`."""
    timers = {name: max(deadline - now, 0) for name, deadline in conn.timers().items()}
    return TcpInfo(
        state=conn.state.value,
        now=now,
        rto=conn.rto,
        srtt=conn.srtt,
        rttvar=conn.rttvar,
        cwnd=conn.cwnd,
        ssthresh=conn.ssthresh,
        snd_mss=conn.effective_mss,
        snd_wnd=conn.snd_wnd,
        rcv_wnd=conn.rcv_wnd,
        unacked=seq_sub(conn.snd_max, conn.snd_una),
        send_buffered=conn.send_buffered,
        receive_buffered=conn.receive_buffered,
        retransmits=conn.retransmissions,
        total_retransmits=conn.total_retransmissions,
        keepalive_probes_out=conn.keepalive_probes_out,
        timers=MappingProxyType(timers),
        close_reason=None if conn.close_reason is None else conn.close_reason.value,
    )
