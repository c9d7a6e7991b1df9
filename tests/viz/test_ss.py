"""`tcpstack ss`: the table of a known Endpoint state, rich rendering, the CLI."""

from __future__ import annotations

import pytest
from rich.console import Console

from tcpstack.cli import main
from tcpstack.core.connection import FourTuple
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.state import State
from tcpstack.scenarios.catalog import SCENARIOS
from tcpstack.scenarios.story import Story, watch_stories
from tcpstack.viz.ss import (
    _Stopwatch,
    format_duration,
    render_endpoints,
    render_table,
    render_text,
    scenario_snapshots,
    snapshot,
)

MS = 1000
CLIENT, SERVER = "10.0.0.1", "10.0.0.2"


def _isn(four_tuple: FourTuple, now: int) -> int:
    return 1000


def _pump(client: Endpoint, server: Endpoint, now: int, *, lose_to_server: bool = False) -> None:
    """Carry datagrams both ways until both ends are quiet."""
    moved = True
    while moved:
        moved = False
        for datagram in client.datagrams_to_send(now=now):
            moved = True
            if not lose_to_server:
                server.receive_datagram(datagram, now=now)
        for datagram in server.datagrams_to_send(now=now):
            moved = True
            client.receive_datagram(datagram, now=now)


@pytest.fixture(scope="module")
def known() -> tuple[Endpoint, Endpoint, int]:
    """Client: one ESTABLISHED connection whose 100 bytes were lost and resent once
    (retransmit timer backed off once), one TIME_WAIT entry, a malformed segment
    counted. Server: a listener with one connection not yet accepted."""
    client = Endpoint(CLIENT, isn_generator=_isn)
    server = Endpoint(SERVER, isn_generator=_isn)
    server.listen(80, backlog=16, now=0)
    sending = client.connect(SERVER, 80, now=0, local_port=40000)
    _pump(client, server, 0)
    closing = client.connect(SERVER, 80, now=0, local_port=40001)
    _pump(client, server, 0)
    client.connect(SERVER, 80, now=0, local_port=40002)
    _pump(client, server, 0)
    accepted = [server.accept(80), server.accept(80)]
    assert all(conn is not None for conn in accepted)
    closing.close(now=10 * MS)
    _pump(client, server, 10 * MS)
    assert accepted[1] is not None
    accepted[1].close(now=10 * MS)
    _pump(client, server, 10 * MS)
    assert closing.state is State.TIME_WAIT
    sending.send(b"x" * 100, now=20 * MS)
    _pump(client, server, 20 * MS, lose_to_server=True)
    deadline = client.next_timer()
    assert deadline == 1020 * MS
    client.handle_timer(now=deadline)
    _pump(client, server, deadline, lose_to_server=True)
    client.receive_bytes(SERVER, CLIENT, b"\x00\x01", now=deadline)
    return client, server, deadline + 200 * MS


def test_text_of_a_known_client(known: tuple[Endpoint, Endpoint, int]) -> None:
    client, _, now = known
    assert render_text(snapshot(client, now)) == (
        "State       Recv-Q Send-Q Local Address:Port Peer Address:Port Timer\n"
        "ESTABLISHED      0    100 10.0.0.1:40000     10.0.0.2:80       timer:(on,1.8s,1)\n"
        "\t rto:2000 rtt:0.001/0.000 cwnd:1448 ssthresh:10136 mss:1448 snd_wnd:65535 "
        "retrans:1/1 ka_probes:0\n"
        "TIME-WAIT        0      0 10.0.0.1:40001     10.0.0.2:80       "
        "timer:(timewait,58.8s,0)\n"
        "ESTABLISHED      0      0 10.0.0.1:40002     10.0.0.2:80\n"
        "\t rto:1000 rtt:0.001/0.000 cwnd:14480 mss:1448 snd_wnd:65535 retrans:0/0 "
        "ka_probes:0\n"
        "\n"
        "counters:\n"
        "  malformed.short_header 1"
    )


def test_text_of_a_known_server(known: tuple[Endpoint, Endpoint, int]) -> None:
    _, server, now = known
    text = render_text(snapshot(server, now))
    lines = text.splitlines()
    assert lines[0] == "State       Recv-Q Send-Q Local Address:Port Peer Address:Port Timer"
    # A listener: accept queue length / backlog, as ss shows them.
    assert lines[1] == "LISTEN           1     16 10.0.0.2:80        *:*"
    assert lines[2] == "\t syn_recv:0"
    peers = [line.split()[4] for line in lines if line.startswith("ESTABLISHED")]
    assert peers == ["10.0.0.1:40000", "10.0.0.1:40002"]
    assert lines[-1] == "counters: none"


def test_snapshot_is_read_only(known: tuple[Endpoint, Endpoint, int]) -> None:
    client, _, now = known
    assert snapshot(client, now) == snapshot(client, now)
    assert client.next_timer() == 3020 * MS


@pytest.mark.parametrize(
    ("us", "text"),
    [
        (-5, "0ms"),
        (40 * MS, "40ms"),
        (1_200_000, "1.2s"),
        (59_940_000, "59.9s"),
        (125_000_000, "2m05s"),
        (7_200_000_000, "2h00m"),
    ],
)
def test_format_duration(us: int, text: str) -> None:
    assert format_duration(us) == text


def test_rich_table(known: tuple[Endpoint, Endpoint, int]) -> None:
    client, server, now = known
    table = render_table(snapshot(client, now))
    assert table.row_count == 3
    assert [str(column.header) for column in table.columns][:3] == ["State", "Recv-Q", "Send-Q"]
    console = Console(record=True, width=160, color_system=None)
    console.print(render_endpoints([client, server], now, start=0))
    out = console.export_text()
    assert "timer:(on,1.8s,1)" in out
    assert "malformed.short_header 1" in out
    assert "10.0.0.2 at 1.220s" not in out and "10.0.0.2 at 1.2s" in out


def test_scenario_at_a_time() -> None:
    snaps = scenario_snapshots("syn-received-held", 2_500_000)
    assert snaps.stopped and snaps.at == 2_500_000
    (_, client), (_, server) = snaps.hosts
    assert [row.state for row in server.rows] == ["LISTEN", "SYN-RECEIVED"]
    assert server.rows[0].info == "syn_recv:1"
    assert server.rows[1].timer == "timer:(on,510ms,1)"
    assert [row.state for row in client.rows] == ["ESTABLISHED"]


def test_scenario_past_its_end_shows_the_final_state() -> None:
    snaps = scenario_snapshots("three-way-handshake", 3_600_000_000)
    assert not snaps.stopped
    assert snaps.heading() == "== three-way-handshake at its end, 0.080s (virtual time)"


def test_the_stopwatch_does_not_change_a_scenario() -> None:
    for name in ("normal-close", "syn-received-held", "nat-idle-expiry"):
        item = SCENARIOS[name]
        plain = item.play()
        fired: list[int] = []

        def watch(story: Story, fired: list[int] = fired) -> None:
            story.network.add_node(_Stopwatch(1_500_000, fired.append))

        with watch_stories(watch):
            watched = item.play()
        assert fired == [1_500_000]
        assert watched.ladder() == plain.ladder()
        assert watched.paths() == plain.paths()


def test_cli_on_a_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ss", "--scenario", "normal-close", "--at", "1", "--format", "text"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("== normal-close at 1.000s (virtual time)\n\n-- client 10.0.0.1\n")
    assert (
        "TIME-WAIT      0      0 10.0.0.1:32768     10.0.0.2:80       timer:(timewait,59.3s,0)"
        in out
    )
    assert "-- server 10.0.0.2\n" in out
    assert "LISTEN      0    128 10.0.0.2:80        *:*" in out


def test_cli_rich_and_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["ss", "--scenario", "syn-received-held", "--at", "2.5", "--format", "rich"]) == 0
    out = capsys.readouterr().out
    assert "SYN-RECEIVED" in out and "timer:(on,510ms,1)" in out
    assert main(["ss", "--scenario", "no-such-story"]) == 2
    assert "no scenario named" in capsys.readouterr().err
