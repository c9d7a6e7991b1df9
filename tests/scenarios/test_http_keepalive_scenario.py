"""C19: HTTP keep-alive (connection reuse) and TCP keepalive (liveness probes) on one
connection in the simulator: exact state paths, one connection, 3 requests, the probes."""

from __future__ import annotations

from tcpstack.cli import render_scenario
from tcpstack.core.segment import Flag
from tcpstack.core.seq import seq_add
from tcpstack.core.trace import TraceKind
from tcpstack.scenarios.catalog import SCENARIOS
from tcpstack.scenarios.http_keepalive import PATHS, REQUESTS, request, response
from tcpstack.scenarios.story import MS, SECOND

NAME = "http-keepalive-vs-tcp-keepalive"


def test_registered_with_c19() -> None:
    assert NAME in SCENARIOS
    assert "C19" in SCENARIOS[NAME].claims


def test_one_connection_carries_three_requests_then_keepalive_probes() -> None:
    run = SCENARIOS[NAME].play()
    client, server = run.client, run.server
    assert client is not None and server is not None
    assert run.paths() == PATHS
    story = run.story
    # Exactly one connection: one SYN from the client, one accepted by the server, and
    # every segment of the story belongs to it.
    outgoing = [r for r in story.trace.of_kind(TraceKind.SEGMENT_OUT) if r.segment is not None]
    labels = {r.conn for r in outgoing}
    assert labels == {client.label, server.label}
    syns = [r for r in outgoing if r.segment is not None and r.segment.flags == Flag.SYN]
    assert len(syns) == 1
    assert story.server.accepted == [server]
    # The three requests and responses, in series, on that connection.
    client_data = [
        r.segment.payload
        for r in outgoing
        if r.conn == client.label and r.segment is not None and r.segment.payload
    ]
    server_data = [
        r.segment.payload
        for r in outgoing
        if r.conn == server.label and r.segment is not None and r.segment.payload
    ]
    assert client_data == [request(p) for p in REQUESTS]
    assert server_data == [response(p) for p in REQUESTS]
    # Then TCP keepalive: two probes at SND.NXT - 1, each answered by the server.
    probes = [
        r
        for r in story.trace.of_kind(TraceKind.TIMER_FIRED)
        if r.conn == client.label and r.data.get("timer") == "keepalive"
    ]
    assert [r.time for r in probes] == [5090 * MS, 10110 * MS]
    probe_segments = [
        (r.time, r.segment)
        for r in outgoing
        if r.conn == client.label
        and r.segment is not None
        and r.segment.flags == Flag.ACK
        and not r.segment.payload
        and r.segment.seq == seq_add(client.iss, sum(map(len, client_data)))
    ]
    assert [t for t, _ in probe_segments] == [5090 * MS, 10110 * MS]
    answers = [
        r.time
        for r in outgoing
        if r.conn == server.label
        and r.segment is not None
        and r.time > 1 * SECOND
        and r.segment.flags == Flag.ACK
    ]
    assert answers == [5100 * MS, 10120 * MS]
    # The summary states both facts.
    assert run.summary_lines[0].startswith("connections: 1 (")
    assert "HTTP requests on it: 3" in run.summary_lines[0]
    assert "keepalive probes after it: 5 s, 10.02 s" in run.summary_lines[1]
    assert story.now > 72 * SECOND  # TIME_WAIT ran out


def test_renders_and_replays_byte_for_byte() -> None:
    text = render_scenario(SCENARIOS[NAME])
    assert f"== {NAME}: " in text and "state paths:" in text
    assert "TCP keepalive probes the connection" in text
    first = SCENARIOS[NAME].play().story.trace.to_jsonl()
    assert first == SCENARIOS[NAME].play().story.trace.to_jsonl()
