"""One TCP connection as a sans-I/O state machine (RFC 9293 section 3.10).

Three inputs: user calls, `receive_segment`, `handle_timer`. Two outputs:
`segments_to_send` and `next_event`. One pure query: `next_timer`. Every input takes
`now` (int microseconds) from the driver; the connection never reads a clock.

Segment processing follows RFC 9293 3.10.7 step by step, a method per step; each rule
names the section (and MUST number where the RFC gives one) it comes from.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from tcpstack.core.config import SECOND, Config
from tcpstack.core.errors import InvalidOperation
from tcpstack.core.events import (
    Closed,
    CloseReason,
    DataAvailable,
    EndOfStream,
    Established,
    Event,
    SendSpaceAvailable,
)
from tcpstack.core.rtt import RttEstimator
from tcpstack.core.segment import NO_OPTIONS, Flag, Options, Segment
from tcpstack.core.seq import (
    seq_add,
    seq_ge,
    seq_gt,
    seq_in_window,
    seq_le,
    seq_lt,
    seq_sub,
)
from tcpstack.core.state import TRANSITIONS, State, Trigger
from tcpstack.core.trace import TraceKind, Tracer, TraceRecord

FourTuple = tuple[str, int, str, int]  # local ip, local port, remote ip, remote port
IsnGenerator = Callable[[FourTuple, int], int]  # (4-tuple, now) -> initial sequence number

# The largest window the 16-bit header field can carry without window scaling.
MAX_UNSCALED_WINDOW = 0xFFFF

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


class Connection:
    """A TCP connection: the TCB of RFC 9293 3.3.1 plus its buffers and timers."""

    def __init__(
        self,
        local: tuple[str, int],
        remote: tuple[str, int] | None = None,
        *,
        config: Config | None = None,
        isn_generator: IsnGenerator,
        tracer: Tracer | None = None,
    ) -> None:
        self.config = config if config is not None else Config()
        self.local_ip, self.local_port = local
        self.remote_ip, self.remote_port = remote if remote is not None else ("", 0)
        self._isn_generator = isn_generator
        self._tracer = tracer
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
        self.snd_mss = self.config.default_peer_mss
        # Receive sequence variables.
        self.irs = 0
        self.rcv_nxt = 0

        # Send buffer: bytes from _send_buffer_seq on, acknowledged bytes removed.
        self._send_buffer = bytearray()
        self._send_buffer_seq = 0
        self._send_space_wanted = False  # send() accepted less than offered
        self._fin_queued = False  # CLOSE called: FIN goes after the buffered data
        self._fin_seq: int | None = None  # the sequence number our FIN occupies
        self._fin_acked = False
        self._syn_acked = False
        self._user_closed = False  # close() called (socket semantics: no second close)

        # Receive buffer: in-order bytes the application has not read yet.
        self._receive_buffer = bytearray()
        self._fin_received = False
        self._advertised_right_edge = 0  # rcv_nxt + window in our last segment

        # Timers: absolute deadlines in µs, None when stopped.
        self._rtt = RttEstimator(self.config.initial_rto, self.config.min_rto, self.config.max_rto)
        self._retransmit_deadline: int | None = None
        self._persist_deadline: int | None = None
        self._persist_backoff = 0
        self._time_wait_deadline: int | None = None
        self.retransmissions = 0  # consecutive expiries of the retransmission timer
        self.total_retransmissions = 0
        self._rtt_timed_seq: int | None = None  # Karn's rule: only a never-resent segment
        self._rtt_timed_at = 0

        self._outbox: list[Segment] = []
        self._need_ack = False  # an ACK is owed; the flush at the end of an input sends it
        self._listen_remote = ("", 0)  # the foreign socket named by listen(), if any
        self._events: deque[Event] = deque()
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
        self._listen_remote = (self.remote_ip, self.remote_port)
        self._transition(Trigger.OPEN_PASSIVE, now)
        self._wake()

    def send(self, data: bytes, *, now: int) -> int:
        """SEND (RFC 9293 3.10.2): queue bytes; returns how many the send buffer took."""
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
        data = bytes(self._receive_buffer[:max_bytes])
        del self._receive_buffer[:max_bytes]
        # Reading opens the receive window; tell the peer once the opening is worth a
        # segment (receiver-side silly window avoidance, RFC 9293 3.8.6.2.2).
        if self.state in _RECEIVING_STATES:
            opening = seq_sub(self._window_right_edge(), self._advertised_right_edge)
            threshold = min(self.config.receive_buffer_size // 2, self.config.mss)
            if opening >= threshold:
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
        if self._fin_queued or self.state in _CLOSING_STATES:
            # shutdown() already queued our FIN: nothing more to send.
            self._trace_user("close", now)
        else:
            self._close_call("close", now)
        self._user_closed = True
        self._flush(now)
        self._wake()

    def abort(self, *, now: int) -> None:
        """ABORT (RFC 9293 3.10.5): send RST if synchronized, drop everything, CLOSED."""
        state = self.state
        if state is State.CLOSED:
            raise InvalidOperation("abort", state, "connection does not exist")
        self._trace_user("abort", now)
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
        if out:
            self._outbox = []
            if self._tracer is not None:
                # Traced when it leaves, so a bare ACK merged into a later segment
                # before the driver collected it never shows as sent.
                for seg in out:
                    self._tracer(TraceRecord(now, TraceKind.SEGMENT_OUT, self.label, {}, seg))
        return out

    def next_event(self) -> Event | None:
        """The next event for the application, or None."""
        return self._events.popleft() if self._events else None

    def next_timer(self) -> int | None:
        """The earliest armed deadline (µs), or None. Pure."""
        best: int | None = None
        for deadline in (
            self._retransmit_deadline,
            self._persist_deadline,
            self._time_wait_deadline,
        ):
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        return best

    # Read-only views for drivers, tests and pictures.

    @property
    def receive_buffered(self) -> int:
        return len(self._receive_buffer)

    @property
    def send_buffered(self) -> int:
        """Bytes queued or in flight, not yet acknowledged."""
        return len(self._send_buffer)

    @property
    def send_space(self) -> int:
        return max(self.config.send_buffer_size - len(self._send_buffer), 0)

    @property
    def rcv_wnd(self) -> int:
        """RCV.WND: free space in the receive buffer (RFC 9293 3.3.1)."""
        return max(self.config.receive_buffer_size - len(self._receive_buffer), 0)

    @property
    def rto(self) -> int:
        return self._rtt.rto

    @property
    def srtt(self) -> int | None:
        return self._rtt.srtt

    @property
    def peer_closed(self) -> bool:
        """The peer's FIN has arrived (end of stream after the buffered bytes)."""
        return self._fin_received

    def timers(self) -> dict[str, int]:
        """Armed timers by name, with their deadlines (for ss-like tables)."""
        named = {
            "retransmit": self._retransmit_deadline,
            "persist": self._persist_deadline,
            "time_wait": self._time_wait_deadline,
        }
        return {name: when for name, when in named.items() if when is not None}

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
        if self._time_wait_deadline is not None and now >= self._time_wait_deadline:
            self._time_wait_deadline = None
            self._trace_timer(TraceKind.TIMER_FIRED, "time_wait", now, now)
            # RFC 9293 3.10.8: "If the time-wait timeout expires on a connection, delete
            # the TCB, enter the CLOSED state, and return."
            self._enter_closed(Trigger.TIMEOUT_2MSL, CloseReason.NORMAL, now)
        self._flush(now)
        self._wake()

    def _on_retransmit_timeout(self, now: int) -> None:
        if self.state is State.CLOSED or self.snd_una == self.snd_max:
            return
        self.retransmissions += 1
        if not self._syn_acked:
            limit = (
                self.config.syn_retries
                if self.state is State.SYN_SENT
                else self.config.synack_retries
            )
        else:
            limit = self.config.data_retries
        if self.retransmissions > limit:
            # RFC 9293 3.8.3 R2 (MUST-20): past the threshold, close the connection.
            self._enter_closed(Trigger.TIMEOUT_RETRANSMIT, CloseReason.TIMEOUT, now)
            return
        self.total_retransmissions += 1
        # RFC 6298 5.5-5.6: back off the timer, retransmit the earliest unacknowledged
        # segment. Going back to snd_una resends the rest as the window allows.
        self._rtt.back_off()
        self._rtt_timed_seq = None  # Karn's rule: no sample from a retransmitted segment
        self.snd_nxt = self.snd_una
        if not self._syn_acked:
            self._send_syn(now)
        else:
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
        probe = bytes(self._send_buffer[offset : offset + 1])
        self._emit(
            Segment(
                self.local_port,
                self.remote_port,
                self.snd_una,
                self.rcv_nxt,
                Flag.ACK,
                self._advertise_window(),
                payload=probe,
            ),
            now,
        )
        end = seq_add(self.snd_una, 1)
        if seq_gt(end, self.snd_max):
            self.snd_max = end
        if seq_gt(end, self.snd_nxt):
            self.snd_nxt = end
        self._persist_backoff += 1
        self._arm_persist(now)

    def _arm_retransmit(self, now: int) -> None:
        self._retransmit_deadline = now + self._rtt.rto
        self._trace_timer(TraceKind.TIMER_ARMED, "retransmit", self._retransmit_deadline, now)

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

    # ------------------------------------------------------------------ arrivals

    def receive_segment(self, seg: Segment, *, now: int) -> None:
        """Process one arriving segment (RFC 9293 3.10.7). Never raises for peer input."""
        state = self.state
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

    def _segment_in_closed(self, seg: Segment, now: int) -> None:
        # RFC 9293 3.10.7.1: all data discarded; a non-RST gets a RST in reply.
        if seg.flags & Flag.RST:
            self._verdict(seg, now, "drop", "RST in CLOSED is discarded (3.10.7.1)")
            return
        self._verdict(seg, now, "reset", "segment in CLOSED answered with RST (3.10.7.1)")
        self._emit(reset_for(seg), now)

    def _segment_in_listen(self, seg: Segment, now: int) -> None:
        flags = seg.flags
        # RFC 9293 3.10.7.2 first: an incoming RST is ignored.
        if flags & Flag.RST:
            self._verdict(seg, now, "drop", "RST in LISTEN is ignored (3.10.7.2)")
            return
        # Second: any ACK is bad in LISTEN: <SEQ=SEG.ACK><CTL=RST>.
        if flags & Flag.ACK:
            self._verdict(seg, now, "reset", "ACK in LISTEN answered with RST (3.10.7.2)")
            self._emit(reset_for(seg), now)
            return
        # Third: a SYN starts a connection.
        if flags & Flag.SYN:
            if self.remote_port and seg.src_port != self.remote_port:
                # A fully specified passive OPEN only takes its own foreign socket.
                self._verdict(seg, now, "reset", "SYN from another peer than the OPEN named")
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
            if seg.payload or flags & Flag.FIN:
                # RFC 9293 allows queueing text that rides on a SYN; like Linux without
                # TCP Fast Open we do not, so the peer retransmits it after the handshake.
                self._trace_note(now, "text or FIN on SYN not taken; the peer will resend")
            self._send_syn(now)
            return
        # Fourth: anything else is dropped.
        self._verdict(seg, now, "drop", "no SYN, ACK or RST in LISTEN (3.10.7.2)")

    def _segment_in_syn_sent(self, seg: Segment, now: int) -> None:
        flags = seg.flags
        # RFC 9293 3.10.7.3 first: check the ACK field.
        if flags & Flag.ACK and (seq_le(seg.ack, self.iss) or seq_gt(seg.ack, self.snd_max)):
            if flags & Flag.RST:
                self._verdict(seg, now, "drop", "RST with unacceptable ACK in SYN_SENT")
            else:
                self._verdict(seg, now, "reset", "unacceptable ACK in SYN_SENT (3.10.7.3)")
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
                self._verdict(seg, now, "drop", "RST without ACK in SYN_SENT (3.10.7.3)")
            return
        # Fourth: the SYN bit.
        if not flags & Flag.SYN:
            self._verdict(seg, now, "drop", "neither SYN nor RST in SYN_SENT (3.10.7.3)")
            return
        self.irs = seg.seq
        self.rcv_nxt = seq_add(seg.seq, 1)
        self._take_syn_options(seg)
        if ack_acceptable:
            self._verdict(seg, now, "accept", "SYN,ACK in SYN_SENT (3.10.7.3)")
            self._ack_advances(seg.ack, now)
            self._update_send_window(seg, force=True)
            self._transition(Trigger.RCV_SYN_ACK, now)
            self._events.append(Established())
            # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>; queued data MAY ride along (the flush
            # after this segment sends data first, a bare ACK only if there is none).
            self._need_ack = True
            if seg.payload or flags & Flag.FIN:
                # "continue processing at the sixth step": text and FIN on the SYN,ACK.
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
            self._events.append(Established())
            return

        # First: is the segment acceptable (3.10.7.4 table)?
        start, payload, acceptable = self._check_sequence(seg)
        if not acceptable:
            if flags & Flag.RST:
                self._verdict(seg, now, "drop", "RST outside the window (3.10.7.4)")
                return
            if state is State.TIME_WAIT and flags & Flag.FIN and seg.end_seq == self.rcv_nxt:
                # The peer's FIN again: our last ACK was lost. ACK it and restart 2*MSL
                # (RFC 9293 3.10.7.4 eighth step, TIME-WAIT; seed claim C11a).
                self._verdict(seg, now, "ack", "retransmitted FIN in TIME_WAIT: re-ACK")
                self._need_ack = True
                self._arm_time_wait(now)
                return
            self._verdict(seg, now, "ack", "unacceptable segment answered with ACK (3.10.7.4)")
            self._need_ack = True
            return

        # Second: the RST bit (with the RFC 5961 exact-match rule RFC 9293 adopts).
        if flags & Flag.RST:
            if seg.seq != self.rcv_nxt:
                self._verdict(seg, now, "challenge", "in-window RST, not RCV.NXT: challenge ACK")
                self._need_ack = True
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
                self._verdict(seg, now, "drop", "SYN in SYN_RECEIVED: back to LISTEN")
                self._return_to_listen(Trigger.RCV_SYN_RETURN_TO_LISTEN, now)
                return
            # RFC 9293 3.10.7.4 fourth step (MUST per RFC 5961 section 4): challenge ACK.
            self._verdict(seg, now, "challenge", "SYN in a synchronized state: challenge ACK")
            self._need_ack = True
            return

        # Fifth: the ACK field. Without ACK the segment is dropped.
        if not flags & Flag.ACK:
            self._verdict(seg, now, "drop", "no ACK bit (3.10.7.4 fifth step)")
            return
        fin_in_order = self._fin_in_order(seg, start, payload)
        if not self._process_ack(seg, fin_in_order, now):
            return

        # Sixth: URG. Urgent data is not supported yet; the pointer is ignored.
        # Seventh and eighth: segment text and FIN.
        self._verdict(seg, now, "accept", "")
        self._process_text_and_fin(seg, start, payload, fin_in_order, now)

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
                self._events.append(Established())
                state = State.ESTABLISHED
            else:
                # <SEQ=SEG.ACK><CTL=RST> for an unacceptable ACK.
                self._verdict(seg, now, "reset", "unacceptable ACK in SYN_RECEIVED")
                self._emit(Segment(self.local_port, self.remote_port, ack, 0, Flag.RST), now)
                return False
        if seq_gt(ack, self.snd_max):
            # Acknowledges something not yet sent: ACK and drop (3.10.7.4).
            self._verdict(seg, now, "ack", "ACK for data not yet sent: drop, send ACK")
            self._need_ack = True
            return False
        if seq_lt(self.snd_una, ack):
            self._ack_advances(ack, now)
        if seq_le(self.snd_una, ack):
            self._update_send_window(seg)
            if self.snd_wnd == 0:
                # The peer is alive and holds its window closed: what we resend into it
                # (data or our FIN) works as a window probe, and RFC 9293 3.8.6.1
                # (MUST-37) keeps the connection open while probes are answered, so the
                # R2 count (3.8.3) starts over. Linux likewise only times out such
                # "zero probes" when ACKs stop (tcp_rtx_probe0_timed_out).
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
        self.retransmissions = 0
        # RFC 6298 5.2-5.3: all acknowledged -> stop the timer, else restart it.
        self._stop_retransmit(now)
        if self.snd_una != self.snd_max:
            self._arm_retransmit(now)
        if self._send_space_wanted and self.send_space > 0:
            self._send_space_wanted = False
            self._events.append(SendSpaceAvailable(self.send_space))

    def _update_send_window(self, seg: Segment, *, force: bool = False) -> None:
        """RFC 9293 3.10.7.4 fifth step: take SEG.WND unless the segment is older."""
        if force or (
            seq_lt(self.snd_wl1, seg.seq)
            or (self.snd_wl1 == seg.seq and seq_le(self.snd_wl2, seg.ack))
        ):
            self.snd_wnd = seg.window
            self.snd_wl1 = seg.seq
            self.snd_wl2 = seg.ack

    def _process_text_and_fin(
        self, seg: Segment, start: int, payload: bytes, fin_in_order: bool, now: int
    ) -> None:
        """RFC 9293 3.10.7.4 seventh (segment text) and eighth (FIN) steps."""
        state = self.state
        if state not in _RECEIVING_STATES:
            # CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT: the peer's FIN came already, so
            # new text or FIN cannot arrive; ignore them (3.10.7.4 seventh step).
            return
        if payload:
            if start != self.rcv_nxt:
                # Out of order: not kept yet (reassembly comes with the transfer work);
                # an immediate duplicate ACK tells the sender where we are.
                self._trace_note(now, "out-of-order text dropped")
                self._need_ack = True
                return
            self._receive_buffer += payload
            self.rcv_nxt = seq_add(self.rcv_nxt, len(payload))
            self._events.append(DataAvailable(len(self._receive_buffer)))
            self._need_ack = True
        elif seg.payload:
            # Text that the first step cut away entirely: RCV.WND is 0 and only the
            # "special allowance" kept the segment for its ACK. The text itself is not
            # acceptable, so it gets an ACK (3.10.7.4 first step); that ACK is how a
            # zero-window probe learns the window (3.8.6.1), as in Linux.
            self._need_ack = True
        if not fin_in_order:
            if seg.flags & Flag.FIN:
                # A FIN beyond a gap is out of order too: the eighth step cannot take it
                # yet, and RFC 5681 4.2 (RFC 1122 4.2.2.21) wants an immediate duplicate
                # ACK for an out-of-order segment, text or not.
                self._need_ack = True
            return
        # Eighth step: the FIN. Advance RCV.NXT over it, ACK it, report end of stream.
        self.rcv_nxt = seq_add(self.rcv_nxt, 1)
        self._fin_received = True
        self._events.append(EndOfStream())
        self._need_ack = True
        if state is State.ESTABLISHED:
            self._transition(Trigger.RCV_FIN, now)
        elif state is State.FIN_WAIT_1:
            if self._fin_acked:
                self._transition(Trigger.RCV_FIN_ACK_OF_FIN, now)
                self._enter_time_wait(now)
            else:
                self._transition(Trigger.RCV_FIN, now)
        else:  # FIN_WAIT_2
            self._transition(Trigger.RCV_FIN, now)
            self._enter_time_wait(now)

    # ------------------------------------------------------------------ sending

    def _send_syn(self, now: int) -> None:
        """SYN (SYN_SENT) or SYN,ACK (SYN_RECEIVED) with our MSS (RFC 9293 3.7.1)."""
        flags = Flag.SYN
        ack = 0
        if self.state is not State.SYN_SENT:
            flags |= Flag.ACK
            ack = self.rcv_nxt
        seg = Segment(
            self.local_port,
            self.remote_port,
            self.iss,
            ack,
            flags,
            self._advertise_window(),
            options=Options(mss=self.config.mss),
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
        """Send what the send window allows: data from snd_nxt on, then our FIN."""
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
        mss = min(self.snd_mss, self.config.mss)
        buffer = self._send_buffer
        window_end = seq_add(self.snd_una, self.snd_wnd)
        while True:
            offset = seq_sub(self.snd_nxt, self._send_buffer_seq)
            available = len(buffer) - offset if offset <= len(buffer) else 0
            usable = seq_sub(window_end, self.snd_nxt) if seq_lt(self.snd_nxt, window_end) else 0
            size = min(available, usable, mss)
            send_fin = (
                self._fin_queued
                and size == available
                and self._fin_seq is not None
                and seq_le(seq_add(self.snd_nxt, size), self._fin_seq)
            )
            if size <= 0 and not send_fin:
                break
            flags = Flag.ACK
            if size and size == available:
                flags |= Flag.PSH
            if send_fin:
                flags |= Flag.FIN
            payload = bytes(buffer[offset : offset + size]) if size else b""
            seg = Segment(
                self.local_port,
                self.remote_port,
                self.snd_nxt,
                self.rcv_nxt,
                flags,
                self._advertise_window(),
                payload=payload,
            )
            self._emit(seg, now)
            if (
                self._rtt_timed_seq is None
                and self.retransmissions == 0
                and seq_ge(self.snd_nxt, self.snd_max)
            ):
                self._rtt_timed_seq = self.snd_nxt  # time only new data (Karn's rule)
                self._rtt_timed_at = now
            self.snd_nxt = seg.end_seq
            if seq_gt(self.snd_nxt, self.snd_max):
                self.snd_max = self.snd_nxt
            if self._retransmit_deadline is None:
                self._arm_retransmit(now)
            if send_fin:
                break
        # Zero window with data waiting and nothing in flight: probe it (RFC 9293 3.8.6.1).
        pending = seq_sub(self._send_buffer_seq, self.snd_una) + len(buffer)
        if (
            self.snd_wnd == 0
            and pending > 0
            and self.snd_una == self.snd_max
            and self._persist_deadline is None
        ):
            self._arm_persist(now)

    def _flush(self, now: int) -> None:
        """End of every input: send what the window allows, then a bare ACK if one is
        owed and no segment sent just now carried it."""
        if self.state in _SENDING_STATES:
            self._transmit(now)
        if self._need_ack:
            self._send_ack(now)

    def _send_ack(self, now: int) -> None:
        """<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (RFC 9293 3.10.7.4)."""
        seg = Segment(
            self.local_port,
            self.remote_port,
            self.snd_nxt,
            self.rcv_nxt,
            Flag.ACK,
            self._advertise_window(),
        )
        self._emit(seg, now)

    def _advertise_window(self) -> int:
        wnd = min(self.rcv_wnd, MAX_UNSCALED_WINDOW)
        self._advertised_right_edge = seq_add(self.rcv_nxt, wnd)
        return wnd

    def _window_right_edge(self) -> int:
        return seq_add(self.rcv_nxt, min(self.rcv_wnd, MAX_UNSCALED_WINDOW))

    def _emit(self, seg: Segment, now: int) -> None:
        flags = seg.flags
        if flags & Flag.ACK and seg.ack == self.rcv_nxt:
            self._need_ack = False
        out = self._outbox
        if (
            out
            and flags & Flag.ACK
            and (seg.payload or flags & Flag.FIN)
            and out[-1].flags == Flag.ACK
            and not out[-1].payload
            and out[-1].seq == seg.seq
            and seq_le(out[-1].ack, seg.ack)
        ):
            # A bare ACK the driver has not collected yet says nothing this segment does
            # not: send one segment, not two. This is how a FIN that the application
            # sends right after reading the peer's FIN carries the ACK of it (the
            # three-segment close, seed claim C12). Duplicate ACKs are never merged.
            out.pop()
        out.append(seg)

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
        self._arm_time_wait(now)

    def _arm_time_wait(self, now: int) -> None:
        self._time_wait_deadline = now + self.config.time_wait_duration
        self._trace_timer(TraceKind.TIMER_ARMED, "time_wait", self._time_wait_deadline, now)

    def _return_to_listen(self, trigger: Trigger, now: int) -> None:
        """SYN_RECEIVED from a passive OPEN goes back to LISTEN (3.10.7.4)."""
        self._stop_retransmit(now)
        self._send_buffer.clear()
        self.remote_ip, self.remote_port = self._listen_remote
        self._need_ack = False
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
        self._transition(trigger, now)
        self.close_reason = reason
        self._events.append(Closed(reason))

    # ------------------------------------------------------------------ internals

    def _transition(self, trigger: Trigger, now: int) -> None:
        """The only place the state changes: a TRANSITIONS lookup plus a trace entry."""
        old = self.state
        new = TRANSITIONS.get((old, trigger))
        if new is None:
            raise AssertionError(f"tcpstack bug: no transition from {old} on {trigger}")
        self.state = new
        self.state_history.append(new)
        if self._tracer is not None:
            self._tracer(
                TraceRecord(
                    now,
                    TraceKind.STATE,
                    self.label,
                    {"from": old.value, "to": new.value, "trigger": trigger.name},
                )
            )

    def _choose_iss(self, now: int) -> None:
        self.iss = self._isn_generator(self.four_tuple, now) & 0xFFFFFFFF
        self.snd_una = self.snd_nxt = self.snd_max = self.iss
        self._send_buffer_seq = seq_add(self.iss, 1)

    def _take_syn_options(self, seg: Segment) -> None:
        # RFC 9293 3.7.1 (MUST-15): without the MSS option assume 536.
        options = seg.options
        mss = options.mss if options is not NO_OPTIONS else None
        # Clamp absurdly small values so that a segment always carries some data.
        self.snd_mss = max(mss, 64) if mss is not None else self.config.default_peer_mss

    def _verdict(self, seg: Segment, now: int, verdict: str, reason: str) -> None:
        if self._tracer is not None:
            self._tracer(
                TraceRecord(
                    now,
                    TraceKind.SEGMENT_IN,
                    self.label,
                    {"verdict": verdict, "reason": reason, "state": self.state.value},
                    seg,
                )
            )

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
