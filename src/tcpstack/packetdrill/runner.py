"""Run a packetdrill-syntax script against tcpstack on a virtual clock.

The script plays the remote peer: `<` packets are injected into one tcpstack Endpoint at
their script time, system calls go through `tcpstack.socket` (a `Driver` of our own over
that Endpoint, so virtual time only moves between events), and every segment tcpstack
emits must match the next `>` line within the tolerance.

Conventions (packetdrill's, where it has one):

- tcpstack is 192.168.0.1, the script's peer 192.0.2.1. bind() binds port 8080;
  connect() goes to the peer's port 8080 (or N with `connect(3, {sin_port=N}, ...)`);
  the peer's own port for passive opens is 48765. A `<` or `>` line without `@PORT`
  belongs to the script's default flow (that of the last connect, else peer port
  48765). Several connections (a tcpstack extension): `< @40001 S 0:0(0) ...` comes
  from the peer's port 40001 (to the flow's tcpstack port: its connect()'s local port,
  else the listening port), and `> @40001 ...` must be sent to port 40001.
- Sequence numbers are relative: inbound seq to the script's ISN (its first SYN's seq is
  0, the absolute base is 2**32 - 500, so sequence wraparound happens early), outbound seq
  to tcpstack's ISN (learned from tcpstack's SYN; tcpstack's ISN generator is fixed at
  2**32 - 1000), `ack` in either direction to the other side's ISN.
- Outbound `>` lines: flags, seq, length and ack (when written) must match exactly;
  `win` only when written; the option list must match exactly (nop and eol padding is
  not compared; no `<...>` written means no options expected) unless it is `<...>`.
  `TS val` of outbound segments is not checked (packetdrill's default,
  --tcp_ts_tick_usecs=0), `TS ecr` is.
- Inbound `TS ecr E` with E != 0 is replaced by the latest TS val tcpstack sent (the
  script cannot know tcpstack's clock); `win` defaults to 65535; payload bytes are zeros.
- Times: a `>` line matches a segment sent within [start - tolerance, end + tolerance];
  a system call must return within the tolerance of its time (or of the end of its
  `start...end` range). A call on a blocking fd that would block keeps running, while
  later events go on, until it can return; it fails if it returns at the wrong time or
  never (close() with SO_LINGER {1, N} blocks until our FIN is acknowledged or N s
  have passed, as on Linux). An outbound segment sent before the time of a non-`>`
  event, or still unmatched when the script ends, is unexpected.
- `urg N` is sent as the urgent pointer and compared when written on a `>` line.

docs/packetdrill.md lists the whole syntax and what is reported as unsupported.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket as _std
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tcpstack.core.config import Config
from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.segment import Datagram, Flag, Options, Segment, flags_text
from tcpstack.core.state import State
from tcpstack.packetdrill.parser import (
    Array,
    BitOr,
    Call,
    Event,
    Expr,
    Packet,
    ParseError,
    Struct,
    Symbol,
    Unsupported,
    Wildcard,
    parse_script,
)
from tcpstack.socket import Socket

__all__ = [
    "DEFAULT_TOLERANCE_USECS",
    "LOCAL_IP",
    "LOCAL_ISN",
    "REMOTE_IP",
    "REMOTE_ISN",
    "ScriptResult",
    "run_file",
    "run_script",
]

T = TypeVar("T")

DEFAULT_TOLERANCE_USECS = 4000
LOCAL_IP = "192.168.0.1"
REMOTE_IP = "192.0.2.1"
SCRIPT_PORT = 8080
REMOTE_PORT = 48765
MOD = 1 << 32
LOCAL_ISN = MOD - 1000
REMOTE_ISN = MOD - 500
# A run that would take longer than this in virtual time is cut short.
MAX_WAIT = 3600 * 1_000_000

_FLAG_BITS = {
    "S": Flag.SYN,
    "F": Flag.FIN,
    "R": Flag.RST,
    "P": Flag.PSH,
    "U": Flag.URG,
    "E": Flag.ECE,
    "W": Flag.CWR,
    ".": Flag.ACK,
}

_SYMBOLS: dict[str, int] = {
    name: int(getattr(_std, name))
    for name in dir(_std)
    if name.isupper()
    and name.startswith(("AF_", "SOCK_", "SOL_", "SO_", "IPPROTO_", "TCP_", "SHUT_", "MSG_"))
    and isinstance(getattr(_std, name), int)
}
_SYMBOLS.update(
    {name: int(getattr(os, name)) for name in dir(os) if name.startswith("O_")}
    | {name: int(getattr(fcntl, name)) for name in ("F_GETFL", "F_SETFL")}
    | {name: int(getattr(select, name)) for name in dir(select) if name.startswith("POLL")}
)
_SYMBOLS.setdefault("POLLRDHUP", 0x2000)
# errno names, for getsockopt(..., SO_ERROR, [ECONNREFUSED], [4]).
_SYMBOLS.update({name: code for code, name in errno.errorcode.items()})
_SYMBOLS["NULL"] = 0


class ScriptFailure(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass(slots=True)
class ScriptResult:
    """The outcome of one script: `ok`, or the failure (line and message)."""

    name: str
    ok: bool
    line: int | None = None
    message: str = ""
    events_run: int = 0

    def describe(self) -> str:
        if self.ok:
            return f"{self.name}: ok ({self.events_run} events)"
        where = f":{self.line}" if self.line is not None else ""
        return f"{self.name}{where}: FAIL: {self.message}"


def _secs(usecs: int) -> str:
    return f"{usecs / 1_000_000:.6f}".rstrip("0").rstrip(".") + " s"


class _Driver:
    """A `tcpstack.socket.Driver` that never lets time pass by itself: the runner moves
    the clock between events, so every socket runs non-blocking underneath."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.clock = 0

    def now(self) -> int:
        return self.clock

    def endpoint_for(self, address: str | None) -> Endpoint:
        if address not in (None, self.endpoint.address):
            raise OSError(errno.EADDRNOTAVAIL, f"no endpoint with address {address}")
        return self.endpoint

    def call(self, fn: Callable[[int], T]) -> T:
        return fn(self.clock)

    def wait_until(self, predicate: Callable[[], bool], timeout: int | None) -> bool:
        return predicate()


@dataclass(slots=True)
class _Fd:
    sock: Socket
    nonblocking: bool = False


@dataclass(slots=True)
class _Outcome:
    ret: int
    err: int | None = None


Attempt = Callable[[], "_Outcome | None"]


@dataclass(slots=True)
class _Pending:
    event: Event
    call: Call
    attempt: Attempt
    expected_end: int
    wake: int | None = None


@dataclass
class _Runner:
    events: list[Event]
    config: Config
    tolerance: int
    endpoint: Endpoint = field(init=False)
    driver: _Driver = field(init=False)
    fds: dict[int, _Fd] = field(default_factory=dict)
    outq: deque[tuple[int, Segment]] = field(default_factory=deque)
    pending: list[_Pending] = field(default_factory=list)
    local_isn: int | None = None
    local_port: int | None = None
    remote_port: int = REMOTE_PORT
    # Flows named with `@PORT`: the script peer's port -> tcpstack's port.
    flow_ports: dict[int, int] = field(default_factory=dict)
    # Set by a handler whose call blocks until a time (close() with SO_LINGER).
    call_deadline: int | None = None
    bound_port: int | None = None
    last_ts_val: int = 0
    script_time: int = 0
    events_run: int = 0

    def __post_init__(self) -> None:
        self.endpoint = Endpoint(
            LOCAL_IP, isn_generator=lambda key, now: LOCAL_ISN, config=self.config
        )
        self.driver = _Driver(self.endpoint)

    # ------------------------------------------------------------------ clock

    @property
    def now(self) -> int:
        return self.driver.clock

    def _flush(self) -> None:
        for datagram in self.endpoint.datagrams_to_send(now=self.now):
            seg = datagram.segment
            if seg.options.timestamp is not None:
                self.last_ts_val = seg.options.timestamp[0]
            self.outq.append((self.now, seg))

    def _retry_pending(self) -> None:
        progress = True
        while progress:
            progress = False
            for item in list(self.pending):
                outcome = item.attempt()
                self._flush()
                if outcome is not None:
                    self.pending.remove(item)
                    self._finish(item.event, item.call, outcome, item.expected_end)
                    progress = True

    def _next_wake(self) -> int | None:
        times = [
            t
            for t in [self.endpoint.next_timer()] + [p.wake for p in self.pending]
            if t is not None
        ]
        return min(times) if times else None

    def _step_to(self, when: int) -> None:
        self.driver.clock = max(self.now, when)
        self.endpoint.handle_timer(now=self.now)
        self._flush()
        self._retry_pending()

    def _advance(self, target: int) -> None:
        """Run timers (and blocked calls) up to `target`, then set the clock to it."""
        guard = 0
        while True:
            wake = self._next_wake()
            if wake is None or wake > target:
                break
            self._step_to(wake)
            guard += 1
            if guard > 1_000_000:
                raise RuntimeError("timer loop does not advance")
        self._step_to(target)

    # ------------------------------------------------------------------ events

    def run(self) -> None:
        last = 0
        for event in self.events:
            self._event(event)
            self.events_run += 1
            last = event.line
        if self.pending:
            item = self.pending[0]
            raise ScriptFailure(
                item.event.line,
                f"blocking {item.call.name}() never returned (script ended at {_secs(self.now)})",
            )
        # Anything still queued was sent at or before the last event's time and matched
        # no `>` line (even a segment sent in the same instant as that event).
        self._check_unexpected(last, self.now + 1, "after the last event")

    def _times(self, event: Event) -> tuple[int, int]:
        spec = event.time
        if spec.any_time:
            return self.now, self.now + MAX_WAIT
        base = self.script_time
        start = base + spec.start if spec.relative else spec.start
        end = start
        if spec.end is not None:
            # Both ends of `a~b` and `a...b` are times: `+` is from the previous event.
            end = base + spec.end if spec.end_relative else spec.end
            if end < start:
                raise ScriptFailure(event.line, "time range ends before it starts")
        self.script_time = end
        return start, end

    def _event(self, event: Event) -> None:
        action = event.action
        if isinstance(action, Unsupported):
            raise ScriptFailure(event.line, f"unsupported: {action.what} at line {event.line}")
        start, end = self._times(event)
        if event.time.blocking and not isinstance(action, Call):
            raise ScriptFailure(event.line, "'...' is only for system calls")
        if isinstance(action, Packet) and not action.inbound:
            self._expect(event, action, start, end)
            return
        if start > self.now:
            self._advance(start)
        self._check_unexpected(event.line, start, "before this line")
        if isinstance(action, Packet):
            self._inject(event, action)
        else:
            self._syscall(event, action, end)

    def _check_unexpected(self, line: int, before: int, where: str) -> None:
        if self.outq and self.outq[0][0] < before:
            when, seg = self.outq[0]
            raise ScriptFailure(
                line,
                f"tcpstack sent an unexpected segment at {_secs(when)} {where}: "
                f"> {self._describe(seg)}",
            )

    # ------------------------------------------------------------------ packets

    def _describe(self, seg: Segment) -> str:
        text = seg.describe(seq_base=self.local_isn or 0, ack_base=REMOTE_ISN)
        # With several flows, say which one (as the script would write it).
        return f"@{seg.dst_port} {text}" if self.flow_ports else text

    def _inject(self, event: Event, packet: Packet) -> None:
        flags = 0
        for letter in packet.flags:
            flags |= _FLAG_BITS[letter]
        local_base = self.local_isn or 0
        options = self._build_options(packet, inbound=True)
        listening = self.bound_port if self.bound_port is not None else SCRIPT_PORT
        if packet.peer_port is not None:
            remote_port = packet.peer_port
            local_port = self.flow_ports.setdefault(remote_port, listening)
        else:
            if self.local_port is None:
                self.local_port = listening
            remote_port, local_port = self.remote_port, self.local_port
        seg = Segment(
            src_port=remote_port,
            dst_port=local_port,
            seq=(REMOTE_ISN + packet.start) % MOD,
            ack=(local_base + packet.ack) % MOD if packet.ack is not None else 0,
            flags=flags,
            window=packet.win if packet.win is not None else 65535,
            urgent=packet.urg if packet.urg is not None else 0,
            options=options,
            payload=bytes(packet.length),
        )
        self.endpoint.receive_datagram(Datagram(REMOTE_IP, LOCAL_IP, seg), now=self.now)
        self._flush()
        self._retry_pending()

    def _build_options(self, packet: Packet, *, inbound: bool) -> Options:
        mss: int | None = None
        wscale: int | None = None
        sack_ok = False
        blocks: list[tuple[int, int]] = []
        ts: tuple[int, int] | None = None
        # Inbound SACK blocks name tcpstack's sequence numbers, outbound ones ours.
        base = (self.local_isn or 0) if inbound else REMOTE_ISN
        for item in packet.options or ():
            if item.kind == "mss":
                mss = item.values[0]
            elif item.kind == "wscale":
                wscale = item.values[0]
            elif item.kind == "sackOK":
                sack_ok = True
            elif item.kind == "TS":
                val, ecr = item.values
                if inbound and ecr != 0:
                    ecr = self.last_ts_val
                ts = (val, ecr)
            elif item.kind == "sack":
                edges = item.values
                blocks += [
                    ((base + edges[i]) % MOD, (base + edges[i + 1]) % MOD)
                    for i in range(0, len(edges), 2)
                ]
        return Options(
            mss=mss,
            window_scale=wscale,
            sack_permitted=sack_ok,
            sack_blocks=tuple(blocks),
            timestamp=ts,
        )

    def _expect(self, event: Event, packet: Packet, start: int, end: int) -> None:
        low, high = start - self.tolerance, end + self.tolerance
        while not self.outq:
            wake = self._next_wake()
            if wake is None or wake > high:
                break
            self._step_to(wake)
        if not self.outq:
            message = (
                f"expected `{_packet_text(packet)}` at {_secs(start)}"
                + (f"..{_secs(end)}" if end != start else "")
                + f", but tcpstack sent nothing by {_secs(high)}"
            )
            raise ScriptFailure(event.line, message + self._later_segment(high))
        when, seg = self.outq.popleft()
        if when < low:
            raise ScriptFailure(
                event.line,
                f"expected `{_packet_text(packet)}` at {_secs(start)}, but tcpstack sent "
                f"`> {self._describe(seg)}` too early, at {_secs(when)}",
            )
        if seg.flags & Flag.SYN and "S" in packet.flags and self.local_isn is None:
            self.local_isn = (seg.seq - packet.start) % MOD
            if packet.peer_port is None and (
                self.local_port is None or self.local_port != seg.src_port
            ):
                self.local_port = seg.src_port
        problems = self._compare(seg, packet)
        if problems:
            raise ScriptFailure(
                event.line,
                f"expected `{_packet_text(packet)}` but tcpstack sent "
                f"`> {self._describe(seg)}` at {_secs(when)} ({'; '.join(problems)})",
            )

    def _later_segment(self, after: int) -> str:
        """For a failure message: what tcpstack sends next on its own (if anything),
        letting timers run for up to MAX_WAIT of virtual time."""
        limit = after + MAX_WAIT
        while not self.outq:
            wake = self._next_wake()
            if wake is None or wake > limit:
                return "; it sent nothing later either"
            self._step_to(wake)
        when, seg = self.outq[0]
        return f"; its next segment was `> {self._describe(seg)}` at {_secs(when)}"

    def _compare(self, seg: Segment, packet: Packet) -> list[str]:
        problems: list[str] = []
        if packet.peer_port is not None and seg.dst_port != packet.peer_port:
            problems.append(f"to port {seg.dst_port} != @{packet.peer_port}")
        want_flags = 0
        for letter in packet.flags:
            want_flags |= _FLAG_BITS[letter]
        if seg.flags != want_flags:
            problems.append(f"flags {flags_text(seg.flags)} != {flags_text(want_flags)}")
        rel_seq = (seg.seq - (self.local_isn or 0)) % MOD
        if rel_seq != packet.start % MOD:
            problems.append(f"seq {rel_seq} != {packet.start}")
        if len(seg.payload) != packet.length:
            problems.append(f"length {len(seg.payload)} != {packet.length}")
        if packet.ack is not None:
            rel_ack = (seg.ack - REMOTE_ISN) % MOD
            if not seg.flags & Flag.ACK:
                problems.append("no ACK flag")
            elif rel_ack != packet.ack % MOD:
                problems.append(f"ack {rel_ack} != {packet.ack}")
        if packet.win is not None and seg.window != packet.win:
            problems.append(f"win {seg.window} != {packet.win}")
        if packet.urg is not None and seg.urgent != packet.urg:
            problems.append(f"urg {seg.urgent} != {packet.urg}")
        if not packet.any_options:
            want = self._build_options(packet, inbound=False)
            got = seg.options
            if got.timestamp is not None and want.timestamp is not None:
                # TS val is not checked (packetdrill's default); ecr is.
                want = Options(
                    mss=want.mss,
                    window_scale=want.window_scale,
                    sack_permitted=want.sack_permitted,
                    sack_blocks=want.sack_blocks,
                    timestamp=(got.timestamp[0], want.timestamp[1]),
                )
            if got != want:
                problems.append(f"options {got.describe()} != {want.describe()}")
        return problems

    # ------------------------------------------------------------------ system calls

    def _syscall(self, event: Event, call: Call, end: int) -> None:
        handler = _HANDLERS.get(call.name)
        if handler is None:
            raise ScriptFailure(
                event.line, f"unsupported: system call {call.name}() at line {event.line}"
            )
        attempt = handler(self, event, call)
        self.call_deadline = None
        outcome = attempt()
        deadline, self.call_deadline = self.call_deadline, None
        self._flush()
        if outcome is None:
            pending = _Pending(event, call, attempt, end, wake=deadline)
            timeout = call.args[2] if call.name == "poll" and len(call.args) >= 3 else None
            if isinstance(timeout, int) and timeout >= 0:
                pending.wake = self.now + timeout * 1000
            self.pending.append(pending)
            return
        self._finish(event, call, outcome, end)
        self._retry_pending()

    def _finish(self, event: Event, call: Call, outcome: _Outcome, expected_end: int) -> None:
        got = _result_text(outcome)
        want_ret = self.value(event, call.ret) if not isinstance(call.ret, Wildcard) else None
        want_err = call.errno_name
        if want_err is not None and not hasattr(errno, want_err):
            raise ScriptFailure(event.line, f"unknown errno {want_err}")
        ok = (want_ret is None or want_ret == outcome.ret) and (
            (want_err is None and outcome.err is None)
            or (want_err is not None and outcome.err == getattr(errno, want_err))
        )
        if not ok:
            want = str(call.ret) + (f" {want_err}" if want_err else "")
            raise ScriptFailure(
                event.line,
                f"{call.name}() returned {got} at {_secs(self.now)}, expected {want}",
            )
        if abs(self.now - expected_end) > self.tolerance:
            raise ScriptFailure(
                event.line,
                f"{call.name}() returned {got} at {_secs(self.now)}, expected it to return "
                f"at {_secs(expected_end)}",
            )

    def value(self, event: Event, expr: Expr) -> int:
        if isinstance(expr, bool):
            return int(expr)
        if isinstance(expr, int):
            return expr
        if isinstance(expr, Symbol):
            if expr.name not in _SYMBOLS:
                raise ScriptFailure(
                    event.line, f"unsupported: constant {expr.name} at line {event.line}"
                )
            return _SYMBOLS[expr.name]
        if isinstance(expr, BitOr):
            result = 0
            for part in expr.parts:
                result |= self.value(event, part)
            return result
        if isinstance(expr, Array) and len(expr.items) == 1:
            return self.value(event, expr.items[0])
        raise ScriptFailure(event.line, f"expected a number, found {expr}")

    def fd(self, event: Event, expr: Expr) -> _Fd | None:
        number = self.value(event, expr)
        return self.fds.get(number)

    def new_fd(self, sock: Socket) -> int:
        number = 3
        while number in self.fds:
            number += 1
        sock.settimeout(0.0)
        self.fds[number] = _Fd(sock)
        return number


def _packet_text(packet: Packet) -> str:
    text = "<" if packet.inbound else ">"
    if packet.peer_port is not None:
        text += f" @{packet.peer_port}"
    text += f" {packet.flags} {packet.start}:{packet.end}({packet.length})"
    if packet.ack is not None:
        text += f" ack {packet.ack}"
    if packet.win is not None:
        text += f" win {packet.win}"
    if packet.urg is not None:
        text += f" urg {packet.urg}"
    if packet.any_options:
        text += " <...>"
    elif packet.options is not None:
        parts = []
        for item in packet.options:
            if item.kind == "TS":
                parts.append(f"TS val {item.values[0]} ecr {item.values[1]}")
            elif item.kind == "sack":
                edges = item.values
                parts.append(
                    "sack "
                    + " ".join(f"{edges[i]}:{edges[i + 1]}" for i in range(0, len(edges), 2))
                )
            else:
                parts.append(" ".join([item.kind, *map(str, item.values)]))
        text += " <" + ",".join(parts) + ">"
    return text


def _result_text(outcome: _Outcome) -> str:
    if outcome.err is None:
        return str(outcome.ret)
    name = errno.errorcode.get(outcome.err, str(outcome.err))
    return f"{outcome.ret} {name} ({os.strerror(outcome.err)})"


def _oserror(error: OSError) -> _Outcome:
    code = error.errno if error.errno is not None else errno.ETIMEDOUT
    return _Outcome(-1, code)


_WOULD_BLOCK = (errno.EAGAIN, errno.EINPROGRESS, errno.EALREADY)


def _guarded(runner: _Runner, entry: _Fd | None, fn: Callable[[_Fd], _Outcome]) -> _Outcome | None:
    """Run fn on the fd: EBADF without one; a would-block error on a blocking fd
    means "still blocked" (None); other OSErrors become -1 ERRNO."""
    if entry is None:
        return _Outcome(-1, errno.EBADF)
    try:
        return fn(entry)
    except OSError as error:
        if error.errno in _WOULD_BLOCK and not entry.nonblocking:
            return None
        return _oserror(error)


def _arg(call: Call, index: int, event: Event) -> Expr:
    if index >= len(call.args):
        raise ScriptFailure(event.line, f"{call.name}() needs at least {index + 1} arguments")
    return call.args[index]


Handler = Callable[[_Runner, Event, Call], Attempt]


def _socket(runner: _Runner, event: Event, call: Call) -> Attempt:
    domain = _arg(call, 0, event)
    if not isinstance(domain, Wildcard) and runner.value(event, domain) != _std.AF_INET:
        raise ScriptFailure(event.line, f"unsupported: socket domain {domain} at line {event.line}")

    def attempt() -> _Outcome:
        sock = Socket(runner.driver, _std.AF_INET, _std.SOCK_STREAM, 0, address=LOCAL_IP)
        return _Outcome(runner.new_fd(sock))

    return attempt


def _bind(runner: _Runner, event: Event, call: Call) -> Attempt:
    entry = runner.fd(event, _arg(call, 0, event))

    def run(fd: _Fd) -> _Outcome:
        fd.sock.bind(("", SCRIPT_PORT))
        runner.bound_port = SCRIPT_PORT
        return _Outcome(0)

    return lambda: _guarded(runner, entry, run)


def _listen(runner: _Runner, event: Event, call: Call) -> Attempt:
    entry = runner.fd(event, _arg(call, 0, event))
    backlog = runner.value(event, _arg(call, 1, event))

    def run(fd: _Fd) -> _Outcome:
        fd.sock.listen(backlog)
        runner.bound_port = fd.sock.getsockname()[1]
        return _Outcome(0)

    return lambda: _guarded(runner, entry, run)


def _accept(runner: _Runner, event: Event, call: Call) -> Attempt:
    entry = runner.fd(event, _arg(call, 0, event))

    def run(fd: _Fd) -> _Outcome:
        child, _ = fd.sock.accept()
        return _Outcome(runner.new_fd(child))

    return lambda: _guarded(runner, entry, run)


def _connect(runner: _Runner, event: Event, call: Call) -> Attempt:
    entry = runner.fd(event, _arg(call, 0, event))
    address = call.args[1] if len(call.args) > 1 else Wildcard()
    peer_port = SCRIPT_PORT
    if isinstance(address, Struct) and address.get("sin_port") is not None:
        port_expr = address.get("sin_port")
        assert port_expr is not None
        peer_port = runner.value(event, port_expr)
    elif not isinstance(address, Wildcard):
        raise ScriptFailure(
            event.line, f"unsupported: connect() address {address} at line {event.line}"
        )

    def run(fd: _Fd) -> _Outcome:
        if runner.local_port is None or fd.sock.connection is None:
            runner.remote_port = peer_port
        fd.sock.connect((REMOTE_IP, peer_port))
        return _Outcome(0)

    def attempt() -> _Outcome | None:
        try:
            return _guarded(runner, entry, run)
        finally:
            if entry is not None and entry.sock.connection is not None:
                runner.local_port = entry.sock.connection.local_port
                if isinstance(address, Struct):
                    runner.flow_ports[peer_port] = entry.sock.connection.local_port

    return attempt


# How a data call names its byte count: read(fd, buf, COUNT), readv(fd, IOV, n), or
# recvmsg(fd, {msg_iov(n)=IOV, ...}, flags).
COUNT, IOVEC, MSGHDR = "count", "iovec", "msghdr"


def _byte_count(runner: _Runner, event: Event, call: Call, kind: str) -> int:
    if kind == COUNT:
        return runner.value(event, _arg(call, 2, event))
    iov = _arg(call, 1, event)
    if kind == MSGHDR:
        iov = _msg_iov(event, call, iov)
    if not isinstance(iov, Array):
        raise ScriptFailure(event.line, f"{call.name}() needs an iovec array")
    total = 0
    for item in iov.items:
        if not isinstance(item, Struct) or len(item.fields) != 2:
            raise ScriptFailure(event.line, f"bad iovec {item}")
        total += runner.value(event, item.fields[1][1])
    return total


def _msg_iov(event: Event, call: Call, msghdr: Expr) -> Expr:
    """The iovec array of a sendmsg()/recvmsg() msghdr; ancillary data is not
    supported (tcpstack's sockets have no control messages)."""
    if not isinstance(msghdr, Struct) or msghdr.get("msg_iov") is None:
        raise ScriptFailure(event.line, f"{call.name}() needs {{msg_iov(N)=[...], ...}}")
    for name, value in msghdr.fields:
        if name == "msg_control" and not isinstance(value, Wildcard) and value != 0:
            raise ScriptFailure(
                event.line, f"unsupported: {call.name}() msg_control at line {event.line}"
            )
    iov = msghdr.get("msg_iov")
    assert iov is not None
    return iov


def _reader(kind: str) -> Handler:
    def handler(runner: _Runner, event: Event, call: Call) -> Attempt:
        entry = runner.fd(event, _arg(call, 0, event))
        count = _byte_count(runner, event, call, kind)

        def run(fd: _Fd) -> _Outcome:
            return _Outcome(len(fd.sock.recv(count)))

        return lambda: _guarded(runner, entry, run)

    return handler


def _writer(kind: str, flags_at: int | None = None) -> Handler:
    """write-like calls; `flags_at`: the position of the flags argument (MSG_OOB sends
    urgent data), for send/sendto/sendmsg."""

    def handler(runner: _Runner, event: Event, call: Call) -> Attempt:
        entry = runner.fd(event, _arg(call, 0, event))
        count = _byte_count(runner, event, call, kind)
        flags = 0
        if flags_at is not None and flags_at < len(call.args):
            flag_arg = call.args[flags_at]
            flags = 0 if isinstance(flag_arg, Wildcard) else runner.value(event, flag_arg)
        done = [0]

        def attempt() -> _Outcome | None:
            if entry is None:
                return _Outcome(-1, errno.EBADF)
            while done[0] < count:
                try:
                    sent = entry.sock.send(bytes(count - done[0]), flags)
                except OSError as error:
                    if error.errno in _WOULD_BLOCK:
                        if entry.nonblocking:
                            return _Outcome(done[0]) if done[0] else _oserror(error)
                        return None
                    return _Outcome(done[0]) if done[0] else _oserror(error)
                done[0] += sent
                if entry.nonblocking:
                    break
                if sent == 0:
                    return None
            return _Outcome(done[0])

        return attempt

    return handler


def _shutdown(runner: _Runner, event: Event, call: Call) -> Attempt:
    entry = runner.fd(event, _arg(call, 0, event))
    how = runner.value(event, _arg(call, 1, event))

    def run(fd: _Fd) -> _Outcome:
        fd.sock.shutdown(how)
        return _Outcome(0)

    return lambda: _guarded(runner, entry, run)


def _close(runner: _Runner, event: Event, call: Call) -> Attempt:
    number = runner.value(event, _arg(call, 0, event))
    entry = runner.fds.get(number)

    lingering: list[tuple[Connection, int]] = []

    def run(fd: _Fd) -> _Outcome:
        conn = fd.sock.connection
        fd.sock.close()
        del runner.fds[number]
        # SO_LINGER {1, N}: close() returns once our FIN is acknowledged or after N s,
        # in blocking and non-blocking mode alike (Linux's inet_release).
        linger = conn.config.linger if conn is not None else None
        if conn is not None and linger and conn.state not in _FIN_DONE:
            lingering.append((conn, runner.now + linger))
            runner.call_deadline = runner.now + linger
        return _Outcome(0)

    def attempt() -> _Outcome | None:
        if not lingering:
            outcome = _guarded(runner, entry, run)
            if not lingering:
                return outcome
        conn, deadline = lingering[0]
        return _Outcome(0) if conn.state in _FIN_DONE or runner.now >= deadline else None

    return attempt


def _option_value(runner: _Runner, event: Event, level: int, name: int, expr: Expr) -> int | bytes:
    # Option numbers repeat across levels (TCP_CONGESTION == SO_LINGER == 13).
    if level == _std.SOL_SOCKET and name == _std.SO_LINGER:
        if not isinstance(expr, Struct):
            raise ScriptFailure(event.line, "SO_LINGER needs {onoff=..., linger=...}")
        onoff, linger = expr.get("onoff"), expr.get("linger")
        if onoff is None or linger is None:
            raise ScriptFailure(event.line, "SO_LINGER needs {onoff=..., linger=...}")
        return struct.pack("ii", runner.value(event, onoff), runner.value(event, linger))
    return runner.value(event, expr)


def _unsupported_option(event: Event, call: Call) -> ScriptFailure:
    return ScriptFailure(
        event.line,
        f"unsupported: {call.name}() option {call.args[1]}/{call.args[2]} at line {event.line}",
    )


def _known_option(event: Event, call: Call, fn: Callable[[], T]) -> T:
    """fn(), with tcpstack's "no such option" (ENOPROTOOPT: Linux-only options such
    as TCP_CONGESTION, TCP_FASTOPEN, IPv6 ones) turned into an unsupported failure."""
    try:
        return fn()
    except OSError as error:
        if error.errno == errno.ENOPROTOOPT:
            raise _unsupported_option(event, call) from None
        raise


def _setsockopt(runner: _Runner, event: Event, call: Call) -> Attempt:
    entry = runner.fd(event, _arg(call, 0, event))
    level = runner.value(event, _arg(call, 1, event))
    name = runner.value(event, _arg(call, 2, event))
    if isinstance(_arg(call, 3, event), str):
        # A string value (TCP_CONGESTION "cubic", SO_BINDTODEVICE "eth0"): no such
        # option in tcpstack.
        raise _unsupported_option(event, call)
    value = _option_value(runner, event, level, name, _arg(call, 3, event))

    def run(fd: _Fd) -> _Outcome:
        _known_option(event, call, lambda: fd.sock.setsockopt(level, name, value))
        return _Outcome(0)

    return lambda: _guarded(runner, entry, run)


def _getsockopt(runner: _Runner, event: Event, call: Call) -> Attempt:
    entry = runner.fd(event, _arg(call, 0, event))
    level = runner.value(event, _arg(call, 1, event))
    name = runner.value(event, _arg(call, 2, event))
    want = _arg(call, 3, event)
    if name == getattr(_std, "TCP_INFO", -1) and level == _std.IPPROTO_TCP:
        # tcpstack has a TCP_INFO of its own (tcp_info()), not Linux's struct layout.
        raise ScriptFailure(event.line, f"unsupported: TCP_INFO at line {event.line}")

    def run(fd: _Fd) -> _Outcome:
        if level == _std.SOL_SOCKET and name == _std.SO_LINGER:
            raw = fd.sock.getsockopt(level, name, 8)
            assert isinstance(raw, bytes)
            onoff, linger = struct.unpack("ii", raw)
            got = f"{{onoff={onoff}, linger={linger}}}"
            if isinstance(want, Struct):
                w_on, w_linger = want.get("onoff"), want.get("linger")
                if (
                    w_on is not None
                    and not isinstance(w_on, Wildcard)
                    and runner.value(event, w_on) != onoff
                ) or (
                    w_linger is not None
                    and not isinstance(w_linger, Wildcard)
                    and runner.value(event, w_linger) != linger
                ):
                    raise ScriptFailure(event.line, f"getsockopt() gave {got}, expected {want}")
            return _Outcome(0)
        value = _known_option(event, call, lambda: fd.sock.getsockopt(level, name))
        if not isinstance(value, int):
            raise ScriptFailure(event.line, f"unsupported: getsockopt value {value!r}")
        inner = want.items[0] if isinstance(want, Array) and len(want.items) == 1 else want
        if not isinstance(inner, Wildcard) and runner.value(event, inner) != value:
            raise ScriptFailure(event.line, f"getsockopt() gave [{value}], expected {want}")
        return _Outcome(0)

    return lambda: _guarded(runner, entry, run)


def _fcntl(runner: _Runner, event: Event, call: Call) -> Attempt:
    entry = runner.fd(event, _arg(call, 0, event))
    command = runner.value(event, _arg(call, 1, event))
    if command == fcntl.F_GETFL:
        return lambda: (
            _Outcome(-1, errno.EBADF)
            if entry is None
            else _Outcome(os.O_RDWR | (os.O_NONBLOCK if entry.nonblocking else 0))
        )
    if command == fcntl.F_SETFL:
        flags = runner.value(event, _arg(call, 2, event))

        def setfl() -> _Outcome:
            if entry is None:
                return _Outcome(-1, errno.EBADF)
            entry.nonblocking = bool(flags & os.O_NONBLOCK)
            return _Outcome(0)

        return setfl
    raise ScriptFailure(
        event.line, f"unsupported: fcntl command {call.args[1]} at line {event.line}"
    )


_HANDSHAKE = (State.SYN_SENT, State.SYN_RECEIVED)
# A lingering close() is over once our FIN is acknowledged (or the connection is gone).
_FIN_DONE = (State.FIN_WAIT_2, State.TIME_WAIT, State.CLOSED)


def _revents(runner: _Runner, fd: _Fd) -> int:
    """What Linux's tcp_poll would report for this socket (before masking)."""
    s = _SYMBOLS
    sock = fd.sock
    conn = sock.connection
    if conn is None:
        port = sock.getsockname()[1] if runner.bound_port is not None else None
        listener = runner.endpoint.listeners.get(port) if port is not None else None
        if listener is not None:
            return s["POLLIN"] | s["POLLRDNORM"] if listener.accept_queue else 0
        return s["POLLOUT"] | s["POLLWRNORM"] | s["POLLHUP"]
    # SO_ERROR without clearing it: read the socket's pending error after a sync.
    runner.driver.call(lambda now: sock._sync())
    pending_error = bool(sock._pending_error)
    mask = 0
    closed = conn.state is State.CLOSED
    if pending_error:
        mask |= s["POLLERR"]
    if closed:
        mask |= s["POLLHUP"]
    if closed or conn.peer_closed:
        mask |= s["POLLIN"] | s["POLLRDNORM"] | s["POLLRDHUP"]
    if conn.receive_buffered:
        mask |= s["POLLIN"] | s["POLLRDNORM"]
    if conn.state not in _HANDSHAKE and (closed or sock._shut_wr or conn.send_space > 0):
        mask |= s["POLLOUT"] | s["POLLWRNORM"]
    return mask


def _poll(runner: _Runner, event: Event, call: Call) -> Attempt:
    fds = _arg(call, 0, event)
    timeout = runner.value(event, _arg(call, 2, event)) if len(call.args) > 2 else 0
    if not isinstance(fds, Array) or not all(isinstance(i, Struct) for i in fds.items):
        raise ScriptFailure(event.line, "poll() needs [{fd=N, events=..., revents=...}]")
    entries: list[tuple[int, int, Expr | None]] = []
    for item in fds.items:
        assert isinstance(item, Struct)
        fd_expr, events_expr = item.get("fd"), item.get("events")
        if fd_expr is None or events_expr is None:
            raise ScriptFailure(event.line, "poll() entries need fd= and events=")
        entries.append(
            (runner.value(event, fd_expr), runner.value(event, events_expr), item.get("revents"))
        )
    start = runner.now
    always = _SYMBOLS["POLLERR"] | _SYMBOLS["POLLHUP"] | _SYMBOLS["POLLNVAL"]

    def attempt() -> _Outcome | None:
        results: list[int] = []
        for number, wanted, _ in entries:
            entry = runner.fds.get(number)
            mask = _SYMBOLS["POLLNVAL"] if entry is None else _revents(runner, entry)
            results.append(mask & (wanted | always))
        ready = sum(1 for r in results if r)
        if not ready and timeout != 0 and (timeout < 0 or runner.now < start + timeout * 1000):
            return None
        for (number, _, want), got in zip(entries, results, strict=True):
            if want is not None and not isinstance(want, Wildcard):
                expected = runner.value(event, want)
                if expected != got:
                    raise ScriptFailure(
                        event.line,
                        f"poll() revents for fd {number} at {_secs(runner.now)}: got "
                        f"{_poll_names(got)}, expected {_poll_names(expected)}",
                    )
        return _Outcome(ready)

    return attempt


def _poll_names(mask: int) -> str:
    names = [
        n
        for n in ("POLLIN", "POLLOUT", "POLLERR", "POLLHUP", "POLLRDHUP", "POLLNVAL")
        if mask & _SYMBOLS[n]
    ]
    return "|".join(names) or "0"


_HANDLERS: dict[str, Handler] = {
    "socket": _socket,
    "bind": _bind,
    "listen": _listen,
    "accept": _accept,
    "connect": _connect,
    "read": _reader(COUNT),
    "recv": _reader(COUNT),
    "recvfrom": _reader(COUNT),
    "readv": _reader(IOVEC),
    "recvmsg": _reader(MSGHDR),
    "write": _writer(COUNT),
    "send": _writer(COUNT, flags_at=3),
    "sendto": _writer(COUNT, flags_at=3),
    "writev": _writer(IOVEC),
    "sendmsg": _writer(MSGHDR, flags_at=2),
    "shutdown": _shutdown,
    "close": _close,
    "setsockopt": _setsockopt,
    "getsockopt": _getsockopt,
    "fcntl": _fcntl,
    "poll": _poll,
}


def run_script(
    source: str,
    *,
    name: str = "<script>",
    config: Config | None = None,
    tolerance_usecs: int = DEFAULT_TOLERANCE_USECS,
) -> ScriptResult:
    """Parse and run one script; never raises for a script's content."""
    try:
        events = parse_script(source)
    except ParseError as error:
        return ScriptResult(name, False, error.line, f"parse error: {error.message}")
    runner = _Runner(events, config if config is not None else Config(), tolerance_usecs)
    try:
        runner.run()
    except ScriptFailure as failure:
        return ScriptResult(name, False, failure.line, failure.message, runner.events_run)
    return ScriptResult(name, True, events_run=runner.events_run)


def run_file(
    path: str | Path,
    *,
    config: Config | None = None,
    tolerance_usecs: int = DEFAULT_TOLERANCE_USECS,
) -> ScriptResult:
    path = Path(path)
    return run_script(
        path.read_text(), name=str(path), config=config, tolerance_usecs=tolerance_usecs
    )
