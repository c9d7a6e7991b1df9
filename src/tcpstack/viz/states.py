"""The TCP state diagram (RFC 9293 figure 5) drawn from TRANSITIONS, with a run's path.

Every state is a node and every (state, trigger) -> state entry of
`tcpstack.core.state.TRANSITIONS` an edge: the edges of figure 5 solid and labelled with
their trigger ("rcv FIN / snd ACK"), the ways out of it that figure 5 leaves unsaid
(reset, abort, give-up timeouts, keepalive, ...) thin, dashed and unlabelled. The edges a
connection took are highlighted and numbered in the order it took them, and the states
it passed through are filled. Graphviz lays it out: the `graphviz` package writes the dot
source and the `dot` program renders it to SVG or PNG.

SVG elements carry ids and classes for tests and the HTML report: nodes
`{prefix}node-STATE` (class "node", plus "visited" and "final" where they apply), edges
`{prefix}edge-STATE-TRIGGER` (class "edge", plus "taken" or "minor").
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tcpstack.core.state import TRANSITIONS, State, Trigger
from tcpstack.viz.timeline import Timeline

# Triggers that figure 5 draws; the rest (resets, aborts, timeouts) are drawn as minor.
FIGURE_5_TRIGGERS = frozenset(
    {
        Trigger.OPEN_PASSIVE,
        Trigger.OPEN_ACTIVE,
        Trigger.SEND_FROM_LISTEN,
        Trigger.CLOSE,
        Trigger.CLOSE_SEND_FIN,
        Trigger.RCV_SYN,
        Trigger.RCV_SYN_ACK,
        Trigger.RCV_ACK_OF_SYN,
        Trigger.RCV_FIN,
        Trigger.RCV_ACK_OF_FIN,
        Trigger.RCV_FIN_ACK_OF_FIN,
        Trigger.TIMEOUT_2MSL,
        Trigger.RCV_RST_RETURN_TO_LISTEN,
    }
)

TAKEN_COLOR = "#e65100"
VISITED_FILL = "#ffe0b2"

# Rows of figure 5, top to bottom.
_RANKS: tuple[tuple[State, ...], ...] = (
    (State.CLOSED,),
    (State.LISTEN,),
    (State.SYN_RECEIVED, State.SYN_SENT),
    (State.ESTABLISHED,),
    (State.FIN_WAIT_1, State.CLOSE_WAIT),
    (State.FIN_WAIT_2, State.CLOSING, State.LAST_ACK),
    (State.TIME_WAIT,),
)


class GraphvizMissing(RuntimeError):
    """The `dot` program (Debian package graphviz) is not installed."""


@dataclass(frozen=True, slots=True)
class Step:
    """One state change a connection made."""

    before: State
    trigger: Trigger
    after: State


def steps_from_names(changes: Sequence[tuple[str, str, str]]) -> list[Step]:
    """Steps from (from, trigger name, to) triples as the trace writes them."""
    return [Step(State(a), Trigger[t], State(b)) for a, t, b in changes]


_CLOSED_END = "CLOSED_END"
_UPPER = frozenset({State.CLOSED, State.LISTEN, State.SYN_SENT, State.SYN_RECEIVED})


def _head(before: State, after: State) -> str:
    """The box an edge ends at: the bottom CLOSED for closes from synchronized states."""
    if after is State.CLOSED and before not in _UPPER:
        return _CLOSED_END
    return after.value


def _closed_end_attrs(steps: Sequence[Step], final: State | None) -> dict[str, str]:
    reached = any(s.after is State.CLOSED and s.before not in _UPPER for s in steps)
    if not reached:
        return {}
    attrs = {"fillcolor": VISITED_FILL, "color": TAKEN_COLOR, "penwidth": "2"}
    if final is State.CLOSED and steps[-1].before not in _UPPER:
        attrs.update({"penwidth": "3.2", "class": "visited final"})
    else:
        attrs["class"] = "visited"
    return attrs


def steps_of(timeline: Timeline, conn: str) -> list[Step]:
    """The state changes of connection `conn` (a trace label) in a Timeline."""
    return steps_from_names([(c.before, c.trigger, c.after) for c in timeline.states_of(conn)])


def diagram_source(steps: Sequence[Step] = (), *, title: str = "", prefix: str = "") -> str:
    """The dot source of the diagram with `steps` highlighted (no binary needed)."""
    import graphviz

    graph = graphviz.Digraph(
        "tcp_states",
        graph_attr={
            "id": f"{prefix}states",
            "rankdir": "TB",
            "label": title,
            "labelloc": "t",
            "fontname": "DejaVu Sans",
            "fontsize": "16",
            "nodesep": "0.5",
            "ranksep": "0.55",
            "bgcolor": "white",
            "pad": "0.2",
        },
        node_attr={
            "shape": "box",
            "style": "rounded,filled",
            "fillcolor": "#f5f5f5",
            "fontname": "DejaVu Sans Mono",
            "fontsize": "13",
            "penwidth": "1.2",
        },
        edge_attr={"fontname": "DejaVu Sans", "fontsize": "10", "color": "#555555"},
    )
    numbers: dict[tuple[State, Trigger], list[int]] = {}
    for number, step in enumerate(steps, start=1):
        numbers.setdefault((step.before, step.trigger), []).append(number)
    visited = {step.before for step in steps} | {step.after for step in steps}
    final = steps[-1].after if steps else None

    for rank in _RANKS:
        with graph.subgraph() as row:
            row.attr(rank="same")
            for state in rank:
                classes = ["visited"] if state in visited else []
                attrs = {"id": f"{prefix}node-{state.value}", "tooltip": state.value}
                if state in visited:
                    attrs.update(fillcolor=VISITED_FILL, color=TAKEN_COLOR, penwidth="2")
                if state is final and (state is not State.CLOSED or steps[-1].before in _UPPER):
                    classes.append("final")
                    attrs.update(penwidth="3.2")
                if classes:
                    attrs["class"] = " ".join(classes)
                row.node(state.value, state.value, **attrs)

    # Figure 5 draws CLOSED twice: at the top where connections start, and at the bottom
    # where the closing half ends ("delete TCB"). So does this diagram: changes into
    # CLOSED from a synchronized state end at the bottom box.
    graph.node(
        _CLOSED_END,
        State.CLOSED.value,
        id=f"{prefix}node-CLOSED-end",
        tooltip="CLOSED (the TCB is deleted)",
        **_closed_end_attrs(steps, final),
    )
    graph.edge(State.TIME_WAIT.value, _CLOSED_END, style="invis")  # keep it at the bottom
    minor: dict[tuple[State, str], list[Trigger]] = {}
    for (before, trigger), after in TRANSITIONS.items():
        taken = numbers.get((before, trigger))
        head = _head(before, after)
        edge_id = f"{prefix}edge-{before.value}-{trigger.name}"
        tooltip = f"{before.value} -> {after.value}: {trigger.value}"
        if taken:
            order = ",".join(str(n) for n in taken)
            graph.edge(
                before.value,
                head,
                label=f" {order}: {trigger.value} ",
                id=edge_id,
                tooltip=tooltip,
                color=TAKEN_COLOR,
                fontcolor=TAKEN_COLOR,
                penwidth="2.6",
                fontsize="11",
                fontname="DejaVu Sans Bold",
                **{"class": "taken", "data-order": order},
            )
        elif trigger in FIGURE_5_TRIGGERS:
            graph.edge(
                before.value,
                head,
                label=f" {trigger.value} ",
                id=edge_id,
                tooltip=tooltip,
                fontcolor="#444444",
            )
        else:
            minor.setdefault((before, head), []).append(trigger)
    # The ways out that figure 5 leaves unsaid, one thin dashed edge per pair of boxes.
    for (before, head), triggers in minor.items():
        names = "-".join(t.name for t in triggers)
        graph.edge(
            before.value,
            head,
            id=f"{prefix}edge-{before.value}-{names}",
            tooltip=f"{before.value} -> {State.CLOSED.value if head == _CLOSED_END else head}: "
            + "; ".join(t.value for t in triggers),
            style="dashed",
            color="#c0c0c0",
            arrowsize="0.5",
            **{"class": "minor"},
        )
    return str(graph.source)


def _require_dot() -> None:
    if shutil.which("dot") is None:
        raise GraphvizMissing("the `dot` program is missing: install the graphviz package")


def render(
    steps: Sequence[Step] = (), *, fmt: str = "svg", title: str = "", prefix: str = ""
) -> bytes:
    """The diagram rendered by `dot` as `fmt` ("svg" or "png") bytes."""
    import graphviz

    _require_dot()
    source = diagram_source(steps, title=title, prefix=prefix)
    return bytes(graphviz.pipe("dot", fmt, source.encode()))


def svg_text(steps: Sequence[Step] = (), *, title: str = "", prefix: str = "") -> str:
    return render(steps, fmt="svg", title=title, prefix=prefix).decode()


def write_diagram(
    path: str | Path, steps: Sequence[Step] = (), *, title: str = "", prefix: str = ""
) -> Path:
    """Render to `path`; the format is the path's suffix (.svg or .png)."""
    target = Path(path)
    fmt = target.suffix.lstrip(".").lower() or "svg"
    target.write_bytes(render(steps, fmt=fmt, title=title, prefix=prefix))
    return target


def inline_svg(svg: str) -> str:
    """An SVG document from `dot` cut down to its <svg> element, for inlining in HTML."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


__all__ = [
    "FIGURE_5_TRIGGERS",
    "GraphvizMissing",
    "Step",
    "diagram_source",
    "inline_svg",
    "render",
    "steps_from_names",
    "steps_of",
    "svg_text",
    "write_diagram",
]
