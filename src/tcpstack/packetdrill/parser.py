"""Parser for packetdrill-syntax scripts (the subset tcpstack's runner understands).

A script is a list of events, one a line (comments `//`, `/* */` and `#` lines are
skipped). Each event starts with a time:

    0          absolute, seconds from the start of the script
    +0.1       relative to the previous event's (script) time; `+.1` works too
    0.1~0.2    a range: the event may happen anywhere in it (outbound packets)
    0.1...0.2  a blocking system call that starts at 0.1 and returns at 0.2
               (`+` on either end of a range is from the previous event's time)
    *          any time (outbound packets)

then either a packet or a system call:

    < S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,nop,wscale 7>
    > P. 1:1001(1000) ack 1 <...>
    < @40001 S 0:0(0) win 65535      (tcpstack extension: the script peer's port)
    < P.U 1:11(10) ack 1 urg 5 win 65535
    accept(3, ..., ...) = 4
    connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)

Everything the runner cannot honour is turned into an `Unsupported` event rather than
skipped, so that a script using it fails with "unsupported: WHAT at LINE".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "Call",
    "Event",
    "Expr",
    "OptionItem",
    "Packet",
    "ParseError",
    "Struct",
    "Symbol",
    "TimeSpec",
    "Unsupported",
    "Wildcard",
    "parse_script",
]


class ParseError(ValueError):
    """A line the parser could not read; `line` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Wildcard:
    """`...`: any value (packetdrill's wildcard)."""

    def __str__(self) -> str:
        return "..."


@dataclass(frozen=True, slots=True)
class Symbol:
    """A named constant such as SOL_SOCKET or O_NONBLOCK."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class BitOr:
    """`A|B|C`."""

    parts: tuple[Expr, ...]

    def __str__(self) -> str:
        return "|".join(map(str, self.parts))


@dataclass(frozen=True, slots=True)
class Struct:
    """`{onoff=1, linger=0}` (named fields) or `{..., 500}` (an iovec, positional)."""

    fields: tuple[tuple[str | None, Expr], ...]

    def get(self, name: str) -> Expr | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v}" if k else str(v) for k, v in self.fields)
        return "{" + inner + "}"


@dataclass(frozen=True, slots=True)
class Array:
    """`[1]` or `[{fd=3, events=POLLIN}]`."""

    items: tuple[Expr, ...]

    def __str__(self) -> str:
        return "[" + ", ".join(map(str, self.items)) + "]"


Expr = int | str | Wildcard | Symbol | BitOr | Struct | Array


# ---------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class TimeSpec:
    """When an event happens. `relative`: `start` is added to the previous event's
    time. `end` (with `end_relative`) is the end of a `~` range or of a blocking `...`
    call; `blocking` says it was `...`. `any_time` is `*`."""

    start: int = 0
    relative: bool = False
    end: int | None = None
    end_relative: bool = False
    blocking: bool = False
    any_time: bool = False


@dataclass(frozen=True, slots=True)
class OptionItem:
    """One TCP option of a packet line: kind is mss, sackOK, TS, wscale, sack, nop,
    eol; values are its numbers (TS: val, ecr; sack: flattened block edges)."""

    kind: str
    values: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Packet:
    """`< ...` (inbound: `inbound` True) or `> ...` (expected outbound)."""

    inbound: bool
    flags: str  # letters as written, e.g. "S.", "P.", "F."
    start: int
    end: int
    length: int
    ack: int | None = None
    win: int | None = None
    urg: int | None = None
    # None: no option list written; () with any_options: `<...>`.
    options: tuple[OptionItem, ...] | None = None
    any_options: bool = False
    # `@PORT` after the direction (a tcpstack extension for scripts with several
    # connections): the script peer's port of the flow; None = the script's default flow.
    peer_port: int | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """A system call: name(args) = ret [ERRNO (text)]."""

    name: str
    args: tuple[Expr, ...]
    ret: Expr
    errno_name: str | None = None


@dataclass(frozen=True, slots=True)
class Unsupported:
    """Something the runner does not implement; running it fails the script."""

    what: str


@dataclass(frozen=True, slots=True)
class Event:
    line: int
    time: TimeSpec
    action: Packet | Call | Unsupported
    text: str = field(default="", compare=False)


# ---------------------------------------------------------------------------- lexing

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<ellipsis>\.\.\.)
      | (?P<number>-?0[xX][0-9a-fA-F]+|-?\d+)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[\[\]{}(),=|&])
    )""",
    re.VERBOSE,
)


class _Tokens:
    def __init__(self, text: str, line: int) -> None:
        self.items: list[tuple[str, str]] = []
        self.line = line
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                rest = text[pos:].strip()
                if not rest:
                    break
                raise ParseError(line, f"cannot read {rest[:20]!r}")
            kind = match.lastgroup
            assert kind is not None
            self.items.append((kind, match.group(kind)))
            pos = match.end()
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ParseError(self.line, "unexpected end of line")
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        _kind, text = self.take()
        if text != value:
            raise ParseError(self.line, f"expected {value!r}, found {text!r}")

    def at(self, value: str) -> bool:
        token = self.peek()
        return token is not None and token[1] == value

    def done(self) -> bool:
        return self.pos >= len(self.items)


def _expr(tokens: _Tokens) -> Expr:
    parts = [_atom(tokens)]
    while tokens.at("|"):
        tokens.take()
        parts.append(_atom(tokens))
    return parts[0] if len(parts) == 1 else BitOr(tuple(parts))


def _atom(tokens: _Tokens) -> Expr:
    kind, text = tokens.take()
    if kind == "ellipsis":
        return Wildcard()
    if kind == "number":
        return int(text, 0)
    if kind == "string":
        return text[1:-1]
    if kind == "ident":
        if tokens.at("("):
            raise ParseError(tokens.line, f"unsupported: expression {text}(...)")
        return Symbol(text)
    if text == "[":
        items: list[Expr] = []
        while not tokens.at("]"):
            items.append(_expr(tokens))
            if not tokens.at("]"):
                tokens.expect(",")
        tokens.take()
        return Array(tuple(items))
    if text == "{":
        fields: list[tuple[str | None, Expr]] = []
        while not tokens.at("}"):
            token = tokens.peek()
            after = tokens.items[tokens.pos + 1] if tokens.pos + 1 < len(tokens.items) else None
            named = token is not None and token[0] == "ident" and after is not None
            if named and after is not None and after[1] == "=" and token is not None:
                tokens.take()
                tokens.take()
                fields.append((token[1], _expr(tokens)))
            elif named and after is not None and after[1] == "(" and token is not None:
                # A msghdr field with its length: `msg_iov(1)=[...]`, `msg_name(...)=...`.
                tokens.take()
                tokens.take()
                _expr(tokens)
                tokens.expect(")")
                tokens.expect("=")
                fields.append((token[1], _expr(tokens)))
            else:
                fields.append((None, _expr(tokens)))
            if not tokens.at("}"):
                tokens.expect(",")
        tokens.take()
        return Struct(tuple(fields))
    raise ParseError(tokens.line, f"unexpected {text!r}")


# ---------------------------------------------------------------------------- lines

_TIME = re.compile(
    r"""^\s*(?:
        (?P<any>\*)
      | (?P<s_rel>\+)?(?P<start>\d+\.?\d*|\.\d+)
        (?:(?P<sep>~|\.\.\.)(?P<e_rel>\+)?(?P<end>\d+\.?\d*|\.\d+))?
    )(?=\s|$)""",
    re.VERBOSE,
)


def _usecs(text: str) -> int:
    whole, _, frac = text.partition(".")
    frac = (frac + "000000")[:6]
    return int(whole or "0") * 1_000_000 + int(frac)


def _parse_time(text: str, line: int) -> tuple[TimeSpec, str]:
    match = _TIME.match(text)
    if match is None:
        raise ParseError(line, f"expected a time at the start of {text.strip()[:30]!r}")
    rest = text[match.end() :]
    if match.group("any"):
        return TimeSpec(any_time=True), rest
    end = match.group("end")
    return (
        TimeSpec(
            start=_usecs(match.group("start")),
            relative=bool(match.group("s_rel")),
            end=_usecs(end) if end is not None else None,
            end_relative=bool(match.group("e_rel")),
            blocking=match.group("sep") == "...",
        ),
        rest,
    )


_PACKET = re.compile(
    r"""^\s*(?P<dir>[<>])\s+(?:@(?P<port>\d+)\s+)?(?P<flags>[SFRP.UEW]+)\s+
        (?P<start>\d+):(?P<end>\d+)\((?P<len>\d+)\)
        (?P<rest>.*)$""",
    re.VERBOSE,
)
_FIELD = re.compile(r"^\s*(ack|win|urg)\s+(\d+)")


def _parse_options(text: str, line: int) -> tuple[tuple[OptionItem, ...], bool]:
    inner = text.strip()
    if inner == "...":
        return (), True
    items: list[OptionItem] = []
    for raw in inner.split(","):
        words = raw.split()
        if not words:
            raise ParseError(line, "empty TCP option")
        kind = words[0]
        if kind in ("nop", "eol", "sackOK") and len(words) == 1:
            items.append(OptionItem(kind))
        elif kind in ("mss", "wscale") and len(words) == 2 and words[1].isdigit():
            items.append(OptionItem(kind, (int(words[1]),)))
        elif (
            kind == "TS"
            and len(words) == 5
            and words[1] == "val"
            and words[3] == "ecr"
            and words[2].isdigit()
            and words[4].isdigit()
        ):
            items.append(OptionItem("TS", (int(words[2]), int(words[4]))))
        elif kind == "sack" and len(words) >= 2:
            edges: list[int] = []
            for block in words[1:]:
                left, sep, right = block.partition(":")
                if not sep or not left.isdigit() or not right.isdigit():
                    raise ParseError(line, f"bad SACK block {block!r}")
                edges += [int(left), int(right)]
            items.append(OptionItem("sack", tuple(edges)))
        else:
            raise ParseError(line, f"unsupported: TCP option {raw.strip()!r}")
    return tuple(items), False


def _parse_packet(text: str, line: int) -> Packet:
    match = _PACKET.match(text)
    if match is None:
        raise ParseError(line, f"cannot read packet {text.strip()!r}")
    start, end, length = (int(match.group(k)) for k in ("start", "end", "len"))
    if (end - start) % (1 << 32) != length:
        raise ParseError(line, f"{start}:{end}({length}): length does not match")
    rest = match.group("rest")
    values: dict[str, int] = {}
    while True:
        field_match = _FIELD.match(rest)
        if field_match is None:
            break
        values[field_match.group(1)] = int(field_match.group(2))
        rest = rest[field_match.end() :]
    rest = rest.strip()
    options: tuple[OptionItem, ...] | None = None
    any_options = False
    if rest.startswith("<"):
        close = rest.find(">")
        if close < 0:
            raise ParseError(line, "option list without '>'")
        options, any_options = _parse_options(rest[1:close], line)
        rest = rest[close + 1 :].strip()
    if rest:
        raise ParseError(line, f"unsupported: packet field {rest!r}")
    return Packet(
        inbound=match.group("dir") == "<",
        flags=match.group("flags"),
        start=start,
        end=end,
        length=length,
        ack=values.get("ack"),
        win=values.get("win"),
        urg=values.get("urg"),
        options=options,
        any_options=any_options,
        peer_port=int(match.group("port")) if match.group("port") is not None else None,
    )


_CALL = re.compile(r"^\s*(?P<name>[a-z_][a-z0-9_]*)\s*\((?P<rest>.*)$")
_ERRNO = re.compile(r"^(?P<ret>-\d+)\s+(?P<name>E[A-Z0-9]+)(?:\s*\(.*\))?\s*$")


def _parse_call(text: str, line: int) -> Call:
    match = _CALL.match(text)
    if match is None:
        raise ParseError(line, f"cannot read {text.strip()!r}")
    name = match.group("name")
    body = match.group("rest")
    # The call's arguments end at the parenthesis that balances the opening one.
    depth = 1
    in_string = False
    close = -1
    for index, char in enumerate(body):
        if char == '"':
            in_string = not in_string
        elif not in_string and char in "([{":
            depth += 1
        elif not in_string and char in ")]}":
            depth -= 1
            if depth == 0:
                close = index
                break
    if close < 0:
        raise ParseError(line, f"{name}(: no closing parenthesis")
    tokens = _Tokens(body[:close], line)
    args: list[Expr] = []
    while not tokens.done():
        args.append(_expr(tokens))
        if not tokens.done():
            tokens.expect(",")
    after = body[close + 1 :].strip()
    if not after.startswith("="):
        raise ParseError(line, f"{name}(...) needs '= RESULT'")
    result_text = after[1:].strip()
    # `-1 EINPROGRESS (Operation now in progress)`: a negative result, then the errno.
    errno_name: str | None = None
    ret_text = result_text
    err = _ERRNO.match(result_text)
    if err is not None:
        errno_name = err.group("name")
        ret_text = err.group("ret")
    ret_tokens = _Tokens(ret_text, line)
    ret = _expr(ret_tokens)
    if not ret_tokens.done():
        raise ParseError(line, f"cannot read result {result_text!r}")
    return Call(name, tuple(args), ret, errno_name)


def _strip_comment(text: str) -> str:
    for marker in ("//",):
        index = text.find(marker)
        if index >= 0:
            text = text[:index]
    return text


def parse_script(source: str) -> list[Event]:
    """Parse a script into events. Constructs the runner does not support become
    `Unsupported` events (with the line), syntax errors raise ParseError."""
    events: list[Event] = []
    lines = source.splitlines()
    in_block_comment = False
    index = 0
    while index < len(lines):
        number = index + 1
        raw = lines[index]
        index += 1
        text = raw
        if in_block_comment:
            end = text.find("*/")
            if end < 0:
                continue
            text = text[end + 2 :]
            in_block_comment = False
        while "/*" in text:
            start = text.find("/*")
            end = text.find("*/", start + 2)
            if end < 0:
                text = text[:start]
                in_block_comment = True
                break
            text = text[:start] + text[end + 2 :]
        text = _strip_comment(text)
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "%{" in stripped:
            events.append(Event(number, TimeSpec(), Unsupported("Python block %{ }%"), raw))
            while index < len(lines) and "}%" not in lines[index - 1]:
                index += 1
            continue
        if stripped.startswith("`") or "`" in stripped:
            events.append(Event(number, TimeSpec(), Unsupported("shell command in backticks"), raw))
            continue
        if stripped.startswith("--"):
            events.append(Event(number, TimeSpec(), Unsupported(f"option {stripped}"), raw))
            continue
        time, rest = _parse_time(text, number)
        body = rest.strip()
        action: Packet | Call | Unsupported
        try:
            if body.startswith(("<", ">")):
                action = _parse_packet(body, number)
            else:
                action = _parse_call(body, number)
        except ParseError as error:
            if error.message.startswith("unsupported: "):
                action = Unsupported(error.message.removeprefix("unsupported: "))
            elif body.startswith(("<", ">")):
                # IPv6 addresses, ECN markings ([ect0]), encapsulation and the like.
                action = Unsupported(f"packet syntax {body!r} ({error.message})")
            else:
                raise
        events.append(Event(number, time, action, raw.strip()))
    return events
