"""The Timeline every picture is drawn from: arrivals, timers, replay steps."""

from __future__ import annotations

from tcpstack.viz.timeline import conn_label
from tests.viz.support import run_of, sack_run, timeline_of


def test_arrivals_are_the_network_delivery_times() -> None:
    timeline = timeline_of("simultaneous-close")
    assert [(s.time, s.arrival) for s in timeline.segments] == [
        (0, 10_000),
        (10_000, 20_000),
        (20_000, 30_000),
        (80_000, 90_000),
        (80_000, 90_000),
        (90_000, 100_000),
        (90_000, 100_000),
    ]


def test_relative_numbers_follow_each_side_isn() -> None:
    timeline = timeline_of("normal-close")
    first_data = next(s for s in timeline.segments if s.length)
    assert (first_data.seq, first_data.ack) == (1, 1)
    assert first_data.describe().startswith("P. 1:")


def test_lost_segments_have_a_fate_and_no_arrival() -> None:
    lost = [s for s in timeline_of("time-wait-lost-final-ack").segments if s.lost]
    assert len(lost) == 1 and lost[0].arrival is None and lost[0].fate == "filtered"


def test_timer_spans_end_where_the_trace_says() -> None:
    spans = timeline_of("simultaneous-close").timers
    time_wait = [t for t in spans if t.timer == "time_wait"]
    assert [(t.start, t.end, t.outcome) for t in time_wait] == [
        (100_000, 60_100_000, "fired"),
        (100_000, 60_100_000, "fired"),
    ]
    assert all(t.end <= (t.deadline or t.end) for t in spans)


def test_keepalive_probes_are_recognised() -> None:
    probes = [s for s in timeline_of("keepalive-dead-peer").segments if s.keepalive_probe]
    assert len(probes) == 9  # TCP_KEEPCNT probes, none answered
    assert not any(s.retransmission for s in probes)


def test_replay_of_simultaneous_close() -> None:
    timeline = timeline_of("simultaneous-close")
    steps = timeline.replay()
    assert len(steps) == len(timeline.segments) + 2
    assert [s.segment for s in steps] == [None, 1, 2, 3, 4, 5, 6, 7, None]

    def state(step: int, side: int) -> str:
        pairs = steps[step].states[side]
        return next(s for name, s in pairs if "listener" not in name)

    # After each segment has been handled (and before the next one leaves).
    assert [state(i, 0) for i in range(len(steps))] == [
        "SYN_SENT",
        "SYN_SENT",
        "ESTABLISHED",
        "ESTABLISHED",
        "FIN_WAIT_1",
        "FIN_WAIT_1",
        "CLOSING",
        "TIME_WAIT",
        "CLOSED",
    ]
    assert [state(i, 1) for i in range(1, len(steps))] == [
        "SYN_RECEIVED",
        "SYN_RECEIVED",
        "ESTABLISHED",
        "FIN_WAIT_1",
        "CLOSING",
        "CLOSING",
        "TIME_WAIT",
        "CLOSED",
    ]
    run = run_of("simultaneous-close")
    assert run.client is not None
    client = conn_label(run.client)
    assert [timeline.state_of(client, s.position) for s in steps][-3:] == [
        "CLOSING",
        "TIME_WAIT",
        "CLOSED",
    ]


def test_several_connections_get_names() -> None:
    timeline = timeline_of("close-wait-leak")
    names = {timeline.conn_name(c) for c in timeline.conns_of(0)}
    assert names == {":32768", ":32769", ":32770"}
    nat = timeline_of("nat-idle-expiry")
    assert {nat.conn_name(c) for c in nat.conns_of(1)} == {
        "peer :40001",
        "peer :40002",
        "peer :40003",
    }


def test_retransmission_is_flagged_once() -> None:
    from tcpstack.viz.timeline import timeline_of_run

    segments = timeline_of_run(sack_run()).segments
    again = [s for s in segments if s.retransmission]
    assert len(again) == 1 and again[0].seq == 2897
    assert [s.seq for s in segments if s.lost] == [2897]


def test_a_reused_four_tuple_is_a_new_connection() -> None:
    """linger-zero-reset connects from port 40000 twice: two connections, two paths."""
    timeline = timeline_of("linger-zero-reset")
    run = run_of("linger-zero-reset")
    assert run.client is not None
    label = conn_label(run.client)
    assert [k for k in timeline.conns if k.startswith(label)] == [label, label + "#2"]
    assert timeline.key_of(run.client) == label
    assert timeline.state_path(label + "#2") == ["CLOSED", "SYN_SENT", "ESTABLISHED"]
    assert timeline.conn_name(label + "#2") == ":40000 (2nd)"
