"""Throughput over the TUN: kernel -> tcpstack, tcpstack -> kernel, and kernel -> kernel
over a veth pair between two namespaces, in one run (root needed).

    python -m tcpstack.net.bench                 # 50 MB each
    python -m tcpstack.net.bench --bytes 10M --repeat 3
    python -m tcpstack.net.bench --pytcp --pytcp-python /tmp/pytcp-venv/bin/python

The kernel's side runs in a separate process inside the namespace (`ip netns exec ...
python -c ...`) so it does not share tcpstack's interpreter lock; each figure is the
bytes moved divided by the time from the kernel's connect() to the end of the stream,
as that process measured it. The veth figure is the ceiling the kernel reaches on this
machine with the same Python client and server code.

`--pytcp` runs the comparison with PyTCP, another pure-Python stack (issue 9, row 6),
instead: tcpstack.net.bench_pytcp measures both TUN directions, veth, and PyTCP over a
TAP in both directions --repeat times, then prints medians and tcpstack/PyTCP ratios.
PyTCP (GPL-3.0) is installed separately (`pip install 'tcpstack[pytcp]'`, or any
interpreter given by --pytcp-python) and gets its own, smaller size (--pytcp-bytes).
Without PyTCP its rows are skipped with a message saying why.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import threading
from dataclasses import dataclass

from tcpstack.core.connection import Connection
from tcpstack.net.apps import ConnectionApp, Discard, Transfer
from tcpstack.net.host import NetHost
from tcpstack.net.netns import NetnsConfig, delete_netns, exec_argv, ip

# The kernel-side program: "send N" connects and sends N bytes then reads to EOF;
# "recv" connects (or accepts with "listen") and reads to EOF. Prints JSON.
KERNEL_PEER = r"""
import json, socket, sys, time
mode, host, port, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
chunk = bytes(1 << 18)
def drain(sock):
    got = 0
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return got
        got += len(data)
if mode == "listen-recv":
    server = socket.socket(family)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port)); server.listen(1)
    print("ready", flush=True)
    sock, _ = server.accept()
    start = time.perf_counter()
    got = drain(sock)
    elapsed = time.perf_counter() - start
    sock.close()
    print(json.dumps({"bytes": got, "seconds": elapsed}), flush=True)
    sys.exit(0)
sock = socket.create_connection((host, port), timeout=120)
start = time.perf_counter()
if mode == "send":
    left = size
    while left:
        n = sock.send(chunk[: min(left, len(chunk))])
        left -= n
    sock.shutdown(socket.SHUT_WR)
    drain(sock)
    got = size
else:
    got = drain(sock)
elapsed = time.perf_counter() - start
sock.close()
print(json.dumps({"bytes": got, "seconds": elapsed}), flush=True)
"""


@dataclass(frozen=True)
class Figure:
    label: str
    size: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.size / self.seconds / 1e6


def _peer(netns: str, *args: str) -> subprocess.Popen[str]:
    argv = exec_argv(netns, [sys.executable, "-c", KERNEL_PEER, *args])
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen[str], label: str, size: int) -> Figure:
    out, err = process.communicate(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(f"{label}: kernel peer failed: {err.strip()}")
    result = json.loads(out.strip().splitlines()[-1])
    if result["bytes"] != size:
        raise RuntimeError(f"{label}: moved {result['bytes']} of {size} bytes")
    return Figure(label, size, result["seconds"])


class Source(Transfer):
    """Sends `size` zero bytes then closes (the tcpstack -> kernel direction)."""

    def __init__(self, size: int) -> None:
        super().__init__(bytes(size), close_when="sent")


def tcpstack_figures(size: int, profile: str | None, *, offload: bool = False) -> list[Figure]:
    pid = os.getpid()
    config = NetnsConfig(name=f"tsk-bench-{pid}", tun=f"tskb{pid}", stack_ip6=None, kernel_ip6=None)
    host = NetHost.create(config, offload=offload)
    profiler = cProfile.Profile() if profile else None
    try:

        def discard(conn: Connection) -> ConnectionApp:
            return Discard()

        def source(conn: Connection) -> ConnectionApp:
            return Source(size)

        def listen(now: int) -> None:
            host.endpoint.listen(9)
            host.dispatcher.serve(host.endpoint, 9, discard)
            host.endpoint.listen(19)
            host.dispatcher.serve(host.endpoint, 19, source)

        host.loop.call(listen)
        stop = threading.Event()
        figures: list[Figure] = []

        def drive() -> None:
            try:
                peer = _peer(config.name, "send", config.stack_ip, "9", str(size))
                figures.append(_finish(peer, "kernel -> tcpstack (TUN)", size))
                peer = _peer(config.name, "recv", config.stack_ip, "19", str(size))
                figures.append(_finish(peer, "tcpstack -> kernel (TUN)", size))
            finally:
                stop.set()
                host.loop.stop()

        # The loop runs in this (main) thread so that --profile sees it.
        driver = threading.Thread(target=drive, daemon=True)
        driver.start()
        if profiler is not None:
            profiler.enable()
        host.loop.run(until=stop.is_set)
        if profiler is not None:
            profiler.disable()
        driver.join()
        if profiler is not None and profile is not None:
            profiler.dump_stats(profile)
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        if len(figures) != 2:
            raise RuntimeError("the tcpstack transfers did not complete")
        return figures
    finally:
        host.close()


def veth_figure(size: int) -> Figure:
    pid = os.getpid()
    left, right = f"tsk-vl-{pid}", f"tsk-vr-{pid}"
    try:
        ip("netns", "add", left)
        ip("netns", "add", right)
        # Created inside the left namespace, the peer end moved straight to the right:
        # the root namespace never holds either end.
        ip("-n", left, "link", "add", "vl0", "type", "veth", "peer", "name", "vr0", "netns", right)
        ip("-n", left, "addr", "add", "10.78.0.1/24", "dev", "vl0")
        ip("-n", right, "addr", "add", "10.78.0.2/24", "dev", "vr0")
        for ns, dev in ((left, "vl0"), (right, "vr0")):
            ip("-n", ns, "link", "set", "dev", "lo", "up")
            ip("-n", ns, "link", "set", "dev", dev, "up")
        server = _peer(right, "listen-recv", "10.78.0.2", "5000", str(size))
        assert server.stdout is not None
        server.stdout.readline()  # "ready"
        client = _peer(left, "send", "10.78.0.2", "5000", str(size))
        _finish(client, "sender", size)
        return _finish(server, "kernel -> kernel (veth)", size)
    finally:
        delete_netns(left)
        delete_netns(right)


def parse_size(text: str) -> int:
    units = {"K": 10**3, "M": 10**6, "G": 10**9}
    if text[-1:].upper() in units:
        return int(float(text[:-1]) * units[text[-1].upper()])
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tcpstack.net.bench", description=__doc__)
    parser.add_argument("--bytes", type=parse_size, default=50_000_000, help="per transfer")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", metavar="FILE", help="cProfile the tcpstack loop")
    parser.add_argument("--no-veth", action="store_true")
    parser.add_argument(
        "--offload", action="store_true", help="also measure with TSO/checksum offload on the TUN"
    )
    parser.add_argument(
        "--pytcp",
        action="store_true",
        help="compare with PyTCP over a TAP, both ways (tcpstack.net.bench_pytcp)",
    )
    parser.add_argument(
        "--pytcp-python",
        default=sys.executable,
        metavar="PATH",
        help="an interpreter that has PyTCP installed (default: this one)",
    )
    parser.add_argument(
        "--pytcp-bytes", type=parse_size, default=5_000_000, help="per PyTCP transfer"
    )
    args = parser.parse_args(argv)
    print(f"{args.bytes / 1e6:.0f} MB per transfer, kernel {os.uname().release}")
    if args.pytcp:
        # Imported here: bench_pytcp builds on this module.
        from tcpstack.net.bench_pytcp import report, run_comparison

        comparison = run_comparison(
            args.bytes, args.pytcp_bytes, args.repeat, args.pytcp_python, veth=not args.no_veth
        )
        print(report(comparison))
        return 0
    for _ in range(args.repeat):
        figures = tcpstack_figures(args.bytes, args.profile)
        if args.offload:
            offloaded = tcpstack_figures(args.bytes, None, offload=True)
            for figure in offloaded:
                label = figure.label.replace("(TUN)", "(TUN, TSO)")
                figures.append(Figure(label, figure.size, figure.seconds))
        if not args.no_veth:
            figures.append(veth_figure(args.bytes))
        for figure in figures:
            print(
                f"  {figure.label:<28} {figure.mb_per_s:9.2f} MB/s  "
                f"({figure.size / 1e6:g} MB in {figure.seconds:.2f} s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
