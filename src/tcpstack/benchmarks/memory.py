"""Benchmark 5: memory per idle ESTABLISHED connection and per TIME_WAIT entry.

A listener Endpoint is driven directly (see `_idle.py`): N handshakes from N client
ports, every connection accept()ed and its Established event drained; nothing else
happens on them. Measured:

* tracemalloc: the traced memory after minus before, divided by N (the Python heap the
  connections hold, Endpoint tables included, plus the application's list of them:
  8 bytes each). tracemalloc also names the lines that allocated it (top 10 below);
* RSS: the resident set of a fresh child process after minus before, divided by N (what
  the operating system sees: tracemalloc's figure plus allocator slack);
* `sys.getsizeof` of one connection, attribute by attribute: the objects reachable from
  that attribute and from no other connection (shared ones, such as the Config or the
  Endpoint, are left out).

Then every connection is closed actively (the server sends FIN, the client answers
FIN,ACK), so each ends as the Endpoint's compact TIME_WAIT entry and the application
lets go of it; traced memory per entry is measured the same way. Past `chunk`
connections this is done in chunks (establish, close, next chunk), so a million entries
never need a million live connections. The RSS figure for TIME_WAIT is the growth after
a first chunk (at most a quarter of the entries) divided by the entries added since:
the first chunk's freed connections leave memory behind that later chunks reuse.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType
from typing import Any

from tcpstack.benchmarks._idle import IdleServer
from tcpstack.benchmarks._report import Table, fmt
from tcpstack.core.endpoint import Endpoint

__all__ = [
    "ESTABLISHED_GOAL",
    "TIME_WAIT_GOAL",
    "MemoryResult",
    "connection_breakdown",
    "measure_rss",
    "run_memory",
]

ESTABLISHED_GOAL = 2048  # bytes per idle ESTABLISHED connection
TIME_WAIT_GOAL = 200  # bytes per TIME_WAIT entry
DEFAULT_CHUNK = 100_000
_TOP = 10


def _rss_bytes() -> int | None:
    """The resident set size of this process, or None where /proc is missing."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


# ------------------------------------------------------------------ getsizeof breakdown

_OPAQUE = (type, ModuleType, FunctionType, BuiltinFunctionType, Endpoint)


def _reachable(root: object, stop: set[int]) -> dict[int, object]:
    """Objects reachable from root (root included), not entering `stop` ids, types,
    modules, functions, Endpoints or bound methods (a bound method counts, its object
    does not)."""
    seen: dict[int, object] = {}
    pending = [root]
    while pending:
        obj = pending.pop()
        key = id(obj)
        if key in seen or key in stop or isinstance(obj, _OPAQUE):
            continue
        seen[key] = obj
        if isinstance(obj, MethodType):
            continue
        pending.extend(gc.get_referents(obj))
    return seen


def connection_breakdown(target: object, other: object) -> list[tuple[str, int]]:
    """Bytes (sys.getsizeof) each attribute of `target` holds that `other` (an object of
    the same kind) does not share, largest first; ('(object and its __dict__)', ...)
    first. Reads __dict__ / __slots__, so call it on an object whose memory was
    already measured (on CPython 3.11, reading __dict__ can materialise it)."""
    shared = set(_reachable(other, {id(target)}))
    shared.discard(id(other))
    counted: set[int] = {id(target)}
    names: dict[str, object] = {}
    own = sys.getsizeof(target)
    instance_dict = getattr(target, "__dict__", None)
    if instance_dict is not None:
        own += sys.getsizeof(instance_dict)
        counted.add(id(instance_dict))
        names.update(instance_dict)
    for cls in type(target).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if hasattr(target, slot):
                names[slot] = getattr(target, slot)
    rows: list[tuple[str, int]] = [("(object and its __dict__)", own)]
    for name, value in names.items():
        total = 0
        for key, obj in _reachable(value, shared | counted).items():
            counted.add(key)
            total += sys.getsizeof(obj)
        if total:
            rows.append((name, total))
    rows[1:] = sorted(rows[1:], key=lambda row: -row[1])
    return rows


# ------------------------------------------------------------------ measurements


@dataclass(frozen=True)
class LineCost:
    where: str  # file:line
    bytes_each: float
    blocks_each: float


@dataclass(frozen=True)
class MemoryResult:
    established: int
    time_wait: int
    chunk: int
    established_traced: float  # bytes per connection
    established_rss: float | None
    time_wait_traced: float  # bytes per entry
    time_wait_rss: float | None
    established_lines: tuple[LineCost, ...]
    time_wait_lines: tuple[LineCost, ...]
    connection_attributes: tuple[tuple[str, int], ...]
    entry_attributes: tuple[tuple[str, int], ...]

    def to_json(self) -> dict[str, Any]:
        def lines(costs: Sequence[LineCost]) -> list[dict[str, Any]]:
            return [
                {"where": c.where, "bytes_each": c.bytes_each, "blocks_each": c.blocks_each}
                for c in costs
            ]

        return {
            "established": {
                "connections": self.established,
                "traced_bytes_each": self.established_traced,
                "rss_bytes_each": self.established_rss,
                "goal_bytes_each": ESTABLISHED_GOAL,
                "meets_goal": self.established_traced <= ESTABLISHED_GOAL,
                "top_lines": lines(self.established_lines),
                "getsizeof_by_attribute": dict(self.connection_attributes),
            },
            "time_wait": {
                "entries": self.time_wait,
                "chunk": self.chunk,
                "traced_bytes_each": self.time_wait_traced,
                "rss_bytes_each": self.time_wait_rss,
                "goal_bytes_each": TIME_WAIT_GOAL,
                "meets_goal": self.time_wait_traced <= TIME_WAIT_GOAL,
                "top_lines": lines(self.time_wait_lines),
                "getsizeof_by_attribute": dict(self.entry_attributes),
            },
        }

    def table(self) -> Table:
        table = Table(
            "5. Memory per idle connection and per TIME_WAIT entry (bytes each)",
            ["what", "count", "tracemalloc", "RSS", "goal", "meets goal"],
        )

        def rss(value: float | None) -> str:
            return "n/a" if value is None else f"{value:,.0f}"

        table.add(
            "idle ESTABLISHED connection",
            f"{self.established:,}",
            f"{self.established_traced:,.0f}",
            rss(self.established_rss),
            f"{ESTABLISHED_GOAL:,}",
            "yes" if self.established_traced <= ESTABLISHED_GOAL else "NO",
        )
        table.add(
            "TIME_WAIT entry",
            f"{self.time_wait:,}",
            f"{self.time_wait_traced:,.0f}",
            rss(self.time_wait_rss),
            f"{TIME_WAIT_GOAL:,}",
            "yes" if self.time_wait_traced <= TIME_WAIT_GOAL else "NO",
        )
        table.notes += [
            "tracemalloc: traced memory after - before, / count (Endpoint tables and the "
            "application's list of connections included); RSS: a fresh child process, "
            "after - before, / count",
            "idle: handshake done (SYN with MSS only), accept()ed, Established event "
            "drained, nothing sent; TIME_WAIT: closed actively (FIN, peer's FIN,ACK), the "
            "Connection dropped by the application",
            "one run, not a median: these are sizes, not timings; each client has its own "
            "address string and port (as decoded from its packets)",
        ]
        table.notes.append(
            f"TIME_WAIT built in chunks of at most {self.chunk:,} live connections; its RSS "
            "is the growth after a first chunk (<= 1/4 of the entries) / entries added since"
        )
        table.notes.append(
            "where the ESTABLISHED bytes go (tracemalloc, top lines, per connection):"
        )
        table.notes += [
            f"  {fmt(c.bytes_each):>7} B  {fmt(c.blocks_each):>5} blocks  {c.where}"
            for c in self.established_lines
        ]
        table.notes.append(
            "one connection, sys.getsizeof of what each attribute holds alone: "
            + ", ".join(f"{name} {size}" for name, size in self.connection_attributes[:12])
            + f"; total {sum(size for _, size in self.connection_attributes):,}"
        )
        table.notes.append("where the TIME_WAIT bytes go (tracemalloc, top lines, per entry):")
        table.notes += [
            f"  {fmt(c.bytes_each):>7} B  {fmt(c.blocks_each):>5} blocks  {c.where}"
            for c in self.time_wait_lines
        ]
        table.notes.append(
            "one TIME_WAIT entry, sys.getsizeof by part (plus its share of the table's "
            "dict): " + ", ".join(f"{name} {size}" for name, size in self.entry_attributes)
        )
        return table


def _line_costs(
    after: tracemalloc.Snapshot, before: tracemalloc.Snapshot, count: int
) -> tuple[LineCost, ...]:
    keep = (tracemalloc.Filter(False, tracemalloc.__file__),)
    stats = after.filter_traces(keep).compare_to(before.filter_traces(keep), "lineno")
    costs = []
    for stat in stats[:_TOP]:
        frame = stat.traceback[0]
        where = f"{_short(frame.filename)}:{frame.lineno}"
        costs.append(LineCost(where, stat.size_diff / count, stat.count_diff / count))
    return tuple(costs)


def _short(filename: str) -> str:
    marker = f"{os.sep}tcpstack{os.sep}"
    if marker in filename:
        return "tcpstack/" + filename.rsplit(marker, 1)[1].replace(os.sep, "/")
    return filename.rsplit(os.sep, 2)[-1] if os.sep in filename else filename


def _traced_after_collect() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _fill_time_wait(server: IdleServer, total: int, chunk: int, first: int) -> None:
    """Grow the TIME_WAIT table to `total` entries, establishing and closing in chunks;
    clients from index `first` on."""
    index = first
    while len(server.endpoint.time_wait) < total:
        count = min(chunk - len(server.connections), total - len(server.endpoint.time_wait))
        server.establish(count, start=index)
        index += count
        server.close_into_time_wait()


def measure_rss(established: int, time_wait: int, chunk: int) -> dict[str, float | None]:
    """In this process (meant to be a fresh one): RSS per ESTABLISHED connection, then
    per TIME_WAIT entry (growth after the first chunk), in bytes."""
    gc.collect()
    server = IdleServer.create(max(established, time_wait))
    base = _rss_bytes()
    server.establish(established)
    gc.collect()
    full = _rss_bytes()
    per_connection = None if base is None or full is None else (full - base) / established
    # A first chunk (at most a quarter) whose freed connections the later chunks reuse.
    chunk = max(1, min(chunk, time_wait // 4))
    first = min(chunk, time_wait)
    server.connections.clear()
    server = IdleServer.create(time_wait)
    _fill_time_wait(server, first, chunk, established)
    gc.collect()
    after_first = _rss_bytes()
    per_entry: float | None = None
    if time_wait > first:
        _fill_time_wait(server, time_wait, chunk, established + first)
        gc.collect()
        end = _rss_bytes()
        if end is not None and after_first is not None:
            per_entry = (end - after_first) / (time_wait - first)
    return {"established": per_connection, "time_wait": per_entry}


def _rss_in_child(established: int, time_wait: int, chunk: int) -> dict[str, float | None]:
    code = (
        "import json, sys\n"
        "from tcpstack.benchmarks.memory import measure_rss\n"
        f"print(json.dumps(measure_rss({established}, {time_wait}, {chunk})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=3600
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory benchmark: RSS child failed: {done.stderr.strip()[-500:]}")
    figures: dict[str, float | None] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def run_memory(
    established: int = 100_000,
    time_wait: int = 100_000,
    *,
    chunk: int = DEFAULT_CHUNK,
    rss: bool = True,
) -> MemoryResult:
    """Measure (one run: memory figures do not need medians; see the module docstring)."""
    chunk = max(1, min(chunk, time_wait))
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        # Warm up: the first connections build caches (lru_cache, interned strings).
        warm = IdleServer.create(10)
        warm.establish(10)
        warm.close_into_time_wait()
        del warm
        server = IdleServer.create(max(established, chunk))
        before = _traced_after_collect()
        snap_before = tracemalloc.take_snapshot()
        server.establish(established)
        est_bytes = (_traced_after_collect() - before) / established
        est_lines = _line_costs(tracemalloc.take_snapshot(), snap_before, established)
        del snap_before
        attributes = connection_breakdown(server.connections[-1], server.connections[-2])
        server.connections.clear()
        del server

        server = IdleServer.create(time_wait)
        before = _traced_after_collect()
        snap_before = tracemalloc.take_snapshot()
        _fill_time_wait(server, time_wait, chunk, 0)
        tw_bytes = (_traced_after_collect() - before) / time_wait
        tw_lines = _line_costs(tracemalloc.take_snapshot(), snap_before, time_wait)
        del snap_before
        table = server.endpoint.time_wait
        first = next(iter(table), None)
        entry_attributes = table.entry_sizes(first) if first is not None else [("entry", 0)]
        del server, table
    finally:
        if not was_tracing:
            tracemalloc.stop()
    gc.collect()
    rss_figures: dict[str, float | None] = (
        _rss_in_child(established, time_wait, chunk)
        if rss
        else {"established": None, "time_wait": None}
    )
    return MemoryResult(
        established=established,
        time_wait=time_wait,
        chunk=chunk,
        established_traced=est_bytes,
        established_rss=rss_figures["established"],
        time_wait_traced=tw_bytes,
        time_wait_rss=rss_figures["time_wait"],
        established_lines=est_lines,
        time_wait_lines=tw_lines,
        connection_attributes=tuple(attributes),
        entry_attributes=tuple(entry_attributes),
    )
