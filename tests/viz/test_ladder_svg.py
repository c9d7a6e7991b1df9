"""The SVG ladder: arrows, their labels, lost segments, state labels and timer spans."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tcpstack.scenarios.catalog import SCENARIOS
from tcpstack.viz.ladder_svg import render_svg
from tcpstack.viz.timeline import timeline_of_run
from tests.viz.support import SVG_NS, sack_run, timeline_of


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def groups(root: ET.Element, css: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG_NS}g") if css in g.get("class", "").split()]


def texts(element: ET.Element, css: str | None = None) -> list[str]:
    return [
        "".join(t.itertext())
        for t in element.iter(f"{SVG_NS}text")
        if css is None or t.get("class") == css
    ]


def line_of(group: ET.Element) -> tuple[float, float, float, float]:
    line = group.find(f"{SVG_NS}line")
    assert line is not None
    x1, y1, x2, y2 = (float(line.get(k, "nan")) for k in ("x1", "y1", "x2", "y2"))
    return x1, y1, x2, y2


def test_simultaneous_close_arrows() -> None:
    root = parse(render_svg(timeline_of("simultaneous-close")))
    segs = groups(root, "tl-seg")
    assert [g.get("data-flags") for g in segs] == ["S", "S.", ".", "F.", "F.", ".", "."]
    assert [g.get("data-side") for g in segs] == [
        "client",
        "server",
        "client",
        "client",
        "server",
        "server",
        "client",
    ]
    labels = [texts(g, "tl-label")[0] for g in segs]
    assert labels == [
        "S 0:0(0) win 65535",
        "S. 0:0(0) ack 1 win 65535",
        ". 1:1(0) ack 1 win 32768",
        "F. 1:1(0) ack 1 win 32768",
        "F. 1:1(0) ack 1 win 32768",
        ". 2:2(0) ack 2 win 32768",
        ". 2:2(0) ack 2 win 32768",
    ]
    syn_options = texts(segs[0], "tl-opts")[0]
    for option in ("mss 1460", "sackOK", "TS val", "wscale 3"):
        assert option in syn_options
    assert all(g.get("data-lost") == "false" for g in segs)
    # The two FINs cross: each goes from its sender's line to the other's, downwards.
    client_fin, server_fin = line_of(segs[3]), line_of(segs[4])
    assert client_fin[0] < client_fin[2] and server_fin[0] > server_fin[2]
    assert client_fin[1] == server_fin[1] and client_fin[3] == server_fin[3]
    assert client_fin[3] > client_fin[1]


def test_simultaneous_close_state_labels() -> None:
    root = parse(render_svg(timeline_of("simultaneous-close")))
    states = groups(root, "tl-state")
    by_side = {
        side: [g.get("data-state") for g in states if g.get("data-side") == side]
        for side in ("client", "server")
    }
    assert by_side["client"] == [
        "SYN_SENT",
        "ESTABLISHED",
        "FIN_WAIT_1",
        "CLOSING",
        "TIME_WAIT",
        "CLOSED",
    ]
    assert by_side["server"] == [
        "LISTEN",
        "SYN_RECEIVED",
        "ESTABLISHED",
        "FIN_WAIT_1",
        "CLOSING",
        "TIME_WAIT",
        "CLOSED",
    ]
    # Written beside their own line: client labels left of the client's line.
    life = [
        float(x.get("x1", "0")) for x in root.iter(f"{SVG_NS}line") if x.get("class") == "tl-life"
    ]
    left_line, right_line = min(life), max(life)
    for g in states:
        rect = g.find(f"{SVG_NS}rect")
        assert rect is not None
        x = float(rect.get("x", "0"))
        if g.get("data-side") == "client":
            assert x + float(rect.get("width", "0")) < left_line
        else:
            assert x > right_line
    assert "close()" in texts(root, "tl-call")


def test_timer_spans() -> None:
    root = parse(render_svg(timeline_of("simultaneous-close")))
    timers = [
        (g.get("data-side"), g.get("data-timer"), g.get("data-outcome"))
        for g in groups(root, "tl-timer")
    ]
    assert ("client", "time_wait", "fired") in timers
    assert ("server", "time_wait", "fired") in timers
    assert ("client", "retransmit", "cancelled") in timers
    # The 60 s of TIME_WAIT are drawn as a break, with the time skipped written in it.
    assert any("60 s later" in t for t in texts(root, "tl-gap"))
    for g in groups(root, "tl-timer"):
        rect = g.find(f"{SVG_NS}rect")
        assert rect is not None and float(rect.get("height", "0")) > 0


def test_delayed_ack_and_keepalive_spans() -> None:
    normal = [
        g.get("data-timer")
        for g in groups(parse(render_svg(timeline_of("normal-close"))), "tl-timer")
    ]
    assert "delayed_ack" in normal and "time_wait" in normal
    keepalive = groups(parse(render_svg(timeline_of("keepalive-dead-peer"))), "tl-timer")
    assert any(
        g.get("data-timer") == "keepalive" and g.get("data-outcome") == "fired" for g in keepalive
    )


def test_lost_segment_stops_short_with_an_x() -> None:
    root = parse(render_svg(timeline_of("time-wait-lost-final-ack")))
    segs = groups(root, "tl-seg")
    lost = [g for g in segs if g.get("data-lost") == "true"]
    assert len(lost) == 1
    (only,) = lost
    assert only.get("data-side") == "client" and only.get("data-flags") == "."
    assert "tl-lost" in only.get("class", "")
    lines = only.findall(f"{SVG_NS}line")
    assert len(lines) == 3  # the short arrow and the two strokes of the x
    x1, _, x2, _ = line_of(only)
    delivered = line_of(segs[0])  # the SYN went all the way across
    assert x1 < x2 < x1 + 0.7 * (delivered[2] - delivered[0])
    assert lines[0].get("marker-end") is None
    # The server's FIN that the lost ACK left unanswered is sent again: a retransmission.
    assert any("tl-rexmit" in g.get("class", "") and g.get("data-flags") == "F." for g in segs)
    assert "filtered" in texts(only, "tl-label")[0]


def test_sack_blocks_and_retransmission_in_labels() -> None:
    root = parse(render_svg(timeline_of_run(sack_run())))
    options = [t for g in groups(root, "tl-seg") for t in texts(g, "tl-opts")]
    assert any("sack " in t for t in options)
    assert len([g for g in groups(root, "tl-seg") if "tl-rexmit" in g.get("class", "")]) == 1


def test_ids_take_the_prefix() -> None:
    root = parse(render_svg(timeline_of("three-way-handshake"), prefix="abc-"))
    assert root.get("id") == "abc-ladder"
    assert [g.get("id") for g in groups(root, "tl-seg")] == ["abc-seg-1", "abc-seg-2", "abc-seg-3"]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_draws(name: str) -> None:
    timeline = timeline_of(name)
    root = parse(render_svg(timeline))
    assert len(groups(root, "tl-seg")) == len(timeline.segments)
    assert len(groups(root, "tl-state")) == len(timeline.states)
    ids = [e.get("id") for e in root.iter() if e.get("id")]
    assert len(ids) == len(set(ids))
    assert float(root.get("height", "0")) > 100
