"""tcpstack beside PyTCP, another TCP/IP stack in pure Python, in one run (issue 9, row 6).

    python -m tcpstack.net.bench_pytcp --pytcp-python /tmp/pytcp-venv/bin/python
    python -m tcpstack.net.bench_pytcp --pytcp-python PY --bytes 200M --pytcp-bytes 20M -r 5
    python -m tcpstack.net.bench --pytcp --pytcp-python PY --repeat 5   # the same, 50M/5M

Each repetition measures, one after the other on the same machine:

* kernel -> tcpstack and tcpstack -> kernel over the TUN device (tcpstack.net.bench);
* kernel -> kernel over a veth pair between two namespaces (the ceiling of the client);
* kernel -> PyTCP and PyTCP -> kernel: PyTCP runs as a process of its own, attached to
  a TAP device in a namespace created (and removed) here, with a discard service and a
  source service written here against its socket API (the 2.7.6 wheel ships no
  services: its echo/discard examples live in the project's repository, not in the
  package). The same kernel client program talks to all of them.

The figures are medians over the repetitions, and the comparison is the ratio of the
medians, direction by direction. Every figure is goodput as the kernel's process sees
it: bytes divided by the time from its connect() to the end of the stream (for a
send, until the peer's FIN, which the discard service sends only after reading
everything).

PyTCP (https://pypi.org/project/PyTCP/, GPL-3.0) is not a dependency of tcpstack and is
never imported by it: it runs in whatever interpreter --pytcp-python names. Version
2.7.6 is the newest that installs on Python 3.11:

    python3 -m venv /tmp/pytcp-venv && /tmp/pytcp-venv/bin/pip install pytcp==2.7.6

PyTCP is much slower than tcpstack, by design rather than by this setup: its receive
window is at most 65,535 bytes (it offers window scale 0) and it acknowledges received
data from a 100 ms delayed-ACK timer, which caps kernel -> PyTCP near 0.6 MB/s. So it
gets its own, smaller transfer size (--pytcp-bytes). A PyTCP repetition that fails
(a stall, a short count) is left out of the medians and listed as a note. Root is
needed (namespaces, TUN/TAP). Without PyTCP its rows are skipped with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field

from tcpstack.net.bench import KERNEL_PEER, Figure, tcpstack_figures, veth_figure
from tcpstack.net.netns import NetnsError, delete_netns, entered, exec_argv, ip, netns_exists

__all__ = [
    "KERNEL_TO_PYTCP",
    "KERNEL_TO_TCPSTACK",
    "PYTCP_TO_KERNEL",
    "TCPSTACK_TO_KERNEL",
    "VETH",
    "Comparison",
    "build_parser",
    "main",
    "pytcp_figures",
    "pytcp_missing",
    "run_comparison",
]

KERNEL_TO_TCPSTACK = "kernel -> tcpstack (TUN)"
TCPSTACK_TO_KERNEL = "tcpstack -> kernel (TUN)"
VETH = "kernel -> kernel (veth)"
KERNEL_TO_PYTCP = "kernel -> PyTCP (TAP)"
PYTCP_TO_KERNEL = "PyTCP -> kernel (TAP)"
# (tcpstack figure, PyTCP figure) pairs that move data the same way.
RATIOS = ((KERNEL_TO_TCPSTACK, KERNEL_TO_PYTCP), (TCPSTACK_TO_KERNEL, PYTCP_TO_KERNEL))
GOAL_RATIO = 5.0  # issue 9, row 6: TUN goodput >= 5x PyTCP's

# PyTCP's side of the namespace: the kernel owns .1 on the TAP, PyTCP answers for .2
# with a locally administered MAC address (the 0x02 bit), like tcpstack behind its TUN.
KERNEL_IP = "10.80.0.1"
PYTCP_IP = "10.80.0.2"
PREFIX = 24
PYTCP_MAC = "02:00:00:80:00:02"
DISCARD_PORT = 9  # RFC 863
SOURCE_PORT = 19  # the chargen port (RFC 864), here sending zeros of a given length
PEER_TIMEOUT_S = 900.0
STARTUP_TIMEOUT_S = 60.0

# The program PyTCP's interpreter runs (argv: TAP, address/prefix, MAC, discard port,
# source port, source size). It serves one connection on each port, in turn.
# * Discard: read to the end of the stream, then close, so that the kernel's sender sees
#   the FIN only after every byte was taken. The end is an empty read in CLOSE_WAIT (or
#   CLOSED): PyTCP 2.7.6's recv() can also return b"" while ESTABLISHED, when data lands
#   between its semaphore and its buffer lock; taking that for the end closed the
#   connection early, under load, in a first run.
# * Source: send `size` zero bytes, then close.
# PyTCP logs under `__debug__` only, so the interpreter runs with -O, and its log
# channels are emptied too. IPv6 is turned off after TcpIpStack() (which turns it on
# when no IPv6 address is given) so that no neighbour discovery runs. PyTCP transmits
# from its own threads and close() does not wait for them, so the program stays until
# its standard input closes (the benchmark kills it then anyway).
PYTCP_PEER = r"""
import os, sys
from pytcp import TcpIpStack, config
from pytcp.lib import socket as pytcp_socket
config.LOG_CHANEL = set()
tap, address, mac = sys.argv[1], sys.argv[2], sys.argv[3]
discard_port, source_port, size = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
stack = TcpIpStack(interface=tap, ip4_address=address, mac_address=mac)
config.IP6_SUPPORT = False
stack.start()
host = address.split("/")[0]
listeners = {}
for port in (discard_port, source_port):
    listener = pytcp_socket.socket(pytcp_socket.AF_INET4, pytcp_socket.SOCK_STREAM)
    listener.bind((host, port))
    listener.listen()
    listeners[port] = listener
print("ready", flush=True)
connection, _ = listeners[discard_port].accept()
received = 0
while True:
    data = connection.recv()
    if data:
        received += len(data)
    elif connection.state.name in ("CLOSE_WAIT", "CLOSED"):
        break
connection.close()
print("discarded", received, flush=True)
connection, _ = listeners[source_port].accept()
chunk = bytes(1 << 16)
left = size
while left:
    left -= connection.send(chunk[: min(left, len(chunk))])
connection.close()
print("sourced", size, flush=True)
sys.stdin.read()
os._exit(0)
"""


def pytcp_missing(python: str) -> str | None:
    """Why `python` cannot run PyTCP here (None when it can)."""
    try:
        done = subprocess.run(
            [python, "-c", "import importlib.metadata as m, pytcp; print(m.version('PyTCP'))"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"cannot run {python}: {error}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return (
            f"{python} cannot import pytcp ({last}); install it into a scratch venv: "
            "python3 -m venv /tmp/pytcp-venv && /tmp/pytcp-venv/bin/pip install pytcp==2.7.6"
        )
    if os.geteuid() != 0:
        return "the comparison needs root (network namespaces and a TAP device)"
    return None


def _stop(process: subprocess.Popen[str]) -> str:
    """Kill `process` if it still runs; return the tail of its standard error."""
    if process.poll() is None:
        process.kill()
    _, err = process.communicate()
    return (err or "").strip()[-500:]


def _kernel_figure(netns: str, label: str, mode: str, port: int, size: int) -> Figure:
    """Run the kernel's client in `netns` against PyTCP; killed if it outlives the timeout."""
    argv = [sys.executable, "-c", KERNEL_PEER, mode, PYTCP_IP, str(port), str(size)]
    client = subprocess.Popen(
        exec_argv(netns, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = client.communicate(timeout=PEER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _stop(client)
        raise RuntimeError(f"{label}: no end of stream within {PEER_TIMEOUT_S:.0f} s") from None
    except BaseException:  # an interrupt: the client must not outlive the namespace
        _stop(client)
        raise
    if client.returncode != 0:
        raise RuntimeError(f"{label}: kernel client failed: {err.strip()[-500:]}")
    result = json.loads(out.strip().splitlines()[-1])
    if result["bytes"] != size:
        raise RuntimeError(f"{label}: moved {result['bytes']} of {size} bytes")
    return Figure(label, size, float(result["seconds"]))


def _expect_line(
    server: subprocess.Popen[str], expected: str, what: str, timeout: float | None = None
) -> None:
    """Read PyTCP's next line (within `timeout` seconds: only for a first line, since
    select() does not see what the reader has buffered already)."""
    assert server.stdout is not None
    if timeout is not None and not select.select([server.stdout], [], [], timeout)[0]:
        err = _stop(server)
        raise RuntimeError(f"{what}: no {expected!r} from PyTCP in {timeout:g} s; {err}")
    line = server.stdout.readline().strip()
    if line != expected:
        err = _stop(server)
        raise RuntimeError(f"{what}: PyTCP said {line!r}, expected {expected!r}; {err}")


def pytcp_figures(size: int, python: str) -> list[Figure]:
    """kernel -> PyTCP, then PyTCP -> kernel, `size` bytes each, over a TAP device.

    The namespace, the TAP device in it and the PyTCP process exist only for the call:
    they are removed on every way out, including errors and interrupts.
    """
    pid = os.getpid()
    netns, tap = f"tsk-pyt-{pid}", f"tskt{pid}"[:15]
    if netns_exists(netns):  # not ours to reuse, nor to delete
        raise RuntimeError(f"network namespace {netns} already exists")
    server: subprocess.Popen[str] | None = None
    try:
        ip("netns", "add", netns)
        ip("-n", netns, "link", "set", "dev", "lo", "up")
        # A persistent TAP created inside the namespace: PyTCP attaches to it by name
        # (TUNSETIFF), the root namespace never sees it.
        ip("-n", netns, "tuntap", "add", "dev", tap, "mode", "tap")
        # No router solicitations or DAD probes from the kernel's side (PyTCP runs IPv4
        # only); a kernel without IPv6 has no such file, and nothing to turn off.
        knob = f"/proc/sys/net/ipv6/conf/{tap}/disable_ipv6"
        with entered(netns), suppress(OSError), open(knob, "w") as handle:
            handle.write("1")
        ip("-n", netns, "addr", "add", f"{KERNEL_IP}/{PREFIX}", "dev", tap)
        ip("-n", netns, "link", "set", "dev", tap, "up")
        argv = [python, "-O", "-c", PYTCP_PEER, tap, f"{PYTCP_IP}/{PREFIX}", PYTCP_MAC]
        argv += [str(DISCARD_PORT), str(SOURCE_PORT), str(size)]
        server = subprocess.Popen(
            exec_argv(netns, argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _expect_line(server, "ready", "start", STARTUP_TIMEOUT_S)
        inbound = _kernel_figure(netns, KERNEL_TO_PYTCP, "send", DISCARD_PORT, size)
        # Checked, not assumed: the kernel's sender only knows that its data was ACKed
        # and that a FIN came back; PyTCP ACKs (and drops) data after its own close.
        _expect_line(server, f"discarded {size}", "discard service")
        outbound = _kernel_figure(netns, PYTCP_TO_KERNEL, "recv", SOURCE_PORT, size)
        _expect_line(server, f"sourced {size}", "source service")
        return [inbound, outbound]
    finally:
        if server is not None:
            _stop(server)
        try:
            ip("-n", netns, "tuntap", "del", "dev", tap, "mode", "tap", check=False)
        finally:
            delete_netns(netns)


@dataclass
class Comparison:
    """Samples (MB/s) per figure label, over the repetitions; sizes in bytes."""

    size: int
    pytcp_size: int
    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        self.samples.setdefault(figure.label, []).append(figure.mb_per_s)

    def median(self, label: str) -> float | None:
        values = self.samples.get(label)
        return statistics.median(values) if values else None

    def ratios(self) -> list[tuple[str, str, float]]:
        """(tcpstack label, PyTCP label, median / median) for the directions measured."""
        found: list[tuple[str, str, float]] = []
        for ours, theirs in RATIOS:
            mine, other = self.median(ours), self.median(theirs)
            if mine is not None and other is not None and other > 0:
                found.append((ours, theirs, mine / other))
        return found

    def as_json(self) -> dict[str, object]:
        return {
            "bytes": self.size,
            "pytcp_bytes": self.pytcp_size,
            "mb_per_s": {label: self.median(label) for label in self.samples},
            "samples": self.samples,
            "ratios": {f"{ours} / {theirs}": ratio for ours, theirs, ratio in self.ratios()},
            "goal_ratio": GOAL_RATIO,
            "notes": self.notes,
        }


def _print_now(text: str) -> None:
    print(text, flush=True)  # progress of a run of minutes, also when piped to a file


def run_comparison(
    size: int,
    pytcp_size: int,
    repetitions: int,
    python: str,
    *,
    veth: bool = True,
    show: Callable[[str], None] | None = None,
) -> Comparison:
    """Measure every path `repetitions` times, interleaved, and return the samples."""
    if show is None:
        show = _print_now
    comparison = Comparison(size, pytcp_size)
    skip = pytcp_missing(python)
    if skip is not None:
        comparison.notes.append(f"PyTCP skipped: {skip}")
        show(f"PyTCP skipped: {skip}")
    for repetition in range(1, repetitions + 1):
        figures = tcpstack_figures(size, None)
        if veth:
            figures.append(veth_figure(size))
        if skip is None:
            try:
                figures += pytcp_figures(pytcp_size, python)
            except (RuntimeError, NetnsError, OSError) as error:
                comparison.notes.append(f"repetition {repetition}: PyTCP failed: {error}")
                show(f"  PyTCP failed: {error}")
        for figure in figures:
            comparison.add(figure)
            show(
                f"  [{repetition}/{repetitions}] {figure.label:<26} {figure.mb_per_s:9.2f} MB/s"
                f"  ({figure.size / 1e6:g} MB in {figure.seconds:.2f} s)"
            )
    return comparison


def report(comparison: Comparison) -> str:
    lines = [
        f"medians of {max(map(len, comparison.samples.values()), default=0)} repetition(s); "
        f"tcpstack and veth {comparison.size / 1e6:g} MB, "
        f"PyTCP {comparison.pytcp_size / 1e6:g} MB per transfer",
    ]
    for label, values in comparison.samples.items():
        median = statistics.median(values)
        spread = f"{min(values):.2f}..{max(values):.2f}"
        lines.append(f"  {label:<26} {median:9.2f} MB/s  (range {spread}, n={len(values)})")
    for ours, theirs, ratio in comparison.ratios():
        verdict = "meets" if ratio >= GOAL_RATIO else "misses"
        lines.append(f"  {ours} / {theirs}: {ratio:.1f}x ({verdict} the {GOAL_RATIO:g}x goal)")
    if not comparison.ratios():
        lines.append("  no ratio: PyTCP was not measured")
    lines.extend(f"  note: {note}" for note in comparison.notes)
    return "\n".join(lines)


def _size(text: str) -> int:
    from tcpstack.benchmarks.runner import parse_size

    return parse_size(text)


def _repetitions(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tcpstack.net.bench_pytcp",
        description="Goodput of tcpstack over a TUN, the kernel over veth and PyTCP over a "
        "TAP, in one run (root needed).",
    )
    parser.add_argument(
        "--pytcp-python",
        default=os.environ.get("TCPSTACK_PYTCP_PYTHON", sys.executable),
        metavar="PATH",
        help="an interpreter with PyTCP installed (default: $TCPSTACK_PYTCP_PYTHON, else this one)",
    )
    parser.add_argument(
        "--bytes", type=_size, default=200_000_000, metavar="SIZE", help="default: 200M"
    )
    parser.add_argument(
        "--pytcp-bytes", type=_size, default=20_000_000, metavar="SIZE", help="default: 20M"
    )
    parser.add_argument("-r", "--repetitions", type=_repetitions, default=5, help="default: 5")
    parser.add_argument("--no-veth", action="store_true", help="skip kernel -> kernel")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(f"kernel {os.uname().release}, PyTCP from {args.pytcp_python}")
    comparison = run_comparison(
        args.bytes, args.pytcp_bytes, args.repetitions, args.pytcp_python, veth=not args.no_veth
    )
    print(report(comparison))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(comparison.as_json(), handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
