"""Ladder (sequence) diagrams of a run, as text for terminals.

Input is a list of LadderEvent in time order: segments sent (and whether the network
lost them), state changes, user calls and notes, each belonging to one of two hosts.
Sequence and acknowledgment numbers are shown relative to each side's ISN, as tcpdump
and Wireshark do by default.
"""

from __future__ import annotations

from dataclasses import dataclass

from tcpstack.core.segment import Flag, Segment
from tcpstack.core.seq import seq_sub

LEFT = 0
RIGHT = 1


@dataclass(frozen=True, slots=True)
class LadderEvent:
    time: int  # µs
    side: int  # LEFT or RIGHT: the host that sent / changed state / called
    kind: str  # "send", "state", "call", "note"
    text: str = ""  # state change "A -> B", call name, or note
    segment: Segment | None = None
    lost: bool = False


@dataclass(frozen=True, slots=True)
class SideInfo:
    title: str  # e.g. "client 10.0.0.1:32768"


def format_time(us: int) -> str:
    """Virtual time as seconds with millisecond precision, e.g. '  60.020s'."""
    return f"{us / 1_000_000:9.3f}s"


class RelativeNumbers:
    """Learns each flow's ISN from its SYN and describes segments relative to it.

    A flow is (sending side, source port, destination port). Sequence numbers are shown
    relative to the sender's ISN and acknowledgment numbers relative to the receiver's,
    as tcpdump does; a flow whose SYN was not seen is shown absolute.
    """

    def __init__(self) -> None:
        self._isn: dict[tuple[int, int, int], int] = {}

    def bases(self, side: int, seg: Segment) -> tuple[int, int]:
        """(sequence base, acknowledgment base) for `seg` sent by `side`; a SYN teaches
        its flow's ISN. Call once per segment, in the order they were sent."""
        flow = (side, seg.src_port, seg.dst_port)
        if seg.flags & Flag.SYN:
            self._isn[flow] = seg.seq
        seq_base = self._isn.get(flow, 0)
        ack_base = self._isn.get((1 - side, seg.dst_port, seg.src_port), 0)
        if seq_sub(seg.seq, seq_base) > 1 << 31:
            seq_base = 0  # not in this flow's sequence space (e.g. a RST with SEQ=0)
        return seq_base, ack_base

    def describe(self, side: int, seg: Segment) -> str:
        seq_base, ack_base = self.bases(side, seg)
        return seg.describe(seq_base, ack_base)


def render_text(
    events: list[LadderEvent], left: SideInfo, right: SideInfo, *, column: int = 52
) -> str:
    """A two-column ladder: each line is one event at its time, in its host's column."""
    arrow_len = 9
    numbers = RelativeNumbers()
    lines = [
        f"{'time':>10}  {left.title:<{column}} {'':{arrow_len}}  {right.title}",
        f"{'':>10}  {'-' * min(len(left.title), column):<{column}} {'':{arrow_len}}  "
        f"{'-' * len(right.title)}",
    ]
    for event in events:
        stamp = format_time(event.time)
        if event.kind == "send" and event.segment is not None:
            text = numbers.describe(event.side, event.segment)
            if event.side == LEFT:
                arrow = "----x" if event.lost else "-" * (arrow_len - 1) + ">"
                line = f"{stamp}  {text:<{column}} {arrow:<{arrow_len}}"
            else:
                arrow = "x----" if event.lost else "<" + "-" * (arrow_len - 1)
                line = f"{stamp}  {'':<{column}} {arrow:>{arrow_len}}  {text}"
            if event.lost:
                line = line.rstrip() + "  (lost)"
            lines.append(line)
            continue
        if event.kind == "state":
            text = f"[{event.text}]"
        elif event.kind == "call":
            text = event.text
        else:
            text = f"# {event.text}"
        if event.side == LEFT:
            lines.append(f"{stamp}  {text}")
        else:
            lines.append(f"{stamp}  {'':<{column}} {'':{arrow_len}}  {text}")
    return "\n".join(line.rstrip() for line in lines)
