"""Compact TIME_WAIT entries: what a connection needs for 2*MSL, and nothing more.

A connection in TIME_WAIT has nothing left to send or receive; it only has to answer a
retransmitted FIN (seed claim C11a), keep its 4-tuple from a new incarnation until old
segments are gone (C11b), and obey RST. An Endpoint replaces such a connection with an
entry in its TimeWaitTable, as Linux's inet_timewait_sock does, so that a million of
them fit in about 160 MB (issue 9: at most 200 bytes each):

* the key is one int packing the peer's address and both ports (the local address is
  the Endpoint's own, the same for every entry), the value one int packing SND.NXT,
  RCV.NXT, the window field and our window shift, the timestamp state, the deadline,
  when the out-of-window ACK limit last let an ACK out, and the entry's profile: the
  number of its (2*MSL duration, ACK limit interval) pair in the table's short list of
  pairs, since the connections of one stack share a few configurations;
* expiry needs no heap: every entry of one duration is added at the current time, so
  the deadlines of a duration come in the order the entries were added (or restarted).
  One FIFO per duration (keys in a deque, deadlines in an array of machine ints)
  yields the due entries from its head. A restart or an early end leaves the old
  FIFO position behind; it is recognised and skipped because its deadline no longer
  matches the entry's;
* the Connection object an application may still hold is found through a weak-value
  dictionary, so an entry never keeps it alive, and costs nothing once it is gone.

`TimeWaitTable` is a read-only Mapping from 4-tuples to `TimeWaitEntry` views, built on
demand, so callers that list or look up entries see what they saw before.
"""

from __future__ import annotations

import ipaddress
import sys
import weakref
from array import array
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache

from tcpstack.core.connection import Connection, FourTuple
from tcpstack.core.segment import NO_OPTIONS, Flag, Options, Segment
from tcpstack.core.seq import MASK, seq_gt, seq_in_window, seq_lt


class TimeWaitVerdict(Enum):
    """What the Endpoint does with a segment that hit a TIME_WAIT entry."""

    ACK = "ack"  # answer with an ACK (entry stays)
    ACK_RESTART = "ack_restart"  # retransmitted FIN: ACK and restart 2*MSL
    DROP = "drop"  # ignore
    KILL = "kill"  # RST ends the entry (TIME-WAIT assassination, RFC 1337)
    REUSE = "reuse"  # a new SYN may reuse the 4-tuple (RFC 6191): end the entry, open


@dataclass(frozen=True, slots=True)
class TimeWaitEntry:
    """SND.NXT, RCV.NXT, the window and timestamp state of a closed connection: a view
    of one TimeWaitTable entry, made when asked for."""

    snd_nxt: int
    rcv_nxt: int
    window: int  # the window field our segments carry (RCV.WND >> rcv_wscale)
    rcv_wscale: int  # our window shift (RFC 7323 2.3; 0 without window scaling)
    ts_recent: int
    ts_offset: int  # -1: timestamps were not in use
    duration: int  # 2*MSL of this connection, in µs
    # The connection's Config.invalid_ack_ratelimit (µs, 0 = off) and when an ACK last
    # left under it (None = never): Linux's tw_last_oow_ack_time.
    oow_ack_interval: int
    last_oow_ack: int | None
    deadline: int
    _table: TimeWaitTable | None = field(default=None, compare=False, repr=False)
    _key: int = field(default=0, compare=False, repr=False)

    def connection(self) -> Connection | None:
        """The Connection the application may still hold (None once it let go)."""
        return self._table.holder(self._key) if self._table is not None else None

    @property
    def rcv_wnd(self) -> int:
        """RCV.WND in bytes: the window field scaled by our shift (RFC 7323 2.2: every
        window field but a SYN's is shifted), as Linux keeps it in tw_rcv_wnd."""
        return self.window << self.rcv_wscale

    def oow_ack_due(self, now: int) -> bool:
        """Whether the entry's limit lets an ACK out at `now` (the Endpoint asks for the
        ACK of an out-of-window segment without text, and for a challenge ACK): none
        left in the last oow_ack_interval µs. Linux's __tcp_oow_rate_limited: an ACK at
        `last` holds back the next until last + interval (0 <= elapsed < interval); a
        clock that went back lets it out."""
        last = self.last_oow_ack
        return last is None or not 0 <= now - last < self.oow_ack_interval

    def classify(self, seg: Segment, *, rfc1337: bool) -> TimeWaitVerdict:
        """Decide per RFC 9293 3.10.7.4 (TIME-WAIT), RFC 1337 and RFC 6191."""
        flags = seg.flags
        if flags & Flag.RST:
            if rfc1337:
                return TimeWaitVerdict.DROP  # RFC 1337 TW-assassination fix: ignore RST
            if seg.seq == self.rcv_nxt:
                return TimeWaitVerdict.KILL
            # In-window but not exact: challenge ACK (RFC 5961 3.2); else silence. The
            # window is RCV.WND, the field scaled by our shift (RFC 7323 2.2); a zero
            # window leaves RCV.NXT alone acceptable (RFC 9293 3.10.7.4 first step).
            window = max(self.rcv_wnd, 1)
            if seq_in_window(seg.seq, self.rcv_nxt, window):
                return TimeWaitVerdict.ACK
            return TimeWaitVerdict.DROP
        if flags & Flag.SYN and not flags & Flag.ACK:
            # RFC 6191 (and Linux's tcp_timewait_state_process): a new SYN may reuse the
            # 4-tuple when its timestamp is newer than TS.Recent, or, without
            # timestamps, when its ISN lies above the old connection's RCV.NXT; old
            # duplicates of the last incarnation cannot be confused with it then.
            timestamp = seg.options.timestamp if seg.options is not NO_OPTIONS else None
            if self.ts_offset >= 0 and timestamp is not None:
                if seq_gt(timestamp[0], self.ts_recent):
                    return TimeWaitVerdict.REUSE
                # RFC 6191 2: an equal TSval still allows reuse when SEG.SEQ lies above
                # the old RCV.NXT (Linux: no PAWS reject, ISN after tw_rcv_nxt).
                if timestamp[0] == self.ts_recent and seq_gt(seg.seq, self.rcv_nxt):
                    return TimeWaitVerdict.REUSE
            elif seq_gt(seg.seq, self.rcv_nxt):
                return TimeWaitVerdict.REUSE
            return TimeWaitVerdict.ACK
        if flags & Flag.FIN and seg.end_seq == self.rcv_nxt:
            return TimeWaitVerdict.ACK_RESTART  # our last ACK was lost (seed C11a)
        if seq_lt(seg.seq, self.rcv_nxt) or seg.seg_len:
            return TimeWaitVerdict.ACK  # an old duplicate: RFC 9293 first step, ACK it
        if seg.seq != self.rcv_nxt and not seq_in_window(seg.seq, self.rcv_nxt, self.rcv_wnd):
            # RFC 9293 3.10.7.4 first step: beyond RCV.NXT + RCV.WND is unacceptable, and
            # an unacceptable segment is answered with an ACK (RCV.WND scaled, as above).
            return TimeWaitVerdict.ACK
        if self.acks_unsent(seg):
            # RFC 9293 3.10.7.4 fifth check / RFC 5961 5.2: an ACK of something never
            # sent is dropped with an ACK in reply (a challenge ACK, rate limited by the
            # Endpoint). Linux's TIME-WAIT drops it silently; the RFC wins here.
            return TimeWaitVerdict.ACK
        return TimeWaitVerdict.DROP  # a bare ACK at RCV.NXT needs no answer

    def acks_unsent(self, seg: Segment) -> bool:
        """Whether `seg` acknowledges beyond SND.NXT (which is also SND.UNA here)."""
        return bool(seg.flags & Flag.ACK) and seq_gt(seg.ack, self.snd_nxt)

    def ack_segment(self, local_port: int, remote_port: int, now: int) -> Segment:
        """<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> with timestamps if they were in use."""
        options = NO_OPTIONS
        if self.ts_offset >= 0:
            options = Options(timestamp=((now // 1000 + self.ts_offset) & MASK, self.ts_recent))
        return Segment(
            local_port, remote_port, self.snd_nxt, self.rcv_nxt, Flag.ACK, self.window, 0, options
        )


# ------------------------------------------------------------------ packing

# The key: the peer's address (tagged by kind), then the local and the peer's port.
_PORT_BITS = 16
_ADDRESS_SHIFT = 2 * _PORT_BITS
# Address kinds in the two low bits of the packed address.
_IPV4, _IPV6, _NAME = 0, 1, 2

# The value, lowest bits first: SND.NXT, RCV.NXT (32 each), the window field (16), our
# window shift (4: RFC 7323 2.3 allows 0..14), TS.Recent (32), the timestamp offset plus
# one (33: 0 means timestamps off), the time of the last out-of-window ACK plus one (56:
# 0 means none yet), the deadline (63: the FIFOs keep deadlines as signed 64-bit machine
# ints anyway) and the profile number in all higher bits (0, costing nothing, for the
# table's first profile). An entry of the first profile is an 8-digit CPython int of 56
# bytes while deadlines stay below 2**35 µs; one of the first four profiles is at most
# 9 digits, 60 bytes. (Smaller ints would be possible, with the stamp above the deadline, but
# 48-byte ints share pymalloc's size class with short-lived objects of connections and
# fragment it: in the memory benchmark that cost 290 resident bytes per entry.)
_WINDOW_SHIFT = 64
_WSCALE_SHIFT = 80
_TS_RECENT_SHIFT = 84
_TS_OFFSET_SHIFT = 116
_OOW_LAST_SHIFT = 149
_DEADLINE_SHIFT = 205
_PROFILE_SHIFT = 268
_OOW_LAST_MASK = (1 << (_DEADLINE_SHIFT - _OOW_LAST_SHIFT)) - 1
_DEADLINE_MASK = (1 << (_PROFILE_SHIFT - _DEADLINE_SHIFT)) - 1
# Times a last-ACK stamp can hold (plus one, in 56 bits): 2,283 years of µs. An ACK at a
# later (or negative) time leaves no stamp, so the next ACK is not held back by it.
_OOW_LAST_LIMIT = _OOW_LAST_MASK - 1


@lru_cache(maxsize=4096)
def _address_number(address: str) -> int:
    """An address as an int that _address_text() turns back into the same string.

    Anything that is not an IP address in its canonical text (tests name hosts) is
    kept as its UTF-8 bytes."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    # A zone ("fe80::1%eth0", RFC 4007 11) is not in int(ip): such an address keeps its
    # text, so peers on different links get different keys.
    if ip is not None and str(ip) == address and "%" not in address:
        return int(ip) << 2 | (_IPV6 if ip.version == 6 else _IPV4)
    return int.from_bytes(address.encode(), "big") << 2 | _NAME


def _address_text(number: int) -> str:
    kind, value = number & 3, number >> 2
    if kind == _IPV4:
        return str(ipaddress.IPv4Address(value))
    if kind == _IPV6:
        return str(ipaddress.IPv6Address(value))
    return value.to_bytes((value.bit_length() + 7) // 8, "big").decode()


def _deadline_of(item: tuple[int, int]) -> int:
    return item[0]


class _Expiries:
    """Keys and deadlines of one TIME_WAIT duration, earliest deadline first."""

    __slots__ = ("deadlines", "head", "keys")

    def __init__(self) -> None:
        self.keys: deque[int] = deque()
        # Machine ints (8 bytes each, no int objects); entries before `head` are done.
        self.deadlines = array("q")
        self.head = 0

    def __len__(self) -> int:
        return len(self.keys)

    def first(self) -> tuple[int, int]:
        return self.keys[0], self.deadlines[self.head]

    def pop_first(self) -> None:
        self.keys.popleft()
        self.head += 1
        if self.head >= 4096 and 2 * self.head >= len(self.deadlines):
            del self.deadlines[: self.head]  # amortised O(1): drop the done half
            self.head = 0

    def push(self, key: int, deadline: int) -> None:
        deadlines = self.deadlines
        if len(deadlines) == self.head or deadlines[-1] <= deadline:
            self.keys.append(key)
            deadlines.append(deadline)
            return
        # Rare: a connection that entered TIME_WAIT earlier is filed after a later one
        # (its owner settled it late). Keep the order exact: insert from the back.
        index = len(deadlines)
        while index > self.head and deadlines[index - 1] > deadline:
            index -= 1
        self.keys.insert(index - self.head, key)
        deadlines.insert(index, deadline)


class TimeWaitTable(Mapping[FourTuple, TimeWaitEntry]):
    """An Endpoint's TIME_WAIT entries by 4-tuple, with their 2*MSL expiry."""

    def __init__(self, local_address: str) -> None:
        self.local_address = local_address
        self._entries: dict[int, int] = {}  # packed key -> packed state
        self._expiries: dict[int, _Expiries] = {}  # by duration
        # (2*MSL duration, out-of-window ACK interval) pairs; an entry keeps the number
        # of its own. The list only grows, by one per configuration ever seen.
        self._profiles: list[tuple[int, int]] = []
        self._profile_numbers: dict[tuple[int, int], int] = {}
        self._holders: weakref.WeakValueDictionary[int, Connection] = weakref.WeakValueDictionary()
        # Entries per local port: bind()/listen()/connect() ask whether a port has
        # TIME_WAIT entries, which must not cost a walk over a full table (262,144
        # entries by default).
        self._local_ports: dict[int, int] = {}

    # ------------------------------------------------------------------ keys

    def _key(self, four_tuple: FourTuple) -> int | None:
        local_ip, local_port, remote_ip, remote_port = four_tuple
        if local_ip != self.local_address:
            return None
        address = _address_number(remote_ip)
        return address << _ADDRESS_SHIFT | local_port << _PORT_BITS | remote_port

    def _four_tuple(self, key: int) -> FourTuple:
        remote_port = key & 0xFFFF
        local_port = key >> _PORT_BITS & 0xFFFF
        return (self.local_address, local_port, _address_text(key >> _ADDRESS_SHIFT), remote_port)

    def _view(self, key: int, value: int) -> TimeWaitEntry:
        ts_offset = (value >> _TS_OFFSET_SHIFT & ((1 << 33) - 1)) - 1
        last_oow_ack = (value >> _OOW_LAST_SHIFT & _OOW_LAST_MASK) - 1
        duration, oow_ack_interval = self._profiles[value >> _PROFILE_SHIFT]
        return TimeWaitEntry(
            snd_nxt=value & MASK,
            rcv_nxt=value >> 32 & MASK,
            window=value >> _WINDOW_SHIFT & 0xFFFF,
            rcv_wscale=value >> _WSCALE_SHIFT & 0xF,
            ts_recent=value >> _TS_RECENT_SHIFT & MASK,
            ts_offset=ts_offset,
            duration=duration,
            oow_ack_interval=oow_ack_interval,
            last_oow_ack=last_oow_ack if last_oow_ack >= 0 else None,
            deadline=value >> _DEADLINE_SHIFT & _DEADLINE_MASK,
            _table=self,
            _key=key,
        )

    # ------------------------------------------------------------------ Mapping

    def __getitem__(self, four_tuple: FourTuple) -> TimeWaitEntry:
        key = self._key(four_tuple) if self._entries else None
        value = self._entries.get(key) if key is not None else None
        if key is None or value is None:
            raise KeyError(four_tuple)
        return self._view(key, value)

    def __contains__(self, four_tuple: object) -> bool:
        if not self._entries or not isinstance(four_tuple, tuple) or len(four_tuple) != 4:
            return False
        key = self._key(four_tuple)
        return key is not None and key in self._entries

    def __iter__(self) -> Iterator[FourTuple]:
        return (self._four_tuple(key) for key in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def uses_local_port(self, port: int) -> bool:
        """Whether any entry has `port` as its local port (O(1))."""
        return port in self._local_ports

    def local_ports(self) -> Iterator[int]:
        """The local ports that have entries, each once."""
        return iter(self._local_ports)

    def _forget_port(self, key: int) -> None:
        port = key >> _PORT_BITS & 0xFFFF
        left = self._local_ports[port] - 1
        if left:
            self._local_ports[port] = left
        else:
            del self._local_ports[port]

    # ------------------------------------------------------------------ changes

    def add(self, connection: Connection, deadline: int, now: int) -> None:
        """File a connection that entered TIME_WAIT; its 2*MSL ends at `deadline`."""
        key = self._key(connection.four_tuple)
        if key is None:
            raise ValueError(f"{connection.local_ip} is not {self.local_address}")
        snd_nxt, rcv_nxt, window, ts_recent, ts_offset = connection.hand_over_time_wait(now)
        # RFC 7323 2.3: the shift is 0..14 (the window field alone is not RCV.WND).
        rcv_wscale = connection.rcv_wscale
        config = connection.config
        duration = config.time_wait_duration
        if duration < 0:
            raise ValueError(f"time_wait_duration {duration} is negative")
        oow_interval = config.invalid_ack_ratelimit
        if oow_interval < 0:
            raise ValueError(f"invalid_ack_ratelimit {oow_interval} is negative")
        if not 0 <= deadline <= _DEADLINE_MASK:
            raise ValueError(f"deadline {deadline} out of range")
        profile = (duration, oow_interval)
        number = self._profile_numbers.get(profile)
        if number is None:
            number = self._profile_numbers[profile] = len(self._profiles)
            self._profiles.append(profile)
        if key not in self._entries:
            port = connection.local_port
            self._local_ports[port] = self._local_ports.get(port, 0) + 1
        self._entries[key] = (
            snd_nxt
            | rcv_nxt << 32
            | window << _WINDOW_SHIFT
            | (rcv_wscale & 0xF) << _WSCALE_SHIFT
            | ts_recent << _TS_RECENT_SHIFT
            | ((ts_offset & MASK) + 1 if ts_offset >= 0 else 0) << _TS_OFFSET_SHIFT
            | deadline << _DEADLINE_SHIFT
            | number << _PROFILE_SHIFT
        )
        self._holders[key] = connection
        self._expiries_for(duration).push(key, deadline)

    def restart(self, four_tuple: FourTuple, now: int) -> int:
        """Restart 2*MSL (RFC 9293 3.10.7.4, TIME-WAIT: a retransmitted FIN); returns
        the new deadline. The entry's old FIFO position is skipped when reached."""
        key = self._key(four_tuple)
        value = self._entries.get(key) if key is not None else None
        if key is None or value is None:
            raise KeyError(four_tuple)
        duration = self._profiles[value >> _PROFILE_SHIFT][0]
        deadline = now + duration
        others = value & ~(_DEADLINE_MASK << _DEADLINE_SHIFT)
        self._entries[key] = others | (deadline & _DEADLINE_MASK) << _DEADLINE_SHIFT
        self._expiries_for(duration).push(key, deadline)
        return deadline

    def note_oow_ack(self, four_tuple: FourTuple, now: int) -> None:
        """The entry's limit let an ACK out at `now`: its interval runs from here
        (Linux's tw_last_oow_ack_time). Kept across restarts."""
        key = self._key(four_tuple)
        value = self._entries.get(key) if key is not None else None
        if key is None or value is None:
            raise KeyError(four_tuple)
        stamp = now + 1 if 0 <= now <= _OOW_LAST_LIMIT else 0
        cleared = value & ~(_OOW_LAST_MASK << _OOW_LAST_SHIFT)
        self._entries[key] = cleared | stamp << _OOW_LAST_SHIFT

    def remove(self, four_tuple: FourTuple) -> Connection | None:
        """End an entry early (RST, a reused 4-tuple); returns the Connection the
        application still holds, if any."""
        key = self._key(four_tuple)
        if key is None or self._entries.pop(key, None) is None:
            raise KeyError(four_tuple)
        self._forget_port(key)
        return self._holders.pop(key, None)

    def holder(self, key: int) -> Connection | None:
        return self._holders.get(key)

    def _expiries_for(self, duration: int) -> _Expiries:
        expiries = self._expiries.get(duration)
        if expiries is None:
            expiries = self._expiries[duration] = _Expiries()
        return expiries

    # ------------------------------------------------------------------ expiry

    def _live_first(self, expiries: _Expiries) -> tuple[int, int] | None:
        """The first FIFO position that is still an entry's deadline (stale positions
        ahead of it are dropped)."""
        entries = self._entries
        while expiries:
            key, deadline = expiries.first()
            value = entries.get(key)
            if value is not None and value >> _DEADLINE_SHIFT & _DEADLINE_MASK == deadline:
                return key, deadline
            expiries.pop_first()
        return None

    def next_deadline(self) -> int | None:
        """The earliest deadline of any entry, or None."""
        if not self._entries:
            self._expiries.clear()  # only stale positions were left
            return None
        earliest: int | None = None
        for expiries in self._expiries.values():
            first = self._live_first(expiries)
            if first is not None and (earliest is None or first[1] < earliest):
                earliest = first[1]
        return earliest

    def pop_expired(self, now: int) -> list[tuple[FourTuple, Connection | None]]:
        """Remove every entry whose 2*MSL has passed (RFC 9293 3.10.8), in deadline
        order (across durations too, for a late call); returns their 4-tuples and the
        Connections still held."""
        if not self._entries:
            self._expiries.clear()  # only stale positions were left
            return []
        due: list[tuple[int, int]] = []  # (deadline, key)
        for expiries in self._expiries.values():
            while (first := self._live_first(expiries)) is not None and first[1] <= now:
                key = first[0]
                expiries.pop_first()
                del self._entries[key]
                self._forget_port(key)
                due.append((first[1], key))
        if len(self._expiries) > 1:
            due.sort(key=_deadline_of)  # stable: FIFO order kept for equal deadlines
        return [(self._four_tuple(key), self._holders.pop(key, None)) for _, key in due]

    # ------------------------------------------------------------------ sizes

    def entry_sizes(self, four_tuple: FourTuple) -> list[tuple[str, int]]:
        """What one entry costs, by part (sys.getsizeof; for the memory benchmark):
        the key and value ints, and the FIFO's key reference and machine-int deadline."""
        key = self._key(four_tuple)
        value = self._entries.get(key) if key is not None else None
        if key is None or value is None:
            raise KeyError(four_tuple)
        return [
            ("key int", sys.getsizeof(key)),
            ("state int", sys.getsizeof(value)),
            ("FIFO key reference", 8),
            ("FIFO deadline", array("q").itemsize),
        ]


__all__ = ["TimeWaitEntry", "TimeWaitTable", "TimeWaitVerdict"]
