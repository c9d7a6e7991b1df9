"""The ladder (sequence) diagram of a run as SVG, written as plain text (no dependency).

Two vertical time lines, the client's on the left and the server's on the right. Each
segment is an arrow from the sender's line at the moment it left to the receiver's line
at the moment it arrived, labelled with its flags, relative sequence range, length,
acknowledgment, window and options; a lost segment is an arrow that stops short with an
x. Each end's state is written beside its line at every change, user calls and notes
beside it too, and timers (retransmission, delayed ACK, keepalive, TIME_WAIT 2*MSL, ...)
are drawn as spans beside the line from the moment they were armed to the moment they
fired or were cancelled.

Time runs downwards but not to scale: every instant at which something happens gets the
rows it needs, and the gap to the next instant grows with the logarithm of the time
between them; gaps of two seconds and more are drawn as breaks with the time skipped.

Elements carry classes and data attributes so that tests and the HTML report can find
them: `g.tl-seg` (data-n, data-side, data-flags, data-lost, data-seq, data-ack, data-len),
`g.tl-state` (data-side, data-state, data-from, data-conn), `g.tl-timer` (data-timer,
data-outcome), `text.tl-call`, `text.tl-note`.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from tcpstack.core.segment import Flag
from tcpstack.viz.ladder import LEFT, RIGHT, format_time
from tcpstack.viz.timeline import (
    SIDE_NAMES,
    SegmentStep,
    StateChange,
    Timeline,
    timer_name,
    timer_tag,
)

FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
FONT_SIZE = 11
CHAR_W = 6.65  # advance of one character of FONT at FONT_SIZE px
ROW = 15  # height of one row of text
TOP = 78  # header and legend
LANE = 9  # width of one timer lane
BREAK_AT = 2_000_000  # µs: gaps this long and longer are drawn as breaks
NOTE_WIDTH = 44  # characters per line of a note

# Timer lanes in a fixed order, each with its colour.
TIMER_ORDER = (
    "retransmit",
    "delayed_ack",
    "keepalive",
    "persist",
    "fin_wait_2",
    "time_wait",
    "linger",
    "user_timeout",
)
TIMER_COLORS = {
    "retransmit": "#d62728",
    "delayed_ack": "#1f77b4",
    "keepalive": "#2ca02c",
    "persist": "#8c564b",
    "fin_wait_2": "#9467bd",
    "time_wait": "#ff7f0e",
    "linger": "#7f7f7f",
    "user_timeout": "#e377c2",
}
STATE_COLORS = {
    "CLOSED": "#eeeeee",
    "LISTEN": "#e3f2fd",
    "SYN_SENT": "#fff3e0",
    "SYN_RECEIVED": "#fff3e0",
    "ESTABLISHED": "#e8f5e9",
    "FIN_WAIT_1": "#fce4ec",
    "FIN_WAIT_2": "#fce4ec",
    "CLOSE_WAIT": "#ede7f6",
    "CLOSING": "#fce4ec",
    "LAST_ACK": "#ede7f6",
    "TIME_WAIT": "#fff8e1",
}

STYLE = f"""
.tl-root text {{ font-family: {FONT}; font-size: {FONT_SIZE}px; fill: #222; }}
.tl-title {{ font-weight: bold; }}
.tl-life {{ stroke: #555; stroke-width: 2; }}
.tl-break {{ stroke: #555; stroke-width: 2; stroke-dasharray: 2 5; }}
.tl-gap {{ fill: #777; font-style: italic; }}
.tl-time {{ fill: #666; }}
.tl-seg line {{ stroke: #333; stroke-width: 1.3; }}
.tl-seg.tl-lost line {{ stroke: #c62828; stroke-dasharray: 6 3; }}
.tl-seg.tl-lost text {{ fill: #c62828; }}
.tl-seg.tl-rexmit line {{ stroke: #6a1b9a; }}
.tl-seg .tl-opts {{ fill: #666; }}
.tl-seg.tl-current line {{ stroke: #e65100; stroke-width: 3.5; }}
.tl-seg.tl-current text {{ fill: #e65100; font-weight: bold; }}
.tl-state rect {{ stroke: #555; stroke-width: 0.8; }}
.tl-state text {{ font-weight: bold; }}
.tl-call {{ fill: #0d47a1; font-style: italic; }}
.tl-note {{ fill: #555; font-style: italic; }}
.tl-timer rect {{ fill-opacity: 0.75; }}
.tl-tag {{ font-size: 9px; }}
"""


@dataclass
class _Row:
    kind: str  # "state", "call", "note", "send"
    order: int
    text: str = ""
    change: StateChange | None = None
    seg: SegmentStep | None = None


@dataclass
class _Block:
    time: int
    rows: list[list[_Row]] = field(default_factory=lambda: [[], []])
    y: float = 0.0

    def height(self) -> int:
        used = max(sum(2 if r.kind == "send" else 1 for r in side) for side in self.rows)
        return max(used, 1) * ROW


def _text_width(text: str) -> float:
    return len(text) * CHAR_W


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _gap(dt: int) -> float:
    if dt <= 0:
        return 0.0
    if dt >= BREAK_AT:
        return 72.0
    return 10.0 + 30.0 * math.log10(1.0 + dt / 1000.0)


def _elapsed(dt: int) -> str:
    seconds = dt / 1_000_000
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h later"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min later"
    return f"{seconds:.3f} s later".replace(".000 s", " s")


def _state_text(name: str, state: str) -> str:
    return f"{name} {state}" if name else state


def render_svg(timeline: Timeline, *, prefix: str = "", title: str | None = None) -> str:
    """The ladder diagram of `timeline` as an SVG document (a string).

    `prefix` is put before every id, so that several diagrams can share one HTML page.
    """
    # ---------------------------------------------------------------- collect rows
    blocks: dict[int, _Block] = {}

    def block(time: int) -> _Block:
        found = blocks.get(time)
        if found is None:
            found = blocks[time] = _Block(time)
        return found

    side_texts: list[list[str]] = [[], []]
    for change in timeline.states:
        row = _Row("state", change.order, change=change)
        block(change.time).rows[change.side].append(row)
        side_texts[change.side].append(
            _state_text(timeline.conn_name(change.conn), change.after) + "  "
        )
    for mark in timeline.marks:
        if mark.kind == "note":
            lines = textwrap.wrap("# " + mark.text, NOTE_WIDTH) or ["#"]
            for offset, line in enumerate(lines):
                block(mark.time).rows[mark.side].append(_Row("note", mark.order + offset, line))
                side_texts[mark.side].append(line)
        else:
            block(mark.time).rows[mark.side].append(_Row("call", mark.order, mark.text))
            side_texts[mark.side].append(mark.text)
    for seg in timeline.segments:
        block(seg.time).rows[seg.side].append(_Row("send", seg.order, seg=seg))
        if seg.arrival is not None:
            block(seg.arrival)
    for span in timeline.timers:
        block(span.start)
        block(span.end)
    block(timeline.end_time)
    for item in blocks.values():
        for side_rows in item.rows:
            side_rows.sort(key=lambda r: r.order)

    # ---------------------------------------------------------------- geometry
    times = sorted(blocks)
    lanes: list[list[str]] = [[], []]
    for side in (LEFT, RIGHT):
        present = {span.timer for span in timeline.timers if span.side == side}
        ordered = [t for t in TIMER_ORDER if t in present]
        lanes[side] = ordered + sorted(present - set(ordered))
    label_w = [
        min(max((_text_width(t) for t in side_texts[side]), default=60.0) + 16, 340.0)
        for side in (LEFT, RIGHT)
    ]
    seg_chars = max(
        (max(len(s.label()), len(s.options_label())) for s in timeline.segments), default=20
    )
    # Wide enough for any label, and for two crossing arrows' labels side by side (SYNs,
    # whose options are long, seldom cross).
    pair_chars = max(
        (
            max(len(s.label()), len(s.options_label()))
            for s in timeline.segments
            if not s.segment.flags & Flag.SYN
        ),
        default=20,
    )
    center = min(max(seg_chars * CHAR_W + 90, 2 * pair_chars * CHAR_W + 80, 460.0), 900.0)
    time_w = 78.0
    lane_w = [max(len(lanes[side]), 1) * LANE + 18 for side in (LEFT, RIGHT)]
    x_left = time_w + label_w[LEFT] + lane_w[LEFT]
    x_right = x_left + center
    width = x_right + lane_w[RIGHT] + label_w[RIGHT] + 12
    for title_text in timeline.titles:
        width = max(width, 2 * _text_width(title_text) + 40)

    y = float(TOP + 18)
    breaks: list[tuple[float, float, int]] = []
    previous: _Block | None = None
    for time in times:
        current = blocks[time]
        if previous is not None:
            dt = time - previous.time
            gap_start = previous.y + previous.height()
            y = gap_start + _gap(dt)
            if dt >= BREAK_AT:
                breaks.append((gap_start, y, dt))
        current.y = y
        previous = current
    bottom = (previous.y + previous.height() if previous is not None else y) + 24
    height = bottom + 10
    line_x = (x_left, x_right)

    def y_of(time: int) -> float:
        return blocks[time].y

    out: list[str] = []
    add = out.append
    add(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="tl-root" id="{prefix}ladder" '
        f'width="{_num(width)}" height="{_num(height)}" '
        f'viewBox="0 0 {_num(width)} {_num(height)}">'
    )
    add(f"<title>{escape(title or 'ladder diagram')}</title>")
    add(f"<style>{STYLE}</style>")
    add(
        "<defs>"
        f'<marker id="{prefix}arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" '
        'orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker>'
        "</defs>"
    )
    add(f'<rect x="0" y="0" width="{_num(width)}" height="{_num(height)}" fill="white"/>')

    # Header: the two hosts, and a legend of the timers that appear.
    for side in (LEFT, RIGHT):
        text = timeline.titles[side]
        box_w = _text_width(text) + 16
        x = line_x[side]
        add(
            f'<rect x="{_num(x - box_w / 2)}" y="8" width="{_num(box_w)}" height="22" '
            'rx="4" fill="#f5f5f5" stroke="#555"/>'
        )
        add(
            f'<text class="tl-title" x="{_num(x)}" y="23" text-anchor="middle" '
            f'data-side="{SIDE_NAMES[side]}">{escape(text)}</text>'
        )
    legend_x = 10.0
    used_timers = [t for t in TIMER_ORDER if t in set(lanes[LEFT]) | set(lanes[RIGHT])]
    extra = sorted((set(lanes[LEFT]) | set(lanes[RIGHT])) - set(used_timers))
    if used_timers or extra:
        add(f'<text x="{_num(legend_x)}" y="50" class="tl-time">timers:</text>')
        legend_x += _text_width("timers: ")
        for timer in [*used_timers, *extra]:
            color = TIMER_COLORS.get(timer, "#444")
            label = f"{timer_tag(timer)} {timer_name(timer)}"
            add(
                f'<rect x="{_num(legend_x)}" y="42" width="8" height="10" fill="{color}"/>'
                f'<text x="{_num(legend_x + 11)}" y="51">{escape(label)}</text>'
            )
            legend_x += _text_width(label) + 26
    add(
        '<text x="10" y="68" class="tl-time">time runs down, not to scale; '
        "seq/ack relative to each side's ISN; ● timer fired, ─ cancelled</text>"
    )

    # Life lines, broken where long gaps were cut.
    for x in line_x:
        start = float(TOP)
        for gap_start, gap_end, _dt in breaks:
            add(
                f'<line class="tl-life" x1="{_num(x)}" y1="{_num(start)}" x2="{_num(x)}" '
                f'y2="{_num(gap_start + 4)}"/>'
            )
            add(
                f'<line class="tl-break" x1="{_num(x)}" y1="{_num(gap_start + 4)}" '
                f'x2="{_num(x)}" y2="{_num(gap_end - 4)}"/>'
            )
            start = gap_end - 4
        add(
            f'<line class="tl-life" x1="{_num(x)}" y1="{_num(start)}" x2="{_num(x)}" '
            f'y2="{_num(bottom)}"/>'
        )
    for gap_start, gap_end, dt in breaks:
        add(
            f'<text class="tl-gap" x="{_num((x_left + x_right) / 2)}" '
            f'y="{_num((gap_start + gap_end) / 2 + 4)}" text-anchor="middle">'
            f"⋯ {escape(_elapsed(dt))} ⋯</text>"
        )

    # Time labels, one per instant that has something written at it.
    for time in times:
        item = blocks[time]
        if any(item.rows[LEFT]) or any(item.rows[RIGHT]) or time == times[0]:
            add(
                f'<text class="tl-time" x="6" y="{_num(item.y + 4)}">'
                f"{escape(format_time(time).strip())}</text>"
            )

    # Timer spans beside each line.
    for span in timeline.timers:
        side = span.side
        lane = lanes[side].index(span.timer)
        offset = 10 + lane * LANE
        x = line_x[side] - offset - 5 if side == LEFT else line_x[side] + offset
        y1 = y_of(span.start)
        y2 = max(y_of(span.end), y1 + 3)
        color = TIMER_COLORS.get(span.timer, "#444")
        deadline = format_time(span.deadline).strip() if span.deadline is not None else "-"
        tip = (
            f"{timer_name(span.timer)} ({SIDE_NAMES[side]} {span.conn}): armed at "
            f"{format_time(span.start).strip()}, deadline {deadline}, {span.outcome} at "
            f"{format_time(span.end).strip()}"
        )
        add(
            f'<g class="tl-timer" data-timer="{span.timer}" data-outcome="{span.outcome}" '
            f'data-side="{SIDE_NAMES[side]}"><title>{escape(tip)}</title>'
            f'<rect x="{_num(x)}" y="{_num(y1)}" width="5" height="{_num(y2 - y1)}" '
            f'fill="{color}"/>'
        )
        if span.outcome == "fired":
            add(f'<circle cx="{_num(x + 2.5)}" cy="{_num(y2)}" r="3.5" fill="{color}"/>')
        elif span.outcome == "cancelled":
            add(
                f'<line x1="{_num(x - 2)}" y1="{_num(y2)}" x2="{_num(x + 7)}" y2="{_num(y2)}" '
                f'stroke="{color}" stroke-width="2"/>'
            )
        if y2 - y1 > 40:
            # Turned to run down the span, on the side away from the life line.
            tx, ty = (x - 10, y1 + 3) if side == LEFT else (x + 6, y1 + 3)
            add(
                f'<text class="tl-tag" x="{_num(tx)}" y="{_num(ty)}" '
                f'transform="rotate(90 {_num(tx)} {_num(ty)})" fill="{color}">'
                f"{escape(timer_tag(span.timer))}</text>"
            )
        add("</g>")

    # States, calls and notes beside the lines; remember where each send starts.
    send_y: dict[int, float] = {}
    label_x = [
        x_left - lane_w[LEFT] - 6,
        x_right + lane_w[RIGHT] + 6,
    ]
    for time in times:
        item = blocks[time]
        for side in (LEFT, RIGHT):
            row_y = item.y
            for row in item.rows[side]:
                anchor = "end" if side == LEFT else "start"
                if row.seg is not None:
                    send_y[row.seg.number] = row_y
                    row_y += 2 * ROW
                    continue
                if row.change is not None:
                    change = row.change
                    name = timeline.conn_name(change.conn)
                    text = _state_text(name, change.after)
                    box_w = _text_width(text) + 10
                    bx = label_x[side] - box_w if side == LEFT else label_x[side]
                    fill = STATE_COLORS.get(change.after, "#ffffff")
                    tip = (
                        f"{SIDE_NAMES[side]} {change.conn}: {change.before} -> {change.after} "
                        f"({change.trigger}) at {format_time(change.time).strip()}"
                    )
                    add(
                        f'<g class="tl-state" data-side="{SIDE_NAMES[side]}" '
                        f'data-state="{change.after}" data-from="{change.before}" '
                        f"data-conn={quoteattr(change.conn)}><title>{escape(tip)}</title>"
                        f'<rect x="{_num(bx)}" y="{_num(row_y - 9)}" width="{_num(box_w)}" '
                        f'height="13" rx="3" fill="{fill}"/>'
                        f'<text x="{_num(bx + 5)}" y="{_num(row_y + 1)}">{escape(text)}</text>'
                        "</g>"
                    )
                else:
                    css = "tl-call" if row.kind == "call" else "tl-note"
                    add(
                        f'<text class="{css}" data-side="{SIDE_NAMES[side]}" '
                        f'x="{_num(label_x[side])}" y="{_num(row_y + 1)}" '
                        f'text-anchor="{anchor}">{escape(row.text)}</text>'
                    )
                row_y += ROW

    # Segments: arrows from sender to receiver, lost ones stopping short with an x.
    drops = [
        y_of(seg.arrival) - send_y[seg.number]
        for seg in timeline.segments
        if seg.arrival is not None
    ]
    usual_drop = sorted(drops)[len(drops) // 2] if drops else 40.0
    for seg in timeline.segments:
        side = seg.side
        x1 = line_x[side]
        x2 = line_x[1 - side]
        y1 = send_y[seg.number]
        y2 = y_of(seg.arrival) if seg.arrival is not None else y1 + usual_drop
        if seg.lost:
            x2 = x1 + (x2 - x1) * 0.6
            y2 = y1 + (y2 - y1) * 0.6
        classes = ["tl-seg"]
        if seg.lost:
            classes.append("tl-lost")
        if seg.retransmission:
            classes.append("tl-rexmit")
        arrival = format_time(seg.arrival).strip() if seg.arrival is not None else "never"
        tip = (
            f"#{seg.number} {SIDE_NAMES[side]} -> {SIDE_NAMES[1 - side]} at "
            f"{format_time(seg.time).strip()}, arrived {arrival}: {seg.describe()}"
        )
        if seg.fate:
            tip += f" ({seg.fate})"
        if seg.retransmission:
            tip += " (retransmission)"
        if seg.keepalive_probe:
            tip += " (keepalive probe)"
        add(
            f'<g class="{" ".join(classes)}" id="{prefix}seg-{seg.number}" '
            f'data-n="{seg.number}" data-side="{SIDE_NAMES[side]}" '
            f'data-flags="{escape(seg.flags)}" data-lost="{"true" if seg.lost else "false"}" '
            f'data-seq="{seg.seq}" data-ack="{seg.ack}" data-len="{seg.length}">'
            f"<title>{escape(tip)}</title>"
        )
        marker = "" if seg.lost else f' marker-end="url(#{prefix}arrow)"'
        add(f'<line x1="{_num(x1)}" y1="{_num(y1)}" x2="{_num(x2)}" y2="{_num(y2)}"{marker}/>')
        if seg.lost:
            size = 5
            add(
                f'<line x1="{_num(x2 - size)}" y1="{_num(y2 - size)}" x2="{_num(x2 + size)}" '
                f'y2="{_num(y2 + size)}" style="stroke-dasharray:none;stroke-width:2"/>'
                f'<line x1="{_num(x2 - size)}" y1="{_num(y2 + size)}" x2="{_num(x2 + size)}" '
                f'y2="{_num(y2 - size)}" style="stroke-dasharray:none;stroke-width:2"/>'
            )
        # Labels start near the sender and follow the arrow's slope.
        direction = 1 if x2 > x1 else -1
        angle = math.degrees(math.atan2((y2 - y1) * direction, abs(x2 - x1)))
        lx = x1 + direction * 14
        ly = y1 + (y2 - y1) * (14 / max(abs(x2 - x1), 1))
        anchor = "start" if direction > 0 else "end"
        label = seg.label()
        extras = [e for e in (seg.fate, "rexmit" if seg.retransmission else None) if e]
        if seg.keepalive_probe:
            extras.append("keepalive probe")
        if extras:
            label += f" [{', '.join(extras)}]"
        rotate = f'transform="rotate({angle:.2f} {_num(lx)} {_num(ly)})"'
        add(
            f'<text class="tl-label" x="{_num(lx)}" y="{_num(ly - 4)}" '
            f'text-anchor="{anchor}" {rotate}>{escape(label)}</text>'
        )
        options = seg.options_label()
        if options:
            add(
                f'<text class="tl-opts" x="{_num(lx)}" y="{_num(ly + 11)}" '
                f'text-anchor="{anchor}" {rotate}>{escape(options)}</text>'
            )
        add("</g>")
    add("</svg>")
    return "\n".join(out) + "\n"


def write_svg(timeline: Timeline, path: str | Path, *, title: str | None = None) -> Path:
    """Write the ladder of `timeline` to `path` and return the path."""
    target = Path(path)
    target.write_text(render_svg(timeline, title=title), encoding="utf-8")
    return target


__all__ = ["render_svg", "write_svg"]
