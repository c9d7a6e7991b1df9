"""The real-network event loop: one packet device, some Endpoints, the only real clock.

One iteration: wait (selectors) on the device and a wake-up pipe, with the timeout the
Endpoints' `next_timer()` asks for; read a batch of packets -> `IpLayer.classify` ->
`Endpoint.receive_bytes`; `handle_timer` for every Endpoint whose deadline passed; hand
the connections that moved to the handlers (applications); then `datagrams_to_send` ->
IP encode -> write. The clock is `time.monotonic_ns() // 1000` (integer µs), read once
per iteration and passed to the core as `now`.

The loop runs in the foreground (`run()`, `run_once()`) or in a background thread
(`start()` / `stop()`, or `with loop:`). Everything that touches the Endpoints holds
`loop.lock`, so other threads use the stack through `call(fn)` and `wait_until(...)`:
with those two plus `now()` and `endpoint_for()` a NetLoop is a `tcpstack.socket`
`Driver` (blocking sockets over the real network).

With a TUN opened in offload mode (TunDevice.open(offload=True)) the kernel hands over
TSO segments of up to 64 KB, and runs of full-sized data segments of one connection
leave as one TSO packet (what a virtio NIC does); the core, the filters and the trace
still see every segment as the core made it.

Hooks for tests: `egress_filter(datagram, now) -> bool` and `ingress_filter(packet,
now) -> bool` see every outgoing datagram / arriving packet and drop it by returning
False (counted as "tx.filtered" / "rx.filtered"); `transmit()` sends a datagram
later, e.g. one a filter held back; `deliver_later(packet, at)` hands an arriving packet
to the stack at loop time `at` (a filter that drops a packet and re-delivers it later
delays it: netem's delay and reordering, emulated at the TUN).
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import os
import selectors
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import TypeVar

from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.segment import Datagram, Flag, Segment
from tcpstack.core.trace import Tracer, TraceRecord
from tcpstack.net.packet import (
    IPV4_HEADER_LEN,
    IPV6_HEADER_LEN,
    IcmpError,
    IcmpReply,
    IpLayer,
    TcpPayload,
    encode_datagram,
)
from tcpstack.net.tun import PacketDevice, TunDevice

__all__ = ["EgressFilter", "Handler", "IngressFilter", "NetLoop", "monotonic_us"]

log = logging.getLogger("tcpstack.net")

T = TypeVar("T")

Handler = Callable[[list[Connection], int], None]
"""An application: called (in the loop, with the lock held) with the connections that
moved since the last call and `now`. It reads events, calls send/receive/close."""

EgressFilter = Callable[[Datagram, int], bool]
IngressFilter = Callable[[bytes, int], bool]

ICMP_TRACE_KIND = "icmp"


_PLAIN_DATA = (Flag.ACK, Flag.ACK | Flag.PSH)
# Payload per TSO packet: below 64 KB with room for the IPv6 and largest TCP headers.
MAX_GSO_PAYLOAD = 65535 - 40 - 60


def _extends(run: list[Datagram], datagram: Datagram, payload_total: int) -> bool:
    """May `datagram` join `run` in one TSO packet? Contiguous data of the same flow,
    same ACK, window and options, every earlier segment full (gso_size = the first's)."""
    head = run[0].segment
    last = run[-1].segment
    seg = datagram.segment
    size = len(seg.payload)
    gso_size = len(head.payload)
    return (
        0 < size <= gso_size
        and len(last.payload) == gso_size
        and seg.flags in _PLAIN_DATA
        and last.flags in _PLAIN_DATA
        and seg.seq == (last.seq + gso_size) & 0xFFFFFFFF
        and seg.src_port == head.src_port
        and seg.dst_port == head.dst_port
        and datagram.dst == run[0].dst
        and datagram.src == run[0].src
        and seg.ack == head.ack
        and seg.window == head.window
        and seg.options == head.options
        and payload_total + size <= MAX_GSO_PAYLOAD
    )


def monotonic_us() -> int:
    """The loop's clock: CLOCK_MONOTONIC in integer microseconds."""
    return time.monotonic_ns() // 1000


class LoopStopped(RuntimeError):
    """wait_until() on a loop whose thread has ended (stopped, or failed)."""


class NetLoop:
    """Runs Endpoints over a packet device (a TUN), in the foreground or a thread."""

    def __init__(
        self,
        device: PacketDevice,
        endpoints: Endpoint | Iterable[Endpoint],
        *,
        clock: Callable[[], int] = monotonic_us,
        tracer: Tracer | None = None,
        batch: int = 64,
        answer_ping: bool = True,
    ) -> None:
        eps = [endpoints] if isinstance(endpoints, Endpoint) else list(endpoints)
        if not eps:
            raise ValueError("NetLoop needs at least one Endpoint")
        self.device = device
        self.endpoints: dict[str, Endpoint] = {ep.address: ep for ep in eps}
        self._endpoint_list = eps
        self.clock = clock
        self.tracer = tracer
        self.batch = batch
        self.ip = IpLayer(set(self.endpoints), answer_ping=answer_ping)
        # Loop-level counters; IP-level ones are in self.ip.stats (see `all_stats`).
        self.stats: Counter[str] = Counter()
        self.icmp_errors: deque[IcmpError] = deque(maxlen=1024)
        self.handlers: list[Handler] = []
        self.egress_filter: EgressFilter | None = None
        self.ingress_filter: IngressFilter | None = None
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(device.fileno(), selectors.EVENT_READ, "device")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._failure: BaseException | None = None
        self._closed = False
        # Packets to deliver later: a heap of (due µs, serial, packet).
        self._later: list[tuple[int, int, bytes]] = []
        self._later_serial = itertools.count()

    # ------------------------------------------------------------------ Driver API

    def now(self) -> int:
        return self.clock()

    def endpoint_for(self, address: str | None) -> Endpoint:
        """The Endpoint for `address` (None: the first one given)."""
        if address is None:
            return self._endpoint_list[0]
        endpoint = self.endpoints.get(address)
        if endpoint is None:
            raise OSError(
                errno.EADDRNOTAVAIL,
                f"{os.strerror(errno.EADDRNOTAVAIL)}: no endpoint with address {address}",
            )
        return endpoint

    def call(self, fn: Callable[[int], T]) -> T:
        """Run fn(now) with the lock held, then send what it made the stack want."""
        with self.lock:
            self._raise_failure()
            now = self.clock()
            result = fn(now)
            self._service(now)
        self._wake()
        return result

    def wait_until(self, predicate: Callable[[], bool], timeout: int | None) -> bool:
        """Until predicate() holds (True) or `timeout` µs passed (False).

        With the loop in a background thread this waits on a condition the loop
        notifies after each batch; otherwise it runs the loop itself meanwhile.
        """
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must not be negative, got {timeout}")
        deadline = None if timeout is None else self.clock() + timeout
        thread = self._thread
        if thread is not None and threading.current_thread() is not thread:
            with self._changed:
                while True:
                    if predicate():
                        return True
                    self._raise_failure()
                    if not thread.is_alive():
                        raise LoopStopped("the network loop is not running")
                    wait = 1.0
                    if deadline is not None:
                        remaining = deadline - self.clock()
                        if remaining <= 0:
                            return False
                        wait = min(wait, remaining / 1e6)
                    self._changed.wait(wait)
        while True:
            with self.lock:
                if predicate():
                    return True
            remaining_us: int | None = None
            if deadline is not None:
                remaining_us = deadline - self.clock()
                if remaining_us <= 0:
                    return False
            self.run_once(max_wait=remaining_us)

    # ------------------------------------------------------------------ running

    def run_once(self, max_wait: int | None = None) -> None:
        """One iteration: wait for a packet, a wake-up or the next timer, then work."""
        with self.lock:
            timeout = self._select_timeout(max_wait)
        ready = self._selector.select(timeout)
        with self.lock:
            now = self.clock()
            for key, _ in ready:
                if key.data == "wake":
                    self._drain_wake()
                else:
                    self._receive_batch(now)
            self._deliver_due(now)
            self._run_timers(now)
            self._service(now)

    def deliver_later(self, packet: bytes, at: int) -> None:
        """Hand `packet` (as read from the device) to the stack at loop time `at`,
        bypassing ingress_filter (counted as "rx.delayed")."""
        with self.lock:
            heapq.heappush(self._later, (at, next(self._later_serial), packet))
            self.stats["rx.delayed"] += 1
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._wake()

    def _deliver_due(self, now: int) -> None:
        later = self._later
        while later and later[0][0] <= now:
            _, _, packet = heapq.heappop(later)
            self._deliver(packet, now)

    def run(self, until: Callable[[], bool] | None = None, *, poll: int = 100_000) -> None:
        """Run in the foreground until stop() (from another thread or a handler) or
        until `until()` holds (checked at least every `poll` µs, lock held)."""
        self._stopping = False
        while not self._stopping:
            self.run_once(max_wait=None if until is None else poll)
            if until is not None:
                with self.lock:
                    if until():
                        return

    def start(self) -> NetLoop:
        """Run the loop in a daemon thread; use call()/wait_until() from others."""
        if self._thread is not None:
            raise RuntimeError("loop already started")
        self._stopping = False
        self._thread = threading.Thread(target=self._thread_main, name="tcpstack-net", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop thread (or a foreground run()) and wait for it."""
        self._stopping = True
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
            self._thread = None

    def close(self) -> None:
        """Stop and release the loop's own descriptors (not the device: its owner's)."""
        self.stop()
        if not self._closed:
            self._closed = True
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def __enter__(self) -> NetLoop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """True while the loop runs in its background thread (start()ed, not stopped)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def failure(self) -> BaseException | None:
        """The exception that ended the loop thread, if any."""
        return self._failure

    def _thread_main(self) -> None:
        try:
            while not self._stopping:
                self.run_once()
        except BaseException as error:
            log.exception("tcpstack network loop failed")
            self._failure = error
        finally:
            with self._changed:
                self._changed.notify_all()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise LoopStopped("the network loop failed") from self._failure

    # ------------------------------------------------------------------ the work

    def _select_timeout(self, max_wait: int | None) -> float | None:
        """Seconds until the earliest timer (or max_wait µs), None for no limit."""
        wait = max_wait
        now = self.clock()
        if self._later and (wait is None or self._later[0][0] - now < wait):
            wait = self._later[0][0] - now
        for endpoint in self._endpoint_list:
            deadline = endpoint.next_timer()
            if deadline is not None and (wait is None or deadline - now < wait):
                wait = deadline - now
        if wait is None:
            return None
        return max(wait, 0) / 1e6

    def _wake(self) -> None:
        # A full pipe means a wake-up is already pending; a closed one, the loop is gone.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _receive_batch(self, now: int) -> None:
        device = self.device
        classify = self.ip.classify
        endpoints = self.endpoints
        for _ in range(self.batch):
            packet = device.read()
            if packet is None:
                return
            self.stats["rx.packets"] += 1
            ingress = self.ingress_filter
            if ingress is not None and not ingress(packet, now):
                self.stats["rx.filtered"] += 1
                continue
            result = classify(packet)
            if type(result) is TcpPayload:
                endpoints[result.dst].receive_bytes(result.src, result.dst, result.data, now=now)
            elif isinstance(result, IcmpReply):
                self.stats["tx.icmp"] += 1
                device.write(result.packet)
            elif isinstance(result, IcmpError):
                self._icmp_error(result, now)

    def _deliver(self, packet: bytes, now: int) -> None:
        """One packet to the stack (no ingress filter): TCP, ICMP echo or error."""
        result = self.ip.classify(packet)
        if type(result) is TcpPayload:
            self.endpoints[result.dst].receive_bytes(result.src, result.dst, result.data, now=now)
        elif isinstance(result, IcmpReply):
            self.stats["tx.icmp"] += 1
            self.device.write(result.packet)
        elif isinstance(result, IcmpError):
            self._icmp_error(result, now)

    def _icmp_error(self, error: IcmpError, now: int) -> None:
        """Hand an ICMP error about one of our segments to its connection.

        The Endpoint finds the connection by the quoted 4-tuple and the connection
        checks the quoted sequence number (RFC 5927) and acts: a soft error is recorded,
        a hard one ends a connection in SYN_SENT, "fragmentation needed" / "packet too
        big" lowers the MSS (see tcpstack.core.icmp). The verdict is counted here
        ("icmp.delivered.<verdict>") and in the Endpoint's stats ("icmp.<verdict>").
        """
        self.icmp_errors.append(error)
        endpoint = self.endpoints.get(error.local_ip)
        conn = endpoint.connections.get(error.four_tuple) if endpoint is not None else None
        state = conn.state.value if conn is not None else "no connection"
        self.stats["icmp.errors"] += 1
        self.stats["icmp.errors.matched" if conn is not None else "icmp.errors.unmatched"] += 1
        report = error.report()
        if endpoint is None or report is None:
            verdict = "not_delivered"
        else:
            verdict = endpoint.receive_icmp_error(report, now=now)
        self.stats[f"icmp.delivered.{verdict}"] += 1
        label = f"{error.local_ip}:{error.local_port}>{error.remote_ip}:{error.remote_port}"
        if self.tracer is not None:
            self.tracer(
                TraceRecord(
                    now,
                    ICMP_TRACE_KIND,
                    label,
                    {
                        "icmp": error.kind,
                        "code": error.code,
                        "code_name": error.code_name,
                        "reporter": error.reporter,
                        "seq": error.seq,
                        "mtu": error.mtu,
                        "state": state,
                        "delivered": verdict != "not_delivered",
                        "verdict": verdict,
                    },
                )
            )
        log.info(
            "ICMP %s %s from %s about %s (%s): %s",
            error.kind,
            error.code_name,
            error.reporter,
            label,
            state,
            verdict,
        )

    def _run_timers(self, now: int) -> None:
        for endpoint in self._endpoint_list:
            deadline = endpoint.next_timer()
            if deadline is not None and deadline <= now:
                endpoint.handle_timer(now=now)

    def _service(self, now: int) -> None:
        """Hand moved connections to the handlers, send the output, wake waiters."""
        for _ in range(8):
            woken: list[Connection] = []
            for endpoint in self._endpoint_list:
                woken.extend(endpoint.woken_connections())
            if not woken or not self.handlers:
                break
            for handler in self.handlers:
                handler(woken, now)
        self._flush(now)
        self._changed.notify_all()

    def _flush(self, now: int) -> None:
        device = self.device
        gso = isinstance(device, TunDevice) and device.offload
        for endpoint in self._endpoint_list:
            datagrams = endpoint.datagrams_to_send(now=now)
            if gso and len(datagrams) > 1:
                self._transmit_coalesced(datagrams, now)
                continue
            for datagram in datagrams:
                self.transmit(datagram, now)

    def _transmit_coalesced(self, datagrams: list[Datagram], now: int) -> None:
        """Offload mode: runs of full-sized data segments of one connection go out as
        one TSO packet (the kernel sees what a virtio NIC would hand it). The filters
        and the trace still see every segment."""
        egress = self.egress_filter
        run: list[Datagram] = []
        payload_total = 0
        for datagram in datagrams:
            if egress is not None and not egress(datagram, now):
                self.stats["tx.filtered"] += 1
                continue
            if run and _extends(run, datagram, payload_total):
                run.append(datagram)
                payload_total += len(datagram.segment.payload)
                continue
            self._write_run(run)
            run = [datagram]
            payload_total = len(datagram.segment.payload)
        self._write_run(run)

    def _write_run(self, run: list[Datagram]) -> None:
        if not run:
            return
        self.stats["tx.packets"] += len(run)
        if len(run) == 1:
            self.device.write(encode_datagram(run[0]))
            return
        first = run[0]
        head = first.segment
        flags = 0
        for datagram in run:
            flags |= datagram.segment.flags
        merged = Segment(
            head.src_port,
            head.dst_port,
            head.seq,
            head.ack,
            flags,
            head.window,
            head.urgent,
            head.options,
            b"".join(d.segment.payload for d in run),
        )
        packet = encode_datagram(Datagram(first.src, first.dst, merged))
        ipv6 = ":" in first.src
        ip_len = IPV6_HEADER_LEN if ipv6 else IPV4_HEADER_LEN
        header_len = ip_len + ((packet[ip_len + 12] >> 4) << 2)
        device = self.device
        assert isinstance(device, TunDevice)
        device.write_gso(packet, gso_size=len(head.payload), header_len=header_len, ipv6=ipv6)
        self.stats["tx.gso_packets"] += 1

    def transmit(self, datagram: Datagram, now: int | None = None) -> None:
        """Encode and write one datagram (through egress_filter unless now is None)."""
        egress = self.egress_filter
        if egress is not None and now is not None and not egress(datagram, now):
            self.stats["tx.filtered"] += 1
            return
        self.stats["tx.packets"] += 1
        self.device.write(encode_datagram(datagram))

    def all_stats(self) -> Counter[str]:
        """Loop, IP and every Endpoint's counters in one Counter (Endpoint keys
        prefixed with 'tcp.')."""
        with self.lock:
            merged: Counter[str] = Counter()
            merged.update(self.stats)
            merged.update(self.ip.stats)
            for endpoint in self._endpoint_list:
                merged.update({f"tcp.{k}": v for k, v in endpoint.stats.items()})
            return merged
