"""One TCP connection as a sans-I/O state machine (RFC 9293 section 3.10).

Three inputs: user calls, `receive_segment`, `handle_timer`. Two outputs:
`segments_to_send` and `next_event`. One pure query: `next_timer`. Every input takes
`now` (int microseconds) from the driver; the connection never reads a clock.

Segment processing follows RFC 9293 3.10.7 step by step, a method per step; each rule
names the section (and MUST number where the RFC gives one) it comes from. Reliable
transfer adds RFC 6298 (retransmission timer), RFC 7323 (window scaling, timestamps,
PAWS), RFC 2018 and RFC 6675 (SACK and SACK-based recovery), RFC 5681 and RFC 6582
(congestion control, fast retransmit, NewReno) and RFC 5482 (user timeout).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable

from tcpstack.core.config import MILLISECOND, SECOND, Config
from tcpstack.core.congestion import CongestionControl, make_controller
from tcpstack.core.errors import InvalidOperation
from tcpstack.core.events import (
    Closed,
    CloseReason,
    DataAvailable,
    EndOfStream,
    Established,
    Event,
    SendSpaceAvailable,
    UrgentData,
)
from tcpstack.core.icmp import IPV6_MIN_MTU, IcmpKind, IcmpReport, mss_for_path_mtu
from tcpstack.core.ratelimit import ChallengeAckLimiter
from tcpstack.core.reassembly import Reassembly, ReassemblyBudget
from tcpstack.core.rtt import RttEstimator
from tcpstack.core.sack import DUP_THRESH, Scoreboard
from tcpstack.core.segment import NO_OPTIONS, Flag, Options, Segment
from tcpstack.core.seq import (
    HALF,
    MASK,
    seq_add,
    seq_diff,
    seq_ge,
    seq_gt,
    seq_in_window,
    seq_le,
    seq_lt,
    seq_sub,
)
from tcpstack.core.state import KEEPALIVE_STATES, TRANSITIONS, State, Trigger
from tcpstack.core.trace import TraceKind, Tracer, TraceRecord

FourTuple = tuple[str, int, str, int]  # local ip, local port, remote ip, remote port
IsnGenerator = Callable[[FourTuple, int], int]  # (4-tuple, now) -> initial sequence number

# The largest window the 16-bit header field can carry.
MAX_UNSCALED_WINDOW = 0xFFFF
# RFC 7323 2.3: a shift count above 14 is treated as 14.
MAX_WINDOW_SHIFT = 14
# Bytes the timestamp option takes in every segment once negotiated (with two NOPs).
TIMESTAMP_OPTION_SPACE = 12
# Linux's TCP_RTO_MIN, the base of its tcp_retries2 time budget.
LINUX_RTO_MIN = 200 * MILLISECOND

# States in which our data and FIN may go out (once our SYN is acknowledged).
_SENDING_STATES = frozenset(
    {State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK}
)
# States whose receive side still takes segment text (RFC 9293 3.10.7.4 seventh step).
_RECEIVING_STATES = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})
# States after our FIN was queued: SEND is an error "connection closing" (RFC 9293 3.10.2).
_CLOSING_STATES = frozenset(
    {State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSING, State.LAST_ACK, State.TIME_WAIT}
)


def retransmission_budget(retries: int, rto_base: int, rto_max: int) -> int:
    """How long Linux retransmits before giving up, for tcp_retries2-style `retries`.

    Linux turns the retry count into time (tcp_model_timeout): the sum of `retries`
    doubling RTOs starting at `rto_base` and capped at `rto_max`. For 15 retries from
    200 ms with a 120 s cap that is 924.6 s.
    """
    threshold = max((rto_max // rto_base).bit_length() - 1, 0)  # ilog2
    if retries <= threshold:
        return ((2 << retries) - 1) * rto_base
    return ((2 << threshold) - 1) * rto_base + (retries - threshold) * rto_max


def timestamp_offset(iss: int) -> int:
    """The per-connection TSval offset: RFC 7323 5.4 / 7.1 want TSval to start at a
    random offset, not at the host's clock; mixing the ISN (keyed in production, RFC
    6528) gives one. A SYN cookie's SYN,ACK uses it too (see core/syncookies.py)."""
    return (iss * 0x9E3779B1) & MASK


def window_shift_for(buffer_size: int) -> int:
    """The smallest RFC 7323 shift that lets a 16-bit field describe `buffer_size`."""
    shift = 0
    while (buffer_size >> shift) > MAX_UNSCALED_WINDOW and shift < MAX_WINDOW_SHIFT:
        shift += 1
    return shift


class Connection:
    """A TCP connection: the TCB of RFC 9293 3.3.1 plus its buffers and timers."""

    # Slots, not a per-instance __dict__: an idle connection is mostly this object, and
    # a server holds 100,000s of them (issue 9, memory). A new attribute must be named
    # here; __weakref__ lets a TIME_WAIT table refer to a connection without keeping it.
    __slots__ = (
        "__weakref__",
        "_ack_delayed",
        "_advertised_edge",
        "_cc",
        "_challenge_limiter",
        "_delayed_ack_deadline",
        "_dupacks",
        "_events",
        "_fin_acked",
        "_fin_queued",
        "_fin_received",
        "_fin_seq",
        "_fin_wait_2_deadline",
        "_full_segments_unacked",
        "_in_recovery",
        "_isn_generator",
        "_keepalive_deadline",
        "_last_ack_sent",
        "_last_oow_ack_at",
        "_last_received_at",
        "_last_send_time",
        "_listen_remote",
        "_need_ack",
        "_ooo_fin_offset",
        "_outbox",
        "_persist_backoff",
        "_persist_deadline",
        "_rcv_up_offset",
        "_reassembly",
        "_receive_buffer",
        "_receive_offset",
        "_recover",
        "_retransmit_armed_at",
        "_retransmit_deadline",
        "_rtt",
        "_rtt_timed_at",
        "_rtt_timed_seq",
        "_rtx_high",
        "_rtx_stamp",
        "_scoreboard",
        "_send_buffer",
        "_send_buffer_seq",
        "_send_offset",
        "_send_space_wanted",
        "_syn_acked",
        "_time_wait_deadline",
        "_timestamp_options",
        "_tracer",
        "_ts_offset",
        "_user_closed",
        "close_reason",
        "config",
        "icmp_error",
        "irs",
        "iss",
        "keepalive_probes_out",
        "local_ip",
        "local_port",
        "max_snd_wnd",
        "on_wake",
        "passive_open",
        "pmtu_mss",
        "rcv_nxt",
        "rcv_wscale",
        "rcv_wscale_offered",
        "remote_ip",
        "remote_port",
        "retransmissions",
        "sack_enabled",
        "snd_max",
        "snd_mss",
        "snd_nxt",
        "snd_una",
        "snd_up",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "snd_wscale",
        "state",
        "state_history",
        "stats",
        "total_retransmissions",
        "ts_enabled",
        "ts_recent",
    )

    def __init__(
        self,
        local: tuple[str, int],
        remote: tuple[str, int] | None = None,
        *,
        config: Config | None = None,
        isn_generator: IsnGenerator,
        tracer: Tracer | None = None,
        challenge_limiter: ChallengeAckLimiter | None = None,
        reassembly_budget: ReassemblyBudget | None = None,
        stats: Counter[str] | None = None,
    ) -> None:
        config = config if config is not None else Config()
        self.config = config
        self.local_ip, self.local_port = local
        self.remote_ip, self.remote_port = remote if remote is not None else ("", 0)
        self._isn_generator = isn_generator
        self._tracer = tracer
        # RFC 5961 7: challenge ACKs are rate limited per connection (below) and then by
        # a limiter the Endpoint shares among its connections; None (a bare Connection)
        # applies the per-connection limit only.
        self._challenge_limiter = challenge_limiter
        # Named counters of dropped input (one per drop, keyed by reason): an Endpoint
        # passes its own stats so they show in `tcpstack ss`; a bare Connection keeps its
        # own.
        self.stats: Counter[str] = stats if stats is not None else Counter()
        # When we last sent an ACK for a data-less out-of-window segment or a challenge
        # ACK (Linux's last_oow_ack_time, which both share), for
        # Config.invalid_ack_ratelimit; None = never.
        self._last_oow_ack_at: int | None = None
        self.state = State.CLOSED
        # The path of states this connection went through, first to last.
        self.state_history: list[State] = [State.CLOSED]
        # True when this connection came from a passive OPEN: RST or SYN in SYN_RECEIVED
        # then returns it to LISTEN (RFC 9293 3.10.7.4 second and fourth steps).
        self.passive_open = False

        # Send sequence variables (RFC 9293 3.3.1). snd_max is the highest sequence number
        # sent so far (BSD's name): after a retransmission timeout snd_nxt goes back to
        # snd_una, and ACKs up to snd_max stay acceptable.
        self.iss = 0
        self.snd_una = 0
        self.snd_nxt = 0
        self.snd_max = 0
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0  # the largest window the peer ever offered (3.8.6.2.1)
        # SND.UP (RFC 9293 3.3.1): the sequence number following the last urgent octet
        # sent with send(urgent=True) (MUST-62); None outside urgent mode.
        self.snd_up: int | None = None
        self.snd_mss = config.default_peer_mss_for(self.remote_ip)
        # Path MTU discovery (RFC 1191, RFC 8201): the MSS the path takes, lowered by
        # ICMP "fragmentation needed"; None = nothing learned.
        self.pmtu_mss: int | None = None
        # The last ICMP error accepted for this connection: a soft error (RFC 9293
        # MUST-56, SHLD-25; Linux's sk_err_soft), or the hard error that ended it in SYN_SENT.
        self.icmp_error: IcmpReport | None = None
        # Receive sequence variables.
        self.irs = 0
        self.rcv_nxt = 0

        # Negotiated in the handshake (RFC 7323, RFC 2018): both ends must offer.
        self.snd_wscale = 0  # the peer's shift: its window fields are scaled by it
        self.rcv_wscale = 0  # our shift, applied to the windows we advertise
        self.ts_enabled = False
        self.ts_recent = 0  # TS.Recent (RFC 7323 4.3)
        self._ts_offset = 0
        self._last_ack_sent = 0  # Last.ACK.sent (RFC 7323 4.3)
        self._timestamp_options = NO_OPTIONS  # the last timestamp-only Options sent
        self.sack_enabled = False
        self.rcv_wscale_offered = False  # the peer's SYN carried window scale

        # Send buffer: bytes from _send_buffer_seq on, acknowledged bytes removed.
        # _send_offset counts the bytes ever acknowledged, so that SACK ranges are kept
        # as unbounded stream offsets instead of wrapping sequence numbers.
        self._send_buffer = bytearray()
        self._send_buffer_seq = 0
        self._send_offset = 0
        self._send_space_wanted = False  # send() accepted less than offered
        self._fin_queued = False  # CLOSE called: FIN goes after the buffered data
        self._fin_seq: int | None = None  # the sequence number our FIN occupies
        self._fin_acked = False
        self._syn_acked = False
        self._user_closed = False  # close() called (socket semantics: no second close)

        # Receive buffer: in-order bytes the application has not read yet; out-of-order
        # bytes wait in the reassembly queue. _receive_offset is RCV.NXT as a stream
        # offset (bytes received in order so far).
        self._receive_buffer = bytearray()
        self._reassembly = Reassembly(
            config.receive_buffer_size, config.max_reassembly_blocks, reassembly_budget
        )
        self._receive_offset = 0
        self._ooo_fin_offset: int | None = None  # a FIN that arrived beyond a gap
        # RCV.UP as a stream offset: just past the peer's last urgent octet (None: no
        # urgent data seen). Urgent data is read in line; see urgent_remaining.
        self._rcv_up_offset: int | None = None
        self._fin_received = False
        self._advertised_edge: int | None = None  # rcv_nxt + window in our last segment

        # Congestion control and loss recovery.
        self._cc: CongestionControl = make_controller(config.congestion_control, config.mss)
        self._scoreboard = Scoreboard()
        self._dupacks = 0
        self._in_recovery = False
        self._recover = 0  # RFC 6582 "recover": SND.MAX when recovery started
        self._rtx_high = 0  # SACK recovery: holes below this offset were resent
        self._last_send_time = 0

        # Timers: absolute deadlines in µs, None when stopped.
        self._rtt = RttEstimator(config.initial_rto, config.min_rto, config.max_rto)
        self._retransmit_deadline: int | None = None
        self._retransmit_armed_at = 0
        self._persist_deadline: int | None = None
        self._persist_backoff = 0
        self._delayed_ack_deadline: int | None = None
        self._time_wait_deadline: int | None = None
        self._keepalive_deadline: int | None = None
        self.keepalive_probes_out = 0
        self._fin_wait_2_deadline: int | None = None
        self.retransmissions = 0  # consecutive expiries of the retransmission timer
        self.total_retransmissions = 0
        self._rtx_stamp: int | None = None  # when the unanswered head segment went out
        self._rtt_timed_seq: int | None = None  # Karn's rule: only a never-resent segment
        self._rtt_timed_at = 0
        self._last_received_at = 0

        # Segments for the driver; the list exists only while some are waiting.
        self._outbox: list[Segment] | None = None
        self._need_ack = False  # an ACK is owed now; the flush at the end of input sends it
        self._ack_delayed = False  # an ACK is owed, but may wait (delayed ACK)
        self._full_segments_unacked = 0
        # The foreign socket named by listen(), restored on a return to LISTEN; None
        # keeps the remote as it is (a listener's child: its peer never changes).
        self._listen_remote: tuple[str, int] | None = None
        # Events for the application; the deque exists only while some are pending.
        self._events: deque[Event] | None = None
        self.close_reason: CloseReason | None = None
        # The owner (an Endpoint) is told when this connection has output or new timers.
        self.on_wake: Callable[[Connection], None] | None = None

    # ------------------------------------------------------------------ naming

    @property
    def four_tuple(self) -> FourTuple:
        return (self.local_ip, self.local_port, self.remote_ip, self.remote_port)

    @property
    def label(self) -> str:
        return f"{self.local_ip}:{self.local_port}>{self.remote_ip}:{self.remote_port}"

    def __repr__(self) -> str:
        return f"<Connection {self.label} {self.state.value}>"

    # ------------------------------------------------------------------ user calls

    def open(self, *, now: int) -> None:
        """Active OPEN (RFC 9293 3.10.1): send SYN, enter SYN_SENT."""
        if self.state is not State.CLOSED:
            raise InvalidOperation("open", self.state, "connection already exists")
        if not self.remote_port:
            raise InvalidOperation("open", self.state, "foreign socket unspecified")
        self._trace_user("open", now)
        self._choose_iss(now)
        self._transition(Trigger.OPEN_ACTIVE, now)
        self._send_syn(now)
        self._wake()

    def listen(self, *, now: int, spawned: bool = False) -> None:
        """Passive OPEN (RFC 9293 3.10.1): wait in LISTEN for a SYN.

        `spawned` marks a connection an Endpoint's listener made for one arriving SYN;
        its trace then says so instead of showing a user call.
        """
        if self.state is not State.CLOSED:
            raise InvalidOperation("listen", self.state, "connection already exists")
        if spawned:
            self._trace_note(now, "spawned by the listener for an arriving SYN")
        else:
            self._trace_user("listen", now)
        self.passive_open = True
        if not spawned:
            self._listen_remote = (self.remote_ip, self.remote_port)
        self._transition(Trigger.OPEN_PASSIVE, now)
        self._wake()

    def resume_from_cookie(
        self,
        peer_isn: int,
        peer_mss: int,
        *,
        now: int,
        peer_window_scale: int | None = None,
        sack_permitted: bool = False,
        peer_tsval: int | None = None,
    ) -> None:
        """A listener's child rebuilt from a valid SYN cookie (RFC 4987 3.6): the SYN and
        our SYN,ACK (whose ISN was the cookie, from this connection's ISN generator) went
        by without state; take their effect now, as if the SYN had arrived in LISTEN and
        the SYN,ACK had been sent. The returning ACK is fed next and establishes it.

        What the cookie SYN,ACK agreed to comes back in the ACK's TSecr (see
        core/syncookies.py): the peer's window shift, SACK-permitted, and `peer_tsval`
        (the ACK's TSval) when timestamps are in use; all None/False when the SYN had
        no timestamps, so the cookie SYN,ACK offered none of them."""
        if self.state is not State.LISTEN or not self.remote_port:
            raise InvalidOperation("resume_from_cookie", self.state, "needs a spawned LISTEN")
        self._trace_note(now, "rebuilt from a SYN cookie")
        config = self.config
        self.irs = peer_isn
        self.rcv_nxt = seq_add(peer_isn, 1)
        self.snd_mss = max(peer_mss, config.min_peer_mss)
        # RFC 7323 2.2 / 2.3: both SYNs carried window scale; a shift above 14 is 14.
        scaling = config.window_scaling and peer_window_scale is not None
        self.rcv_wscale_offered = scaling
        if scaling and peer_window_scale is not None:
            self.snd_wscale = min(peer_window_scale, MAX_WINDOW_SHIFT)
            self.rcv_wscale = window_shift_for(config.receive_buffer_size)
        else:
            self.snd_wscale = self.rcv_wscale = 0
        self.ts_enabled = config.timestamps and peer_tsval is not None
        if peer_tsval is not None and self.ts_enabled:
            self.ts_recent = peer_tsval
        self.sack_enabled = config.sack and sack_permitted
        self._cc = make_controller(config.congestion_control, self.effective_mss)
        self._choose_iss(now)
        # Our SYN,ACK acknowledged RCV.NXT (RFC 7323 4.3 Last.ACK.sent).
        self._last_ack_sent = self.rcv_nxt
        self._transition(Trigger.RCV_SYN, now)
        self.snd_nxt = self.snd_max = seq_add(self.iss, 1)
        self._wake()

    def send(self, data: bytes, *, now: int, urgent: bool = False) -> int:
        """SEND (RFC 9293 3.10.2): queue bytes; returns how many the send buffer took.

        `urgent`: the bytes taken are urgent data (RFC 9293 3.8.5, the socket API's
        MSG_OOB): SND.UP moves to just past them and every segment sent before that
        point carries URG and the urgent pointer, as Linux sends it (see _mark_urgent).
        """
        state = self.state
        if state is State.CLOSED:
            raise InvalidOperation("send", state, "connection does not exist")
        if state in _CLOSING_STATES or self._fin_queued:
            raise InvalidOperation("send", state, "connection closing")
        if state is State.LISTEN:
            # RFC 9293 3.10.2: SEND in LISTEN with a foreign socket turns the passive
            # connection active; without one it is an error.
            if not self.remote_port:
                raise InvalidOperation("send", state, "foreign socket unspecified")
            self._trace_user("send", now)
            self.passive_open = False
            self._choose_iss(now)
            self._transition(Trigger.SEND_FROM_LISTEN, now)
            self._send_syn(now)
        else:
            self._trace_user("send", now)
        free = self.config.send_buffer_size - len(self._send_buffer)
        accepted = min(len(data), max(free, 0))
        if accepted:
            self._send_buffer += data[:accepted]
            if urgent:
                # RFC 9293 3.10.2 SEND: "If the urgent flag is set, then SND.UP <- SND.NXT"
                # read with MUST-62: the pointer follows the last urgent octet queued.
                self.snd_up = seq_add(self._send_buffer_seq, len(self._send_buffer))
        if accepted < len(data):
            self._send_space_wanted = True
        self._flush(now)
        self._wake()
        return accepted

    def receive(self, max_bytes: int = 1 << 30, *, now: int) -> bytes:
        """RECEIVE (RFC 9293 3.10.3): take up to max_bytes of in-order data.

        Returns b'' when nothing is buffered (check for EndOfStream to tell a closed
        stream from an empty buffer).
        """
        if self.state is State.CLOSED and not self._receive_buffer:
            raise InvalidOperation("receive", self.state, "connection does not exist")
        if max_bytes <= 0 or not self._receive_buffer:
            return b""
        buffer = self._receive_buffer
        if max_bytes >= len(buffer):
            # Everything: one copy, and nothing left to move to the front.
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:max_bytes])
            del buffer[:max_bytes]
        # Reading opens the receive window; tell the peer once the opening is worth a
        # segment (receiver-side silly window avoidance, RFC 9293 3.8.6.2.2).
        if self.state in _RECEIVING_STATES and self._window_update_due():
            self._need_ack = True
            self._flush(now)
        self._wake()
        return data

    def shutdown(self, *, now: int) -> None:
        """CLOSE in RFC 9293 3.10.4 terms: no more data from us; a FIN follows the data.

        The receive side stays open (half-close).
        """
        self._close_call("shutdown", now)
        self._flush(now)
        self._wake()

    def close(self, *, now: int) -> None:
        """The application is done with the connection: CLOSE (RFC 9293 3.10.4).

        Unlike shutdown(), a second close() is an error, like closing a file twice.
        """
        if self._user_closed:
            raise InvalidOperation("close", self.state, "connection already closed by user")
        if self.state is State.CLOSED:
            raise InvalidOperation("close", self.state, "connection does not exist")
        synchronized = self.state not in (State.LISTEN, State.SYN_SENT, State.TIME_WAIT)
        unread = bool(self._receive_buffer) and self.config.half_duplex_close
        if synchronized and (self.config.linger == 0 or unread):
            # SO_LINGER with a zero timeout (seed C13), or data received and never read
            # (RFC 9293 3.6.1, RFC 2525 2.17, Linux's tcp_close): reset instead of
            # closing, so the peer learns that data was lost. No TIME_WAIT follows.
            why = "linger 0" if self.config.linger == 0 else "unread data"
            self._trace_note(now, f"close() with {why}: reset instead of FIN")
            self._user_closed = True
            self._abort("close", now)
            return
        if self._fin_queued or self.state in _CLOSING_STATES:
            # shutdown() already queued our FIN: nothing more to send.
            self._trace_user("close", now)
        else:
            self._close_call("close", now)
        self._user_closed = True
        if self.state is State.FIN_WAIT_2:
            self._arm_fin_wait_2(now)  # now an orphan: Linux's tcp_fin_timeout applies
        self._flush(now)
        self._wake()

    def configure(self, *, now: int, **changes: object) -> None:
        """Change options of this connection (what setsockopt does), e.g.
        configure(now=t, keepalive=True, keepalive_idle=60 * SECOND, nodelay=True).

        Names are Config fields; a wrong name or value type raises TypeError/ValueError
        and changes nothing. Timers that depend on a changed option are re-armed.
        """
        unknown = set(changes) - set(Config.__dataclass_fields__)
        if unknown:
            raise TypeError(f"configure(): unknown option(s) {sorted(unknown)}")
        self.config = self.config.with_changes(**changes)
        if "keepalive" in changes or "keepalive_idle" in changes:
            self._keepalive_deadline = None
            if self.config.keepalive and self.state in KEEPALIVE_STATES:
                self._arm_keepalive_at(
                    max(self._last_received_at, now) + self.config.keepalive_idle, now
                )
        if "fin_wait_2_timeout" in changes:
            self._fin_wait_2_deadline = None
            if self.state is State.FIN_WAIT_2 and self._user_closed:
                self._arm_fin_wait_2(now)
        self._flush(now)
        self._wake()

    def abort(self, *, now: int) -> None:
        """ABORT (RFC 9293 3.10.5): send RST if synchronized, drop everything, CLOSED."""
        self._abort("abort", now)

    def _abort(self, call: str, now: int) -> None:
        state = self.state
        if state is State.CLOSED:
            raise InvalidOperation(call, state, "connection does not exist")
        self._trace_user(call, now)
        # Segments not yet collected by the driver are not sent: RFC 9293 3.10.5 gives
        # every queued SEND a "reset" response; only the RST goes out.
        self._outbox = None
        if state in (State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1) or state in (
            State.FIN_WAIT_2,
            State.CLOSE_WAIT,
        ):
            # <SEQ=SND.NXT><CTL=RST> (3.10.5); CLOSING, LAST_ACK and TIME_WAIT send nothing.
            self._emit(Segment(self.local_port, self.remote_port, self.snd_nxt, 0, Flag.RST), now)
        self._send_buffer.clear()
        self._receive_buffer.clear()
        self._enter_closed(Trigger.ABORT, CloseReason.ABORTED, now)
        self._wake()

    # ------------------------------------------------------------------ outputs

    def segments_to_send(self, *, now: int) -> list[Segment]:
        """Everything this connection wants on the wire, oldest first; drains the queue."""
        out = self._outbox
        if not out:
            return []
        self._outbox = None
        if self._tracer is not None:
            # Traced when it leaves, so a bare ACK merged into a later segment before
            # the driver collected it never shows as sent.
            for seg in out:
                self._tracer(TraceRecord(now, TraceKind.SEGMENT_OUT, self.label, {}, seg))
        return out

    def next_event(self) -> Event | None:
        """The next event for the application, or None."""
        events = self._events
        if events is None:
            return None
        event = events.popleft()
        if not events:
            self._events = None  # an idle connection keeps no empty deque (760 bytes)
        return event

    def _post(self, event: Event) -> None:
        """Queue an event for next_event()."""
        if self._events is None:
            self._events = deque()
        self._events.append(event)

    def next_timer(self) -> int | None:
        """The earliest armed deadline (µs), or None. Pure."""
        best: int | None = None
        for deadline in (
            self._retransmit_deadline,
            self._persist_deadline,
            self._delayed_ack_deadline,
            self._time_wait_deadline,
            self._keepalive_deadline,
            self._fin_wait_2_deadline,
        ):
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        return best

    # Read-only views for drivers, tests and pictures.

    @property
    def receive_buffered(self) -> int:
        return len(self._receive_buffer)

    @property
    def reassembly_held(self) -> int:
        """Out-of-order bytes waiting for a gap to fill."""
        return self._reassembly.held

    @property
    def send_buffered(self) -> int:
        """Bytes queued or in flight, not yet acknowledged."""
        return len(self._send_buffer)

    @property
    def send_space(self) -> int:
        return max(self.config.send_buffer_size - len(self._send_buffer), 0)

    @property
    def rcv_wnd(self) -> int:
        """RCV.WND (RFC 9293 3.3.1): the window we offered; free space before that."""
        edge = self._advertised_edge
        if edge is not None and seq_ge(edge, self.rcv_nxt):
            # RFC 9293 3.8.6.2.2 keeps RCV.NXT + RCV.WND at the edge we advertised until
            # it may move by a full step; text beyond it is not acceptable (3.10.7.4),
            # even if the buffer has room. Taking a probe octet into a window we said
            # was zero would make the next ACK offer a silly window (Linux likewise
            # checks tcp_receive_window, the advertised window).
            return seq_sub(edge, self.rcv_nxt)
        return max(self.config.receive_buffer_size - len(self._receive_buffer), 0)

    @property
    def urgent_remaining(self) -> int:
        """Bytes from the next one receive() returns up to and including the peer's last
        urgent octet; 0 when no urgent data is pending (RFC 9293 3.8.5, MUST-33)."""
        up = self._rcv_up_offset
        if up is None:
            return 0
        buffered = len(self._receive_buffer)
        remaining = up - (self._receive_offset - buffered)
        if self._fin_received or self.state is State.CLOSED:
            # No more text can arrive: a pointer past the end names octets that never
            # will (3.8.5: be robust to invalid urgent pointer values).
            remaining = min(remaining, buffered)
        return max(remaining, 0)

    @property
    def cwnd(self) -> int:
        return self._cc.cwnd

    @property
    def ssthresh(self) -> int:
        return self._cc.ssthresh

    @property
    def in_recovery(self) -> bool:
        return self._in_recovery

    @property
    def effective_mss(self) -> int:
        """Eff.snd.MSS (RFC 9293 3.7.1): payload bytes per full segment, after options."""
        mss = min(self.snd_mss, self.config.mss)
        if self.pmtu_mss is not None and self.pmtu_mss < mss:
            mss = self.pmtu_mss
        if self.ts_enabled:
            mss -= TIMESTAMP_OPTION_SPACE
        return max(mss, 1)

    @property
    def rto(self) -> int:
        return self._rtt.rto

    @property
    def srtt(self) -> int | None:
        return self._rtt.srtt

    @property
    def rttvar(self) -> int:
        return self._rtt.rttvar

    @property
    def peer_closed(self) -> bool:
        """The peer's FIN has arrived (end of stream after the buffered bytes)."""
        return self._fin_received

    def timers(self) -> dict[str, int]:
        """Armed timers by name, with their deadlines (for ss-like tables)."""
        named = {
            "retransmit": self._retransmit_deadline,
            "persist": self._persist_deadline,
            "delayed_ack": self._delayed_ack_deadline,
            "time_wait": self._time_wait_deadline,
            "keepalive": self._keepalive_deadline,
            "fin_wait_2": self._fin_wait_2_deadline,
        }
        return {name: when for name, when in named.items() if when is not None}

    def hand_over_time_wait(self, now: int) -> tuple[int, int, int, int, int]:
        """Give TIME_WAIT to an Endpoint's compact entry (RFC 9293 3.4.2 state only).

        Returns (SND.NXT, RCV.NXT, window field, TS.Recent, TS offset or -1 when
        timestamps are off) and stops this connection's own 2*MSL timer; the Endpoint
        calls expire_time_wait() when the entry ends.
        """
        if self.state is not State.TIME_WAIT:
            raise InvalidOperation("hand_over_time_wait", self.state, "not in TIME_WAIT")
        self._time_wait_deadline = None
        offset = self._ts_offset if self.ts_enabled else -1
        return (self.snd_nxt, self.rcv_nxt, self.window_field(), self.ts_recent, offset)

    def expire_time_wait(self, *, now: int, trigger: Trigger = Trigger.TIMEOUT_2MSL) -> None:
        """The Endpoint's TIME_WAIT entry ended: 2*MSL passed, or an RST, a new
        incarnation's SYN or a full table ended it early (the trigger says which).
        Either way this connection's close was normal."""
        if self.state is State.TIME_WAIT:
            self._enter_closed(trigger, CloseReason.NORMAL, now)
            self._wake()

    def window_field(self) -> int:
        """The window field our next segment will carry (pure; see _window_field)."""
        return self._window_field(update=False)

    # ------------------------------------------------------------------ timers

    def handle_timer(self, *, now: int) -> None:
        """Handle every expired timer, in a fixed order; early calls change nothing."""
        if self._retransmit_deadline is not None and now >= self._retransmit_deadline:
            self._retransmit_deadline = None
            self._trace_timer(TraceKind.TIMER_FIRED, "retransmit", now, now)
            self._on_retransmit_timeout(now)
        if self._persist_deadline is not None and now >= self._persist_deadline:
            self._persist_deadline = None
            self._trace_timer(TraceKind.TIMER_FIRED, "persist", now, now)
            self._on_persist_timeout(now)
        if self._delayed_ack_deadline is not None and now >= self._delayed_ack_deadline:
            self._delayed_ack_deadline = None
            self._trace_timer(TraceKind.TIMER_FIRED, "delayed_ack", now, now)
            if self._ack_delayed:
                self._need_ack = True
        if self._keepalive_deadline is not None and now >= self._keepalive_deadline:
            self._keepalive_deadline = None
            self._on_keepalive_timer(now)
        if self._fin_wait_2_deadline is not None and now >= self._fin_wait_2_deadline:
            self._fin_wait_2_deadline = None
            self._trace_timer(TraceKind.TIMER_FIRED, "fin_wait_2", now, now)
            if self.state is State.FIN_WAIT_2:
                # The application is gone and the peer never sends its FIN: Linux gives
                # up after tcp_fin_timeout (seed claim C7); RFC 9293 alone would wait.
                self._enter_closed(Trigger.TIMEOUT_FIN_WAIT_2, CloseReason.FIN_WAIT_2_TIMEOUT, now)
        if self._time_wait_deadline is not None and now >= self._time_wait_deadline:
            self._time_wait_deadline = None
            self._trace_timer(TraceKind.TIMER_FIRED, "time_wait", now, now)
            # RFC 9293 3.10.8: "If the time-wait timeout expires on a connection, delete
            # the TCB, enter the CLOSED state, and return."
            self._enter_closed(Trigger.TIMEOUT_2MSL, CloseReason.NORMAL, now)
        self._flush(now)
        self._wake()

    def _on_keepalive_timer(self, now: int) -> None:
        """RFC 9293 3.8.4 keepalive, timed like Linux's tcp_keepalive_timer.

        Only silence counts: the idle clock restarts on every segment received (a bare
        ACK included). Probes carry SEG.SEQ = SND.UNA - 1 (= SND.NXT - 1 when idle), so
        the peer must answer with an ACK (MUST-27 asks us to accept either form).
        """
        config = self.config
        if not config.keepalive or self.state not in KEEPALIVE_STATES:
            return
        if self.snd_una != self.snd_max or self._persist_deadline is not None:
            # Data in flight: retransmission handles liveness; look again later.
            self._arm_keepalive_at(now + config.keepalive_idle, now)
            return
        elapsed = now - self._last_received_at
        if elapsed < config.keepalive_idle and self.keepalive_probes_out == 0:
            self._arm_keepalive_at(self._last_received_at + config.keepalive_idle, now)
            return
        if config.user_timeout:
            # Linux: with TCP_USER_TIMEOUT set, it (not the count) bounds the probing.
            give_up = self.keepalive_probes_out > 0 and elapsed >= config.user_timeout
            reason = CloseReason.USER_TIMEOUT
        else:
            give_up = self.keepalive_probes_out >= config.keepalive_count
            reason = CloseReason.KEEPALIVE_TIMEOUT
        if give_up:
            self._trace_note(now, f"keepalive: {self.keepalive_probes_out} probes unanswered")
            # Like Linux, tell the peer (if it is only unreachable, not gone) with a RST.
            self._emit(Segment(self.local_port, self.remote_port, self.snd_nxt, 0, Flag.RST), now)
            self._enter_closed(Trigger.TIMEOUT_KEEPALIVE, reason, now)
            return
        self._trace_timer(TraceKind.TIMER_FIRED, "keepalive", now, now)
        self._emit(
            Segment(
                self.local_port,
                self.remote_port,
                seq_add(self.snd_una, -1),
                self.rcv_nxt,
                Flag.ACK,
                self._window_field(update=True),
                0,
                self._segment_options(now, with_sack=False),
                b"\x00" if config.keepalive_garbage_octet else b"",
            ),
            now,
        )
        self.keepalive_probes_out += 1
        self._arm_keepalive_at(now + config.keepalive_interval, now)

    def _arm_keepalive_at(self, deadline: int, now: int) -> None:
        self._keepalive_deadline = deadline
        self._trace_timer(TraceKind.TIMER_ARMED, "keepalive", deadline, now)

    def _arm_fin_wait_2(self, now: int) -> None:
        timeout = self.config.fin_wait_2_timeout
        if timeout is not None and self._fin_wait_2_deadline is None:
            self._fin_wait_2_deadline = now + timeout
            self._trace_timer(TraceKind.TIMER_ARMED, "fin_wait_2", self._fin_wait_2_deadline, now)

    def _on_retransmit_timeout(self, now: int) -> None:
        if self.state is State.CLOSED or self.snd_una == self.snd_max:
            return
        if not self._syn_acked:
            # SYN and SYN,ACK: counted like Linux's tcp_syn_retries / tcp_synack_retries.
            self.retransmissions += 1
            limit = (
                self.config.syn_retries
                if self.state is State.SYN_SENT
                else self.config.synack_retries
            )
            if self.retransmissions > limit:
                # RFC 9293 3.8.3 R2 (MUST-20): past the threshold, close the connection.
                self._enter_closed(Trigger.TIMEOUT_RETRANSMIT, CloseReason.TIMEOUT, now)
                return
            self.total_retransmissions += 1
            self._rtt.back_off()
            self._rtt_timed_seq = None  # Karn's rule
            self.snd_nxt = self.snd_una
            self._send_syn(now)
            return
        if self._rtx_stamp is None:
            self._rtx_stamp = self._retransmit_armed_at
        if self.snd_wnd == 0:
            # The peer shrank its window to zero with our data in flight: our resends
            # are window probes (RFC 9293 3.8.6.1). Like Linux, do not count them while
            # the peer answers; give up only when it has been silent for max_rto.
            if now - self._last_received_at > self.config.max_rto:
                self._enter_closed(Trigger.TIMEOUT_RETRANSMIT, CloseReason.TIMEOUT, now)
                return
            orphan_retries = self.config.orphan_retries
            if self._user_closed and orphan_retries is not None:
                # An orphan (the application closed) cannot wait forever for a peer
                # that keeps its window shut: Linux gives up after tcp_orphan_retries.
                self.retransmissions += 1
                if self.retransmissions > orphan_retries:
                    self._enter_closed(Trigger.TIMEOUT_RETRANSMIT, CloseReason.TIMEOUT, now)
                    return
            if self.config.user_timeout and now - self._rtx_stamp >= self.config.user_timeout:
                # RFC 5482: a user timeout ends a stalled transfer even while the peer
                # answers the probes (Linux's tcp_rtx_probe0_timed_out). Without this the
                # clamped timer below would fire again 1 µs later, forever.
                self._enter_closed(Trigger.TIMEOUT_RETRANSMIT, CloseReason.USER_TIMEOUT, now)
                return
            self._rtt.back_off()
            self.total_retransmissions += 1
            self._retransmit_head(now, force=True)
            self._arm_retransmit(now)
            return
        elapsed = now - self._rtx_stamp
        if self.config.user_timeout:
            # RFC 5482 / TCP_USER_TIMEOUT: data unacknowledged this long ends it.
            if elapsed >= self.config.user_timeout:
                self._enter_closed(Trigger.TIMEOUT_RETRANSMIT, CloseReason.USER_TIMEOUT, now)
                return
        elif elapsed >= retransmission_budget(
            self.config.data_retries, LINUX_RTO_MIN, self.config.max_rto
        ):
            # RFC 9293 3.8.3 R2 (MUST-20), measured in time as Linux's tcp_retries2 is.
            self._enter_closed(Trigger.TIMEOUT_RETRANSMIT, CloseReason.TIMEOUT, now)
            return
        self.retransmissions += 1
        self.total_retransmissions += 1
        if self.retransmissions == self.config.r1_retries:
            # RFC 9293 3.8.3 R1 (MUST-20): tell the layer above the path may be broken.
            self._trace_note(now, "R1 reached: retransmissions suggest a broken path")
        # RFC 6298 5.5-5.6 and RFC 5681 3.1: back off, shrink cwnd to one segment, and
        # resend from SND.UNA in slow start (going back over what was in flight).
        flight = seq_sub(self.snd_max, self.snd_una)
        self._cc.on_timeout(flight, now)
        self._in_recovery = False
        self._recover = self.snd_max  # RFC 6582 4: no fast retransmit for this window
        self._dupacks = 0
        self._scoreboard.clear()
        self._rtt.back_off()
        self._rtt_timed_seq = None  # Karn's rule: no sample from a retransmitted segment
        self.snd_nxt = self.snd_una
        self._transmit(now)
        if self._retransmit_deadline is None and self.snd_una != self.snd_max:
            self._arm_retransmit(now)

    def _on_persist_timeout(self, now: int) -> None:
        # RFC 9293 3.8.6.1 (MUST-36): probe a zero window with one octet of new data,
        # backing off like the retransmission timer.
        if self.state not in _SENDING_STATES or self.snd_wnd != 0:
            return
        offset = seq_sub(self.snd_una, self._send_buffer_seq)
        if offset >= len(self._send_buffer):
            return
        self._emit_data(self.snd_una, 1, now)
        end = seq_add(self.snd_una, 1)
        if seq_gt(end, self.snd_max):
            self.snd_max = end
        if seq_gt(end, self.snd_nxt):
            self.snd_nxt = end
        self._persist_backoff += 1
        self._arm_persist(now)

    def _arm_retransmit(self, now: int) -> None:
        deadline = now + self._rtt.rto
        if self.config.user_timeout and self._syn_acked:
            # Fire no later than the user timeout (Linux's tcp_clamp_rto_to_user_timeout).
            # Before the first expiry the unacknowledged data is timed from now (the
            # stamp the expiry takes), so a user timeout shorter than the RTO still ends
            # the connection on time (RFC 5482: data unacknowledged that long).
            stamp = self._rtx_stamp if self._rtx_stamp is not None else now
            deadline = max(min(deadline, stamp + self.config.user_timeout), now + 1)
        self._retransmit_deadline = deadline
        self._retransmit_armed_at = now
        self._trace_timer(TraceKind.TIMER_ARMED, "retransmit", deadline, now)

    def _stop_retransmit(self, now: int) -> None:
        if self._retransmit_deadline is not None:
            self._trace_timer(
                TraceKind.TIMER_CANCELLED, "retransmit", self._retransmit_deadline, now
            )
            self._retransmit_deadline = None

    def _arm_persist(self, now: int) -> None:
        interval = min(self._rtt.rto << self._persist_backoff, self.config.max_rto)
        self._persist_deadline = now + interval
        self._trace_timer(TraceKind.TIMER_ARMED, "persist", self._persist_deadline, now)

    def _stop_persist(self, now: int) -> None:
        if self._persist_deadline is not None:
            self._trace_timer(TraceKind.TIMER_CANCELLED, "persist", self._persist_deadline, now)
            self._persist_deadline = None
        self._persist_backoff = 0

    def _stop_delayed_ack(self) -> None:
        self._ack_delayed = False
        self._full_segments_unacked = 0
        self._delayed_ack_deadline = None

    # ------------------------------------------------------------------ arrivals

    def receive_segment(self, seg: Segment, *, now: int) -> None:
        """Process one arriving segment (RFC 9293 3.10.7). Never raises for peer input."""
        state = self.state
        self._last_received_at = now
        self.keepalive_probes_out = 0
        if state is State.CLOSED:
            self._segment_in_closed(seg, now)
        elif state is State.LISTEN:
            self._segment_in_listen(seg, now)
        elif state is State.SYN_SENT:
            self._segment_in_syn_sent(seg, now)
        else:
            self._segment_in_synchronized(seg, now)
        self._flush(now)
        self._wake()

    def receive_icmp_error(self, report: IcmpReport, *, now: int) -> str:
        """An ICMP error quoting one of our segments (RFC 9293 3.9.2.2, MUST-54).

        Returns the verdict (the Endpoint counts it as icmp.<verdict>):
        "seq_out_of_window" (dropped: RFC 5927 4.1), "soft_error" (recorded in
        `icmp_error`, the connection goes on), "hard_error" (SYN_SENT ended with
        Closed(UNREACHABLE)), "pmtu_lowered", "pmtu_not_lower" or "pmtu_discarded"
        (an IPv6 Packet Too Big below 1280). Never raises.
        """
        seq = report.seq
        # RFC 5927 4.1: act only if SND.UNA =< SEG.SEQ < SND.NXT. SND.MAX stands for
        # SND.NXT here: after a timeout SND.NXT goes back to SND.UNA, but the segments
        # up to SND.MAX were sent and may still draw errors.
        if not (seq_le(self.snd_una, seq) and seq_lt(seq, self.snd_max)):
            self._trace_icmp(
                report,
                now,
                "seq_out_of_window",
                "quoted SEG.SEQ outside SND.UNA..SND.NXT (RFC 5927 4.1)",
            )
            return "seq_out_of_window"
        if report.kind is IcmpKind.FRAGMENTATION_NEEDED:
            return self._lower_path_mtu(report, now)
        self.icmp_error = report
        if report.kind.hard and self.state is State.SYN_SENT:
            # RFC 1122 4.2.3.9 / SHLD-26: a hard error SHOULD abort. Linux's tcp_v4_err
            # ends a connection in SYN_SENT on it, so connect() fails at once (with
            # ECONNREFUSED for port unreachable) instead of after the SYN retries. In
            # synchronized states hard errors are only recorded, as soft errors: RFC 5927
            # 5.2's defence against blind resets by forged ICMP, which Linux applies too.
            # SYN_RECEIVED keeps going as well (Linux drops only the request socket).
            self._trace_icmp(
                report,
                now,
                "hard_error",
                "hard error in SYN_SENT: the connection attempt ends (RFC 1122 4.2.3.9)",
            )
            self._send_buffer.clear()
            self._enter_closed(Trigger.RCV_ICMP_HARD_ERROR, CloseReason.UNREACHABLE, now)
            self._wake()
            return "hard_error"
        # RFC 9293 MUST-56 (RFC 1122 4.2.3.9): soft errors MUST NOT abort; the error is
        # made available: reported if the connection then times out (Linux's sk_err_soft).
        self._trace_icmp(
            report, now, "soft_error", "soft error recorded, the connection goes on (MUST-56)"
        )
        return "soft_error"

    def _lower_path_mtu(self, report: IcmpReport, now: int) -> str:
        """Fragmentation needed / packet too big: lower the MSS to the path MTU (RFC
        1191 6.4, RFC 8201 5.4), never below the floor, never raised by ICMP."""
        if report.ipv6 and (report.mtu or 0) < IPV6_MIN_MTU:
            # RFC 8201 4: a Packet Too Big below the IPv6 minimum link MTU "must" be
            # discarded (Linux's tcp_v6_err too), not taken as 1280.
            detail = f"packet too big with MTU {report.mtu} < {IPV6_MIN_MTU}: discarded"
            self._trace_icmp(report, now, "pmtu_discarded", detail)
            return "pmtu_discarded"
        mss = mss_for_path_mtu(report.mtu, ipv6=report.ipv6)
        # The path's limit so far (our own MSS until ICMP taught us less); the peer's
        # MSS option is a separate limit, applied in effective_mss.
        current = self.config.mss if self.pmtu_mss is None else self.pmtu_mss
        if mss >= current:
            detail = f"path MTU {report.mtu}: MSS {mss} is not below {current}"
            self._trace_icmp(report, now, "pmtu_not_lower", detail)
            return "pmtu_not_lower"
        segment_size_before = self.effective_mss
        self.pmtu_mss = mss
        detail = f"path MTU {report.mtu}: MSS {current} -> {mss}"
        self._trace_icmp(report, now, "pmtu_lowered", detail)
        # Only segments longer than the new size can have been dropped as too big (RFC
        # 1191 6.5; Linux's tcp_simple_retransmit marks only those lost): when the peer's
        # MSS already kept them smaller, or all in flight fits one new segment, resending
        # would only repeat what the path carries.
        segment_size = self.effective_mss
        if (
            self._syn_acked
            and self.state in _SENDING_STATES
            and segment_size < segment_size_before
            and seq_sub(self.snd_max, self.snd_una) > segment_size
        ):
            # The router dropped the quoted segment and every later one as big. RFC 1191
            # 6.5 allows resending at once rather than after a timeout; like Linux's
            # tcp_simple_retransmit, go back to SND.UNA at the new size without treating
            # the loss as congestion (no cwnd reduction, no RTO backoff).
            self._rtt_timed_seq = None  # Karn's rule: no RTT sample from a resent segment
            self.snd_nxt = self.snd_una
            self._transmit(now)
        self._wake()
        return "pmtu_lowered"

    def _trace_icmp(self, report: IcmpReport, now: int, verdict: str, reason: str) -> None:
        if self._tracer is not None:
            self._tracer(
                TraceRecord(
                    now,
                    TraceKind.EVENT,
                    self.label,
                    {
                        "note": f"ICMP {report.kind.value} for seq {report.seq}: {reason}",
                        "icmp": report.kind.value,
                        "reporter": report.reporter,
                        "seq": report.seq,
                        "mtu": report.mtu,
                        "verdict": verdict,
                        "state": self.state.value,
                    },
                )
            )

    def _segment_in_closed(self, seg: Segment, now: int) -> None:
        # RFC 9293 3.10.7.1: all data discarded; a non-RST gets a RST in reply.
        if seg.flags & Flag.RST:
            self._verdict(
                seg, now, "drop", "RST in CLOSED is discarded (3.10.7.1)", "conn.closed_rst"
            )
            return
        self._verdict(
            seg, now, "reset", "segment in CLOSED answered with RST (3.10.7.1)", "conn.closed_reset"
        )
        self._emit(reset_for(seg), now)

    def _segment_in_listen(self, seg: Segment, now: int) -> None:
        flags = seg.flags
        # RFC 9293 3.10.7.2 first: an incoming RST is ignored.
        if flags & Flag.RST:
            self._verdict(
                seg, now, "drop", "RST in LISTEN is ignored (3.10.7.2)", "conn.listen_rst"
            )
            return
        # Second: any ACK is bad in LISTEN: <SEQ=SEG.ACK><CTL=RST>.
        if flags & Flag.ACK:
            self._verdict(
                seg, now, "reset", "ACK in LISTEN answered with RST (3.10.7.2)", "conn.listen_ack"
            )
            self._emit(reset_for(seg), now)
            return
        # Third: a SYN starts a connection. A SYN that also carries FIN is nonsense
        # that only scanners send; Linux discards it, and so do we.
        if flags & Flag.SYN and flags & Flag.FIN:
            self._verdict(
                seg, now, "drop", "SYN with FIN in LISTEN is discarded", "conn.listen_syn_fin"
            )
            return
        if flags & Flag.SYN:
            if self.remote_port and seg.src_port != self.remote_port:
                # A fully specified passive OPEN only takes its own foreign socket.
                self._verdict(
                    seg,
                    now,
                    "reset",
                    "SYN from another peer than the OPEN named",
                    "conn.listen_wrong_peer",
                )
                self._emit(reset_for(seg), now)
                return
            self._verdict(seg, now, "accept", "SYN in LISTEN (3.10.7.2)")
            self.remote_port = seg.src_port
            self.irs = seg.seq
            self.rcv_nxt = seq_add(seg.seq, 1)
            self._take_syn_options(seg)
            # SND.WND from the SYN: its window field is never scaled (RFC 7323 2.2).
            self._update_send_window(seg, force=True)
            self._choose_iss(now)
            self._transition(Trigger.RCV_SYN, now)
            if seg.payload:
                # RFC 9293 allows queueing text that rides on a SYN; like Linux without
                # TCP Fast Open we do not, so the peer retransmits it after the handshake.
                self._trace_note(now, "text on SYN not taken; the peer will resend it")
            self._send_syn(now)
            return
        # Fourth: anything else is dropped.
        self._verdict(
            seg, now, "drop", "no SYN, ACK or RST in LISTEN (3.10.7.2)", "conn.listen_no_syn"
        )

    def _segment_in_syn_sent(self, seg: Segment, now: int) -> None:
        flags = seg.flags
        # RFC 9293 3.10.7.3 first: check the ACK field.
        if flags & Flag.ACK and (seq_le(seg.ack, self.iss) or seq_gt(seg.ack, self.snd_max)):
            if flags & Flag.RST:
                self._verdict(
                    seg,
                    now,
                    "drop",
                    "RST with unacceptable ACK in SYN_SENT",
                    "conn.syn_sent_bad_ack_rst",
                )
            else:
                self._verdict(
                    seg,
                    now,
                    "reset",
                    "unacceptable ACK in SYN_SENT (3.10.7.3)",
                    "conn.syn_sent_bad_ack",
                )
                self._emit(Segment(self.local_port, self.remote_port, seg.ack, 0, Flag.RST), now)
            return
        ack_acceptable = bool(flags & Flag.ACK)  # here: SND.UNA < SEG.ACK =< SND.NXT
        # Second: the RST bit. Acceptable only if it acknowledges our SYN (MUST-... RFC
        # 5961 3.2 via RFC 9293 3.10.7.3); then the connection is refused.
        if flags & Flag.RST:
            if ack_acceptable:
                self._verdict(seg, now, "reset", "RST acknowledging our SYN: refused")
                self._enter_closed(Trigger.RCV_RST, CloseReason.REFUSED, now)
            else:
                self._verdict(
                    seg,
                    now,
                    "drop",
                    "RST without ACK in SYN_SENT (3.10.7.3)",
                    "conn.syn_sent_rst_no_ack",
                )
            return
        # Fourth: the SYN bit.
        if not flags & Flag.SYN:
            self._verdict(
                seg,
                now,
                "drop",
                "neither SYN nor RST in SYN_SENT (3.10.7.3)",
                "conn.syn_sent_no_syn",
            )
            return
        self.irs = seg.seq
        self.rcv_nxt = seq_add(seg.seq, 1)
        self._take_syn_options(seg)
        if ack_acceptable:
            self._verdict(seg, now, "accept", "SYN,ACK in SYN_SENT (3.10.7.3)")
            self._ack_advances(seg.ack, now)
            self._update_send_window(seg, force=True)
            self._transition(Trigger.RCV_SYN_ACK, now)
            self._post(Established())
            # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>; queued data MAY ride along (the flush
            # after this segment sends data first, a bare ACK only if there is none).
            self._need_ack = True
            if seg.payload or flags & (Flag.FIN | Flag.URG):
                # "continue processing at the sixth step": URG, text and FIN on the
                # SYN,ACK (3.10.7.3; Linux runs tcp_urg here too).
                if flags & Flag.URG:
                    self._take_urgent(seg)
                payload = seg.payload[: self.rcv_wnd]
                start = seq_add(seg.seq, 1)
                self._process_text_and_fin(
                    seg, start, payload, self._fin_in_order(seg, start, payload), now
                )
            return
        # Simultaneous open: SYN without ACK. <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>.
        self._verdict(seg, now, "accept", "SYN in SYN_SENT: simultaneous open (3.10.7.3)")
        self._update_send_window(seg, force=True)
        self._transition(Trigger.RCV_SYN, now)
        self.snd_nxt = self.iss
        self._send_syn(now)

    def _segment_in_synchronized(self, seg: Segment, now: int) -> None:
        """SYN_RECEIVED and the synchronized states: RFC 9293 3.10.7.4, eight steps."""
        flags = seg.flags
        state = self.state
        # A retransmitted SYN while our SYN,ACK is unanswered: answer with the SYN,ACK
        # again, as Linux does (RFC 9293 would send a bare ACK here, which the peer in
        # SYN_SENT can only drop).
        if (
            state is State.SYN_RECEIVED
            and flags & Flag.SYN
            and not flags & (Flag.RST | Flag.ACK)
            and seg.seq == self.irs
        ):
            self._verdict(seg, now, "accept", "retransmitted SYN: resend SYN,ACK")
            self.snd_nxt = self.iss
            self._send_syn(now)
            return

        # Simultaneous open: the peer's SYN,ACK crosses ours. Its SYN lies just below
        # RCV.NXT, so the 3.10.7.4 table calls it unacceptable and a strict reading
        # needs two more ACKs (six segments). Linux takes exactly this segment as the ACK
        # of our SYN (tcp_validate_incoming), so both ends are ESTABLISHED after four.
        if (
            state is State.SYN_RECEIVED
            and not self.passive_open
            and flags & (Flag.SYN | Flag.ACK | Flag.RST | Flag.FIN) == Flag.SYN | Flag.ACK
            and not seg.payload
            and seq_add(seg.seq, 1) == self.rcv_nxt
            and seg.ack == self.snd_max
        ):
            self._verdict(seg, now, "accept", "crossing SYN,ACK of a simultaneous open")
            self._ack_advances(seg.ack, now)
            self._update_send_window(seg, force=True)
            self._transition(Trigger.RCV_ACK_OF_SYN, now)
            self._post(Established())
            return

        # RFC 7323 5.3 R1 (PAWS): a timestamp older than TS.Recent marks an old
        # duplicate from an earlier wrap of the sequence space: ACK and drop.
        timestamp = seg.options.timestamp if seg.options is not NO_OPTIONS else None
        if (
            self.ts_enabled
            and timestamp is not None
            and not flags & Flag.RST
            and seq_lt(timestamp[0], self.ts_recent)
        ):
            # Linux rate limits this ACK like any out-of-window one (TCPACKSkippedPAWS).
            self._ack_unacceptable(
                seg, now, "PAWS: timestamp older than TS.Recent (RFC 7323)", "conn.paws"
            )
            return

        # First: is the segment acceptable (3.10.7.4 table)?
        start, payload, acceptable = self._check_sequence(seg)
        if not acceptable:
            if flags & Flag.RST:
                self._verdict(
                    seg, now, "drop", "RST outside the window (3.10.7.4)", "conn.rst_out_of_window"
                )
                return
            if flags & Flag.SYN and state is not State.SYN_RECEIVED:
                # RFC 5961 4.2: a SYN in a synchronized state gets a challenge ACK
                # "irrespective of the sequence number", so it is rate limited too.
                self._challenge_ack(
                    seg, now, "SYN outside the window: challenge ACK", "conn.syn_out_of_window"
                )
                return
            ends_at_rcv_nxt = seg.seg_len > 0 and seg.end_seq == self.rcv_nxt
            if state is State.TIME_WAIT and flags & Flag.FIN and ends_at_rcv_nxt:
                # The peer's FIN again: our last ACK was lost. ACK it and restart 2*MSL
                # (RFC 9293 3.10.7.4 eighth step, TIME-WAIT; seed claim C11a).
                self._verdict(
                    seg, now, "ack", "retransmitted FIN in TIME_WAIT: re-ACK", "conn.time_wait_fin"
                )
                self._need_ack = True
                self._arm_time_wait(now)
                return
            if (
                ends_at_rcv_nxt
                and state is not State.SYN_RECEIVED
                and not flags & Flag.SYN
                and flags & Flag.ACK
            ):
                # An old duplicate that ends exactly at RCV.NXT (e.g. the peer resending
                # its FIN because our ACK was lost) still carries a current ACK. Linux
                # takes such ACKs (tcp_sequence accepts end_seq >= RCV.NXT); the strict
                # table would drop them and cost the peer a retransmission round.
                self._need_ack = True
                self._update_timestamp(seg)
                # Counted as a duplicate only when the ACK step keeps the segment: a
                # challenge ACK there has its own counter, and an ACK that completes our
                # close is taken, not dropped (one counter per dropped input).
                if self._process_ack(seg, False, now):
                    self._verdict(
                        seg,
                        now,
                        "ack",
                        "old duplicate: ACK it, use its ACK field",
                        "conn.old_duplicate",
                    )
                return
            self._ack_unacceptable(
                seg, now, "unacceptable segment answered with ACK (3.10.7.4)", "conn.out_of_window"
            )
            return
        self._update_timestamp(seg)

        # Second: the RST bit (with the RFC 5961 exact-match rule RFC 9293 adopts).
        if flags & Flag.RST:
            if seg.seq != self.rcv_nxt:
                self._challenge_ack(
                    seg, now, "in-window RST, not RCV.NXT: challenge ACK", "conn.rst_not_exact"
                )
                return
            self._verdict(seg, now, "reset", f"RST in {state.value} (3.10.7.4)")
            if state is State.SYN_RECEIVED and self.passive_open:
                self._return_to_listen(Trigger.RCV_RST_RETURN_TO_LISTEN, now)
            elif state is State.SYN_RECEIVED:
                # Came from an active OPEN (simultaneous open): "connection refused".
                self._enter_closed(Trigger.RCV_RST, CloseReason.REFUSED, now)
            elif state is State.TIME_WAIT:
                # RFC 9293 3.10.7.4 second step, TIME-WAIT: just "enter the CLOSED
                # state, delete the TCB, and return" -- no "connection reset" signal
                # (that is for ESTABLISHED ... CLOSE-WAIT). Both FINs were exchanged and
                # acknowledged, so the application's close completed normally; the RST
                # only cuts 2*MSL short (RFC 1337 "TIME-WAIT assassination").
                self._enter_closed(Trigger.RCV_RST, CloseReason.NORMAL, now)
            else:
                self._send_buffer.clear()
                self._enter_closed(Trigger.RCV_RST, CloseReason.RESET, now)
            return

        # Third: security/compartment: no compartments in tcpstack (RFC 9293 3.10.7.4).

        # Fourth: the SYN bit.
        if flags & Flag.SYN:
            if state is State.SYN_RECEIVED and self.passive_open:
                self._verdict(
                    seg,
                    now,
                    "drop",
                    "SYN in SYN_RECEIVED: back to LISTEN",
                    "conn.syn_in_syn_received",
                )
                self._return_to_listen(Trigger.RCV_SYN_RETURN_TO_LISTEN, now)
                return
            # RFC 9293 3.10.7.4 fourth step (MUST per RFC 5961 section 4): challenge ACK.
            self._challenge_ack(
                seg, now, "SYN in a synchronized state: challenge ACK", "conn.syn_synchronized"
            )
            return

        # Fifth: the ACK field. Without ACK the segment is dropped.
        if not flags & Flag.ACK:
            self._verdict(seg, now, "drop", "no ACK bit (3.10.7.4 fifth step)", "conn.no_ack")
            return
        fin_in_order = self._fin_in_order(seg, start, payload)
        if not self._process_ack(seg, fin_in_order, now):
            return

        # Sixth: the URG bit, in the states that still receive (3.10.7.4: in CLOSE_WAIT
        # and after, the peer's FIN came already: URG is ignored).
        if flags & Flag.URG and self.state in _RECEIVING_STATES:
            self._take_urgent(seg)
        # Seventh and eighth: segment text and FIN.
        if self._tracer is not None:  # every accepted segment passes here (issue 9)
            self._verdict(seg, now, "accept", "")
        self._process_text_and_fin(seg, start, payload, fin_in_order, now)

    def _take_urgent(self, seg: Segment) -> None:
        """Sixth step (RFC 9293 3.10.7.4): RCV.UP <- max(RCV.UP, SEG.UP), and tell the
        application when RCV.UP is ahead of the data it has read.

        When: MUST-32 (RFC 1122 4.2.2.4) wants the application informed when urgent data
        appears and "whenever the urgent pointer advances in the data stream"; the sixth
        step's "do not signal the user again" is then about a pointer that does not
        advance (a repeated or retransmitted one), which posts nothing. Linux likewise
        sends SIGURG each time tcp_check_urg takes a new pointer.

        SEG.UP is SEG.SEQ + the urgent field: the octet following the urgent data
        (MUST-62; what Linux sends). The urgent octets stay in the stream in order
        (RFC 6093 recommends in-line delivery); MUST-33 is `urgent_remaining`.
        """
        seg_up = seq_add(seg.seq, seg.urgent)
        up_offset = self._receive_offset + seq_diff(seg_up, self.rcv_nxt)
        if self._rcv_up_offset is not None and up_offset <= self._rcv_up_offset:
            return  # not an advance: nothing new to tell
        self._rcv_up_offset = up_offset
        remaining = self.urgent_remaining
        if remaining > 0:
            self._post(UrgentData(remaining))

    def _update_timestamp(self, seg: Segment) -> None:
        """RFC 7323 4.3: TS.Recent takes SEG.TSval when SEG.SEQ =< Last.ACK.sent."""
        if not self.ts_enabled or seg.options is NO_OPTIONS:
            return
        timestamp = seg.options.timestamp
        if (
            timestamp is not None
            and seq_ge(timestamp[0], self.ts_recent)
            and seq_le(seg.seq, self._last_ack_sent)
        ):
            self.ts_recent = timestamp[0]

    def _check_sequence(self, seg: Segment) -> tuple[int, bytes, bool]:
        """RFC 9293 3.10.7.4 first step: acceptability, then trim to the window.

        Returns the trimmed start, the trimmed payload and whether the segment is
        acceptable. With a zero receive window an in-sequence segment stays acceptable
        for its ACK and RST, its text dropped ("special allowance", 3.10.7.4).
        """
        rcv_nxt = self.rcv_nxt
        rcv_wnd = self.rcv_wnd
        seg_len = seg.seg_len
        seq = seg.seq
        if seg_len == 0:
            acceptable = seq == rcv_nxt if rcv_wnd == 0 else seq_in_window(seq, rcv_nxt, rcv_wnd)
        elif rcv_wnd == 0:
            acceptable = False
        else:
            last = seq_add(seq, seg_len - 1)
            acceptable = seq_in_window(seq, rcv_nxt, rcv_wnd) or seq_in_window(
                last, rcv_nxt, rcv_wnd
            )
        if not acceptable:
            if rcv_wnd == 0 and seq == rcv_nxt:
                return seq, b"", True
            return seq, b"", False
        payload = seg.payload
        start = seq
        if seg.flags & Flag.SYN:
            start = seq_add(start, 1)
        if payload and seq_lt(start, rcv_nxt):
            skip = seq_sub(rcv_nxt, start)
            payload = payload[skip:]
            start = rcv_nxt if skip <= len(seg.payload) else seq_add(start, len(seg.payload))
        if payload:
            room = seq_sub(seq_add(rcv_nxt, rcv_wnd), start)
            if len(payload) > room:
                payload = payload[: max(room, 0)]
        return start, payload, True

    def _fin_in_order(self, seg: Segment, start: int, payload: bytes) -> bool:
        """Will the FIN step take this segment's FIN: present, its text starting at
        RCV.NXT and not cut short by the window?"""
        return (
            bool(seg.flags & Flag.FIN)
            and start == self.rcv_nxt
            and seq_add(start, len(payload)) == seq_add(seg.end_seq, -1)
        )

    def _process_ack(self, seg: Segment, fin_in_order: bool, now: int) -> bool:
        """RFC 9293 3.10.7.4 fifth step. Returns False when the segment is finished."""
        state = self.state
        ack = seg.ack
        if state is State.SYN_RECEIVED:
            if seq_lt(self.snd_una, ack) and seq_le(ack, self.snd_max):
                self._ack_advances(ack, now)
                self._update_send_window(seg, force=True)
                self._transition(Trigger.RCV_ACK_OF_SYN, now)
                self._post(Established())
                state = State.ESTABLISHED
            else:
                # <SEQ=SEG.ACK><CTL=RST> for an unacceptable ACK.
                self._verdict(
                    seg,
                    now,
                    "reset",
                    "unacceptable ACK in SYN_RECEIVED",
                    "conn.syn_received_bad_ack",
                )
                self._emit(Segment(self.local_port, self.remote_port, ack, 0, Flag.RST), now)
                return False
        if seq_gt(ack, self.snd_max):
            # Acknowledges something not yet sent: ACK and drop (3.10.7.4; RFC 5961 5.2
            # makes the ACK a rate-limited challenge ACK).
            self._challenge_ack(
                seg, now, "ACK for data not yet sent: drop, challenge ACK", "conn.ack_unsent"
            )
            return False
        if seq_lt(ack, seq_sub(self.snd_una, self.max_snd_wnd)):
            # RFC 5961 5.2 (RFC 9293 3.10.7.4 fifth step, MAY-12): an ACK older than
            # SND.UNA - MAX.SND.WND cannot be a genuine duplicate: drop the segment
            # (its text too) and send a challenge ACK.
            self._challenge_ack(
                seg, now, "ACK below SND.UNA - MAX.SND.WND: challenge ACK", "conn.ack_too_old"
            )
            return False
        if self.sack_enabled and seg.options is not NO_OPTIONS and seg.options.sack_blocks:
            self._take_sack_blocks(seg.options.sack_blocks)
        if seq_lt(self.snd_una, ack):
            self._new_ack(seg, ack, now)
        elif ack == self.snd_una:
            self._maybe_duplicate_ack(seg, now)
        if seq_le(self.snd_una, ack):
            self._update_send_window(seg)
            # The peer is alive and holds its window closed: what we resend into it
            # (data or our FIN) works as a window probe, and RFC 9293 3.8.6.1 (MUST-37)
            # keeps the connection open while probes are answered, so the R2 count
            # (3.8.3) starts over. Linux likewise only times out such "zero probes"
            # when ACKs stop (tcp_rtx_probe0_timed_out). An orphan under Linux's
            # tcp_orphan_retries keeps counting (see _on_retransmit_timeout).
            counting_orphan = self._user_closed and self.config.orphan_retries is not None
            if self.snd_wnd == 0 and not counting_orphan:
                self.retransmissions = 0

        if state is State.FIN_WAIT_1 and self._fin_acked:
            # Our FIN is acknowledged. If this segment also carries the peer's FIN in
            # sequence, the FIN step takes us straight to TIME_WAIT (seed claim C4).
            if not fin_in_order:
                self._transition(Trigger.RCV_ACK_OF_FIN, now)
        elif state is State.CLOSING and self._fin_acked:
            self._transition(Trigger.RCV_ACK_OF_FIN, now)
            self._enter_time_wait(now)
            return False
        elif state is State.LAST_ACK and self._fin_acked:
            self._verdict(seg, now, "accept", "ACK of our FIN in LAST_ACK")
            self._enter_closed(Trigger.RCV_ACK_OF_FIN, CloseReason.NORMAL, now)
            return False
        return True

    def _new_ack(self, seg: Segment, ack: int, now: int) -> None:
        """SEG.ACK above SND.UNA: RTT, congestion window, loss recovery."""
        acked = seq_sub(ack, self.snd_una)
        flight = seq_sub(self.snd_max, self.snd_una)
        timestamp = seg.options.timestamp if seg.options is not NO_OPTIONS else None
        if self.ts_enabled and timestamp is not None and timestamp[1]:
            # RFC 7323 4.1 (RTTM): the echoed timestamp dates the segment it answers,
            # retransmitted or not, so every ACK of new data is a sample.
            rtt_ms = (self._ts_clock(now) - timestamp[1]) & MASK
            if rtt_ms < 1 << 31:
                self._rtt.sample(max(rtt_ms * MILLISECOND, 1))
                self._rtt_timed_seq = None
        self._ack_advances(ack, now)
        self._dupacks = 0
        if self._in_recovery:
            if seq_ge(ack, self._recover):
                # RFC 6582 3.2 step 3 (full acknowledgment): recovery ends.
                self._in_recovery = False
                self._cc.on_recovery_exit(now)
                self._trace_note(now, "loss recovery ends")
            else:
                # Partial acknowledgment (RFC 6582 3.2 step 4): the next hole is lost
                # too. Resend it now; deflate the window by what was acknowledged.
                if not self.sack_enabled:
                    self._retransmit_head(now)
                    cwnd = self._cc.cwnd - acked
                    if acked >= self.effective_mss:
                        cwnd += self.effective_mss
                    self._cc.cwnd = max(cwnd, self.effective_mss)
        else:
            self._cc.on_ack(acked, flight, now, self._rtt.srtt)

    def _maybe_duplicate_ack(self, seg: Segment, now: int) -> None:
        """RFC 5681 2 (duplicate ACK) and 3.2 (fast retransmit), RFC 6675 5 (SACK)."""
        if (
            self.snd_una == self.snd_max
            or seg.payload
            or seg.flags & (Flag.SYN | Flag.FIN)
            or self._scaled_window(seg) != self.snd_wnd
            # With the window closed, repeated ACKs answer our probes; they say nothing
            # about loss, so they do not count toward fast retransmit.
            or self.snd_wnd == 0
        ):
            return
        self._dupacks += 1
        mss = self.effective_mss
        if self._in_recovery:
            if not self.sack_enabled:
                # RFC 6582 3.2 step 4 / RFC 5681 3.2 step 4: each further duplicate ACK
                # means a segment left the network; inflate cwnd to send new data.
                self._cc.cwnd += mss
            return
        lost = self._dupacks >= DUP_THRESH or (
            self.sack_enabled and self._scoreboard.is_lost(self._send_offset, mss)
        )
        # RFC 6582 3.2 step 2: only if the ACK covers more than "recover", so one
        # window's losses trigger one reduction.
        if lost and seq_gt(self.snd_una, self._recover):
            self._enter_recovery(now)

    def _enter_recovery(self, now: int) -> None:
        flight = seq_sub(self.snd_max, self.snd_una)
        self._in_recovery = True
        self._recover = self.snd_max
        # RFC 5681 3.2 step 2: data sent beyond cwnd on the first duplicate ACKs (with
        # SACK the pipe lets SACKed octets release new ones: limited transmit, RFC 3042)
        # "MUST NOT be included" in the FlightSize of equation (4).
        self._cc.on_fast_retransmit(min(flight, self._cc.cwnd), now)
        if self.sack_enabled:
            # RFC 6675 5: cwnd = ssthresh; the pipe estimate replaces window inflation.
            self._cc.cwnd = self._cc.ssthresh
            self._rtx_high = self._send_offset
        self._trace_note(now, f"fast retransmit: {self._dupacks} duplicate ACKs")
        self._retransmit_head(now)
        if self.sack_enabled:
            self._rtx_high = self._send_offset + min(self.effective_mss, flight)

    def _take_sack_blocks(self, blocks: tuple[tuple[int, int], ...]) -> None:
        """RFC 2018: record SACK blocks that lie within what is in flight."""
        for left, right in blocks:
            if not (seq_lt(self.snd_una, right) and seq_le(right, self.snd_max)):
                continue  # outside the flight (old, or bogus): ignore it
            if seq_lt(left, self.snd_una):
                left = self.snd_una
            if not seq_lt(left, right):
                continue
            base = self._send_offset
            self._scoreboard.add(
                base + seq_sub(left, self.snd_una), base + seq_sub(right, self.snd_una)
            )

    def _ack_advances(self, ack: int, now: int) -> None:
        """SND.UNA < SEG.ACK =< SND.MAX: release acknowledged bytes, restart timers."""
        acked = seq_sub(ack, self.snd_una)
        syn_newly_acked = not self._syn_acked
        if syn_newly_acked:
            self._syn_acked = True
            acked -= 1
        data_acked = min(acked, len(self._send_buffer))
        if data_acked > 0:
            del self._send_buffer[:data_acked]
            self._send_buffer_seq = seq_add(self._send_buffer_seq, data_acked)
            self._send_offset += data_acked
            self._scoreboard.advance(self._send_offset)
        if self._fin_seq is not None and seq_gt(ack, self._fin_seq):
            self._fin_acked = True
        # RFC 6298 2.2-2.3 sample, only from a segment never retransmitted (Karn).
        if self._rtt_timed_seq is not None and seq_gt(ack, self._rtt_timed_seq):
            self._rtt.sample(now - self._rtt_timed_at)
            self._rtt_timed_seq = None
        if syn_newly_acked and self._rtt.srtt is None:
            # RFC 6298 5.7: the handshake gave no sample (our SYN or SYN,ACK was resent),
            # so data transmission starts with an RTO of 3 s (Linux: TCP_TIMEOUT_FALLBACK).
            self._rtt.rto = min(max(3 * SECOND, self.config.min_rto), self.config.max_rto)
        self.snd_una = ack
        if seq_lt(self.snd_nxt, ack):
            self.snd_nxt = ack
        if self.snd_up is not None and seq_ge(ack, self.snd_up):
            self.snd_up = None  # every urgent octet is acknowledged: urgent mode ends
        self.retransmissions = 0
        self._rtx_stamp = None
        self.icmp_error = None  # something worked: forget a soft error (Linux's tcp_ack)
        # RFC 6298 5.2-5.3: all acknowledged -> stop the timer, else restart it.
        self._stop_retransmit(now)
        if self.snd_una != self.snd_max:
            self._arm_retransmit(now)
        if self._send_space_wanted and self.send_space > 0:
            self._send_space_wanted = False
            self._post(SendSpaceAvailable(self.send_space))

    def _scaled_window(self, seg: Segment) -> int:
        # RFC 7323 2.2: the window field of a SYN is never scaled.
        if seg.flags & Flag.SYN:
            return seg.window
        return seg.window << self.snd_wscale

    def _update_send_window(self, seg: Segment, *, force: bool = False) -> None:
        """RFC 9293 3.10.7.4 fifth step: take SEG.WND unless the segment is older."""
        if force or (
            seq_lt(self.snd_wl1, seg.seq)
            or (self.snd_wl1 == seg.seq and seq_le(self.snd_wl2, seg.ack))
        ):
            self.snd_wnd = self._scaled_window(seg)
            self.snd_wl1 = seg.seq
            self.snd_wl2 = seg.ack
            if self.snd_wnd > self.max_snd_wnd:
                self.max_snd_wnd = self.snd_wnd

    def _process_text_and_fin(
        self, seg: Segment, start: int, payload: bytes, fin_in_order: bool, now: int
    ) -> None:
        """RFC 9293 3.10.7.4 seventh (segment text) and eighth (FIN) steps."""
        state = self.state
        if state not in _RECEIVING_STATES:
            # CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT: the peer's FIN came already, so
            # new text or FIN cannot arrive; ignore them (3.10.7.4 seventh step).
            if payload:
                self._verdict(
                    seg, now, "drop", "text after the peer's FIN ignored", "conn.text_after_fin"
                )
            return
        if (
            payload
            and self._user_closed
            and self.config.half_duplex_close
            and state is not State.ESTABLISHED
        ):
            # The application closed and can never read this: answer with RST so the
            # peer knows its data was lost (RFC 9293 3.6.1; Linux's TCPAbortOnData).
            self._verdict(seg, now, "reset", "text after close(): reset", "conn.text_after_close")
            self._emit(Segment(self.local_port, self.remote_port, self.snd_nxt, 0, Flag.RST), now)
            self._enter_closed(Trigger.RCV_DATA_AFTER_CLOSE, CloseReason.ABORTED, now)
            return
        if payload and start != self.rcv_nxt:
            self._hold_out_of_order(seg, start, payload, now)
            return
        if payload:
            gap_filled = self._reassembly.held > 0
            self._take_in_order(payload)
            if gap_filled:
                self._take_reassembled()
                # RFC 5681 4.2: ACK at once when a segment fills (part of) a gap.
                self._need_ack = True
            self._post(DataAvailable(len(self._receive_buffer)))
            self._ack_received_data(len(payload))
        elif seg.payload:
            # Text that the first step cut away entirely: RCV.WND is 0 and only the
            # "special allowance" kept the segment for its ACK. The text itself is not
            # acceptable, so it gets an ACK (3.10.7.4 first step); that ACK is how a
            # zero-window probe learns the window (3.8.6.1), as in Linux.
            self._need_ack = True
        if not fin_in_order and self._ooo_fin_offset != self._receive_offset:
            if seg.flags & Flag.FIN:
                # A FIN beyond a gap is out of order too: the eighth step cannot take it
                # yet, and RFC 5681 4.2 (RFC 1122 4.2.2.21) wants an immediate duplicate
                # ACK for an out-of-order segment, text or not.
                self._need_ack = True
                self._ooo_fin_offset = self._receive_offset + seq_sub(
                    seq_add(seg.end_seq, -1), self.rcv_nxt
                )
            return
        self._take_fin(now)

    def _take_fin(self, now: int) -> None:
        """Eighth step: advance RCV.NXT over the FIN, ACK it, report end of stream."""
        state = self.state
        self.rcv_nxt = seq_add(self.rcv_nxt, 1)
        if self._advertised_edge is not None:
            # The FIN takes a sequence number but no buffer space: the offered window
            # keeps its size instead of looking one byte smaller (as in Linux).
            self._advertised_edge = seq_add(self._advertised_edge, 1)
        self._fin_received = True
        self._ooo_fin_offset = None
        self._post(EndOfStream())
        if state is State.ESTABLISHED:
            # Linux delays the ACK of a FIN that moves it to CLOSE_WAIT (pingpong mode),
            # so an application that closes at once sends FIN+ACK: three segments.
            self._delay_ack()
            self._transition(Trigger.RCV_FIN, now)
        elif state is State.FIN_WAIT_1:
            self._need_ack = True
            if self._fin_acked:
                self._transition(Trigger.RCV_FIN_ACK_OF_FIN, now)
                self._enter_time_wait(now)
            else:
                self._transition(Trigger.RCV_FIN, now)
        else:  # FIN_WAIT_2
            self._need_ack = True
            self._transition(Trigger.RCV_FIN, now)
            self._enter_time_wait(now)

    def _take_in_order(self, data: bytes) -> None:
        self._receive_buffer += data
        self.rcv_nxt = seq_add(self.rcv_nxt, len(data))
        self._receive_offset += len(data)

    def _take_reassembled(self) -> None:
        """Move whatever the reassembly queue now continues into the receive buffer."""
        ready = self._reassembly.pop_ready(self._receive_offset)
        if ready:
            self._take_in_order(ready)

    def _hold_out_of_order(self, seg: Segment, start: int, payload: bytes, now: int) -> None:
        """Text beyond RCV.NXT: keep it for reassembly (bounded), ACK at once (RFC 5681
        4.2) so the sender sees a duplicate ACK, with SACK blocks when agreed."""
        offset = self._receive_offset + seq_sub(start, self.rcv_nxt)
        stack_refusals = self.stats["limit.reassembly_bytes"]
        stored = self._reassembly.add(offset, payload, self._receive_offset)
        if (
            not stored
            and self.stats["limit.reassembly_bytes"] == stack_refusals
            and not any(
                s <= offset and offset + len(payload) <= e for s, e in self._reassembly.blocks()
            )
        ):
            # Not a duplicate of held text and not refused by the Endpoint's budget
            # (counted there): this connection's byte or block limit refused it.
            self.stats["limit.reassembly_connection"] += 1
            self._trace_note(now, "out-of-order text dropped: reassembly limit")
        if seg.flags & Flag.FIN and seq_add(start, len(payload)) == seq_add(seg.end_seq, -1):
            # The FIN follows the last octet of text only if the first step did not cut
            # the text at the window's right edge; a cut segment's FIN lies beyond the
            # window and is not taken (RFC 9293 3.10.7.4 first step).
            self._ooo_fin_offset = offset + len(payload)
        self._need_ack = True

    def _ack_received_data(self, size: int) -> None:
        """RFC 9293 3.8.6.3 / RFC 5681 4.2: ACK at least every second full-sized
        segment, otherwise within the delayed-ACK timeout."""
        config = self.config
        if not config.delayed_ack or config.quickack:
            self._need_ack = True
            return
        full = config.mss - (TIMESTAMP_OPTION_SPACE if self.ts_enabled else 0)
        if size >= full:
            self._full_segments_unacked += 1
        if self._full_segments_unacked >= 2:
            self._need_ack = True
        else:
            self._delay_ack()

    def _delay_ack(self) -> None:
        if not self.config.delayed_ack or self.config.quickack:
            self._need_ack = True
        else:
            self._ack_delayed = True

    # ------------------------------------------------------------------ sending

    def _send_syn(self, now: int) -> None:
        """SYN (SYN_SENT) or SYN,ACK (SYN_RECEIVED) with our options (RFC 9293 3.7.1,
        RFC 7323 2.2 and 3.2, RFC 2018 2). A SYN,ACK offers only what the SYN offered."""
        config = self.config
        flags = Flag.SYN
        ack = 0
        active = self.state is State.SYN_SENT
        if not active:
            flags |= Flag.ACK
            ack = self.rcv_nxt
        offer_wscale = config.window_scaling and (active or self.rcv_wscale_offered)
        offer_ts = config.timestamps and (active or self.ts_enabled)
        offer_sack = config.sack and (active or self.sack_enabled)
        options = Options(
            mss=config.mss,
            window_scale=window_shift_for(config.receive_buffer_size) if offer_wscale else None,
            sack_permitted=offer_sack,
            timestamp=(self._ts_clock(now), self.ts_recent if not active else 0)
            if offer_ts
            else None,
        )
        seg = Segment(
            self.local_port,
            self.remote_port,
            self.iss,
            ack,
            flags,
            # RFC 7323 2.2: the window in a SYN is never scaled.
            min(self.rcv_wnd, MAX_UNSCALED_WINDOW),
            options=options,
        )
        self._emit(seg, now)
        if self.snd_max == self.iss:
            self._rtt_timed_seq = self.iss
            self._rtt_timed_at = now
        else:
            self._rtt_timed_seq = None  # Karn's rule: a resent SYN gives no sample
        self.snd_nxt = seq_add(self.iss, 1)
        if seq_gt(self.snd_nxt, self.snd_max):
            # Never lower SND.MAX: a FIN sent in FIN_WAIT_1 before our SYN was
            # acknowledged (close in SYN_RECEIVED, 3.10.4) stays acceptable to ACK.
            self.snd_max = self.snd_nxt
        if self._retransmit_deadline is None:
            self._arm_retransmit(now)

    def _transmit(self, now: int) -> None:
        """Send what the windows allow: data from snd_nxt on, then our FIN.

        The usable window is min(SND.WND, cwnd) minus what is in flight (RFC 5681 2);
        small segments wait under Nagle's algorithm (RFC 9293 3.7.4) and sender-side
        silly window avoidance (3.8.6.2.1).
        """
        if self.state not in _SENDING_STATES:
            return
        if not self._syn_acked and (self._send_buffer or not self._fin_queued):
            # Data waits for our SYN to be acknowledged (RFC 9293 3.10.2 SYN-RECEIVED:
            # "queue the data for transmission after entering ESTABLISHED"). A CLOSE
            # with nothing queued sends its FIN at once (3.10.4 SYN-RECEIVED: "form a
            # FIN segment and send it, and enter FIN-WAIT-1"); the loop below does that.
            return
        if self._persist_deadline is not None and self.snd_wnd > 0:
            # The window opened: stop probing and resend from SND.UNA, since the probe
            # octet may not have been taken.
            self._stop_persist(now)
            self.snd_nxt = self.snd_una
        if self._in_recovery and self.sack_enabled:
            self._sack_recovery_send(now)
        cc = self._cc
        if self.snd_una == self.snd_max and now - self._last_send_time > self._rtt.rto:
            # RFC 5681 4.1: restart from the initial window after an idle RTO.
            cc.on_idle_restart(now - self._last_send_time, self._rtt.rto, now)
        buffer = self._send_buffer
        if (
            not self._fin_queued
            and seq_sub(self.snd_nxt, self._send_buffer_seq) >= len(buffer)
            and not (self.sack_enabled and self._scoreboard.sacked)
        ):
            # Nothing queued beyond SND.NXT and no FIN: the loop below would find nothing
            # to send (every segment a receiver takes ends here). Issue 9: skip it.
            return
        mss = self.effective_mss
        nodelay = self.config.nodelay
        # Nothing below changes while this loop sends (it only emits segments and moves
        # SND.NXT / SND.MAX), so it is read once per call, not once per segment (issue 9).
        buffer_seq = self._send_buffer_seq
        buffered = len(buffer)
        snd_una = self.snd_una
        snd_wnd = self.snd_wnd
        cwnd = cc.cwnd
        sacked = self.sack_enabled and self._scoreboard.sacked > 0
        window: int | None = None  # the window field, computed for the first segment
        while True:
            snd_nxt = self.snd_nxt
            offset = seq_sub(snd_nxt, buffer_seq)
            available = buffered - offset if offset <= buffered else 0
            in_flight = seq_sub(snd_nxt, snd_una)
            pipe = in_flight
            if sacked:
                if seq_lt(snd_nxt, self.snd_max):
                    # Going back over the flight after a timeout: never resend what the
                    # peer has SACKed (RFC 6675 5.1), and stop each segment at the next
                    # SACKed byte.
                    skip_to, limit = self._skip_sacked(snd_nxt)
                    if skip_to != snd_nxt:
                        self.snd_nxt = skip_to
                        continue
                    available = min(available, limit)
                pipe -= self._sacked_below_snd_nxt()
            # SACKed bytes leave the network (RFC 6675 pipe, against cwnd) but still sit
            # in the peer's buffer: the receive window counts them (RFC 9293 3.8.6).
            size = min(available, snd_wnd - in_flight, cwnd - pipe, mss)
            send_fin = (
                self._fin_queued
                and size == available
                and self._fin_seq is not None
                and seq_add(snd_nxt, max(size, 0)) == self._fin_seq
            )
            if size <= 0 and not send_fin:
                break
            if 0 < size < mss and not send_fin:
                # A segment smaller than a full one goes only if it carries everything
                # queued and (Nagle) nothing is in flight or TCP_NODELAY is on; or if it
                # fills half the largest window the peer offered (SWS, 3.8.6.2.1).
                last_piece = size == available
                if not (
                    # In urgent mode Nagle does not hold data back (Linux's
                    # tcp_nagle_test): urgent data is meant to go at once (3.8.5).
                    (last_piece and (nodelay or in_flight == 0 or self.snd_up is not None))
                    or (self.max_snd_wnd and size >= self.max_snd_wnd // 2)
                    or in_flight == 0
                ):
                    break
            if window is None:
                # Nothing is received or read while this loop runs, so every segment of
                # the burst carries the same window field: computed once, not per segment.
                window = self._window_field(update=True)
            seg = self._emit_data(snd_nxt, size, now, window)
            if (
                self._rtt_timed_seq is None
                and self.retransmissions == 0
                and seq_ge(snd_nxt, self.snd_max)
            ):
                self._rtt_timed_seq = snd_nxt  # time only new data (Karn's rule)
                self._rtt_timed_at = now
            self.snd_nxt = snd_nxt = seg.end_seq
            if seq_gt(snd_nxt, self.snd_max):
                self.snd_max = snd_nxt
            if self._retransmit_deadline is None:
                self._arm_retransmit(now)
            if send_fin:
                break
        # Zero window with data waiting and nothing in flight: probe it (RFC 9293 3.8.6.1).
        if (
            snd_wnd == 0
            and snd_una == self.snd_max
            and self._persist_deadline is None
            and seq_sub(buffer_seq, snd_una) + buffered > 0
        ):
            self._arm_persist(now)

    def _sack_recovery_send(self, now: int) -> None:
        """RFC 6675 5 (NextSeg rule 1): while the pipe leaves room, resend holes below
        the highest SACKed byte that IsLost() marks as lost, each once per recovery."""
        board = self._scoreboard
        mss = self.effective_mss
        highest = board.highest
        if highest is None:
            return
        while True:
            hole = board.next_hole(max(self._rtx_high, self._send_offset), highest)
            if hole is None or not board.is_lost(hole[0], mss):
                return
            if self._pipe() + mss > self._cc.cwnd:
                return
            start, end = hole
            size = min(end - start, mss)
            seq = seq_add(self.snd_una, start - self._send_offset)
            self._emit_data(seq, size, now)
            self.total_retransmissions += 1
            self._rtx_high = start + size

    def _skip_sacked(self, seq: int) -> tuple[int, int]:
        """From `seq` (below SND.MAX): the first sequence number at or after it that is not
        SACKed, and how many bytes from there run until the next SACKed byte."""
        base = self._send_offset
        start = base + seq_sub(seq, self.snd_una)
        end = base + seq_sub(self.snd_max, self.snd_una)
        hole = self._scoreboard.next_hole(start, end)
        if hole is None:
            return self.snd_max, 0
        return seq_add(self.snd_una, hole[0] - base), hole[1] - hole[0]

    def _sacked_below_snd_nxt(self) -> int:
        """SACKed bytes between SND.UNA and SND.NXT. After a timeout SND.NXT goes back
        to SND.UNA while the peer may still SACK data above it; those bytes are not in
        flight and must not shrink the pipe below zero."""
        board = self._scoreboard
        if not board.sacked:
            return 0
        nxt = self._send_offset + seq_sub(self.snd_nxt, self.snd_una)
        return board.sacked - board.sacked_above(nxt)

    def _pipe(self) -> int:
        """RFC 6675 SetPipe, simplified: bytes in flight that are neither SACKed nor
        judged lost and not yet resent."""
        board = self._scoreboard
        in_flight = seq_sub(self.snd_max, self.snd_una)
        pipe = in_flight - board.sacked
        highest = board.highest
        if highest is not None:
            mss = self.effective_mss
            pos = max(self._rtx_high, self._send_offset)
            while (hole := board.next_hole(pos, highest)) is not None:
                if not board.is_lost(hole[0], mss):
                    break
                pipe -= hole[1] - hole[0]
                pos = hole[1]
        return max(pipe, 0)

    def _retransmit_head(self, now: int, *, force: bool = False) -> None:
        """Resend the earliest unacknowledged segment (RFC 6298 5.4, RFC 5681 3.2),
        without moving SND.NXT. `force` ignores a zero window (a probe)."""
        offset = seq_sub(self.snd_una, self._send_buffer_seq)
        available = len(self._send_buffer) - offset if offset <= len(self._send_buffer) else 0
        size = min(available, self.effective_mss)
        in_window = seq_sub(self.snd_max, self.snd_una)
        if not force:
            size = min(size, max(in_window, 0))
        fin_pending = (
            self._fin_queued
            and self._fin_seq is not None
            and seq_le(seq_add(self.snd_una, size), self._fin_seq)
            and seq_gt(self.snd_max, self._fin_seq)
        )
        if size <= 0 and not fin_pending:
            return
        self._rtt_timed_seq = None  # Karn's rule
        self.total_retransmissions += 1
        seg = self._emit_data(self.snd_una, size, now)
        if seq_gt(seg.end_seq, self.snd_max):
            # A probe into a closed window may carry bytes never sent before: they are
            # sent now, and an ACK of them must be acceptable (3.10.7.4).
            self.snd_max = seg.end_seq
            if seq_gt(seg.end_seq, self.snd_nxt):
                self.snd_nxt = seg.end_seq

    def _emit_data(self, seq: int, size: int, now: int, window: int | None = None) -> Segment:
        """Emit `size` bytes of the send buffer starting at `seq`, with FIN when the
        segment reaches our FIN's sequence number and the FIN is queued. `window` is
        the window field when the caller has it already (see _transmit)."""
        offset = seq_sub(seq, self._send_buffer_seq)
        buffer = self._send_buffer
        flags = Flag.ACK
        if size and offset + size == len(buffer):
            flags |= Flag.PSH
        if (
            self._fin_queued
            and self._fin_seq is not None
            and seq_add(seq, size) == self._fin_seq
            and offset + size == len(buffer)
        ):
            flags |= Flag.FIN
        seg = Segment(
            self.local_port,
            self.remote_port,
            seq,
            self.rcv_nxt,
            flags,
            self._window_field(update=True) if window is None else window,
            0,
            self._segment_options(now, with_sack=False),
            bytes(buffer[offset : offset + size]) if size else b"",
        )
        self._emit(seg, now)
        self._last_send_time = now
        return seg

    def _flush(self, now: int) -> None:
        """End of every input: send what the windows allow, then a bare ACK if one is
        owed now and no segment sent just now carried it; a delayed one arms its timer."""
        if self.state in _SENDING_STATES:
            self._transmit(now)
        if self._need_ack:
            self._send_ack(now)
        elif self._ack_delayed and self._delayed_ack_deadline is None:
            self._delayed_ack_deadline = now + self.config.delayed_ack_timeout
            self._trace_timer(TraceKind.TIMER_ARMED, "delayed_ack", self._delayed_ack_deadline, now)

    def _send_ack(self, now: int) -> None:
        """<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (RFC 9293 3.10.7.4), with SACK blocks
        describing held out-of-order data when SACK was agreed (RFC 2018 4).

        While retransmitting, SND.NXT has gone back below SND.MAX; a bare ACK then
        carries SND.MAX, as BSD's tcp_output does, so that the peer (whose RCV.NXT may
        already be past our SND.NXT) finds it acceptable and reads its ACK field.
        """
        seg = Segment(
            self.local_port,
            self.remote_port,
            self.snd_max if self._syn_acked else self.snd_nxt,
            self.rcv_nxt,
            Flag.ACK,
            self._window_field(update=True),
            0,
            self._segment_options(now, with_sack=True),
        )
        self._emit(seg, now)

    def _segment_options(self, now: int, *, with_sack: bool) -> Options:
        """Options for a non-SYN segment: timestamps when agreed (RFC 7323 3.2), and SACK
        blocks, most recent first (RFC 2018 4), on ACKs while data is held."""
        timestamp = (self._ts_clock(now), self.ts_recent) if self.ts_enabled else None
        blocks: tuple[tuple[int, int], ...] = ()
        if with_sack and self.sack_enabled and self._reassembly.held:
            limit = 3 if timestamp is not None else 4
            base = self._receive_offset
            blocks = tuple(
                (seq_add(self.rcv_nxt, start - base), seq_add(self.rcv_nxt, end - base))
                for start, end in self._reassembly.sack_blocks(limit)
            )
        if timestamp is None and not blocks:
            return NO_OPTIONS
        if not blocks:
            # Options are immutable: segments sent within one TSval tick with the same
            # TS.Recent share one object instead of building one per segment (issue 9).
            last = self._timestamp_options
            if last.timestamp != timestamp:
                last = self._timestamp_options = Options(timestamp=timestamp)
            return last
        return Options(timestamp=timestamp, sack_blocks=blocks)

    def _ts_clock(self, now: int) -> int:
        """TSval: a millisecond clock (RFC 7323 5.4 allows 1 ms .. 1 s per tick)."""
        return (now // MILLISECOND + self._ts_offset) & MASK

    def _window_field(self, *, update: bool) -> int:
        """The window field to send: RCV.WND >> our shift (RFC 7323 2.3).

        Receiver-side silly window avoidance (RFC 9293 3.8.6.2.2): the right edge moves
        forward only in steps of at least min(buffer / 2, MSS). The offered window is
        never shrunk (3.8.6.2.2, RFC 7323 2.4): rounding goes up, not down.
        """
        shift = self.rcv_wscale
        rcv_nxt = self.rcv_nxt
        config = self.config
        # Both edges as distances from RCV.NXT: the one the free buffer space allows
        # and the one we advertised last (when it is not behind RCV.NXT).
        window = min(
            max(config.receive_buffer_size - len(self._receive_buffer), 0),
            MAX_UNSCALED_WINDOW << shift,
        )
        old = self._advertised_edge
        if old is not None:
            known = seq_sub(old, rcv_nxt)
            if known < HALF and window - known < min(config.receive_buffer_size // 2, config.mss):
                window = known  # not shrunk, and not moved by less than a step
        field = min((window + (1 << shift) - 1) >> shift, MAX_UNSCALED_WINDOW)
        if update:
            self._advertised_edge = seq_add(rcv_nxt, field << shift)
        return field

    def _window_update_due(self) -> bool:
        """Has reading opened the window far enough to tell the peer at once?

        The edge may move only in steps of min(buffer / 2, MSS) (RFC 9293 3.8.6.2.2).
        Beyond that, like Linux's tcp_cleanup_rbuf, a bare update is sent only when the
        window the peer knows is down to half the buffer or less and would at least
        double; otherwise the next ACK carries the new window anyway.
        """
        old = self._advertised_edge
        if old is None:
            return False
        buffer_size = self.config.receive_buffer_size
        # Distances from RCV.NXT; the peer's view first, as it usually settles the
        # answer (a reader that keeps up leaves the known window above half the buffer).
        known = seq_sub(old, self.rcv_nxt)
        if known >= HALF:
            known = 0  # the advertised edge is behind RCV.NXT
        if known > buffer_size // 2:
            return False
        free = max(buffer_size - len(self._receive_buffer), 0)
        window = min(free, MAX_UNSCALED_WINDOW << self.rcv_wscale)
        edge = seq_add(self.rcv_nxt, window)
        step = min(buffer_size // 2, self.config.mss)
        if not seq_gt(edge, old) or seq_sub(edge, old) < step:
            return False
        return window >= 2 * known

    def _emit(self, seg: Segment, now: int) -> None:
        flags = seg.flags
        if self.snd_up is not None and not flags & (Flag.SYN | Flag.RST):
            flags = self._mark_urgent(seg)
        if flags & Flag.ACK:
            self._last_ack_sent = seg.ack
            if seg.ack == self.rcv_nxt:
                # Any segment carrying the current ACK settles what was owed.
                self._need_ack = False
                if self._ack_delayed or self._delayed_ack_deadline is not None:
                    self._stop_delayed_ack()
                self._full_segments_unacked = 0
        out = self._outbox
        if out is None:
            out = self._outbox = []
        if (
            out
            and flags & Flag.ACK
            and (seg.payload or flags & Flag.FIN)
            and out[-1].flags == Flag.ACK
            and not out[-1].payload
            and out[-1].seq == seg.seq
            and seq_le(out[-1].ack, seg.ack)
            and not out[-1].options.sack_blocks
        ):
            # A bare ACK the driver has not collected yet says nothing this segment does
            # not: send one segment, not two. This is how a FIN that the application
            # sends right after reading the peer's FIN carries the ACK of it (the
            # three-segment close, seed claim C12). Duplicate ACKs are never merged.
            out.pop()
        out.append(seg)

    def _mark_urgent(self, seg: Segment) -> int:
        """In urgent mode, URG and the urgent pointer on a segment that starts before
        SND.UP (RFC 9293 3.8.5); returns the segment's flags.

        As Linux's tcp_transmit_skb: the pointer is SND.UP - SEG.SEQ, so it may lie past
        the segment's own data (urgent data of any length spans segments, MUST-31), and
        it goes on bare ACKs and probes too, so the peer learns of urgent data as soon as
        possible even while the window holds the data back. A pointer beyond 16 bits is
        sent as 0xFFFF while that still points past everything sent: past SND.MAX, which
        is Linux's tp->snd_nxt (an RTO moves our SND.NXT back, Linux's never), so a resent
        segment never names an octet already sent as the end of the urgent data.
        """
        snd_up = self.snd_up
        assert snd_up is not None
        seq = seg.seq
        if seq_lt(seq, snd_up):
            pointer = seq_sub(snd_up, seq)
            if pointer <= 0xFFFF:
                seg.flags |= Flag.URG
                seg.urgent = pointer
            elif seq_gt(seq_add(seq, 0xFFFF), self.snd_max):
                seg.flags |= Flag.URG
                seg.urgent = 0xFFFF
        return seg.flags

    # ------------------------------------------------------------------ closing

    def _close_call(self, call: str, now: int) -> None:
        """RFC 9293 3.10.4 CLOSE, per state."""
        state = self.state
        if state is State.CLOSED:
            raise InvalidOperation(call, state, "connection does not exist")
        if self._fin_queued or state in _CLOSING_STATES:
            raise InvalidOperation(call, state, "connection closing")
        self._trace_user(call, now)
        if state is State.LISTEN:
            self._enter_closed(Trigger.CLOSE, CloseReason.NORMAL, now)
        elif state is State.SYN_SENT:
            # "Delete the TCB and return 'error: closing' responses to queued calls."
            self._send_buffer.clear()
            self._enter_closed(Trigger.CLOSE, CloseReason.NORMAL, now)
        elif state in (State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT):
            # SYN_RECEIVED goes to FIN_WAIT_1 at once (figure 5; Linux's tcp_close): with
            # nothing queued the FIN leaves now (3.10.4), else after the data, which
            # itself waits for the ACK of our SYN (see _transmit).
            self._fin_queued = True
            self._fin_seq = seq_add(self._send_buffer_seq, len(self._send_buffer))
            self._transition(Trigger.CLOSE_SEND_FIN, now)
            self._transmit(now)

    def _enter_time_wait(self, now: int) -> None:
        """Entry action of TIME_WAIT: stop retransmitting and arm 2*MSL (3.10.7.4)."""
        self._stop_retransmit(now)
        self._stop_persist(now)
        self._reassembly.clear()
        self._arm_time_wait(now)

    def _arm_time_wait(self, now: int) -> None:
        self._time_wait_deadline = now + self.config.time_wait_duration
        self._trace_timer(TraceKind.TIMER_ARMED, "time_wait", self._time_wait_deadline, now)

    def _return_to_listen(self, trigger: Trigger, now: int) -> None:
        """SYN_RECEIVED from a passive OPEN goes back to LISTEN (3.10.7.4)."""
        self._stop_retransmit(now)
        self._send_buffer.clear()
        if self._listen_remote is not None:
            self.remote_ip, self.remote_port = self._listen_remote
        self._need_ack = False
        self._stop_delayed_ack()
        # The next SYN starts a new connection: its SYN,ACK gets the initial RTO (RFC
        # 6298 2.1) and the full synack_retries, not the backoff of the one just reset.
        self.retransmissions = 0
        self._rtt = RttEstimator(self.config.initial_rto, self.config.min_rto, self.config.max_rto)
        self._rtt_timed_seq = None
        self._transition(trigger, now)

    def _enter_closed(self, trigger: Trigger, reason: CloseReason, now: int) -> None:
        """Entry action of CLOSED: stop all timers, report Closed exactly once."""
        self._stop_retransmit(now)
        self._stop_persist(now)
        self._time_wait_deadline = None
        self._need_ack = False
        self._stop_delayed_ack()
        self._reassembly.clear()
        self._scoreboard.clear()
        self._transition(trigger, now)
        self.close_reason = reason
        self._post(Closed(reason))

    # ------------------------------------------------------------------ internals

    def _transition(self, trigger: Trigger, now: int) -> None:
        """The only place the state changes: a TRANSITIONS lookup plus a trace entry."""
        old = self.state
        new = TRANSITIONS.get((old, trigger))
        if new is None:
            raise AssertionError(f"tcpstack bug: no transition from {old} on {trigger}")
        self.state = new
        self.state_history.append(new)
        self._on_enter(new, now)
        if self._tracer is not None:
            self._tracer(
                TraceRecord(
                    now,
                    TraceKind.STATE,
                    self.label,
                    {"from": old.value, "to": new.value, "trigger": trigger.name},
                )
            )

    def _on_enter(self, state: State, now: int) -> None:
        """Entry actions that depend only on the state entered (timers of issue-4 kind)."""
        if state in KEEPALIVE_STATES:
            if self.config.keepalive and self._keepalive_deadline is None:
                self._arm_keepalive_at(now + self.config.keepalive_idle, now)
        elif self._keepalive_deadline is not None:
            self._keepalive_deadline = None
        if state is State.FIN_WAIT_2:
            if self._user_closed:
                self._arm_fin_wait_2(now)
        else:
            self._fin_wait_2_deadline = None

    def _choose_iss(self, now: int) -> None:
        self.iss = self._isn_generator(self.four_tuple, now) & MASK
        self.snd_una = self.snd_nxt = self.snd_max = self.iss
        self._send_buffer_seq = seq_add(self.iss, 1)
        # RFC 6582 3.2 step 1: "recover" starts at the initial send sequence number.
        self._recover = self.iss
        self._ts_offset = timestamp_offset(self.iss)

    def _take_syn_options(self, seg: Segment) -> None:
        """Learn the peer's MSS and which optional mechanisms both ends use."""
        options = seg.options
        config = self.config
        # RFC 9293 3.7.1 (MUST-15): without the MSS option assume 536 (IPv4) or 1220
        # (IPv6). Tiny values are raised to min_peer_mss so a peer cannot make us send
        # 1-byte segments.
        mss = options.mss
        if mss is None:
            self.snd_mss = config.default_peer_mss_for(self.remote_ip)
        else:
            self.snd_mss = max(mss, config.min_peer_mss)
        # RFC 7323 2.2: scaling applies only when both SYNs carry the option; a shift
        # above 14 is taken as 14 (2.3).
        if config.window_scaling and options.window_scale is not None:
            self.rcv_wscale_offered = True
            self.snd_wscale = min(options.window_scale, MAX_WINDOW_SHIFT)
            self.rcv_wscale = window_shift_for(config.receive_buffer_size)
        else:
            self.rcv_wscale_offered = False
            self.snd_wscale = self.rcv_wscale = 0
        # RFC 7323 3.2: timestamps are used when both SYNs carry them.
        if config.timestamps and options.timestamp is not None:
            self.ts_enabled = True
            self.ts_recent = options.timestamp[0]
        else:
            self.ts_enabled = False
        # RFC 2018 2: SACK when both SYNs carry SACK-permitted.
        self.sack_enabled = config.sack and options.sack_permitted
        # The initial window is counted in segments, so the controller starts now.
        self._cc = make_controller(config.congestion_control, self.effective_mss)
        # RCV.WND is what our SYN or SYN,ACK offers (never scaled, RFC 7323 2.2), not the
        # whole buffer: segments beyond that edge are outside the window (3.10.7.4).
        free = max(config.receive_buffer_size - len(self._receive_buffer), 0)
        self._advertised_edge = seq_add(self.rcv_nxt, min(free, MAX_UNSCALED_WINDOW))

    def _challenge_ack(self, seg: Segment, now: int, reason: str, counter: str) -> None:
        """Drop `seg` and answer with <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (RFC 5961),
        unless a rate limit holds the challenge ACK back (RFC 5961 section 7): then only
        drop. `counter` names the drop; each limit counts its own decision separately.

        RFC 5961 7 asks for ACK throttling, with tunable values. This follows Linux's
        tcp_send_challenge_ack: first the per-connection limit (at most one ACK per
        Config.invalid_ack_ratelimit, the clock it shares with the ACKs for
        out-of-window segments, like Linux's last_oow_ack_time; counted as
        challenge_ack.conn_rate_limited, Linux's TCPACKSkippedChallenge), then the
        stack-wide limiter. Since 2016 (commit "tcp: enable per-socket rate limiting of
        all 'challenge acks'") Linux applies the per-connection limit to every challenge
        ACK, segments with text included, unlike _ack_unacceptable: a challenge ACK
        never serves loss recovery, so nothing is lost by holding it back.
        """
        if not self._oow_ack_allowed(now):
            self.stats["challenge_ack.conn_rate_limited"] += 1
            self._verdict(
                seg, now, "drop", reason + " (rate limited per connection, RFC 5961 7)", counter
            )
            return
        # Then the stack-wide limit (RFC 5961 7: an implementation SHOULD throttle
        # challenge ACKs; Linux's tcp_challenge_ack_limit). Linux >= 6.0 turns its own
        # off by default (INT_MAX: a counter shared by all connections is a side
        # channel); tcpstack keeps its ChallengeAckLimiter at 1000 per second. As in
        # Linux, a challenge ACK this limit holds back has still used the connection's
        # per-connection slot above.
        limiter = self._challenge_limiter
        if limiter is not None and not limiter.allow(now):
            self._verdict(seg, now, "drop", reason + " (rate limited, RFC 5961 7)", counter)
            return
        self._verdict(seg, now, "challenge", reason, counter)
        self._need_ack = True

    def _ack_unacceptable(self, seg: Segment, now: int, reason: str, counter: str) -> None:
        """Drop `seg` and answer with <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (RFC 9293
        3.10.7.4 first step), at most once per Config.invalid_ack_ratelimit.

        Like Linux's tcp_oow_rate_limited (net.ipv4.tcp_invalid_ratelimit, 500 ms), only
        segments without text (no SEQ space, or a SYN) are limited: a retransmission
        carrying data always gets its duplicate ACK, which loss recovery needs, while two
        stacks that disagree about the window cannot ping-pong bare ACKs for ever. The
        limit's clock is shared with challenge ACKs (_challenge_ack).
        """
        if (seg.seg_len == 0 or seg.flags & Flag.SYN) and not self._oow_ack_allowed(now):
            self.stats["invalid_ack.rate_limited"] += 1
            self._verdict(seg, now, "drop", reason + " (ACK rate limited)", counter)
            return
        self._verdict(seg, now, "ack", reason, counter)
        self._need_ack = True

    def _oow_ack_allowed(self, now: int) -> bool:
        """The per-connection limit on ACKs that answer invalid segments (Linux's
        __tcp_oow_rate_limited): False when one was allowed less than
        Config.invalid_ack_ratelimit before `now`; else remember `now` and return True.
        An interval of 0 (PLAIN) turns it off: every out-of-window segment is ACKed, as
        RFC 9293 3.10.7.4 says, and challenge ACKs meet only the stack-wide limiter."""
        interval = self.config.invalid_ack_ratelimit
        if interval <= 0:
            return True
        last = self._last_oow_ack_at
        if last is not None and 0 <= now - last < interval:
            return False
        self._last_oow_ack_at = now
        return True

    def _verdict(
        self, seg: Segment, now: int, verdict: str, reason: str, counter: str | None = None
    ) -> None:
        """Trace what became of `seg`. `counter` names a drop (the segment, or its text,
        is not taken): it is counted in `stats` and shown in the trace record."""
        if counter is not None:
            self.stats[counter] += 1
        if self._tracer is not None:
            data = {"verdict": verdict, "reason": reason, "state": self.state.value}
            if counter is not None:
                data["counter"] = counter
            self._tracer(TraceRecord(now, TraceKind.SEGMENT_IN, self.label, data, seg))

    def _trace_user(self, call: str, now: int) -> None:
        if self._tracer is not None:
            self._tracer(
                TraceRecord(
                    now, TraceKind.USER, self.label, {"call": call, "state": self.state.value}
                )
            )

    def _trace_note(self, now: int, note: str) -> None:
        if self._tracer is not None:
            self._tracer(TraceRecord(now, TraceKind.EVENT, self.label, {"note": note}))

    def _trace_timer(self, kind: str, name: str, deadline: int, now: int) -> None:
        if self._tracer is not None:
            self._tracer(TraceRecord(now, kind, self.label, {"timer": name, "deadline": deadline}))

    def _wake(self) -> None:
        if self.on_wake is not None:
            self.on_wake(self)


def reset_for(seg: Segment) -> Segment:
    """The RST that answers `seg` when no connection can take it (RFC 9293 3.10.7.1).

    If the segment has ACK: <SEQ=SEG.ACK><CTL=RST>; otherwise
    <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    """
    if seg.flags & Flag.ACK:
        return Segment(seg.dst_port, seg.src_port, seg.ack, 0, Flag.RST)
    return Segment(seg.dst_port, seg.src_port, 0, seg.end_seq, Flag.RST | Flag.ACK)
