"""Trace records: what a connection or endpoint did, and why.

The core never writes anywhere; it hands each record to an injected callable (a tracer).
Records are plain data and serialise to one JSON line each (`to_json`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tcpstack.core.segment import Segment, flags_text


class TraceKind:
    """The kinds of trace record (plain strings so that JSON stays readable)."""

    SEGMENT_IN = "segment_in"  # a segment reached a connection or endpoint: verdict + reason
    SEGMENT_OUT = "segment_out"  # a segment left
    DROP = "drop"  # bytes that never became a segment (malformed), or no-one to take them
    STATE = "state"  # a state change: from, to, trigger
    TIMER_ARMED = "timer_armed"
    TIMER_FIRED = "timer_fired"
    TIMER_CANCELLED = "timer_cancelled"
    EVENT = "event"  # an event handed to the application
    USER = "user"  # a user call


@dataclass(slots=True)
class TraceRecord:
    time: int  # microseconds on the driver's clock
    kind: str
    conn: str  # "local_ip:port>remote_ip:port", or the endpoint's address
    data: dict[str, Any] = field(default_factory=dict)
    segment: Segment | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": self.time, "kind": self.kind, "conn": self.conn}
        out.update(self.data)
        seg = self.segment
        if seg is not None:
            out["segment"] = {
                "src_port": seg.src_port,
                "dst_port": seg.dst_port,
                "seq": seg.seq,
                "ack": seg.ack,
                "flags": flags_text(seg.flags),
                "window": seg.window,
                "urgent": seg.urgent,
                "options": seg.options.describe(),
                "len": len(seg.payload),
            }
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)


Tracer = Callable[[TraceRecord], None]


class TraceCollector:
    """A tracer that keeps every record in a list (for tests, scenarios and pictures)."""

    def __init__(self) -> None:
        self.records: list[TraceRecord] = []

    def __call__(self, record: TraceRecord) -> None:
        self.records.append(record)

    def of_kind(self, kind: str) -> list[TraceRecord]:
        return [r for r in self.records if r.kind == kind]

    def to_jsonl(self) -> str:
        return "".join(r.to_json() + "\n" for r in self.records)
