"""`tcpstack ss`: an `ss -tanoi`-like table of one running stack.

One row per listener, connection and TIME_WAIT entry of an Endpoint:

    State        Recv-Q Send-Q Local Address:Port  Peer Address:Port  Timer
    LISTEN            0    128 10.0.0.2:80         *:*
             syn_recv:0
    ESTABLISHED       0     11 10.0.0.1:32768      10.0.0.2:80        timer:(on,1.2s,3)
             rto:1600 rtt:20.000/10.000 cwnd:1460 ssthresh:2920 mss:1460 snd_wnd:65535 ...

States are RFC 9293's names (SYN-RECEIVED, TIME-WAIT). Recv-Q / Send-Q are the bytes
the application has not read / the bytes not yet acknowledged; for a listener, as in
ss, the accept queue's length and its backlog. A timer reads `timer:(NAME,LEFT,COUNT)`
with NAME one of on (retransmission, COUNT its consecutive expiries: the backoff),
persist, keepalive (COUNT: probes unanswered), delack, timewait, fin_wait2. TCP info
is in milliseconds for rto/rtt/rttvar (as `ss -i`) and in bytes for cwnd, ssthresh
(omitted while still "infinite"), mss and snd_wnd. Below the table: the Endpoint's
counters (Endpoint.stats: drops, resets, limits).

`snapshot()` reads an Endpoint at a time into plain data (pure, read-only);
`render_text()` and `render_table()` draw a snapshot. rich is imported only by the
latter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tcpstack.core.connection import Connection, FourTuple
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.segment import Datagram
from tcpstack.core.state import State

if TYPE_CHECKING:
    from rich.console import JustifyMethod, RenderableType
    from rich.table import Table

    from tcpstack.scenarios.story import Story

__all__ = [
    "COLUMNS",
    "ScenarioSnapshots",
    "SsRow",
    "SsSnapshot",
    "format_duration",
    "render_endpoints",
    "render_scenario_text",
    "render_table",
    "render_tables",
    "render_text",
    "scenario_snapshots",
    "snapshot",
]

COLUMNS = ("State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Timer")
# ssthresh starts "arbitrarily high" (RFC 5681 3.1); ss omits it until it is set.
_INFINITE_SSTHRESH = 1 << 30
# Connection.timers() names -> ss's names, and the order several timers are listed in.
_TIMER_NAMES = {
    "retransmit": "on",
    "persist": "persist",
    "keepalive": "keepalive",
    "delayed_ack": "delack",
    "time_wait": "timewait",
    "fin_wait_2": "fin_wait2",
}


@dataclass(frozen=True)
class SsRow:
    """One line of the table (and its TCP info line)."""

    state: str
    recv_q: int
    send_q: int
    local: str
    peer: str
    timer: str
    info: str


@dataclass(frozen=True)
class SsSnapshot:
    """An Endpoint's sockets and counters at one instant (µs)."""

    address: str
    now: int
    rows: tuple[SsRow, ...]
    stats: tuple[tuple[str, int], ...]


def rfc_name(state: State) -> str:
    """RFC 9293's spelling of a state: SYN-RECEIVED, FIN-WAIT-1, TIME-WAIT."""
    return state.value.replace("_", "-")


def format_address(ip: str, port: int | None) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"{host}:{'*' if port is None else port}"


def format_duration(us: int) -> str:
    """Time left as ss prints it, roughly: 40ms, 1.2s, 59.9s, 2m05s, 2h00m."""
    us = max(us, 0)
    if us < 1_000_000:
        return f"{us // 1000}ms"
    seconds = us / 1_000_000
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _ms(us: int) -> str:
    return f"{us / 1000:.3f}"


def _timers(conn: Connection, now: int) -> str:
    armed = conn.timers()
    parts: list[str] = []
    for name in sorted(armed, key=lambda n: (armed[n], list(_TIMER_NAMES).index(n))):
        if name == "retransmit":
            count = conn.retransmissions
        elif name == "keepalive":
            count = conn.keepalive_probes_out
        else:
            count = 0
        label = _TIMER_NAMES.get(name, name)
        parts.append(f"timer:({label},{format_duration(armed[name] - now)},{count})")
    return " ".join(parts)


def _info(conn: Connection) -> str:
    parts = [f"rto:{conn.rto // 1000}"]
    srtt = conn.srtt
    if srtt is not None:
        parts.append(f"rtt:{_ms(srtt)}/{_ms(conn.rttvar)}")
    parts.append(f"cwnd:{conn.cwnd}")
    if conn.ssthresh < _INFINITE_SSTHRESH:
        parts.append(f"ssthresh:{conn.ssthresh}")
    parts.append(f"mss:{conn.effective_mss}")
    parts.append(f"snd_wnd:{conn.snd_wnd}")
    parts.append(f"retrans:{conn.retransmissions}/{conn.total_retransmissions}")
    parts.append(f"ka_probes:{conn.keepalive_probes_out}")
    if conn.reassembly_held:
        parts.append(f"ooo:{conn.reassembly_held}")
    return " ".join(parts)


def _sort_key(key: FourTuple) -> tuple[int, str, int]:
    return (key[1], key[2], key[3])


def snapshot(endpoint: Endpoint, now: int) -> SsSnapshot:
    """Read an Endpoint's listeners, connections, TIME_WAIT entries and counters."""
    rows: list[SsRow] = []
    for port in sorted(endpoint.listeners):
        listener = endpoint.listeners[port]
        rows.append(
            SsRow(
                rfc_name(State.LISTEN),
                len(listener.accept_queue),
                listener.backlog,
                format_address(endpoint.address, port),
                "*:*",
                "",
                f"syn_recv:{len(listener.embryonic)}",
            )
        )
    sockets: list[tuple[FourTuple, SsRow]] = []
    for key, conn in endpoint.connections.items():
        if key in endpoint.time_wait:
            continue  # the compact entry is the live one
        sockets.append(
            (
                key,
                SsRow(
                    rfc_name(conn.state),
                    conn.receive_buffered,
                    conn.send_buffered,
                    format_address(conn.local_ip, conn.local_port),
                    format_address(conn.remote_ip, conn.remote_port),
                    _timers(conn, now),
                    _info(conn),
                ),
            )
        )
    for key, entry in endpoint.time_wait.items():
        sockets.append(
            (
                key,
                SsRow(
                    rfc_name(State.TIME_WAIT),
                    0,
                    0,
                    format_address(key[0], key[1]),
                    format_address(key[2], key[3]),
                    f"timer:(timewait,{format_duration(entry.deadline - now)},0)",
                    "",
                ),
            )
        )
    sockets.sort(key=lambda item: _sort_key(item[0]))
    rows.extend(row for _, row in sockets)
    stats = tuple(sorted((name, count) for name, count in endpoint.stats.items() if count))
    return SsSnapshot(endpoint.address, now, tuple(rows), stats)


def _cells(row: SsRow) -> tuple[str, ...]:
    return (row.state, str(row.recv_q), str(row.send_q), row.local, row.peer, row.timer)


_RIGHT = {1, 2}  # Recv-Q and Send-Q are right-aligned, as in ss


def render_text(snap: SsSnapshot) -> str:
    """The snapshot as plain text: the table, each row's TCP info indented below it,
    then the counters."""
    cells = [COLUMNS, *(_cells(row) for row in snap.rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]

    def line(values: tuple[str, ...]) -> str:
        out = [
            value.rjust(widths[i]) if i in _RIGHT else value.ljust(widths[i])
            for i, value in enumerate(values)
        ]
        return " ".join(out).rstrip()

    lines = [line(COLUMNS)]
    for row in snap.rows:
        lines.append(line(_cells(row)))
        if row.info:
            lines.append(f"\t {row.info}")
    lines.append("")
    if snap.stats:
        lines.append("counters:")
        width = max(len(name) for name, _ in snap.stats)
        lines.extend(f"  {name:<{width}} {count}" for name, count in snap.stats)
    else:
        lines.append("counters: none")
    return "\n".join(lines)


def render_table(snap: SsSnapshot, *, title: str | None = None) -> Table:
    """The snapshot as a rich Table, the counters in its caption."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=title if title is not None else f"{snap.address} at {snap.now / 1e6:.3f}s",
        caption=", ".join(f"{name} {count}" for name, count in snap.stats) or "counters: none",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        show_edge=False,
        expand=False,
    )
    # Shorter headers than the text's, so that a row fits 80 columns.
    for index, name in enumerate(("State", "Recv-Q", "Send-Q", "Local", "Peer")):
        justify: JustifyMethod = "right" if index in _RIGHT else "left"
        table.add_column(name, justify=justify, no_wrap=True)
    table.add_column("Timer / TCP info", overflow="fold", min_width=16)
    for row in snap.rows:
        style = "dim" if row.state == "TIME-WAIT" else None
        detail = "\n".join(part for part in (row.timer, row.info) if part)
        table.add_row(*_cells(row)[:-1], detail, style=style)
    return table


def render_tables(snaps: list[tuple[str, SsSnapshot]]) -> RenderableType:
    """Several titled snapshots (both hosts of a scenario, or a server's v4 and v6)."""
    from rich.console import Group

    return Group(*(render_table(snap, title=title) for title, snap in snaps))


# ----------------------------------------------------------------- simulator scenarios


@dataclass(frozen=True)
class ScenarioSnapshots:
    """Both hosts of a scenario at a virtual time (or at its end)."""

    name: str
    at: int  # µs of virtual time the snapshots show
    stopped: bool  # True: the clock was stopped at --at; False: the scenario's end
    hosts: tuple[tuple[str, SsSnapshot], ...]  # ("client", ...), ("server", ...)

    def heading(self) -> str:
        when = f"at {self.at / 1e6:.3f}s" if self.stopped else f"at its end, {self.at / 1e6:.3f}s"
        return f"== {self.name} {when} (virtual time)"


class _Stopwatch:
    """A simulator node whose one timer, at `at`, takes both hosts' snapshots.

    It fires before any other event due at exactly `at` (its heap entry is the oldest),
    so a snapshot shows everything that happened before `at`.
    """

    def __init__(self, at: int, take: Callable[[int], None]) -> None:
        self.address = "ss-stopwatch"
        self.at: int | None = at
        self._take = take

    def datagrams_to_send(self, *, now: int) -> list[Datagram]:
        return []

    def receive_datagram(self, datagram: Datagram, *, now: int) -> None:
        raise AssertionError("nothing is routed to the ss stopwatch")

    def receive_bytes(self, src: str, dst: str, data: bytes, *, now: int) -> None:
        raise AssertionError("nothing is routed to the ss stopwatch")

    def next_timer(self) -> int | None:
        return self.at

    def handle_timer(self, *, now: int) -> None:
        if self.at is not None and now >= self.at:
            self.at = None
            self._take(now)


def scenario_snapshots(name: str, at: int | None = None) -> ScenarioSnapshots:
    """Play scenario `name`; snapshot both hosts at virtual time `at` (µs), or at the
    scenario's end when `at` is None or comes after it. KeyError for an unknown name."""
    from tcpstack.scenarios.catalog import SCENARIOS
    from tcpstack.scenarios.story import watch_stories

    item = SCENARIOS[name]
    stories: list[Story] = []
    taken: list[ScenarioSnapshots] = []

    def take(now: int) -> None:
        story = stories[-1]
        taken.append(ScenarioSnapshots(name, now, True, _hosts(story, now)))

    def watch(story: Story) -> None:
        if at is None or taken:
            return
        if stories and stories[-1] is not story:
            return  # only the scenario's first story (some build a second one)
        stories.append(story)
        story.network.add_node(_Stopwatch(at, take))

    with watch_stories(watch):
        run = item.play()
    if taken:
        return taken[0]
    story = run.story
    return ScenarioSnapshots(name, story.now, False, _hosts(story, story.now))


def _hosts(story: Story, now: int) -> tuple[tuple[str, SsSnapshot], ...]:
    return tuple(
        (f"{host.name} {host.endpoint.address}", snapshot(host.endpoint, now))
        for host in (story.client, story.server)
    )


def render_scenario_text(snaps: ScenarioSnapshots) -> str:
    parts = [snaps.heading()]
    for title, snap in snaps.hosts:
        parts.append("")
        parts.append(f"-- {title}")
        parts.append(render_text(snap))
    return "\n".join(parts)


# ----------------------------------------------------------------- a live stack


def render_endpoints(endpoints: Sequence[Endpoint], now: int, *, start: int = 0) -> RenderableType:
    """Tables of a running stack's Endpoints (e.g. IPv4 and IPv6), `start` the clock
    value the titles' times count from."""
    return render_tables(
        [
            (f"{endpoint.address} at {(now - start) / 1e6:.1f}s", snapshot(endpoint, now))
            for endpoint in endpoints
        ]
    )
