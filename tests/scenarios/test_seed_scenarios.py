"""Each seed scenario: both ends' exact state paths, and the facts the story is about."""

from __future__ import annotations

import pytest

from tcpstack.cli import main, render_scenario
from tcpstack.core.events import Closed, CloseReason, EndOfStream
from tcpstack.core.segment import Flag, Segment
from tcpstack.core.trace import TraceKind
from tcpstack.scenarios.catalog import SCENARIOS, ScenarioRun
from tcpstack.scenarios.story import CLIENT_IP, SECOND, SERVER_IP

ACTIVE_OPEN = ["CLOSED", "SYN_SENT", "ESTABLISHED"]
PASSIVE_OPEN = ["CLOSED", "LISTEN", "SYN_RECEIVED", "ESTABLISHED"]


def sent_segments(run: ScenarioRun, address: str) -> list[tuple[int, Segment]]:
    """(time, segment) for every segment the host at `address` sent, in order."""
    return [
        (r.time, r.segment)
        for r in run.story.trace.of_kind(TraceKind.SEGMENT_OUT)
        if r.segment is not None and (r.conn == address or r.conn.startswith(address + ":"))
    ]


def closed_reason(run: ScenarioRun, side: str) -> CloseReason | None:
    host = run.story.client if side == "client" else run.story.server
    conn = run.client if side == "client" else run.server
    assert conn is not None
    reasons = [e.reason for e in host.events_of(conn) if isinstance(e, Closed)]
    assert len(reasons) <= 1, "exactly one Closed per connection"
    return reasons[0] if reasons else None


def test_every_scenario_is_listed_and_registered() -> None:
    # The seed stories of the core issue (later issues add more scenarios).
    assert set(SCENARIOS) >= {
        "three-way-handshake",
        "normal-close",
        "three-segment-close",
        "simultaneous-close",
        "simultaneous-open",
        "time-wait-lost-final-ack",
        "time-wait-skipped-reset",
        "time-wait-blocks-reuse",
        "syn-received-held",
        "close-wait-leak",
    }
    covered = {claim for s in SCENARIOS.values() for claim in s.claims}
    assert {"C2", "C3", "C4", "C5", "C6", "C8", "C9", "C10", "C11", "C12", "C14"} <= covered


def test_three_way_handshake() -> None:
    run = SCENARIOS["three-way-handshake"].play()
    assert run.paths() == {"client": ACTIVE_OPEN, "server": PASSIVE_OPEN}
    client_segs = [s for _, s in sent_segments(run, CLIENT_IP)]
    server_segs = [s for _, s in sent_segments(run, SERVER_IP)]
    assert [s.flags for s in client_segs] == [Flag.SYN, Flag.ACK]
    # C14: the server's SYN and its ACK of the client's SYN travel in one segment.
    assert [s.flags for s in server_segs] == [Flag.SYN | Flag.ACK]
    assert client_segs[0].options.mss == 1460


def test_normal_close_four_segments() -> None:
    run = SCENARIOS["normal-close"].play()
    assert run.paths() == {
        "client": [*ACTIVE_OPEN, "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT", "CLOSED"],
        "server": [*PASSIVE_OPEN, "CLOSE_WAIT", "LAST_ACK", "CLOSED"],
    }
    assert closed_reason(run, "client") is CloseReason.NORMAL
    assert closed_reason(run, "server") is CloseReason.NORMAL
    # The close: client FIN, server ACK, server FIN (200 ms later), client ACK.
    fins = [
        (t, s)
        for t, s in sent_segments(run, CLIENT_IP) + sent_segments(run, SERVER_IP)
        if s.flags & Flag.FIN
    ]
    assert len(fins) == 2
    (client_fin_at, _), (server_fin_at, _) = sorted(fins, key=lambda x: x[0])
    assert server_fin_at - client_fin_at == 210_000  # 10 ms link + 200 ms application
    # TIME_WAIT lasted exactly 2*MSL = 60 s from entering it.
    states = [r for r in run.story.trace.of_kind(TraceKind.STATE) if r.conn.startswith(CLIENT_IP)]
    entered = next(r.time for r in states if r.data["to"] == "TIME_WAIT")
    left = next(r.time for r in states if r.data["from"] == "TIME_WAIT")
    assert left - entered == 60 * SECOND


def test_three_segment_close_skips_fin_wait_2() -> None:
    run = SCENARIOS["three-segment-close"].play()
    assert run.paths() == {
        "client": [*ACTIVE_OPEN, "FIN_WAIT_1", "TIME_WAIT", "CLOSED"],
        # The seed writes CLOSE_WAIT away here; RFC 9293 passes through it briefly.
        "server": [*PASSIVE_OPEN, "CLOSE_WAIT", "LAST_ACK", "CLOSED"],
    }
    client_fin_at = next(t for t, s in sent_segments(run, CLIENT_IP) if s.flags & Flag.FIN)
    closing = [
        s.flags
        for t, s in sorted(
            sent_segments(run, CLIENT_IP) + sent_segments(run, SERVER_IP), key=lambda x: x[0]
        )
        if t >= client_fin_at
    ]
    assert closing == [Flag.FIN | Flag.ACK, Flag.FIN | Flag.ACK, Flag.ACK]


def test_simultaneous_close_through_closing_on_both_sides() -> None:
    run = SCENARIOS["simultaneous-close"].play()
    closing = ["FIN_WAIT_1", "CLOSING", "TIME_WAIT", "CLOSED"]
    assert run.paths() == {"client": [*ACTIVE_OPEN, *closing], "server": [*PASSIVE_OPEN, *closing]}
    assert closed_reason(run, "client") is CloseReason.NORMAL
    assert closed_reason(run, "server") is CloseReason.NORMAL


def test_simultaneous_open_four_segments() -> None:
    run = SCENARIOS["simultaneous-open"].play()
    both = ["CLOSED", "SYN_SENT", "SYN_RECEIVED", "ESTABLISHED"]
    assert run.paths() == {"client": both, "server": both}
    segs = sent_segments(run, CLIENT_IP) + sent_segments(run, SERVER_IP)
    assert sorted(s.flags for _, s in segs) == sorted(
        [Flag.SYN, Flag.SYN, Flag.SYN | Flag.ACK, Flag.SYN | Flag.ACK]
    )


def test_time_wait_re_acks_the_retransmitted_fin() -> None:
    run = SCENARIOS["time-wait-lost-final-ack"].play()
    assert run.paths() == {
        "client": [*ACTIVE_OPEN, "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT", "CLOSED"],
        "server": [*PASSIVE_OPEN, "CLOSE_WAIT", "LAST_ACK", "CLOSED"],
    }
    server_fins = [t for t, s in sent_segments(run, SERVER_IP) if s.flags & Flag.FIN]
    assert len(server_fins) == 2
    assert server_fins[1] - server_fins[0] == SECOND  # resent after the initial 1 s RTO
    assert run.story.lost  # the first final ACK really was lost
    # C11a: the peer closes normally, not with "connection reset".
    assert closed_reason(run, "server") is CloseReason.NORMAL
    # The re-ACK restarted 2*MSL: TIME_WAIT ends 60 s after the resent FIN arrived.
    states = [r for r in run.story.trace.of_kind(TraceKind.STATE) if r.conn.startswith(CLIENT_IP)]
    left_time_wait = next(r.time for r in states if r.data["from"] == "TIME_WAIT")
    assert left_time_wait == server_fins[1] + 10_000 + 60 * SECOND


def test_without_time_wait_the_resent_fin_gets_a_reset() -> None:
    run = SCENARIOS["time-wait-skipped-reset"].play()
    assert run.paths()["server"] == [*PASSIVE_OPEN, "CLOSE_WAIT", "LAST_ACK", "CLOSED"]
    assert closed_reason(run, "server") is CloseReason.RESET
    assert run.story.client.endpoint.stats["no_connection"] == 1
    assert any(s.flags & Flag.RST for _, s in sent_segments(run, CLIENT_IP))


def test_time_wait_blocks_reuse_of_the_four_tuple() -> None:
    run = SCENARIOS["time-wait-blocks-reuse"].play()
    assert run.summary_lines[0] == "reuse during TIME_WAIT: refused (AddressInUse)"
    assert run.summary_lines[1] == "reuse after 2*MSL: ESTABLISHED"
    paths = run.paths()
    assert paths["client"] == [*ACTIVE_OPEN, "FIN_WAIT_1", "TIME_WAIT", "CLOSED"]
    assert paths["client-again"] == ACTIVE_OPEN
    assert run.others["client-again"].local_port == 40000


def test_syn_received_held_by_lost_acks() -> None:
    run = SCENARIOS["syn-received-held"].play()
    assert run.paths() == {"client": ACTIVE_OPEN, "server": PASSIVE_OPEN}
    synacks = [t for t, s in sent_segments(run, SERVER_IP) if s.flags == Flag.SYN | Flag.ACK]
    # Sent at 10 ms, resent after RTO 1 s and then 2 s (RFC 6298 backoff).
    assert synacks == [10_000, 1_010_000, 3_010_000, 7_010_000]
    server_states = [
        r for r in run.story.trace.of_kind(TraceKind.STATE) if r.conn.startswith(SERVER_IP)
    ]
    established_at = next(r.time for r in server_states if r.data["to"] == "ESTABLISHED")
    assert established_at == 7_030_000
    assert run.summary_lines == ["client ACKs lost: 3"]


def test_close_wait_leak_lasts_while_the_application_never_closes() -> None:
    run = SCENARIOS["close-wait-leak"].play()
    paths = run.paths()
    server_paths = [p for name, p in paths.items() if name.startswith("server")]
    client_paths = [p for name, p in paths.items() if name.startswith("client")]
    assert server_paths == [[*PASSIVE_OPEN, "CLOSE_WAIT"]] * 3
    # The clients closed (orphans): FIN_WAIT_2 ends after tcp_fin_timeout (C7).
    assert client_paths == [[*ACTIVE_OPEN, "FIN_WAIT_1", "FIN_WAIT_2", "CLOSED"]] * 3
    client_states = [
        r for r in run.story.trace.of_kind(TraceKind.STATE) if r.conn.startswith(CLIENT_IP)
    ]
    entered = [r.time for r in client_states if r.data["to"] == "FIN_WAIT_2"]
    left = [r.time for r in client_states if r.data["from"] == "FIN_WAIT_2"]
    assert [b - a for a, b in zip(entered, left, strict=True)] == [60 * SECOND] * 3
    assert closed_reason(run, "client") is CloseReason.FIN_WAIT_2_TIMEOUT
    assert run.story.now >= 3600 * SECOND
    assert run.server is not None
    assert EndOfStream() in run.story.server.events_of(run.server)


def test_cli_lists_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(SCENARIOS)


def test_cli_prints_the_ladder_with_states_and_segments() -> None:
    text = render_scenario(SCENARIOS["three-way-handshake"])
    # Linux-like defaults: MSS, SACK-permitted, timestamps and window scale on the SYN.
    assert "S 0:0(0) win 65535 <mss 1460,sackOK,TS val 2321205678 ecr 0,wscale 3>" in text
    assert (
        "S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS val 1137604413 ecr 2321205678,"
        "wscale 3>" in text
    )
    assert "[CLOSED -> SYN_SENT]" in text
    assert "[SYN_RECEIVED -> ESTABLISHED]" in text
    assert "client         CLOSED -> SYN_SENT -> ESTABLISHED" in text


def test_cli_rejects_unknown_scenario() -> None:
    assert main(["scenario", "no-such-story"]) == 2


def test_same_seed_same_trace_byte_for_byte() -> None:
    first = SCENARIOS["time-wait-lost-final-ack"].play().story.trace.to_jsonl()
    second = SCENARIOS["time-wait-lost-final-ack"].play().story.trace.to_jsonl()
    assert first == second
    assert len(first) > 1000
