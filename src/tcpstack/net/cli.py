"""`tcpstack netns up|down`, `tcpstack serve`, `tcpstack connect`: tcpstack on a TUN.

    tcpstack netns up                 # namespace tcpstack-ns, TUN tcpstack0, 10.77.0.1 <-> .2
    tcpstack serve                    # echo 7, discard 9, chargen 19 on 10.77.0.2 (Ctrl-C)
    tcpstack serve --http             # ... and an HTTP/1.1 server on port 80 (needs h11)
    ip netns exec tcpstack-ns curl -v http://10.77.0.2/ http://10.77.0.2/
    ip netns exec tcpstack-ns nc 10.77.0.2 7      # in another terminal: the kernel's TCP
    ip netns exec tcpstack-ns nc -l 10.77.0.1 5000
    tcpstack connect 10.77.0.1 5000   # stdin -> connection -> stdout
    tcpstack netns down

Both serve and connect print every state change (and with -v every segment) on stderr
as it happens. Without a prior `netns up` they create a private namespace and delete it
when they exit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.events import CloseReason
from tcpstack.core.state import State
from tcpstack.core.trace import TraceKind, TraceRecord
from tcpstack.net.apps import Chargen, ConnectionApp, Discard, Echo, StreamApp, Transfer
from tcpstack.net.host import NetHost
from tcpstack.net.loop import ICMP_TRACE_KIND, monotonic_us
from tcpstack.net.netns import DEFAULT, Netns, NetnsConfig, NetnsError, delete_netns
from tcpstack.net.tun import tun_available

__all__ = ["LiveTracer", "add_commands", "run_command"]

_FINISHED = frozenset({State.TIME_WAIT, State.CLOSED})


class LiveTracer:
    """Prints state changes (and with verbose, segments) as they happen."""

    def __init__(self, out: TextIO, *, verbose: bool = False) -> None:
        self.out = out
        self.verbose = verbose
        self.start = monotonic_us()
        self._lock = threading.Lock()

    def __call__(self, record: TraceRecord) -> None:
        kind = record.kind
        data = record.data
        if kind == TraceKind.STATE:
            text = f"{data['from']} -> {data['to']}  ({data['trigger']})"
        elif kind == ICMP_TRACE_KIND:
            text = (
                f"ICMP {data['icmp']} {data['code_name']} from {data['reporter']} "
                f"(state {data['state']}; counted, not delivered)"
            )
        elif (
            self.verbose
            and record.segment is not None
            and kind
            in (
                TraceKind.SEGMENT_IN,
                TraceKind.SEGMENT_OUT,
                TraceKind.DROP,
            )
        ):
            arrow = {TraceKind.SEGMENT_IN: "<", TraceKind.SEGMENT_OUT: ">"}.get(kind, "x")
            reason = f"  [{data['reason']}]" if "reason" in data else ""
            text = f"{arrow} {record.segment.describe()}{reason}"
        elif self.verbose and kind == TraceKind.EVENT:
            text = f"event {data.get('event', data)}"
        else:
            return
        seconds = (record.time - self.start) / 1e6
        with self._lock:
            print(f"{seconds:9.3f}s {record.conn:<44} {text}", file=self.out, flush=True)


def _netns_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--netns", default=DEFAULT.name, help="namespace name (%(default)s)")
    parser.add_argument("--tun", default=DEFAULT.tun, help="TUN interface name (%(default)s)")
    parser.add_argument(
        "--kernel-ip", default=DEFAULT.kernel_ip, help="the kernel's address (%(default)s)"
    )
    parser.add_argument(
        "--stack-ip", default=DEFAULT.stack_ip, help="tcpstack's address (%(default)s)"
    )
    parser.add_argument("--prefix", type=int, default=DEFAULT.prefix)
    parser.add_argument("--kernel-ip6", default=DEFAULT.kernel_ip6)
    parser.add_argument("--stack-ip6", default=DEFAULT.stack_ip6)
    parser.add_argument("--no-ipv6", action="store_true", help="IPv4 only")
    parser.add_argument("--mtu", type=int, default=DEFAULT.mtu)
    if parser.prog.split()[-1] != "netns":
        parser.add_argument(
            "--offload",
            action="store_true",
            help="TSO and checksum offload on the TUN (IFF_VNET_HDR): faster bulk transfers",
        )


def _config_from(args: argparse.Namespace) -> NetnsConfig:
    return NetnsConfig(
        name=args.netns,
        tun=args.tun,
        kernel_ip=args.kernel_ip,
        stack_ip=args.stack_ip,
        prefix=args.prefix,
        kernel_ip6=None if args.no_ipv6 else args.kernel_ip6,
        stack_ip6=None if args.no_ipv6 else args.stack_ip6,
        mtu=args.mtu,
    )


def add_commands(commands: Any) -> None:
    """Add netns, serve and connect to the `tcpstack` command's subparsers."""
    netns = commands.add_parser(
        "netns",
        help="create or delete the network namespace with tcpstack's TUN device",
        description="`up` creates a network namespace with a persistent TUN device in it: "
        "the kernel's address on the TUN, tcpstack's address behind it. `serve` and "
        "`connect` attach to it. `down` deletes the namespace (and the TUN).",
    )
    netns.add_argument("action", choices=("up", "down", "status"))
    _netns_arguments(netns)

    serve = commands.add_parser(
        "serve",
        help="run echo/discard/chargen on tcpstack inside the namespace",
        description="Listen on tcpstack's address with echo (RFC 862), discard (RFC 863) "
        "and chargen (RFC 864), printing every state change; talk to it with e.g. "
        "`ip netns exec tcpstack-ns nc 10.77.0.2 7`. Ctrl-C stops.",
    )
    _netns_arguments(serve)
    serve.add_argument("--echo", type=int, default=7, metavar="PORT", help="0 = off")
    serve.add_argument("--discard", type=int, default=9, metavar="PORT", help="0 = off")
    serve.add_argument("--chargen", type=int, default=19, metavar="PORT", help="0 = off")
    serve.add_argument(
        "--http",
        type=int,
        nargs="?",
        const=80,
        default=0,
        metavar="PORT",
        help="also serve HTTP/1.1 with keep-alive (h11, the `net` extra) on PORT (80)",
    )
    serve.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    serve.add_argument("-v", "--verbose", action="store_true", help="print every segment")
    serve.add_argument(
        "--ss",
        action="store_true",
        help="show a live `ss -tanoi`-like table of the stack (rich) while it serves",
    )
    serve.add_argument(
        "--ss-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="refresh interval of the --ss table (%(default)s)",
    )

    connect = commands.add_parser(
        "connect",
        help="connect from tcpstack to a server in the namespace; stdin/stdout",
        description="Open a connection from tcpstack's address to HOST PORT inside the "
        "namespace (e.g. `ip netns exec tcpstack-ns nc -l 10.77.0.1 5000`), send stdin, "
        "write what arrives to stdout; half-close at end of input, exit at close.",
    )
    _netns_arguments(connect)
    connect.add_argument("host")
    connect.add_argument("port", type=int)
    connect.add_argument("--timeout", type=float, default=None, help="give up after SECONDS")
    connect.add_argument("-v", "--verbose", action="store_true", help="print every segment")


def run_command(args: argparse.Namespace) -> int:
    problem = tun_available()
    if problem is not None:
        print(f"tcpstack {args.command}: {problem}", file=sys.stderr)
        return 2
    try:
        config = _config_from(args)
        config.validate()
        if args.command == "netns":
            return _netns(args.action, config)
        if args.command == "serve":
            return _serve(args, config)
        if args.command == "connect":
            return _connect(args, config)
    except (NetnsError, ValueError, OSError, ImportError) as error:
        print(f"tcpstack {args.command}: {error}", file=sys.stderr)
        return 1
    return 2


def _netns(action: str, config: NetnsConfig) -> int:
    if action == "up":
        setup = Netns.create(config, persist=True)
        setup.tun.close()  # the persistent TUN stays in the namespace
        print(f"namespace {config.name}: {config.tun} with the kernel at {config.kernel_ip}")
        print(f"tcpstack answers for {', '.join(config.stack_addresses)} (tcpstack serve)")
        print(f"try: ip netns exec {config.name} nc {config.stack_ip} 7")
        return 0
    if action == "down":
        if delete_netns(config.name):
            print(f"namespace {config.name} deleted")
        else:
            print(f"no namespace {config.name}")
        return 0
    setup = Netns.attach(config)
    print(f"namespace {config.name} with {setup.tun.name}: ok")
    setup.tun.close()
    return 0


def _interrupt_on_sigterm() -> None:
    """SIGTERM stops serve/connect like Ctrl-C, so the namespace is cleaned up."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _factory(kind: type[StreamApp]) -> Callable[[Connection], ConnectionApp]:
    def make(conn: Connection) -> ConnectionApp:
        return kind()

    return make


def _serve(args: argparse.Namespace, config: NetnsConfig) -> int:
    _interrupt_on_sigterm()
    tracer = LiveTracer(sys.stderr, verbose=args.verbose)
    host = NetHost.open(config, tracer=tracer, offload=args.offload)
    try:
        services: dict[str, tuple[int, type[StreamApp]]] = {
            "echo": (args.echo, Echo),
            "discard": (args.discard, Discard),
            "chargen": (args.chargen, Chargen),
        }
        endpoints = [host.endpoint] + ([host.endpoint6] if host.endpoint6 else [])
        for name, (port, factory) in services.items():
            if not port:
                continue
            for endpoint in endpoints:
                endpoint.listen(port)
                host.dispatcher.serve(endpoint, port, _factory(factory))
            print(f"{name:<8} on {', '.join(e.address for e in endpoints)} port {port}")
        if args.http:
            from tcpstack.net.http import HttpSite, http_factory

            site = HttpSite()
            for endpoint in endpoints:
                endpoint.listen(args.http)
                host.dispatcher.serve(endpoint, args.http, http_factory(site))
            where = ", ".join(e.address for e in endpoints)
            print(f"{'http':<8} on {where} port {args.http} (HTTP/1.1 keep-alive)")
        made = "created (deleted at exit)" if host.netns.owns_namespace else "attached"
        print(f"namespace {config.name} {made}; try:")
        print(f"  ip netns exec {config.name} nc {config.stack_ip} {args.echo or 7}")
        sys.stdout.flush()
        stop_at = None if args.duration is None else monotonic_us() + int(args.duration * 1e6)

        def until() -> bool:
            return stop_at is not None and monotonic_us() >= stop_at

        if args.ss:
            _serve_with_ss(host, endpoints, tracer, until, args.ss_interval)
        else:
            with contextlib.suppress(KeyboardInterrupt):
                host.loop.run(until=until)
        print(f"stats: {dict(sorted(host.loop.all_stats().items()))}", file=sys.stderr)
    finally:
        host.close()
    return 0


def _serve_with_ss(
    host: NetHost,
    endpoints: list[Endpoint],
    tracer: LiveTracer,
    until: Callable[[], bool],
    interval: float,
) -> None:
    """Run the loop in the foreground, redrawing the ss table every `interval` seconds.

    The table is read in the loop's `until` check, which runs with the loop's lock
    held, so every snapshot is of a consistent stack; the state-change lines go above
    the table (rich.Live redirects stderr while it runs).
    """
    from rich.console import Console
    from rich.live import Live

    from tcpstack.viz.ss import render_endpoints

    step = max(int(interval * 1e6), 10_000)
    start = monotonic_us()
    next_draw = start
    live = Live(
        render_endpoints(endpoints, start, start=start), console=Console(), auto_refresh=False
    )

    def check() -> bool:
        nonlocal next_draw
        now = monotonic_us()
        if now >= next_draw:
            live.update(render_endpoints(endpoints, now, start=start), refresh=True)
            next_draw = now + step
        return until()

    with live:
        out = tracer.out
        tracer.out = sys.stderr  # rich's proxy: printed above the live table
        try:
            with contextlib.suppress(KeyboardInterrupt):
                host.loop.run(until=check, poll=min(step, 100_000))
        finally:
            tracer.out = out


def _connect(args: argparse.Namespace, config: NetnsConfig) -> int:
    _interrupt_on_sigterm()
    tracer = LiveTracer(sys.stderr, verbose=args.verbose)
    host = NetHost.open(config, tracer=tracer, offload=args.offload)
    out = sys.stdout.buffer
    try:
        endpoint = host.endpoint6 if ":" in args.host and host.endpoint6 else host.endpoint

        def write(data: bytes) -> None:
            out.write(data)
            out.flush()

        # Close once the server has closed and our input is sent (like nc); at the end
        # of stdin, half-close instead.
        app = Transfer(close_when="eof", on_data=write)

        def start(now: int) -> None:
            conn = endpoint.connect(args.host, args.port, now=now)
            host.dispatcher.attach(conn, app)

        host.loop.start()
        host.loop.call(start)
        conn = next(iter(host.dispatcher.apps))

        def feed() -> None:
            while True:
                try:
                    chunk = os.read(sys.stdin.fileno(), 1 << 16)
                except OSError:
                    chunk = b""
                if not chunk:
                    break

                def add(now: int, data: bytes = chunk) -> None:
                    app.add_payload(data)
                    app.pump(conn, now)

                host.loop.call(add)

            def finish(now: int) -> None:
                app.close_when = "shutdown"
                app.pump(conn, now)

            host.loop.call(finish)

        threading.Thread(target=feed, name="stdin", daemon=True).start()
        timeout = None if args.timeout is None else int(args.timeout * 1e6)
        try:
            # TIME_WAIT counts as done: its 2*MSL need not keep the command alive.
            finished = host.loop.wait_until(lambda: conn.state in _FINISHED, timeout)
        except KeyboardInterrupt:
            finished = False
        if not finished:
            host.loop.call(lambda now: None if conn.state is State.CLOSED else conn.abort(now=now))
        state, reason = conn.state, app.closed
        print(f"{state.value}: {reason or 'closing normally'}", file=sys.stderr)
        return 0 if state is State.TIME_WAIT or reason is CloseReason.NORMAL else 1
    finally:
        host.close()
