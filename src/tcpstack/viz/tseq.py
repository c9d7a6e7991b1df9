"""Time-sequence graphs (Stevens / tcptrace style) of a run, drawn with matplotlib.

One panel per direction of one connection. For the sender's segments: a vertical bar
from the first to the last sequence number each one carried, at the time it left
(retransmissions in red, lost ones ended with an x, SYN and FIN as triangles, keepalive
probes as small circles). From the receiver's segments: the ACK line (the cumulative
acknowledgment as a step function), the receive window line (ACK plus the advertised
window, scaled as RFC 7323 says) and SACK blocks as green bars. Sequence numbers are
relative to the sender's ISN. Rendered with the Agg backend: no display needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tcpstack.core.segment import Flag
from tcpstack.core.seq import seq_sub
from tcpstack.viz.ladder import LEFT, RIGHT
from tcpstack.viz.timeline import SIDE_NAMES, SegmentStep, Timeline

WIDTH_IN = 10.0
HEIGHT_IN = 7.5
DPI = 100
SIZE = (int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI))  # pixels of the PNG


@dataclass(frozen=True, slots=True)
class Direction:
    """What one direction of a connection looks like on a time-sequence graph."""

    title: str
    sends: list[SegmentStep]  # the data sender's segments
    acks: list[SegmentStep]  # the receiver's segments
    window_shift: int  # the receiver's window scale (0 when not negotiated)
    seq_base: int  # the sender's ISN (absolute), for relative SACK blocks


def _window_shift(receiver: Sequence[SegmentStep], sender: Sequence[SegmentStep]) -> int:
    """RFC 7323 2.2: scaling is on only when both SYNs carried the option."""
    mine = next(
        (s.segment.options.window_scale for s in receiver if s.segment.flags & Flag.SYN), None
    )
    theirs = next(
        (s.segment.options.window_scale for s in sender if s.segment.flags & Flag.SYN), None
    )
    return mine if mine is not None and theirs is not None else 0


def directions(timeline: Timeline, conns: tuple[str, str] | None = None) -> list[Direction]:
    """Both directions of the connection between `conns` (client label, server label);
    by default the first connection that changed state on each side."""
    if conns is None:
        left = timeline.conns_of(LEFT)
        right = timeline.conns_of(RIGHT)
        conns = (left[0] if left else "", right[0] if right else "")
    by_side = [
        [s for s in timeline.segments if s.conn == conns[side] and s.side == side]
        for side in (LEFT, RIGHT)
    ]
    out: list[Direction] = []
    for side in (LEFT, RIGHT):
        sends = by_side[side]
        acks = by_side[1 - side]
        base = seq_sub(sends[0].segment.seq, sends[0].seq) if sends else 0
        out.append(
            Direction(
                title=f"{SIDE_NAMES[side]} -> {SIDE_NAMES[1 - side]}",
                sends=sends,
                acks=acks,
                window_shift=_window_shift(acks, sends),
                seq_base=base,
            )
        )
    return out


def plot(
    timeline: Timeline,
    path: str | Path,
    *,
    conns: tuple[str, str] | None = None,
    title: str = "",
) -> Path:
    """Draw the time-sequence graph of `timeline` into the PNG file `path`."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    panels = figure.subplots(2, 1, sharex=True)
    times = [s.time / 1e6 for s in timeline.segments] or [0.0]
    t_max = max(times)
    symlog = t_max > 5.0
    for axes, direction in zip(panels, directions(timeline, conns), strict=True):
        _draw(axes, direction)
        axes.set_title(direction.title, fontsize=10, loc="left")
        axes.set_ylabel("relative sequence number")
        axes.grid(True, color="#dddddd", linewidth=0.6)
        if symlog:
            axes.set_xscale("symlog", linthresh=0.1, linscale=1.0)
    panels[1].set_xlabel("time (s)" + (", linear to 0.1 s then logarithmic" if symlog else ""))
    handles = [
        Line2D([], [], color="#1f4e9e", linewidth=2, label="data sent"),
        Line2D([], [], color="#d62728", linewidth=2, label="retransmission"),
        Line2D([], [], color="#d62728", marker="x", linestyle="", label="lost"),
        Line2D([], [], color="#444444", marker="^", linestyle="", label="SYN / FIN"),
        Line2D([], [], color="#2ca02c", drawstyle="steps-post", label="ACK"),
        Line2D([], [], color="#ff7f0e", linestyle="--", label="receive window (ACK + win)"),
        Line2D([], [], color="#17becf", linewidth=4, label="SACK block"),
    ]
    figure.legend(handles=handles, loc="lower center", ncol=7, fontsize=8, frameon=False)
    figure.suptitle(title or "time-sequence graph", fontsize=11)
    figure.subplots_adjust(left=0.09, right=0.98, top=0.92, bottom=0.13, hspace=0.25)
    target = Path(path)
    figure.savefig(target, format="png", dpi=DPI)
    return target


def _draw(axes: object, direction: Direction) -> None:
    from matplotlib.axes import Axes

    assert isinstance(axes, Axes)
    for step in direction.sends:
        seg = step.segment
        t = step.time / 1e6
        color = "#d62728" if step.retransmission else "#1f4e9e"
        if step.length:
            axes.vlines(t, step.seq, step.seq + step.length, colors=color, linewidth=2)
        if seg.flags & (Flag.SYN | Flag.FIN):
            mark = "#d62728" if step.retransmission else "#444444"
            axes.plot([t], [step.seq], marker="^", color=mark, markersize=6)
        if step.keepalive_probe:
            axes.plot([t], [step.seq], marker="o", color="#9467bd", markersize=4)
        if step.lost:
            axes.plot([t], [step.seq + step.length], marker="x", color="#d62728", markersize=8)
    ack_t: list[float] = []
    ack_v: list[int] = []
    win_v: list[int] = []
    for step in direction.acks:
        seg = step.segment
        if not seg.flags & Flag.ACK:
            continue
        t = (step.arrival if step.arrival is not None else step.time) / 1e6
        window = seg.window if seg.flags & Flag.SYN else seg.window << direction.window_shift
        ack_t.append(t)
        ack_v.append(step.ack)
        win_v.append(step.ack + window)
        for left, right in seg.options.sack_blocks:
            low = seq_sub(left, direction.seq_base)
            high = seq_sub(right, direction.seq_base)
            axes.vlines(t, low, high, colors="#17becf", linewidth=4, alpha=0.8)
    if ack_t:
        axes.step(ack_t, ack_v, where="post", color="#2ca02c", linewidth=1.2)
        axes.step(ack_t, win_v, where="post", color="#ff7f0e", linestyle="--", linewidth=1)
    # Keep the data in view: a window far larger than what was sent would flatten it.
    tops = [s.seq + max(s.segment.seg_len, 1) for s in direction.sends] + ack_v
    if tops and win_v:
        top = max(tops)
        span = max(top, 10)
        if max(win_v) > top + 4 * span:
            axes.set_ylim(-0.05 * span, top + 0.6 * span)
            axes.text(
                0.99,
                0.97,
                f"receive window edge off scale (up to {max(win_v) - max(ack_v)} bytes ahead)",
                transform=axes.transAxes,
                ha="right",
                va="top",
                fontsize=8,
                color="#ff7f0e",
            )
    if not direction.sends and not ack_t:
        axes.text(0.5, 0.5, "no segments", transform=axes.transAxes, ha="center")


__all__ = ["DPI", "SIZE", "Direction", "directions", "plot"]
