"""One TCP stack on one IP address: demultiplexing, listeners, timers (sans-I/O).

The Endpoint has the Connection's shape one level up: bytes or segments in
(`receive_bytes`, `receive_datagram`), `handle_timer`, and `datagrams_to_send` /
`next_timer` out. It owns listeners and their backlog, answers segments that no
connection takes (RFC 9293 3.10.7.1 and 3.10.7.2), picks ephemeral ports, and keeps one
heap of every connection's next deadline so a timer costs O(log n), not a scan.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import lru_cache

from tcpstack.core.codec import decode_segment
from tcpstack.core.config import MILLISECOND, Config
from tcpstack.core.connection import (
    Connection,
    FourTuple,
    IsnGenerator,
    reset_for,
    timestamp_offset,
    window_shift_for,
)
from tcpstack.core.errors import AddressInUse, InvalidOperation, MalformedSegment
from tcpstack.core.icmp import IcmpReport
from tcpstack.core.ratelimit import DEFAULT_CHALLENGE_ACK_LIMIT, ChallengeAckLimiter
from tcpstack.core.reassembly import DEFAULT_ENDPOINT_REASSEMBLY_BYTES, ReassemblyBudget
from tcpstack.core.segment import Datagram, Flag, Options, Segment
from tcpstack.core.seq import MASK, seq_add, seq_gt
from tcpstack.core.state import State, Trigger
from tcpstack.core.syncookies import (
    SynCookies,
    cookie_tsval,
    cookies_sent_recently,
    decode_ts_options,
    encode_ts_options,
)
from tcpstack.core.timewait import TimeWaitEntry, TimeWaitTable, TimeWaitVerdict
from tcpstack.core.trace import TraceKind, Tracer, TraceRecord

# Linux's default net.ipv4.ip_local_port_range.
EPHEMERAL_PORTS = (32768, 60999)
# Connections one Endpoint holds at once (TIME_WAIT entries are bounded separately).
DEFAULT_MAX_CONNECTIONS = 65_536

_SYN_FIN = Flag.SYN | Flag.FIN
_SYN_RST = Flag.SYN | Flag.RST
_HOSTILE_DETAIL = {
    "syn_fin": "SYN with FIN: no valid segment has both",
    "syn_rst": "SYN with RST: no valid segment has both",
    "no_flags": "no control bits at all (a null scan)",
    "port_zero": "source or destination port 0",
}


def _hostile_reason(seg: Segment) -> str | None:
    """Why a segment is malformed or only sent by scanners and attackers, or None."""
    flags = seg.flags
    if flags & _SYN_FIN == _SYN_FIN:
        return "syn_fin"
    if flags & _SYN_RST == _SYN_RST:
        return "syn_rst"
    if not flags & (Flag.SYN | Flag.FIN | Flag.RST | Flag.ACK | Flag.PSH | Flag.URG):
        return "no_flags"
    if seg.src_port == 0 or seg.dst_port == 0:
        return "port_zero"
    return None


@lru_cache(maxsize=4096)
def is_unicast(address: str) -> bool:
    """False for an unspecified, multicast or (IPv4) limited-broadcast address.

    A string that is not an IP address (some tests name hosts) counts as unicast.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True
    if ip.is_unspecified or ip.is_multicast:
        return False
    return not (ip.version == 4 and int(ip) == 0xFFFFFFFF)


@dataclass(eq=False)
class Listener:
    """A passive OPEN on a port: children in SYN_RECEIVED, then an accept queue.

    `backlog` bounds the accept queue (connections established but not yet accepted),
    as listen(2) does on Linux; a SYN that arrives while it is full is dropped and
    counted, so the peer retries later. `last_cookie_sent` is when the listener last
    answered a SYN with a SYN cookie (None = never): only for a while after that is an
    ACK checked as a cookie (syncookies.cookies_sent_recently).
    """

    port: int
    backlog: int
    accept_queue: deque[Connection] = field(default_factory=deque)
    embryonic: set[Connection] = field(default_factory=set)
    config: Config | None = None
    last_cookie_sent: int | None = None


class Endpoint:
    """A TCP stack bound to one address."""

    def __init__(
        self,
        address: str,
        *,
        isn_generator: IsnGenerator,
        config: Config | None = None,
        tracer: Tracer | None = None,
        ephemeral_ports: tuple[int, int] = EPHEMERAL_PORTS,
        syn_backlog: int = 256,
        max_time_wait: int = 262_144,
        rfc1337: bool = False,
        track_woken: bool = True,
        challenge_ack_limit: int = DEFAULT_CHALLENGE_ACK_LIMIT,
        syn_cookie_secret: bytes | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_reassembly_bytes: int = DEFAULT_ENDPOINT_REASSEMBLY_BYTES,
    ) -> None:
        self.address = address
        self.config = config if config is not None else Config()
        self._isn_generator = isn_generator
        self._tracer = tracer
        self._ephemeral_low, self._ephemeral_high = ephemeral_ports
        self._next_ephemeral = self._ephemeral_low
        # SYN_RECEIVED children per listener before further SYNs are dropped.
        self.syn_backlog = syn_backlog
        self.connections: dict[FourTuple, Connection] = {}
        # Connections in TIME_WAIT, kept as compact entries (see core/timewait.py).
        # At most max_time_wait of them, like Linux's tcp_max_tw_buckets: past it a
        # closing connection skips TIME_WAIT and the overflow is counted.
        self.time_wait = TimeWaitTable(address)
        self.max_time_wait = max_time_wait
        # RFC 1337: ignore RST in TIME_WAIT (Linux's net.ipv4.tcp_rfc1337, off).
        self.rfc1337 = rfc1337
        self.listeners: dict[int, Listener] = {}
        self._parent: dict[Connection, Listener] = {}
        # Named counters of everything dropped or answered here (shown by stats).
        self.stats: Counter[str] = Counter()
        # RFC 5961 7: one challenge-ACK budget per second for every connection here
        # (Linux's tcp_challenge_ack_limit).
        self.challenge_limiter = ChallengeAckLimiter(challenge_ack_limit, stats=self.stats)
        # RFC 4987 3.6: with a secret (from the driver), a listener whose SYN backlog is
        # full answers with SYN cookies instead of dropping SYNs.
        self.syn_cookies = SynCookies(syn_cookie_secret) if syn_cookie_secret else None
        # Connections (any state but TIME_WAIT, which has its own limit) held at once;
        # past it a SYN is refused with RST and connect() raises, both counted.
        self.max_connections = max_connections
        # Out-of-order bytes held by all connections together; past it such data is
        # dropped (the sender retransmits) and counted as limit.reassembly_bytes.
        self.reassembly_budget = ReassemblyBudget(max_reassembly_bytes, stats=self.stats)
        self._dirty: dict[Connection, None] = {}  # insertion-ordered set
        # One bound method shared by every connection (not 64 bytes per connection).
        self._wake_callback = self._on_wake
        self._woken: dict[Connection, None] = {}
        self._track_woken = track_woken
        self._pending_output: dict[Connection, None] = {}
        self._outbox: list[Datagram] = []
        # One heap for every connection's next timer (TIME_WAIT entries expire from
        # their table's FIFOs instead). Stale entries are skipped lazily.
        self._timer_heap: list[tuple[int, int, Connection]] = []
        self._armed: dict[Connection, int] = {}
        self._timer_serial = 0

    # ------------------------------------------------------------------ user calls

    def listen(
        self,
        port: int,
        backlog: int = 128,
        *,
        config: Config | None = None,
        now: int | None = None,
        reuse_address: bool = False,
    ) -> Listener:
        """Accept connections on `port`; returns the Listener (see accept()).

        Without `reuse_address` (SO_REUSEADDR) a port that connections still use, in
        TIME_WAIT included, is refused, as Linux's bind() does. `now` only dates the
        trace record of the call.
        """
        if port in self.listeners:
            raise AddressInUse("listen", State.LISTEN, f"port {port} already has a listener")
        if not 0 < port < 65536:
            raise ValueError(f"listen(): port {port} out of range")
        if not reuse_address:
            self._settle_dirty()
            if self.time_wait.uses_local_port(port):
                raise AddressInUse(
                    "listen", State.TIME_WAIT, f"port {port} has connections in TIME_WAIT"
                )
            holder = next((c for k, c in self.connections.items() if k[1] == port), None)
            if holder is not None:
                raise AddressInUse("listen", holder.state, f"port {port} is used by a connection")
        listener = Listener(port, max(backlog, 1), config=config)
        self.listeners[port] = listener
        if self._tracer is not None and now is not None:
            self._tracer(
                TraceRecord(
                    now,
                    TraceKind.USER,
                    f"{self.address}:{port}",
                    {"call": "listen", "state": "LISTEN", "backlog": listener.backlog},
                )
            )
        return listener

    def close_listener(self, port: int, *, now: int) -> None:
        """Stop listening, as Linux's inet_csk_listen_stop: established children not yet
        accepted are aborted (RST); half-open ones (SYN_RECEIVED) are dropped silently
        (the peer's next segment then meets no connection and gets a RST)."""
        listener = self.listeners.pop(port, None)
        if listener is None:
            raise InvalidOperation("close", State.CLOSED, f"no listener on port {port}")
        for child in listener.embryonic:
            self._parent.pop(child, None)
            self._forget(child)
            self._dirty.pop(child, None)
        for child in listener.accept_queue:
            self._parent.pop(child, None)
            if child.state is not State.CLOSED:
                child.abort(now=now)
        listener.embryonic.clear()
        listener.accept_queue.clear()

    def accept(self, port: int) -> Connection | None:
        """The oldest established connection on the listener, or None."""
        listener = self.listeners.get(port)
        if listener is None:
            raise InvalidOperation("accept", State.CLOSED, f"no listener on port {port}")
        if not listener.accept_queue:
            return None
        child = listener.accept_queue.popleft()
        self._parent.pop(child, None)
        return child

    def connect(
        self,
        remote_ip: str,
        remote_port: int,
        *,
        now: int,
        local_port: int | None = None,
        config: Config | None = None,
    ) -> Connection:
        """Active OPEN to remote_ip:remote_port; returns the Connection in SYN_SENT."""
        # File connections that user calls moved since the last input first: one that
        # abort() (or a timer-less close) took to CLOSED no longer holds its 4-tuple
        # (RFC 9293 3.10.5: "the TCB is deleted").
        self._settle_dirty()
        if not is_unicast(remote_ip):
            # RFC 9293 3.9.1.1 (MUST-46): an OPEN to a broadcast or multicast address
            # is an error.
            raise InvalidOperation("connect", State.CLOSED, f"{remote_ip} is not a unicast address")
        if not 0 < remote_port < 65536:
            raise InvalidOperation("connect", State.CLOSED, f"remote port {remote_port} invalid")
        if local_port is None:
            local_port = self._pick_ephemeral(remote_ip, remote_port)
        key = (self.address, local_port, remote_ip, remote_port)
        if key in self.time_wait:
            # RFC 9293 3.4.2: the 4-tuple is held until 2*MSL has passed.
            raise AddressInUse(
                "connect",
                State.TIME_WAIT,
                f"{self.address}:{local_port} -> {remote_ip}:{remote_port} is held by a "
                "connection in TIME_WAIT",
            )
        existing = self.connections.get(key)
        if existing is not None:
            # A 4-tuple held by any connection (TIME_WAIT included, RFC 9293 3.4.2) is
            # refused until that connection is gone.
            raise AddressInUse(
                "connect",
                existing.state,
                f"{self.address}:{local_port} -> {remote_ip}:{remote_port} is held by a "
                f"connection in {existing.state.value}",
            )
        if len(self.connections) >= self.max_connections:
            self.stats["limit.connections"] += 1
            raise InvalidOperation(
                "connect", State.CLOSED, f"connection limit ({self.max_connections}) reached"
            )
        conn = self._new_connection(key, config)
        conn.open(now=now)
        return conn

    def local_ports_in_use(self) -> set[int]:
        """Every local port a listener, a connection or a TIME_WAIT entry uses (what a
        socket layer must skip when it picks a port to bind)."""
        used = set(self.listeners)
        used.update(key[1] for key in self.connections)
        used.update(self.time_wait.local_ports())
        return used

    def _pick_ephemeral(self, remote_ip: str, remote_port: int) -> int:
        span = self._ephemeral_high - self._ephemeral_low + 1
        for _ in range(span):
            port = self._next_ephemeral
            self._next_ephemeral += 1
            if self._next_ephemeral > self._ephemeral_high:
                self._next_ephemeral = self._ephemeral_low
            if port in self.listeners:
                continue
            key = (self.address, port, remote_ip, remote_port)
            if key not in self.connections and key not in self.time_wait:
                return port
        raise AddressInUse(
            "connect", State.CLOSED, f"no free ephemeral port towards {remote_ip}:{remote_port}"
        )

    def _new_connection(
        self, key: FourTuple, config: Config | None, isn_generator: IsnGenerator | None = None
    ) -> Connection:
        conn = Connection(
            (key[0], key[1]),
            (key[2], key[3]),
            config=config if config is not None else self.config,
            isn_generator=isn_generator if isn_generator is not None else self._isn_generator,
            tracer=self._tracer,
            challenge_limiter=self.challenge_limiter,
            reassembly_budget=self.reassembly_budget,
            stats=self.stats,
        )
        conn.on_wake = self._wake_callback
        self.connections[key] = conn
        return conn

    def _iss_above(self, old_snd_nxt: int) -> IsnGenerator:
        """ISNs for a 4-tuple reopened from TIME_WAIT: RFC 1122 4.2.2.13 (1) lets a new
        SYN reopen it only if our new ISN is above the old incarnation's largest sequence
        number. The usual ISN when it already is, else, as Linux (tw_snd_nxt + 65535 +
        2), a window's worth above SND.NXT."""
        generate = self._isn_generator

        def iss_above(four_tuple: FourTuple, now: int) -> int:
            iss = generate(four_tuple, now) & MASK
            return iss if seq_gt(iss, old_snd_nxt) else seq_add(old_snd_nxt, 65537)

        return iss_above

    def _on_wake(self, conn: Connection) -> None:
        self._dirty[conn] = None
        if self._track_woken:
            self._woken[conn] = None

    def woken_connections(self) -> list[Connection]:
        """Connections touched since the last call (for an application layer that
        reacts to events); drains the set. Needs track_woken (the default); a driver
        that never calls this should pass track_woken=False, or the set keeps every
        touched connection alive."""
        woken = list(self._woken)
        self._woken.clear()
        return woken

    # ------------------------------------------------------------------ arrivals

    def receive_bytes(self, src: str, dst: str, data: bytes, *, now: int) -> None:
        """The wire path: decode a TCP segment carried from src to dst, then deliver it.

        Malformed bytes are dropped with a named counter and a trace record; nothing a
        peer sends raises out of here.
        """
        try:
            seg = decode_segment(data, src, dst)
        except MalformedSegment as error:
            self._drop(now, f"malformed.{error.reason}", error.detail)
            return
        self._deliver(src, dst, seg, now)

    def receive_datagram(self, datagram: Datagram, *, now: int) -> None:
        """The object path: a decoded segment with its addresses."""
        self._deliver(datagram.src, datagram.dst, datagram.segment, now)

    def _deliver(self, src: str, dst: str, seg: Segment, now: int) -> None:
        if dst != self.address:
            self._drop(now, "wrong_address", f"{dst} is not {self.address}")
            return
        hostile = _hostile_reason(seg)
        if hostile is not None:
            self._drop(now, f"hostile.{hostile}", _HOSTILE_DETAIL[hostile], seg)
            return
        key = (dst, seg.dst_port, src, seg.src_port)
        conn = self.connections.get(key)
        if conn is not None:
            conn.receive_segment(seg, now=now)
            self._settle(conn, now)
            return
        entry = self.time_wait.get(key)
        if entry is not None and self._to_time_wait(key, entry, src, seg, now):
            return
        if not is_unicast(src):
            # RFC 9293 3.9.2.3 (MUST-63): a SYN from a broadcast, multicast or
            # unspecified source is ignored; nothing else from there is answered either
            # (no connection can have such a peer, and a RST must not go to a group).
            self._drop(now, "hostile.bad_source", f"source {src} is not a unicast address", seg)
            return
        listener = self.listeners.get(seg.dst_port)
        if listener is not None:
            # An entry still here means its SYN ended it (RFC 6191 reuse).
            old_snd_nxt = entry.snd_nxt if entry is not None else None
            self._to_listener(listener, src, seg, now, old_snd_nxt)
            return
        # RFC 9293 3.10.7.1: no connection: RST unless the segment is itself a RST.
        if seg.flags & Flag.RST:
            self._drop(now, "no_connection_rst", "RST for no connection", seg)
        else:
            self._reply(now, src, "no_connection", reset_for(seg), seg)

    def receive_icmp_error(self, report: IcmpReport, *, now: int) -> str:
        """An ICMP error quoting one of our segments, parsed by the driver: hand it to
        the connection of the quoted 4-tuple (RFC 9293 3.9.2.2, MUST-54), which checks
        and acts on it (see Connection.receive_icmp_error and core/icmp.py).

        Returns the verdict, counted as stats["icmp.<verdict>"]; "no_connection" when
        no connection holds the 4-tuple (TIME_WAIT entries have nothing in flight).
        """
        conn = self.connections.get(report.four_tuple)
        if conn is None:
            label = "{}:{}>{}:{}".format(*report.four_tuple)
            self._drop(now, "icmp.no_connection", f"ICMP {report.kind.value} for {label}")
            return "no_connection"
        verdict = conn.receive_icmp_error(report, now=now)
        self.stats[f"icmp.{verdict}"] += 1
        self._settle(conn, now)
        return verdict

    def _to_listener(
        self, listener: Listener, src: str, seg: Segment, now: int, old_snd_nxt: int | None = None
    ) -> None:
        """RFC 9293 3.10.7.2 for a segment that matches only a listener; `old_snd_nxt`
        is SND.NXT of the TIME_WAIT entry the SYN just ended, if any."""
        flags = seg.flags
        if flags & Flag.RST:
            self._drop(now, "listen_rst", "RST in LISTEN is ignored", seg)
            return
        if flags & Flag.ACK:
            if self.syn_cookies is not None and not flags & Flag.SYN:
                if cookies_sent_recently(listener.last_cookie_sent, now):
                    self._cookie_ack(listener, src, seg, now)
                    return
                # Linux's cookie_v4_check checks a cookie only while the listener's SYN
                # queue overflowed recently (tcp_synq_no_recent_overflow); otherwise the
                # ACK is a stray one for LISTEN: RST (RFC 9293 3.10.7.2).
                self._reply(now, src, "syn_cookie.no_recent_overflow", reset_for(seg), seg)
                return
            self._reply(now, src, "listen_ack", reset_for(seg), seg)
            return
        if not flags & Flag.SYN:
            self._drop(now, "listen_no_syn", "no SYN, ACK or RST in LISTEN", seg)
            return
        if flags & Flag.FIN:
            # A scanner's SYN+FIN opens nothing (Linux discards it too).
            self._drop(now, "listen_syn_fin", "SYN with FIN in LISTEN is discarded", seg)
            return
        if len(listener.accept_queue) >= listener.backlog:
            self._drop(now, "listen_overflow", "accept queue full: SYN dropped", seg)
            return
        if len(self.connections) >= self.max_connections:
            self._reply(now, src, "limit.connections", reset_for(seg), seg)
            return
        if len(listener.embryonic) >= self.syn_backlog:
            if self.syn_cookies is not None:
                self._send_cookie(listener, self.syn_cookies, src, seg, now)
                return
            self._drop(now, "syn_backlog_full", "too many SYN_RECEIVED: SYN dropped", seg)
            return
        key = (self.address, listener.port, src, seg.src_port)
        child = self._new_connection(
            key, listener.config, None if old_snd_nxt is None else self._iss_above(old_snd_nxt)
        )
        listener.embryonic.add(child)
        self._parent[child] = listener
        child.listen(now=now, spawned=True)
        child.receive_segment(seg, now=now)
        self._settle(child, now)

    def _send_cookie(
        self, listener: Listener, cookies: SynCookies, src: str, seg: Segment, now: int
    ) -> None:
        """SYN backlog full: answer with a SYN,ACK whose ISN is a SYN cookie, keep nothing."""
        config = listener.config if listener.config is not None else self.config
        key = (self.address, listener.port, src, seg.src_port)
        options = seg.options
        peer_mss = options.mss if options.mss is not None else config.default_peer_mss_for(src)
        cookie = cookies.make(key, seg.seq, peer_mss, now)
        # Like Linux's tcp_synq_overflow (called for every cookie it makes): ACKs are
        # checked as cookies for a while after this one (cookies_sent_recently).
        listener.last_cookie_sent = now
        if config.timestamps and options.timestamp is not None:
            # Window scale and SACK-permitted ride in TSval's low bits (syncookies.py);
            # the SYN,ACK offers what the SYN offered and our config allows, as a
            # normal SYN,ACK would (RFC 7323 2.2, 3.2; RFC 2018 2).
            wscale = options.window_scale if config.window_scaling else None
            sack = config.sack and options.sack_permitted
            ts_clock = (now // MILLISECOND + timestamp_offset(cookie)) & MASK
            tsval = cookie_tsval(ts_clock, encode_ts_options(wscale, sack))
            shift = window_shift_for(config.receive_buffer_size)
            offer = Options(
                mss=config.mss,
                window_scale=None if wscale is None else shift,
                sack_permitted=sack,
                timestamp=(tsval, options.timestamp[0]),
            )
        else:
            offer = Options(mss=config.mss)
        answer = Segment(
            listener.port,
            seg.src_port,
            cookie,
            seq_add(seg.seq, 1),
            Flag.SYN | Flag.ACK,
            min(config.receive_buffer_size, 0xFFFF),
            0,
            offer,
        )
        self._reply(now, src, "syn_cookie.sent", answer, seg, verdict="syn_cookie")

    def _cookie_ack(self, listener: Listener, src: str, seg: Segment, now: int) -> None:
        """An ACK for a listener that sent SYN cookies recently: the third segment of a
        handshake answered with a SYN cookie (RFC 4987 3.6), or else a stray ACK,
        answered with RST (3.10.7.2)."""
        assert self.syn_cookies is not None
        key = (self.address, listener.port, src, seg.src_port)
        peer_isn = seq_add(seg.seq, -1)
        cookie = seq_add(seg.ack, -1)
        peer_mss = self.syn_cookies.check(key, peer_isn, cookie, now)
        if peer_mss is None:
            self._reply(now, src, "syn_cookie.invalid", reset_for(seg), seg)
            return
        if len(listener.accept_queue) >= listener.backlog:
            self._drop(now, "syn_cookie.accept_queue_full", "valid cookie, accept queue full", seg)
            return
        if len(self.connections) >= self.max_connections:
            self._reply(now, src, "limit.connections", reset_for(seg), seg)
            return
        self.stats["syn_cookie.accepted"] += 1
        base = listener.config if listener.config is not None else self.config
        timestamp = seg.options.timestamp
        if base.timestamps and timestamp is not None:
            # The cookie SYN,ACK carried TSval with the SYN's options; TSecr echoes it.
            wscale, sack = decode_ts_options(timestamp[1])
            config = base.with_changes(
                window_scaling=base.window_scaling and wscale is not None,
                sack=base.sack and sack,
            )
            peer_tsval: int | None = timestamp[0]
        else:
            wscale, sack, peer_tsval = None, False, None
            config = base.with_changes(window_scaling=False, timestamps=False, sack=False)
        child = self._new_connection(key, config, lambda _tuple, _now: cookie)
        listener.embryonic.add(child)
        self._parent[child] = listener
        child.listen(now=now, spawned=True)
        child.resume_from_cookie(
            peer_isn,
            peer_mss,
            now=now,
            peer_window_scale=wscale,
            sack_permitted=sack,
            peer_tsval=peer_tsval,
        )
        child.receive_segment(seg, now=now)
        self._settle(child, now)

    def _to_time_wait(
        self, key: FourTuple, entry: TimeWaitEntry, src: str, seg: Segment, now: int
    ) -> bool:
        """A segment for a 4-tuple in TIME_WAIT. Returns False when the entry ended and
        the segment (a new SYN) should go on to a listener."""
        verdict = entry.classify(seg, rfc1337=self.rfc1337)
        counter = None
        if verdict is TimeWaitVerdict.ACK:
            # The ACK for an in-window RST, for a SYN that may not reuse the 4-tuple
            # (RFC 9293 3.10.7.4 fourth step -> RFC 5961 4.2) or for an ACK of unsent
            # data is a challenge ACK; any other answers an unacceptable segment (3.10.7.4
            # first step).
            challenge = bool(seg.flags & (Flag.RST | Flag.SYN)) or entry.acks_unsent(seg)
            if entry.oow_ack_interval and (challenge or seg.seg_len == 0):
                # At most one such ACK per Config.invalid_ack_ratelimit per entry, as
                # Linux's tcp_timewait_check_oow_rate_limit (tw_last_oow_ack_time;
                # TCPACKSkippedTimeWait). As for a connection, challenge ACKs share the
                # clock (Linux's tcp_send_challenge_ack), while data and FINs are always
                # answered (tcp_oow_rate_limited skips segments that occupy sequence
                # space, SYNs apart): a retransmitted FIN's ACK (ACK_RESTART) never
                # comes here and does not move the clock.
                if entry.oow_ack_due(now):
                    self.time_wait.note_oow_ack(key, now)
                else:
                    verdict = TimeWaitVerdict.DROP
                    counter = "time_wait.ack_rate_limited"
            if (
                verdict is TimeWaitVerdict.ACK
                and challenge
                and not self.challenge_limiter.allow(now)
            ):
                # Then the stack-wide challenge ACK limit (RFC 5961 7); as in Linux, an
                # ACK it holds back has used the entry's slot all the same.
                verdict = TimeWaitVerdict.DROP
        if counter is None:
            counter = f"time_wait.{verdict.value}"
        self.stats[counter] += 1
        if self._tracer is not None:
            self._tracer(
                TraceRecord(
                    now,
                    TraceKind.SEGMENT_IN,
                    f"{key[0]}:{key[1]}>{key[2]}:{key[3]}",
                    {
                        "verdict": verdict.value,
                        "reason": "TIME_WAIT entry",
                        "state": "TIME_WAIT",
                        "counter": counter,
                    },
                    seg,
                )
            )
        if verdict is TimeWaitVerdict.ACK or verdict is TimeWaitVerdict.ACK_RESTART:
            answer = entry.ack_segment(key[1], key[3], now)
            if self._tracer is not None:
                label = f"{key[0]}:{key[1]}>{key[2]}:{key[3]}"
                self._tracer(TraceRecord(now, TraceKind.SEGMENT_OUT, label, {}, answer))
            self._outbox.append(Datagram(self.address, src, answer))
            if verdict is TimeWaitVerdict.ACK_RESTART:
                self.time_wait.restart(key, now)
            return True
        if verdict is TimeWaitVerdict.DROP:
            return True
        # KILL (RST) or REUSE (a new incarnation's SYN): the entry ends now.
        kill = verdict is TimeWaitVerdict.KILL
        conn = self.time_wait.remove(key)
        if conn is not None:
            trigger = Trigger.RCV_RST if kill else Trigger.RCV_SYN_REUSE
            conn.expire_time_wait(now=now, trigger=trigger)
        return kill

    def _reply(
        self,
        now: int,
        dst: str,
        reason: str,
        answer: Segment,
        seg: Segment,
        *,
        verdict: str = "reset",
    ) -> None:
        self.stats[reason] += 1
        if self._tracer is not None:
            self._tracer(
                TraceRecord(
                    now,
                    TraceKind.SEGMENT_IN,
                    self.address,
                    {"verdict": verdict, "reason": reason, "state": "CLOSED"},
                    seg,
                )
            )
            self._tracer(TraceRecord(now, TraceKind.SEGMENT_OUT, self.address, {}, answer))
        self._outbox.append(Datagram(self.address, dst, answer))

    def _drop(self, now: int, reason: str, detail: str, seg: Segment | None = None) -> None:
        self.stats[reason] += 1
        if self._tracer is not None:
            self._tracer(
                TraceRecord(
                    now, TraceKind.DROP, self.address, {"reason": reason, "detail": detail}, seg
                )
            )

    # ------------------------------------------------------------------ bookkeeping

    def _arm(self, target: Connection, deadline: int) -> None:
        self._armed[target] = deadline
        self._timer_serial += 1
        heapq.heappush(self._timer_heap, (deadline, self._timer_serial, target))

    def _settle(self, conn: Connection, now: int | None = None) -> None:
        """After a connection moved: file it by state, re-arm its timer, and note that
        it may have output. The output is collected only by datagrams_to_send(), so an
        application reacting to an event first can still merge a bare ACK into its own
        segment (see Connection._emit)."""
        self._dirty.pop(conn, None)
        state = conn.state
        listener = self._parent.get(conn)
        if listener is not None and conn in listener.embryonic:
            if state is State.LISTEN or state is State.CLOSED:
                # RST or SYN sent it back to LISTEN (RFC 9293 3.10.7.4): the listener
                # itself stays; this child is forgotten.
                listener.embryonic.discard(conn)
                self._parent.pop(conn, None)
                self._forget(conn)
                self._pending_output[conn] = None
                return
            if state is not State.SYN_RECEIVED:
                listener.embryonic.discard(conn)
                listener.accept_queue.append(conn)
        if state is State.CLOSED:
            # A child reset before accept() stays in the accept queue: accept() still
            # hands it out and the application sees its Closed event, as on Linux.
            self._forget(conn)
            self._pending_output[conn] = None
            return
        self._pending_output[conn] = None
        if state is State.TIME_WAIT and now is not None and conn.four_tuple in self.connections:
            self._enter_time_wait(conn, now)
            return
        deadline = conn.next_timer()
        if deadline is not None and self._armed.get(conn) != deadline:
            self._arm(conn, deadline)
        elif deadline is None:
            self._armed.pop(conn, None)

    def _enter_time_wait(self, conn: Connection, now: int) -> None:
        """Replace a connection that entered TIME_WAIT by a compact entry."""
        deadline = conn.timers().get("time_wait", now + conn.config.time_wait_duration)
        self._forget(conn)
        if len(self.time_wait) >= self.max_time_wait:
            # Like tcp_max_tw_buckets: no room, so this connection skips TIME_WAIT.
            self._drop(now, "time_wait_overflow", "TIME_WAIT limit reached: closed at once")
            conn.hand_over_time_wait(now)
            conn.expire_time_wait(now=now, trigger=Trigger.TIME_WAIT_LIMIT)
            self._dirty.pop(conn, None)
            return
        self.time_wait.add(conn, deadline, now)

    def _forget(self, conn: Connection) -> None:
        key = conn.four_tuple
        if self.connections.get(key) is conn:
            del self.connections[key]
        self._armed.pop(conn, None)

    def _collect(self, conn: Connection, now: int) -> None:
        segments = conn.segments_to_send(now=now)
        if segments:
            src, dst = conn.local_ip, conn.remote_ip
            self._outbox.extend([Datagram(src, dst, seg) for seg in segments])

    def _settle_dirty(self, now: int | None = None) -> None:
        while self._dirty:
            conn = next(iter(self._dirty))
            self._settle(conn, now)

    # ------------------------------------------------------------------ outputs, timers

    def datagrams_to_send(self, *, now: int) -> list[Datagram]:
        """Every datagram the stack wants sent, oldest first; drains the queue."""
        self._settle_dirty(now)
        for conn in self._pending_output:
            self._collect(conn, now)
        self._pending_output.clear()
        out = self._outbox
        self._outbox = []
        return out

    def next_timer(self) -> int | None:
        """The earliest deadline of any connection or TIME_WAIT entry (stale heap
        entries skipped)."""
        self._settle_dirty()
        earliest = self.time_wait.next_deadline()
        heap = self._timer_heap
        while heap:
            deadline, _, target = heap[0]
            if self._armed.get(target) == deadline:
                return deadline if earliest is None else min(deadline, earliest)
            heapq.heappop(heap)
        return earliest

    def handle_timer(self, *, now: int) -> None:
        """Run every connection and TIME_WAIT entry whose deadline has passed."""
        self._settle_dirty(now)
        # 2*MSL passed (RFC 9293 3.10.8): those entries and their 4-tuples are free.
        # (No connection timer depends on them, nor they on one: their order is free.)
        for _, conn in self.time_wait.pop_expired(now):
            if conn is not None:
                conn.expire_time_wait(now=now, trigger=Trigger.TIMEOUT_2MSL)
        heap = self._timer_heap
        while heap and heap[0][0] <= now:
            deadline, _, target = heapq.heappop(heap)
            if self._armed.get(target) != deadline:
                continue  # stale: the timer moved since
            del self._armed[target]
            target.handle_timer(now=now)
            self._settle(target, now)
        self._settle_dirty(now)

    def connection_count(self) -> int:
        return len(self.connections)
