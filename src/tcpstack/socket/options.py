"""setsockopt/getsockopt values <-> `tcpstack.core.config.Config` fields.

Values use Linux's units and ranges (seconds for keepalive and TCP_LINGER2, milliseconds
for TCP_USER_TIMEOUT, `struct linger` bytes for SO_LINGER); the Config holds µs. Options
the Config does not describe (SO_REUSEADDR, SO_ERROR, TCP_INFO) are the socket's own.

Deliberate differences from Linux, all documented on `Socket.setsockopt`:
SO_RCVBUF / SO_SNDBUF are not doubled (the value is the buffer), TCP_QUICKACK stays on
until cleared (Linux drops out of quick-ACK mode by itself), TCP_LINGER2 < 0 makes an
orphan's FIN_WAIT_2 end at once without Linux's RST.
"""

from __future__ import annotations

import errno
import os
import socket as _std
import struct
from collections.abc import Callable
from dataclasses import dataclass

from tcpstack.core.config import MILLISECOND, SECOND, Config

__all__ = [
    "CONFIG_OPTIONS",
    "LINGER_FORMAT",
    "MAX_BUFFER",
    "MIN_BUFFER",
    "OptionSpec",
    "linger_bytes",
    "option_error",
    "option_int",
]

# struct linger { int l_onoff; int l_linger; } as the stdlib passes it.
LINGER_FORMAT = "ii"
# SO_RCVBUF / SO_SNDBUF are clamped to this range (Linux clamps too, to other bounds).
MIN_BUFFER = 1024
MAX_BUFFER = 1 << 30
# Linux's limits: MAX_TCP_KEEPIDLE/KEEPINTVL, MAX_TCP_KEEPCNT, TCP_MIN_MSS,
# MAX_TCP_WINDOW, TCP_FIN_TIMEOUT_MAX.
MAX_KEEP_SECONDS = 32767
MAX_KEEPCNT = 127
MIN_MSS = 88
MAX_MSS = 32767
MAX_LINGER2_SECONDS = 120


def option_error(code: int, detail: str) -> OSError:
    return OSError(code, f"{os.strerror(code)}: {detail}")


def option_int(value: int | bytes, name: str) -> int:
    """An int option's value: an int, or at least 4 bytes of a native C int."""
    if isinstance(value, bool | int):
        return int(value)
    if len(value) < 4:
        raise option_error(errno.EINVAL, f"{name} needs an int (4 bytes), got {len(value)}")
    return int(struct.unpack("i", bytes(value[:4]))[0])


def _in_range(value: int, low: int, high: int, name: str) -> int:
    if not low <= value <= high:
        raise option_error(errno.EINVAL, f"{name} must be within {low}..{high}, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """How one option maps onto Config: `to_changes(value, default)` gives the Config
    fields to change (`default` is the stack's own Config, for "0 = default" values)
    and `from_config(config)` the int getsockopt reports."""

    name: str
    to_changes: Callable[[int | bytes, Config], dict[str, object]]
    from_config: Callable[[Config], int]


def _flag(field_name: str, name: str) -> OptionSpec:
    return OptionSpec(
        name,
        lambda v, d: {field_name: option_int(v, name) != 0},
        lambda c: int(bool(getattr(c, field_name))),
    )


def _linger_changes(value: int | bytes, default: Config) -> dict[str, object]:
    if isinstance(value, int):
        raise option_error(errno.EINVAL, "SO_LINGER takes struct linger bytes: pack('ii', ...)")
    size = struct.calcsize(LINGER_FORMAT)
    if len(value) < size:
        raise option_error(errno.EINVAL, f"SO_LINGER needs {size} bytes, got {len(value)}")
    onoff, seconds = struct.unpack(LINGER_FORMAT, bytes(value[:size]))
    if not onoff:
        return {"linger": None}
    if seconds < 0:
        raise option_error(errno.EINVAL, f"SO_LINGER time must not be negative, got {seconds}")
    return {"linger": seconds * SECOND}


def _linger_onoff(config: Config) -> int:
    return int(config.linger is not None)


def linger_bytes(config: Config) -> bytes:
    """SO_LINGER as struct linger bytes, as getsockopt(..., buflen) returns it."""
    if config.linger is None:
        return struct.pack(LINGER_FORMAT, 0, 0)
    return struct.pack(LINGER_FORMAT, 1, config.linger // SECOND)


def _buffer(field_name: str, name: str) -> OptionSpec:
    return OptionSpec(
        name,
        lambda v, d: {field_name: min(max(option_int(v, name), MIN_BUFFER), MAX_BUFFER)},
        lambda c: int(getattr(c, field_name)),
    )


def _seconds(field_name: str, name: str) -> OptionSpec:
    return OptionSpec(
        name,
        lambda v, d: {
            field_name: _in_range(option_int(v, name), 1, MAX_KEEP_SECONDS, name) * SECOND
        },
        lambda c: int(getattr(c, field_name)) // SECOND,
    )


def _keepcnt(value: int | bytes, default: Config) -> dict[str, object]:
    return {
        "keepalive_count": _in_range(
            option_int(value, "TCP_KEEPCNT"), 1, MAX_KEEPCNT, "TCP_KEEPCNT"
        )
    }


def _user_timeout(value: int | bytes, default: Config) -> dict[str, object]:
    ms = option_int(value, "TCP_USER_TIMEOUT")
    if ms < 0:
        raise option_error(errno.EINVAL, f"TCP_USER_TIMEOUT must not be negative, got {ms}")
    return {"user_timeout": ms * MILLISECOND}


def _linger2(value: int | bytes, default: Config) -> dict[str, object]:
    seconds = option_int(value, "TCP_LINGER2")
    if seconds < 0:
        return {"fin_wait_2_timeout": 0}
    if seconds == 0:
        return {"fin_wait_2_timeout": default.fin_wait_2_timeout}
    return {"fin_wait_2_timeout": min(seconds, MAX_LINGER2_SECONDS) * SECOND}


def _linger2_get(config: Config) -> int:
    timeout = config.fin_wait_2_timeout
    if timeout is None:
        return 0
    if timeout == 0:
        return -1
    return timeout // SECOND


def _maxseg(value: int | bytes, default: Config) -> dict[str, object]:
    mss = option_int(value, "TCP_MAXSEG")
    if mss == 0:
        return {"mss": default.mss}
    return {"mss": _in_range(mss, MIN_MSS, MAX_MSS, "TCP_MAXSEG")}


SOL_SOCKET = _std.SOL_SOCKET
IPPROTO_TCP = _std.IPPROTO_TCP

# (level, option) -> how it maps onto Config.
CONFIG_OPTIONS: dict[tuple[int, int], OptionSpec] = {
    (SOL_SOCKET, _std.SO_KEEPALIVE): _flag("keepalive", "SO_KEEPALIVE"),
    (SOL_SOCKET, _std.SO_LINGER): OptionSpec("SO_LINGER", _linger_changes, _linger_onoff),
    (SOL_SOCKET, _std.SO_RCVBUF): _buffer("receive_buffer_size", "SO_RCVBUF"),
    (SOL_SOCKET, _std.SO_SNDBUF): _buffer("send_buffer_size", "SO_SNDBUF"),
    (IPPROTO_TCP, _std.TCP_NODELAY): _flag("nodelay", "TCP_NODELAY"),
    (IPPROTO_TCP, _std.TCP_QUICKACK): _flag("quickack", "TCP_QUICKACK"),
    (IPPROTO_TCP, _std.TCP_KEEPIDLE): _seconds("keepalive_idle", "TCP_KEEPIDLE"),
    (IPPROTO_TCP, _std.TCP_KEEPINTVL): _seconds("keepalive_interval", "TCP_KEEPINTVL"),
    (IPPROTO_TCP, _std.TCP_KEEPCNT): OptionSpec(
        "TCP_KEEPCNT", _keepcnt, lambda c: c.keepalive_count
    ),
    (IPPROTO_TCP, _std.TCP_USER_TIMEOUT): OptionSpec(
        "TCP_USER_TIMEOUT", _user_timeout, lambda c: c.user_timeout // MILLISECOND
    ),
    (IPPROTO_TCP, _std.TCP_LINGER2): OptionSpec("TCP_LINGER2", _linger2, _linger2_get),
    (IPPROTO_TCP, _std.TCP_MAXSEG): OptionSpec("TCP_MAXSEG", _maxseg, lambda c: c.mss),
}
