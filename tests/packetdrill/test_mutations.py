"""The runner's proof that it checks what the scripts say: every corpus script, with one
deliberately wrong expectation, fails, and the failure names the line of the mutation
(wrong ack, missing segment, wrong errno, a segment 1 s late or early, wrong window,
wrong option list, an unexpected extra segment)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tcpstack.packetdrill import parse_script, run_script
from tcpstack.packetdrill.parser import Call, Event, Packet

SCRIPTS = Path(__file__).parent / "scripts"
ALL = sorted(SCRIPTS.glob("*/*.pkt"))
USEC = 1_000_000


@dataclass(frozen=True)
class Mutant:
    """A script with one wrong expectation; the run must fail at `line` (or, for a
    deleted line, at `line` or after it) with every one of `words` in the message."""

    text: str
    line: int
    words: tuple[str, ...]
    at_or_after: bool = False


Mutation = Callable[[list[Event], list[str]], "Mutant | None"]


def _outbound(events: list[Event]) -> list[tuple[Event, Packet]]:
    return [(e, e.action) for e in events if isinstance(e.action, Packet) and not e.action.inbound]


def _replace_line(lines: list[str], number: int, new: str) -> str:
    copy = list(lines)
    copy[number - 1] = new
    return "\n".join(copy) + "\n"


def _times(events: list[Event]) -> list[tuple[Event, int]]:
    """Each event's start time in µs, following the runner's rules (`*` is skipped)."""
    result: list[tuple[Event, int]] = []
    base = 0
    for event in events:
        spec = event.time
        if spec.any_time:
            continue
        start = base + spec.start if spec.relative else spec.start
        end = start
        if spec.end is not None:
            end = base + spec.end if spec.end_relative else spec.end
        base = end
        result.append((event, start))
    return result


def _seconds(usecs: int) -> str:
    return f"{usecs / USEC:.6f}"


def wrong_ack(events: list[Event], lines: list[str]) -> Mutant | None:
    for event, packet in _outbound(events):
        if packet.ack is not None:
            raw = lines[event.line - 1]
            new = re.sub(r"\back (\d+)", f"ack {packet.ack + 1}", raw, count=1)
            return Mutant(_replace_line(lines, event.line, new), event.line, ("ack",))
    return None


def missing_segment(events: list[Event], lines: list[str]) -> Mutant | None:
    outbound = _outbound(events)
    if not outbound:
        return None
    event, _ = outbound[-1]
    # The same segment once more, at once: tcpstack has no reason to send it twice.
    body = lines[event.line - 1].strip().split(None, 1)[1]
    copy = list(lines)
    copy.insert(event.line, "+0 " + body)
    return Mutant("\n".join(copy) + "\n", event.line + 1, ("expected `>",))


def wrong_errno(events: list[Event], lines: list[str]) -> Mutant | None:
    for event in events:
        call = event.action
        if isinstance(call, Call) and call.errno_name is not None:
            other = "EPERM" if call.errno_name != "EPERM" else "EINTR"
            raw = lines[event.line - 1]
            new = raw.replace(call.errno_name, other, 1)
            return Mutant(
                _replace_line(lines, event.line, new), event.line, (f"expected -1 {other}",)
            )
    return None


def _retimed(lines: list[str], event: Event, new_start: int) -> str:
    """The event's line with its time replaced by an absolute `new_start`."""
    raw = lines[event.line - 1]
    body = raw.strip().split(None, 1)[1]
    return _replace_line(lines, event.line, f"{_seconds(new_start)} {body}")


def segment_one_second_late(events: list[Event], lines: list[str]) -> Mutant | None:
    # The script expects the segment 1 s before tcpstack sends it: "sent nothing by".
    previous = 0
    for event, start in _times(events):
        action = event.action
        if (
            isinstance(action, Packet)
            and not action.inbound
            and event.time.end is None
            and start - USEC >= previous
        ):
            return Mutant(_retimed(lines, event, start - USEC), event.line, ("sent nothing",))
        previous = start
    return None


def segment_one_second_early(events: list[Event], lines: list[str]) -> Mutant | None:
    # The script expects the segment 1 s after tcpstack sends it: "too early".
    for event, start in _times(events):
        action = event.action
        if isinstance(action, Packet) and not action.inbound and event.time.end is None:
            return Mutant(_retimed(lines, event, start + USEC), event.line, ("too early",))
    return None


def wrong_window(events: list[Event], lines: list[str]) -> Mutant | None:
    for event, packet in _outbound(events):
        if packet.win is not None:
            raw = lines[event.line - 1]
            new = re.sub(r"\bwin (\d+)", f"win {packet.win + 1}", raw, count=1)
            return Mutant(_replace_line(lines, event.line, new), event.line, ("win",))
    return None


def wrong_options(events: list[Event], lines: list[str]) -> Mutant | None:
    for event, packet in _outbound(events):
        if packet.any_options:
            continue
        raw = lines[event.line - 1]
        if packet.options:
            # Drop the option list: the segment's options no longer match.
            new = re.sub(r"\s*<[^>]*>", "", raw.split("//")[0])
        else:
            new = raw.split("//")[0].rstrip() + " <mss 1000>"
        return Mutant(_replace_line(lines, event.line, new), event.line, ("options",))
    return None


def unexpected_extra_segment(events: list[Event], lines: list[str]) -> Mutant | None:
    # Delete an expected segment: tcpstack's segment becomes unexpected (reported at a
    # later line, the first one at which the runner can tell).
    for event, _ in _outbound(events):
        copy = list(lines)
        copy[event.line - 1] = "// (deleted)"
        return Mutant("\n".join(copy) + "\n", event.line, ("tcpstack sent",), at_or_after=True)
    return None


MUTATIONS: dict[str, Mutation] = {
    "wrong_ack": wrong_ack,
    "missing_segment": missing_segment,
    "wrong_errno": wrong_errno,
    "segment_one_second_late": segment_one_second_late,
    "segment_one_second_early": segment_one_second_early,
    "wrong_window": wrong_window,
    "wrong_options": wrong_options,
    "unexpected_extra_segment": unexpected_extra_segment,
}


@pytest.mark.parametrize("kind", list(MUTATIONS))
def test_every_script_fails_on_a_wrong_expectation(kind: str) -> None:
    mutate = MUTATIONS[kind]
    applied = 0
    problems: list[str] = []
    for path in ALL:
        text = path.read_text()
        mutant = mutate(parse_script(text), text.splitlines())
        if mutant is None:
            continue
        applied += 1
        name = f"{path.parent.name}/{path.name}"
        result = run_script(mutant.text, name=name)
        if result.ok:
            problems.append(f"{name}: {kind} at line {mutant.line} still passes")
            continue
        assert result.line is not None
        if mutant.at_or_after:
            # A deleted last `>` line is reported at the last event ("after the last
            # event"), the only line left to name.
            line_ok = result.line >= mutant.line or "after the last event" in result.message
        else:
            line_ok = result.line == mutant.line
        if not line_ok:
            problems.append(f"{name}: {kind} at line {mutant.line}: {result.describe()}")
        elif not all(word in result.message for word in mutant.words):
            problems.append(f"{name}: {kind}: message lacks {mutant.words}: {result.message}")
    assert not problems, "\n".join(problems)
    # Each kind applies to a good share of the corpus (the errno kind only to scripts
    # that expect an errno, the late kind only where a `>` line follows a pause of 1 s).
    sparse = {"wrong_errno": 10, "segment_one_second_late": 10}
    assert applied >= sparse.get(kind, len(ALL) // 2), applied


def test_mutations_apply_to_every_script_kind() -> None:
    # Passive opens, active opens, scripts with and without an errno: each directory
    # has at least one script that each segment mutation applies to.
    for directory in sorted(p for p in SCRIPTS.iterdir() if p.is_dir()):
        scripts = [p.read_text() for p in directory.glob("*.pkt")]
        for kind in ("wrong_ack", "missing_segment", "unexpected_extra_segment"):
            assert any(
                MUTATIONS[kind](parse_script(t), t.splitlines()) is not None for t in scripts
            ), (directory.name, kind)
