"""The RFC 9293 figure 5 state diagram from TRANSITIONS, with a run's path highlighted."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tcpstack.core.state import TRANSITIONS, State
from tcpstack.viz.states import Step, diagram_source, render, steps_of, svg_text, write_diagram
from tcpstack.viz.timeline import conn_label
from tests.viz.support import SVG_NS, need, run_of, timeline_of

CLIENT_PATH = [
    ("CLOSED", "OPEN_ACTIVE", "SYN_SENT"),
    ("SYN_SENT", "RCV_SYN_ACK", "ESTABLISHED"),
    ("ESTABLISHED", "CLOSE_SEND_FIN", "FIN_WAIT_1"),
    ("FIN_WAIT_1", "RCV_FIN", "CLOSING"),
    ("CLOSING", "RCV_ACK_OF_FIN", "TIME_WAIT"),
    ("TIME_WAIT", "TIMEOUT_2MSL", "CLOSED"),
]


def simultaneous_close_steps(end: str) -> list[Step]:
    run = run_of("simultaneous-close")
    conn = run.client if end == "client" else run.server
    assert conn is not None
    return steps_of(timeline_of("simultaneous-close"), conn_label(conn))


def test_steps_of_a_run() -> None:
    steps = simultaneous_close_steps("client")
    assert [(s.before.value, s.trigger.name, s.after.value) for s in steps] == CLIENT_PATH


def test_source_has_every_state_and_edge() -> None:
    source = diagram_source()
    for state in State:
        assert f'"{state.value}"' in source or f"{state.value} " in source
    for before, trigger in TRANSITIONS:
        assert f"edge-{before.value}-" in source and trigger.name in source


def _svg(end: str) -> ET.Element:
    need("dot", "graphviz")
    run = run_of("simultaneous-close")
    conn = run.client if end == "client" else run.server
    assert conn is not None
    steps = steps_of(timeline_of("simultaneous-close"), conn_label(conn))
    return ET.fromstring(svg_text(steps, title=end, prefix=f"{end}-").encode())


def _titles(root: ET.Element, css: str) -> list[str]:
    out = []
    for g in root.iter(f"{SVG_NS}g"):
        if css in g.get("class", "").split():
            title = g.find(f"{SVG_NS}title")
            assert title is not None and title.text is not None
            out.append(title.text)
    return out


def test_svg_contains_every_state() -> None:
    root = _svg("client")
    labels = {"".join(t.itertext()) for t in root.iter(f"{SVG_NS}text")}
    for state in State:
        assert state.value in labels
    nodes = {g.get("id") for g in root.iter(f"{SVG_NS}g") if "node" in g.get("class", "")}
    assert {f"client-node-{s.value}" for s in State} <= nodes


def _taken(root: ET.Element) -> list[tuple[str, str]]:
    """(edge id, its label text) of the highlighted edges, in the order numbered."""
    out = []
    for g in root.iter(f"{SVG_NS}g"):
        if "taken" in g.get("class", "").split():
            label = " ".join("".join(t.itertext()).strip() for t in g.iter(f"{SVG_NS}text"))
            out.append((g.get("id", ""), label))
    return sorted(out, key=lambda item: int(item[1].split(":")[0].split(",")[0]))


def test_client_path_is_highlighted_and_numbered() -> None:
    taken = _taken(_svg("client"))
    assert [edge for edge, _ in taken] == [
        f"client-edge-{before}-{trigger}" for before, trigger, _ in CLIENT_PATH
    ]
    assert [label for _, label in taken] == [
        "1: active OPEN / snd SYN",
        "2: rcv SYN,ACK / snd ACK",
        "3: CLOSE / snd FIN",
        "4: rcv FIN / snd ACK",
        "5: rcv ACK of FIN",
        "6: timeout 2*MSL",
    ]


def test_server_path_is_highlighted_and_numbered() -> None:
    root = _svg("server")
    taken = _taken(root)
    assert [label for _, label in taken] == [
        "1: passive OPEN",
        "2: rcv SYN / snd SYN,ACK",
        "3: rcv ACK of SYN",
        "4: CLOSE / snd FIN",
        "5: rcv FIN / snd ACK",
        "6: rcv ACK of FIN",
        "7: timeout 2*MSL",
    ]
    visited = {
        g.get("id") for g in root.iter(f"{SVG_NS}g") if "visited" in g.get("class", "").split()
    }
    assert "server-node-CLOSING" in visited and "server-node-FIN_WAIT_2" not in visited
    # Untaken edges are drawn, but not highlighted.
    assert "server-edge-FIN_WAIT_1-RCV_ACK_OF_FIN" in {
        g.get("id") for g in root.iter(f"{SVG_NS}g") if "edge" in g.get("class", "").split()
    }


def test_png_and_svg_files(tmp_path: Path) -> None:
    need("dot", "graphviz")
    steps = simultaneous_close_steps("client")
    png = write_diagram(tmp_path / "states.png", steps, title="client")
    svg = write_diagram(tmp_path / "states.svg", steps, title="client")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert svg.read_text().lstrip().startswith("<?xml")
    assert render(fmt="svg")[:5] in (b"<?xml", b"<svg ")


@pytest.mark.parametrize("name", ["three-segment-close", "simultaneous-open", "linger-zero-reset"])
def test_other_paths_highlight_their_edges(name: str) -> None:
    need("dot", "graphviz")
    run = run_of(name)
    assert run.client is not None
    timeline = timeline_of(name)
    steps = steps_of(timeline, timeline.key_of(run.client))
    assert [s.after.value for s in steps] == [s.value for s in run.client.state_history[1:]]
    root = ET.fromstring(svg_text(steps, prefix="x-").encode())
    taken = _taken(root)
    assert len(taken) == len(steps)  # each edge once: one connection's path
    assert [label.split(":")[0] for _, label in taken] == [str(n + 1) for n in range(len(steps))]
