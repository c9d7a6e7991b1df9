"""Compact TIME_WAIT entries: what a connection needs for 2*MSL, and nothing more.

A connection in TIME_WAIT has nothing left to send or receive; it only has to answer a
retransmitted FIN (seed claim C11a), keep its 4-tuple from a new incarnation until old
segments are gone (C11b), and obey RST. An Endpoint replaces such a connection with a
TimeWaitEntry (a few ints) so that many of them cost little, as Linux's
inet_timewait_sock does. The Connection object an application may still hold is told
when the entry ends (weak reference: an entry never keeps it alive).
"""

from __future__ import annotations

import weakref
from enum import Enum

from tcpstack.core.connection import Connection
from tcpstack.core.segment import NO_OPTIONS, Flag, Options, Segment
from tcpstack.core.seq import MASK, seq_gt, seq_in_window, seq_lt


class TimeWaitVerdict(Enum):
    """What the Endpoint does with a segment that hit a TIME_WAIT entry."""

    ACK = "ack"  # answer with an ACK (entry stays)
    ACK_RESTART = "ack_restart"  # retransmitted FIN: ACK and restart 2*MSL
    DROP = "drop"  # ignore
    KILL = "kill"  # RST ends the entry (TIME-WAIT assassination, RFC 1337)
    REUSE = "reuse"  # a new SYN may reuse the 4-tuple (RFC 6191): end the entry, open


class TimeWaitEntry:
    """SND.NXT, RCV.NXT, the window and timestamp state of a closed connection."""

    __slots__ = (
        "connection",
        "deadline",
        "duration",
        "rcv_nxt",
        "snd_nxt",
        "ts_offset",
        "ts_recent",
        "window",
    )

    def __init__(
        self,
        connection: Connection,
        deadline: int,
        snd_nxt: int,
        rcv_nxt: int,
        window: int,
        ts_recent: int,
        ts_offset: int,
    ) -> None:
        self.connection: weakref.ref[Connection] = weakref.ref(connection)
        self.deadline = deadline
        self.duration = connection.config.time_wait_duration
        self.snd_nxt = snd_nxt
        self.rcv_nxt = rcv_nxt
        self.window = window
        self.ts_recent = ts_recent
        self.ts_offset = ts_offset  # -1: timestamps were not in use

    def classify(self, seg: Segment, *, rfc1337: bool) -> TimeWaitVerdict:
        """Decide per RFC 9293 3.10.7.4 (TIME-WAIT), RFC 1337 and RFC 6191."""
        flags = seg.flags
        if flags & Flag.RST:
            if rfc1337:
                return TimeWaitVerdict.DROP  # RFC 1337 TW-assassination fix: ignore RST
            if seg.seq == self.rcv_nxt:
                return TimeWaitVerdict.KILL
            # In-window but not exact: challenge ACK (RFC 5961 3.2); else silence.
            window = max(self.window, 1)
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
            elif seq_gt(seg.seq, self.rcv_nxt):
                return TimeWaitVerdict.REUSE
            return TimeWaitVerdict.ACK
        if flags & Flag.FIN and seg.end_seq == self.rcv_nxt:
            return TimeWaitVerdict.ACK_RESTART  # our last ACK was lost (seed C11a)
        if seq_lt(seg.seq, self.rcv_nxt) or seg.seg_len:
            return TimeWaitVerdict.ACK  # an old duplicate: RFC 9293 first step, ACK it
        return TimeWaitVerdict.DROP  # a bare ACK at RCV.NXT needs no answer

    def ack_segment(self, local_port: int, remote_port: int, now: int) -> Segment:
        """<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> with timestamps if they were in use."""
        options = NO_OPTIONS
        if self.ts_offset >= 0:
            options = Options(timestamp=((now // 1000 + self.ts_offset) & MASK, self.ts_recent))
        return Segment(
            local_port, remote_port, self.snd_nxt, self.rcv_nxt, Flag.ACK, self.window, 0, options
        )

    def restart(self, now: int) -> None:
        """Restart 2*MSL (RFC 9293 3.10.7.4, TIME-WAIT: a retransmitted FIN)."""
        self.deadline = now + self.duration


def entry_from(connection: Connection, deadline: int, now: int) -> TimeWaitEntry:
    snd_nxt, rcv_nxt, window, ts_recent, ts_offset = connection.hand_over_time_wait(now)
    return TimeWaitEntry(connection, deadline, snd_nxt, rcv_nxt, window, ts_recent, ts_offset)


__all__ = ["TimeWaitEntry", "TimeWaitVerdict", "entry_from"]
