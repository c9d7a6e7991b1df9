"""The later-life scenarios: exact state paths of both ends, exact virtual times, and
the facts each story is about (C7, C8, C13, C15-C18)."""

from __future__ import annotations

import pytest

from tcpstack.cli import render_scenario
from tcpstack.core.connection import Connection
from tcpstack.core.events import Closed, CloseReason
from tcpstack.core.segment import Flag, Segment
from tcpstack.core.seq import seq_add
from tcpstack.core.trace import TraceKind
from tcpstack.heartbeat import PING, PONG
from tcpstack.scenarios.catalog import SCENARIOS, ScenarioRun
from tcpstack.scenarios.claims import CLAIMS
from tcpstack.scenarios.lifecycle import NAT_IP, NatStory, play_nat_idle_expiry
from tcpstack.scenarios.story import MS, SECOND, SERVER_IP, Host
from tcpstack.sim.middlebox import NatEventKind, Outside

ACTIVE_OPEN = ["CLOSED", "SYN_SENT", "ESTABLISHED"]
PASSIVE_OPEN = ["CLOSED", "LISTEN", "SYN_RECEIVED", "ESTABLISHED"]
LIFECYCLE = {
    "keepalive-dead-peer",
    "keepalive-go-profile",
    "keepalive-peer-rebooted",
    "linger-zero-reset",
    "fin-wait-2-orphan-timeout",
    "half-close",
    "heartbeat-vs-keepalive",
    "nat-idle-expiry",
    "time-wait-bucket-limit",
}
# The last segment the client receives in the catalog's _exchange: the response, sent
# by the server at 40 ms, arrives at 50 ms.
EXCHANGE_LAST_RX = 50 * MS


def sent_by(run: ScenarioRun, conn: Connection) -> list[tuple[int, Segment]]:
    return [
        (r.time, r.segment)
        for r in run.story.trace.of_kind(TraceKind.SEGMENT_OUT)
        if r.segment is not None and r.conn == conn.label
    ]


def received_by(run: ScenarioRun, conn: Connection) -> list[tuple[int, Segment]]:
    return [
        (r.time, r.segment)
        for r in run.story.trace.of_kind(TraceKind.SEGMENT_IN)
        if r.segment is not None and r.conn == conn.label
    ]


def state_changes(run: ScenarioRun, conn: Connection) -> list[tuple[int, str, str]]:
    return [
        (r.time, r.data["from"], r.data["to"])
        for r in run.story.trace.of_kind(TraceKind.STATE)
        if r.conn == conn.label
    ]


def entered(run: ScenarioRun, conn: Connection, state: str) -> int:
    return next(t for t, _, to in state_changes(run, conn) if to == state)


def left(run: ScenarioRun, conn: Connection, state: str) -> int:
    return next(t for t, frm, _ in state_changes(run, conn) if frm == state)


def reasons(host: Host, conn: Connection) -> list[CloseReason]:
    return [e.reason for e in host.events_of(conn) if isinstance(e, Closed)]


def both(run: ScenarioRun) -> tuple[Connection, Connection]:
    assert run.client is not None and run.server is not None
    return run.client, run.server


# ------------------------------------------------------------------------ registry


def test_the_lifecycle_scenarios_are_registered_with_their_claims() -> None:
    assert set(SCENARIOS) >= LIFECYCLE
    for name in LIFECYCLE:
        assert SCENARIOS[name].claims, name
        assert set(SCENARIOS[name].claims) <= set(CLAIMS), name
    covered = {claim for name in LIFECYCLE for claim in SCENARIOS[name].claims}
    assert {"C7", "C8", "C13", "C15", "C16", "C17", "C18"} <= covered


@pytest.mark.parametrize("name", sorted(LIFECYCLE))
def test_each_renders_and_replays_byte_for_byte(name: str) -> None:
    text = render_scenario(SCENARIOS[name])
    assert f"== {name}: " in text and "state paths:" in text
    first = SCENARIOS[name].play().story.trace.to_jsonl()
    assert first == SCENARIOS[name].play().story.trace.to_jsonl()


# ------------------------------------------------------------------------ keepalive


def test_keepalive_finds_a_vanished_peer_at_idle_plus_count_times_interval() -> None:
    run = SCENARIOS["keepalive-dead-peer"].play()
    client, server = both(run)
    assert run.paths() == {"client": [*ACTIVE_OPEN, "CLOSED"], "server": PASSIVE_OPEN}
    assert reasons(run.story.client, client) == [CloseReason.KEEPALIVE_TIMEOUT]
    assert reasons(run.story.server, server) == []  # half-open: keepalive is off there
    last_rx = max(t for t, _ in received_by(run, client))
    assert last_rx == EXCHANGE_LAST_RX
    # After the delayed ACK of the response: 9 probes 75 s apart from 7200 s, then RST.
    late = [(t - last_rx, s) for t, s in sent_by(run, client) if t > last_rx + SECOND]
    assert [t for t, _ in late] == [(7200 + 75 * k) * SECOND for k in range(10)]
    probes, (_, rst) = late[:9], late[9]
    # C15: a probe carries SND.NXT - 1 and no data, so the peer must answer with an ACK.
    assert all(
        s.flags == Flag.ACK and s.payload == b"" and s.seq == seq_add(client.snd_nxt, -1)
        for _, s in probes
    )
    assert (rst.flags, rst.seq) == (Flag.RST, client.snd_nxt)
    assert entered(run, client, "CLOSED") == last_rx + 7875 * SECOND
    assert all(id(s) in run.story.lost for _, s in late)
    assert run.summary_lines[-1] == "10.0.0.1 closed (keepalive_timeout) 7875 s after it"


def test_go_profile_gives_up_150_s_after_the_last_segment_on_both_ends() -> None:
    run = SCENARIOS["keepalive-go-profile"].play()
    client, server = both(run)
    assert run.paths() == {
        "client": [*ACTIVE_OPEN, "CLOSED"],
        "server": [*PASSIVE_OPEN, "CLOSED"],
    }
    for host, conn in ((run.story.client, client), (run.story.server, server)):
        assert reasons(host, conn) == [CloseReason.KEEPALIVE_TIMEOUT]
        assert (conn.config.keepalive_idle, conn.config.keepalive_interval) == (
            15 * SECOND,
            15 * SECOND,
        )
        last_rx = max(t for t, _ in received_by(run, conn))
        probes = [t - last_rx for t, s in sent_by(run, conn) if s.flags == Flag.ACK and t > last_rx]
        assert [t for t in probes if t >= 15 * SECOND] == [15 * k * SECOND for k in range(1, 10)]
        assert entered(run, conn, "CLOSED") == last_rx + 150 * SECOND
    # The server heard last from the client's delayed ACK of the response, 40 ms later.
    assert entered(run, server, "CLOSED") - entered(run, client, "CLOSED") == 50 * MS


def test_a_rebooted_peer_answers_the_probe_with_a_reset() -> None:
    run = SCENARIOS["keepalive-peer-rebooted"].play()
    client, _ = both(run)
    # The old server connection died with its stack, frozen where it was.
    assert run.paths() == {"client": [*ACTIVE_OPEN, "CLOSED"], "server": PASSIVE_OPEN}
    assert reasons(run.story.client, client) == [CloseReason.RESET]
    ((probe_at, probe),) = [(t, s) for t, s in sent_by(run, client) if t > SECOND]
    ((rst_at, rst),) = [
        (r.time, r.segment)
        for r in run.story.trace.of_kind(TraceKind.SEGMENT_OUT)
        if r.conn == SERVER_IP and r.segment is not None
    ]
    assert probe_at == EXCHANGE_LAST_RX + 7200 * SECOND
    assert rst_at == probe_at + 10 * MS
    # The fresh stack has no connection: ACK to a listening port -> <SEQ=SEG.ACK><RST>.
    assert (rst.flags, rst.seq) == (Flag.RST, probe.ack)
    assert entered(run, client, "CLOSED") == probe_at + 20 * MS
    assert run.story.server.endpoint.connections == {}
    assert run.story.server.endpoint.stats["listen_ack"] == 1


# -------------------------------------------------------------------------- closing


def test_linger_zero_resets_and_skips_time_wait() -> None:
    run = SCENARIOS["linger-zero-reset"].play()
    client, server = both(run)
    assert run.paths() == {
        "client": [*ACTIVE_OPEN, "CLOSED"],
        "server": [*PASSIVE_OPEN, "CLOSED"],
        "client-again": ACTIVE_OPEN,
        "server-again": PASSIVE_OPEN,
    }
    closed_at = entered(run, client, "CLOSED")
    again = run.others["client-again"]
    # The second connection has the same label (same 4-tuple): its SYN_SENT is the 2nd.
    reopened_at = [t for t, _, to in state_changes(run, again) if to == "SYN_SENT"][1]
    after_close = [s for t, s in sent_by(run, client) if closed_at <= t < reopened_at]
    assert [(s.flags, s.seq) for s in after_close] == [(Flag.RST, client.snd_nxt)]
    assert reasons(run.story.client, client) == [CloseReason.ABORTED]
    assert reasons(run.story.server, server) == [CloseReason.RESET]  # "connection reset"
    assert entered(run, server, "CLOSED") == closed_at + 10 * MS
    assert again.local_port == client.local_port == 40000
    assert reopened_at == closed_at + 60 * MS  # no 60 s wait
    assert run.summary_lines == [
        "client closed: aborted; server closed: reset",
        "reconnect from port 40000 at once: ESTABLISHED",
    ]


def test_orphaned_fin_wait_2_piles_up_without_a_timeout_and_ends_at_60_s_with_one() -> None:
    run = SCENARIOS["fin-wait-2-orphan-timeout"].play()
    paths = run.paths()
    fin_wait_2 = [*ACTIVE_OPEN, "FIN_WAIT_1", "FIN_WAIT_2"]
    assert paths == {
        "client": [*fin_wait_2, "CLOSED"],
        "server": [*PASSIVE_OPEN, "CLOSE_WAIT"],
        **{f"client-rfc-{i}": fin_wait_2 for i in (1, 2, 3)},
        **{f"server-rfc-{i}": [*PASSIVE_OPEN, "CLOSE_WAIT"] for i in (1, 2, 3)},
        **{f"client-linux-{i}": [*fin_wait_2, "CLOSED"] for i in (2, 3)},
        **{f"server-linux-{i}": [*PASSIVE_OPEN, "CLOSE_WAIT"] for i in (2, 3)},
    }
    linux = [run.client, run.others["client-linux-2"], run.others["client-linux-3"]]
    for conn in linux:
        assert conn is not None
        assert left(run, conn, "FIN_WAIT_2") - entered(run, conn, "FIN_WAIT_2") == 60 * SECOND
        assert reasons(run.story.client, conn) == [CloseReason.FIN_WAIT_2_TIMEOUT]
    since = entered(run, run.others["client-rfc-1"], "FIN_WAIT_2")
    assert since == 90 * MS  # FIN at 30 ms, its ACK delayed 40 ms, 10 ms back
    assert run.story.now == since + 3600 * SECOND
    tail = "with tcp_fin_timeout 60 s still in FIN_WAIT_2; server CLOSE_WAIT: 6"
    assert run.summary_lines == [
        f"1 s after entering FIN_WAIT_2: 3 without a timeout, 3 {tail}",
        f"59.999999 s after entering FIN_WAIT_2: 3 without a timeout, 3 {tail}",
        f"60 s after entering FIN_WAIT_2: 3 without a timeout, 0 {tail}",
        f"600 s after entering FIN_WAIT_2: 3 without a timeout, 0 {tail}",
        f"3600 s after entering FIN_WAIT_2: 3 without a timeout, 0 {tail}",
    ]


def test_half_close_keeps_receiving_after_shutdown() -> None:
    run = SCENARIOS["half-close"].play()
    client, server = both(run)
    assert run.paths() == {
        "client": [*ACTIVE_OPEN, "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT", "CLOSED"],
        "server": [*PASSIVE_OPEN, "CLOSE_WAIT", "LAST_ACK", "CLOSED"],
    }
    assert reasons(run.story.client, client) == [CloseReason.NORMAL]
    assert reasons(run.story.server, server) == [CloseReason.NORMAL]
    client_fin_at = next(t for t, s in sent_by(run, client) if s.flags & Flag.FIN)
    # C14: the server's ACK of the client's FIN rides on its first chunk of data.
    server_data = [(t, s) for t, s in sent_by(run, server) if s.payload]
    assert [t - client_fin_at for t, _ in server_data] == [10 * MS, 30_010 * MS, 90_010 * MS]
    assert server_data[0][1].ack == seq_add(client.iss, 12)  # request (10) + SYN + FIN
    # Nothing but ACKs from the client after its FIN.
    assert all(not s.payload for t, s in sent_by(run, client) if t > client_fin_at)
    # Held by its application, FIN_WAIT_2 outlived tcp_fin_timeout (91 s > 60 s).
    assert left(run, client, "FIN_WAIT_2") - entered(run, client, "FIN_WAIT_2") == 91 * SECOND
    assert left(run, client, "TIME_WAIT") - entered(run, client, "TIME_WAIT") == 60 * SECOND
    assert run.summary_lines == [
        "server read b'SUM 1 2 3\\n', then end of stream",
        "client send() after shutdown: refused (InvalidOperation)",
        "client received b'partial sum 1\\n' at 0.05 s in FIN_WAIT_2",
        "client received b'partial sum 3\\n' at 30.05 s in FIN_WAIT_2",
        "client received b'sum 6\\n' at 90.05 s in FIN_WAIT_2",
    ]


def test_past_the_time_wait_limit_connections_close_at_once_and_lose_its_protection() -> None:
    run = SCENARIOS["time-wait-bucket-limit"].play()
    client, server = both(run)
    through_time_wait = [*ACTIVE_OPEN, "FIN_WAIT_1", "TIME_WAIT", "CLOSED"]
    last_ack = [*PASSIVE_OPEN, "CLOSE_WAIT", "LAST_ACK", "CLOSED"]
    assert run.paths() == {
        "client": through_time_wait,
        "server": last_ack,
        **{f"client-{i}": through_time_wait for i in (1, 2, 3, 4)},
        **{f"server-{i}": last_ack for i in (1, 2, 3, 4)},
    }
    clients = [run.others[f"client-{i}"] for i in (1, 2, 3, 4)] + [client]
    held = [left(run, c, "TIME_WAIT") - entered(run, c, "TIME_WAIT") for c in clients]
    assert held == [60 * SECOND] * 3 + [0, 0]  # the 4th and 5th found the table full
    endpoint = run.story.client.endpoint
    assert endpoint.stats["time_wait_overflow"] == 2
    assert endpoint.time_wait == {}  # all three entries have expired by the end
    # C11a without TIME_WAIT: the 5th's last ACK was lost, the resent FIN met no
    # connection, and the server saw "connection reset" instead of a normal close.
    assert run.story.lost
    servers = [run.others[f"server-{i}"] for i in (1, 2, 3, 4)]
    assert [reasons(run.story.server, s) for s in servers] == [[CloseReason.NORMAL]] * 4
    assert reasons(run.story.server, server) == [CloseReason.RESET]
    fins = [t for t, s in sent_by(run, server) if s.flags & Flag.FIN]
    assert len(fins) == 2 and fins[1] - fins[0] == SECOND
    assert entered(run, server, "CLOSED") == fins[1] + 20 * MS
    assert endpoint.stats["no_connection"] == 1
    assert run.summary_lines == [
        "TIME_WAIT entries held: 3 (limit 3); closed past the limit: 2",
        "connection 5 lost its last ACK: the server's resent FIN got a RST (1); server "
        "closed: reset",
    ]


# ------------------------------------------------------------------------ heartbeat


def test_the_heartbeat_finds_the_hung_application_that_keepalive_cannot() -> None:
    run = SCENARIOS["heartbeat-vs-keepalive"].play()
    client, server = both(run)
    assert run.paths() == {
        "client": [*ACTIVE_OPEN, "CLOSED"],
        "server": [*PASSIVE_OPEN, "CLOSED"],
    }
    assert reasons(run.story.client, client) == [CloseReason.ABORTED]  # the application
    assert reasons(run.story.server, server) == [CloseReason.RESET]
    start, hang = 30 * MS, 100_030 * MS
    pings = [t for t, s in sent_by(run, client) if s.payload[:1] == bytes([PING])]
    assert pings == [start + 30 * k * SECOND for k in range(1, 7)]
    pongs = [t for t, s in sent_by(run, server) if s.payload[:1] == bytes([PONG])]
    assert pongs == [ping + 10 * MS for ping in pings[:3]]
    # First unanswered PING (120 s) + 3 misses x 30 s: the client gives up at 210 s.
    first_unanswered = pings[3]
    assert first_unanswered > hang
    assert entered(run, client, "CLOSED") == first_unanswered + 3 * 30 * SECOND
    assert entered(run, server, "CLOSED") == first_unanswered + 90 * SECOND + 10 * MS
    # Keepalive probes after the hang: each answered by the server's stack 10 ms later.
    probes = [
        t
        for t, s in sent_by(run, client)
        if t > hang and s.flags == Flag.ACK and not s.payload and s.seq != client.snd_nxt
    ]
    assert len(probes) == 4
    answers = {t for t, s in received_by(run, client)}
    assert all(t + 20 * MS in answers for t in probes)
    assert not any(r is CloseReason.KEEPALIVE_TIMEOUT for r in reasons(run.story.client, client))
    assert run.summary_lines == [
        "reply before the hang: b'200 OK GET /status'",
        "server application hung at 100.03 s",
        "client keepalive probes after the hang: 4, unanswered at the end: 0 "
        "(keepalive sees a live peer)",
        "heartbeat PINGs sent: 6, PONGs: 3; peer declared dead at 210.03 s",
        "bytes the hung server never read: 27",
        "client closed: aborted; server closed: reset",
    ]


# ------------------------------------------------------------------------------ NAT


def test_nat_forgets_idle_flows_and_keepalive_keeps_one() -> None:
    run = SCENARIOS["nat-idle-expiry"].play()
    story = run.story
    assert isinstance(story, NatStory)
    quiet, quiet_server = both(run)
    kept, pushed = run.others["client-kept"], run.others["client-pushed"]
    pushed_server = run.others["server-pushed"]
    assert run.paths() == {
        "client": [*ACTIVE_OPEN, "CLOSED"],
        "server": PASSIVE_OPEN,  # never learns: a half-open connection on the server
        "client-kept": ACTIVE_OPEN,
        "server-kept": PASSIVE_OPEN,
        "client-pushed": ACTIVE_OPEN,  # never learns either
        "server-pushed": [*PASSIVE_OPEN, "CLOSED"],
    }
    assert quiet_server.remote_ip == NAT_IP and quiet_server.remote_port == 40001
    # Each mapping is forgotten exactly 300 s after the last datagram through it.
    nat = story.nat
    expired = [(e.time, e.mapping) for e in nat.log if e.kind is NatEventKind.EXPIRED]
    assert [(t, m.inside_port, t - m.last_used) for t, m in expired if m is not None] == [
        (300_020 * MS, 40001, 300 * SECOND),  # its handshake ACK left at 20 ms
        (300_080 * MS, 40003, 300 * SECOND),
        (900_110 * MS, 40001, 300 * SECOND),  # the second mapping, after its RST
    ]
    # The client's send at 600.09 s leaves from a new public port and meets a RST.
    sent_at = 600_090 * MS
    remap = next(e for e in nat.log if e.kind is NatEventKind.MAPPED and e.time == sent_at)
    assert remap.mapping is not None and remap.mapping.public_port == 20000
    assert reasons(story.client, quiet) == [CloseReason.RESET]
    assert entered(run, quiet, "CLOSED") == sent_at + 20 * MS
    assert story.server.endpoint.stats["listen_ack"] == 1
    # The server's send meets silence: retransmitted until R2 gives up.
    assert reasons(story.server, pushed_server) == [CloseReason.TIMEOUT]
    assert pushed_server.total_retransmissions == 13
    assert nat.stats[NatEventKind.DROPPED] == 14
    assert pushed.receive_buffered == 0
    # Keepalive every 60 s (< 300 s) kept port 40002's mapping: no expiry, data arrives.
    assert all(m is not None and m.inside_port != 40002 for _, m in expired)
    assert kept.state.value == "ESTABLISHED"
    assert (
        run.summary_lines[-1] == "keepalive flow (port 40002): server received b'GET /after-lunch'"
    )
    assert run.summary_lines[2] == (
        "client send after the idle period (port 40001): reset; the server's end of it "
        "is still ESTABLISHED"
    )


def test_nat_that_rejects_resets_the_outside_sender_at_once() -> None:
    run = play_nat_idle_expiry(Outside.REJECT)
    pushed_server = run.others["server-pushed"]
    assert run.paths()["server-pushed"] == [*PASSIVE_OPEN, "CLOSED"]
    assert reasons(run.story.server, pushed_server) == [CloseReason.RESET]
    assert entered(run, pushed_server, "CLOSED") == 600_090 * MS + 20 * MS
    assert pushed_server.total_retransmissions == 0
    assert run.paths()["client-pushed"] == ACTIVE_OPEN
    assert pushed_server.remote_ip == NAT_IP
