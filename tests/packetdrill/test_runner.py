"""The runner itself: right scripts pass, each kind of wrong expectation fails with a
message that names the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpstack.cli import main
from tcpstack.core.config import PLAIN
from tcpstack.packetdrill import ScriptResult, parse_script, run_script
from tcpstack.packetdrill.parser import Call, Packet, Struct, Symbol, Unsupported, Wildcard

PASSIVE = """\
0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0    setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0    bind(3, ..., ...) = 0
+0    listen(3, 1) = 0
+0    < S 0:0(0) win 65535 <mss 1460>
+0    > S. 0:0(0) ack 1 win 65535 <mss 1460>
+0.1  < . 1:1(0) ack 1 win 65535
+0    accept(3, ..., ...) = 4
"""  # 8 lines

ACTIVE = """\
0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0    fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0    connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0    > S 0:0(0) <...>
"""  # 4 lines


def run(text: str) -> ScriptResult:
    return run_script(text, name="t.pkt")


def fails_at(text: str, line: int, *words: str) -> str:
    result = run(text)
    assert not result.ok, "the script should fail"
    assert result.line == line, result.describe()
    described = result.describe()
    assert f"t.pkt:{line}:" in described
    for word in words:
        assert word in result.message, result.message
    return result.message


# ------------------------------------------------------------------ passing scripts


def test_passive_open_and_data() -> None:
    result = run(PASSIVE + "+0.1 < P. 1:101(100) ack 1 win 65535\n+.04 > . 1:1(0) ack 101\n")
    assert result.ok, result.describe()
    assert result.events_run == 10


def test_blocking_accept_returns_later() -> None:
    script = """\
0         socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0        bind(3, ..., ...) = 0
+0        listen(3, 1) = 0
0.1...0.2 accept(3, ..., ...) = 4
0.1       < S 0:0(0) win 65535 <mss 1460>
+0        > S. 0:0(0) ack 1 win 65535 <mss 1460>
0.2       < . 1:1(0) ack 1 win 65535
0.3       write(4, ..., 10) = 10
+0        > P. 1:11(10) ack 1
"""
    assert run(script).ok, run(script).describe()


def test_blocking_read_and_connect() -> None:
    script = """\
0       socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
0...0.1 connect(3, ..., ...) = 0
0       > S 0:0(0) <...>
0.1     < S. 0:0(0) ack 1 win 65535 <mss 1460>
+0      > . 1:1(0) ack 1
0.2...0.5 read(3, ..., 100) = 10
0.5     < P. 1:11(10) ack 1 win 65535
"""
    result = run(script)
    assert result.ok, result.describe()


def test_time_range_and_wildcard_time() -> None:
    ok = PASSIVE + "+0.1 < P. 1:11(10) ack 1 win 65535\n+0.02~+0.07 > . 1:1(0) ack 11\n"
    assert run(ok).ok
    star = PASSIVE + "+0.1 close(4) = 0\n+0 > F. 1:1(0) ack 1\n* > F. 1:1(0) ack 1\n"
    assert run(star).ok, run(star).describe()


def test_poll_nonblocking_and_readv_writev() -> None:
    script = (
        PASSIVE
        + """\
+0   fcntl(4, F_GETFL) = O_RDWR
+0   fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0   fcntl(4, F_GETFL) = O_RDWR|O_NONBLOCK
+0   poll([{fd=4, events=POLLIN|POLLOUT, revents=POLLOUT}], 1, 0) = 1
+0   read(4, ..., 10) = -1 EAGAIN (Resource temporarily unavailable)
+0.1 < P. 1:21(20) ack 1 win 65535
+0   poll([{fd=4, events=POLLIN, revents=POLLIN}], 1, 0) = 1
+0   readv(4, [{..., 5}, {..., 5}], 2) = 10
+0   recv(4, ..., 5, 0) = 5
+0   recvfrom(4, ..., 100, 0, ..., ...) = 5
+.04 > . 1:1(0) ack 21
+0   writev(4, [{..., 3}, {..., 4}], 2) = 7
+0   > P. 1:8(7) ack 21
+0   send(4, ..., 3, 0) = 3
+0   sendto(4, ..., 2, 0, ..., ...) = 2
+0   getsockopt(4, IPPROTO_TCP, TCP_NODELAY, [0], [4]) = 0
+0   setsockopt(4, IPPROTO_TCP, TCP_NODELAY, [1], 4) = 0
+0   > P. 8:13(5) ack 21
+0   setsockopt(4, IPPROTO_TCP, TCP_USER_TIMEOUT, [3000], 4) = 0
+0   setsockopt(4, IPPROTO_TCP, TCP_MAXSEG, [1000], 4) = 0
+0   setsockopt(4, SOL_SOCKET, SO_RCVBUF, [100000], 4) = 0
+0   setsockopt(4, SOL_SOCKET, SO_SNDBUF, [100000], 4) = 0
+0.1 < . 21:21(0) ack 13 win 65535
"""
    )
    result = run(script)
    assert result.ok, result.describe()


def test_poll_with_timeout_waits() -> None:
    script = (
        PASSIVE
        + """\
+0        poll([{fd=4, events=POLLIN, revents=0}], 1, 500) = 0
0.1...0.6 poll([{fd=4, events=POLLIN, revents=0}], 1, 500) = 0
+0        poll([{fd=4, events=POLLIN, revents=POLLIN}], 1, 1000) = 1
0.7       < P. 1:11(10) ack 1 win 65535
"""
    )
    result = run(script)
    # The first poll (timeout 500 ms) does not return at once, so it fails.
    assert not result.ok and result.line == 9
    script = (
        PASSIVE
        + """\
0.1...0.6 poll([{fd=4, events=POLLIN, revents=0}], 1, 500) = 0
0.6...0.7 poll([{fd=4, events=POLLIN, revents=POLLIN}], 1, 1000) = 1
0.7       < P. 1:11(10) ack 1 win 65535
"""
    )
    assert run(script).ok, run(script).describe()


def test_plain_config() -> None:
    script = ACTIVE.replace("<...>", "win 65535 <mss 1460>")
    assert run_script(script, config=PLAIN).ok


# ------------------------------------------------------------------ failures


def test_wrong_ack_number() -> None:
    message = fails_at(PASSIVE.replace("ack 1 win 65535 <mss", "ack 2 win 65535 <mss"), 6)
    assert "ack 1 != 2" in message
    assert "tcpstack sent `> S. 0:0(0) ack 1 win 65535 <mss 1460>` at 0 s" in message


def test_missing_segment() -> None:
    message = fails_at(
        PASSIVE + "+0.1 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1\n+0 > P. 11:21(10) ack 1\n",
        11,
        "sent nothing by 0.204 s",
    )
    # The retransmission comes 1 s later: the message says so.
    assert "next segment was `> P. 1:11(10) ack 1 win 65535` at 1.2 s" in message


def test_segment_one_second_late() -> None:
    # The SYN is retransmitted at 1 s; the script wants it at 0 s (after the first).
    message = fails_at(ACTIVE + "+0 > S 0:0(0) <...>\n", 5, "sent nothing by 0.004 s")
    assert "at 1 s" in message


def test_segment_too_early() -> None:
    fails_at(ACTIVE + "+2 > S 0:0(0) <...>\n", 5, "too early, at 1 s")


def test_tolerance_option() -> None:
    late = ACTIVE + "+0.997 > S 0:0(0) <...>\n"
    assert run_script(late).ok
    assert not run_script(late, tolerance_usecs=1000).ok


def test_wrong_errno() -> None:
    message = fails_at(
        ACTIVE.replace("EINPROGRESS (Operation now in progress)", "EALREADY"),
        3,
        "returned -1 EINPROGRESS",
        "expected -1 EALREADY",
    )
    assert "connect()" in message


def test_wrong_return_value() -> None:
    fails_at(
        PASSIVE + "+0.1 < P. 1:101(100) ack 1 win 65535\n+0 read(4, ..., 1000) = 1000\n",
        10,
        "read() returned 100",
    )


def test_unexpected_segment() -> None:
    fails_at(
        PASSIVE + "+0.1 write(4, ..., 10) = 10\n+0.1 < . 1:1(0) ack 11 win 65535\n",
        10,
        "unexpected segment at 0.2 s",
        "> P. 1:11(10)",
    )


def test_wrong_flags_options_window() -> None:
    fails_at(PASSIVE.replace("> S. 0:0(0)", "> S 0:0(0)"), 6, "flags S. != S")
    fails_at(PASSIVE.replace("ack 1 win 65535 <mss 1460>", "ack 1 win 65535"), 6, "options")
    fails_at(PASSIVE.replace("ack 1 win 65535 <mss 1460>", "ack 1 win 1 <...>"), 6, "win")


def test_blocking_call_returns_at_wrong_time() -> None:
    script = PASSIVE + "0.2...0.3 read(4, ..., 100) = 10\n0.5 < P. 1:11(10) ack 1 win 65535\n"
    fails_at(script, 9, "read() returned 10 at 0.5 s", "expected it to return at 0.3 s")


def test_blocking_call_never_returns() -> None:
    fails_at(PASSIVE + "0.2...0.3 read(4, ..., 100) = 10\n", 9, "never returned")


def test_poll_revents_mismatch() -> None:
    fails_at(
        PASSIVE + "+0 poll([{fd=4, events=POLLIN, revents=POLLIN}], 1, 0) = 1\n",
        9,
        "got 0, expected POLLIN",
    )


def test_wrong_getsockopt_value() -> None:
    fails_at(
        PASSIVE + "+0 getsockopt(4, SOL_SOCKET, SO_KEEPALIVE, [1], [4]) = 0\n",
        9,
        "getsockopt() gave [0]",
    )


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("%{ print('hi') }%", "Python block"),
        ("`sysctl -q net.ipv4.tcp_timestamps=0`", "backticks"),
        ("+0 < [ect0] S 0:0(0) win 65535", "packet syntax"),
        ("+0 < S 0:0(0) win 65535 <md5 abc>", "TCP option"),
        ("+0 epoll_create(1) = 4", "system call epoll_create()"),
        ("+0 sendmsg(3, {msg_iov(1)=[{..., 1}], msg_control=[1]}, 0) = 1", "msg_control"),
        ("+0 socket(AF_INET6, SOCK_STREAM, IPPROTO_TCP) = 5", "socket domain AF_INET6"),
        ("+0 setsockopt(3, IPPROTO_TCP, TCP_FASTOPEN_WEIRD, [1], 4) = 0", "TCP_FASTOPEN_WEIRD"),
        ("--tolerance_usecs=10000", "option"),
        ("--ip_version=ipv6", "option --ip_version=ipv6"),
        ("+0 epoll_ctl(4, EPOLL_CTL_ADD, 3, {events=EPOLLIN, fd=3}) = 0", "epoll_ctl()"),
        ("+0 epoll_wait(4, {events=EPOLLIN, fd=3}, 1, 0) = 1", "epoll_wait()"),
        ("+0 getsockopt(3, SOL_TCP, TCP_INFO, {tcpi_state=1}, 104) = 0", "TCP_INFO"),
        ('+0 setsockopt(3, SOL_TCP, TCP_CONGESTION, "cubic", 5) = 0', "TCP_CONGESTION"),
        ("+0 setsockopt(3, SOL_TCP, TCP_CONGESTION, [1], 4) = 0", "TCP_CONGESTION"),
        ("+0 getsockopt(3, SOL_TCP, TCP_CONGESTION, [0], [4]) = 0", "TCP_CONGESTION"),
        ("+0 setsockopt(3, IPPROTO_IPV6, IPV6_V6ONLY, [1], 4) = 0", "IPV6_V6ONLY"),
        ("+0 connect(3, {sin6_port=8080}, 28) = 0", "connect() address"),
        ("+0 < S 0:0(0) win 65535 <mss 1460> [flowlabel 0x1]", "packet"),
        ("+0 > (tos 0x2) S 0:0(0) <...>", "packet syntax"),
    ],
)
def test_unsupported_constructs_fail_with_line(line: str, what: str) -> None:
    script = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n// comment\n" + line + "\n"
    message = fails_at(script, 3, "unsupported:", what)
    assert "at line 3" in message


def test_parse_error_names_line() -> None:
    result = run("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 bind(3, ..., ...)\n")
    assert not result.ok and result.line == 2
    assert "parse error" in result.message


# ------------------------------------------------------------------ parser


def test_parser_reads_times_packets_and_calls() -> None:
    events = parse_script(
        """\
/* a block
   comment */
0.100 < S. 0:0(0) ack 1 win 5792 <mss 1460,sackOK,TS val 700 ecr 100,nop,wscale 7>
+.1~+0.2 > P. 1:1001(1000) ack 1 <nop,nop,sack 1:2 3:4>  // trailing comment
1.5...2 setsockopt(3, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0
* connect(3, ..., ...) = -1 ECONNREFUSED (Connection refused)
"""
    )
    first, second, third, fourth = events
    assert first.line == 3 and first.time.start == 100_000 and not first.time.relative
    assert isinstance(first.action, Packet) and first.action.inbound
    assert first.action.win == 5792 and first.action.ack == 1
    assert first.action.options is not None
    assert [o.kind for o in first.action.options] == ["mss", "sackOK", "TS", "nop", "wscale"]
    assert second.time.relative and second.time.start == 100_000
    assert second.time.end == 200_000 and second.time.end_relative
    assert isinstance(second.action, Packet) and second.action.length == 1000
    assert second.action.options is not None and second.action.options[2].values == (1, 2, 3, 4)
    assert third.time.blocking and third.time.end == 2_000_000
    assert isinstance(third.action, Call) and third.action.name == "setsockopt"
    linger = third.action.args[3]
    assert isinstance(linger, Struct) and linger.get("linger") == 0
    assert third.action.args[1] == Symbol("SOL_SOCKET")
    assert fourth.time.any_time
    assert isinstance(fourth.action, Call) and fourth.action.errno_name == "ECONNREFUSED"
    assert fourth.action.args[1] == Wildcard() and fourth.action.ret == -1


def test_parser_marks_unsupported() -> None:
    events = parse_script("0 < S 0:0(0) win 1 <md5 x>\n")
    assert isinstance(events[0].action, Unsupported)


# ------------------------------------------------------------------ CLI


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.pkt"
    good.write_text(PASSIVE)
    bad = tmp_path / "bad.pkt"
    bad.write_text(PASSIVE.replace("ack 1 win 65535 <mss", "ack 7 win 65535 <mss"))
    assert main(["packetdrill", str(good)]) == 0
    assert main(["packetdrill", "--tolerance_usecs", "1000", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{good}: ok" in out
    assert f"{bad}:6: FAIL" in out
    assert "1 passed, 1 failed" in out
    plain = tmp_path / "plain.pkt"
    plain.write_text(ACTIVE.replace("<...>", "win 65535 <mss 1460>"))
    assert main(["packetdrill", "--config", "plain", str(plain)]) == 0
    assert main(["packetdrill", str(plain)]) == 1


TIMESTAMPS = """\
0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0    bind(3, ..., ...) = 0
+0    listen(3, 1) = 0
+0    < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
+0    > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS val 0 ecr 100,nop,wscale 3>
+0.1  < . 1:1(0) ack 1 win 500 <nop,nop,TS val 200 ecr 1>
+0    accept(3, ..., ...) = 4
+0    write(4, ..., 100) = 100
+0    > P. 1:101(100) ack 1 <nop,nop,TS val 1 ecr 200>
+0.1  < . 1:1(0) ack 101 win 500 <nop,nop,TS val 300 ecr 1,nop,nop,sack 1:101>
+0.1  < P. 1:101(100) ack 101 win 500 <nop,nop,TS val 400 ecr 1>
+0.04 > . 101:101(0) ack 101 <nop,nop,TS val 1 ecr 400>
"""


def test_timestamps_val_ignored_ecr_checked() -> None:
    assert run(TIMESTAMPS).ok, run(TIMESTAMPS).describe()
    fails_at(TIMESTAMPS.replace("ecr 400>", "ecr 300>"), 12, "ecr 400", "ecr 300")


# ------------------------------------------------------------------ several connections

TWO_PASSIVE = """\
0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0    bind(3, ..., ...) = 0
+0    listen(3, 2) = 0
+0    < @40001 S 0:0(0) win 65535 <mss 1460>
+0    > @40001 S. 0:0(0) ack 1 win 65535 <mss 1460>
+0    < @40002 S 0:0(0) win 65535 <mss 1460>
+0    > @40002 S. 0:0(0) ack 1 win 65535 <mss 1460>
+0.1  < @40002 . 1:1(0) ack 1 win 65535
+0    < @40001 . 1:1(0) ack 1 win 65535
+0    accept(3, ..., ...) = 4
+0    accept(3, ..., ...) = 5
+0    write(4, ..., 10) = 10
+0    > @40002 P. 1:11(10) ack 1
+0    write(5, ..., 20) = 20
+0    > @40001 P. 1:21(20) ack 1
+0.1  < @40001 F. 1:1(0) ack 21 win 65535
+0.04 > @40001 . 21:21(0) ack 2
+0    read(5, ..., 10) = 0
+0    < @40002 . 1:1(0) ack 11 win 65535
"""  # 19 lines


def test_accept_returns_several_connections_matched_by_port() -> None:
    # accept() hands out the connections in the order their handshakes completed
    # (40002 first); each `@PORT` line belongs to one of them.
    result = run(TWO_PASSIVE)
    assert result.ok, result.describe()
    assert result.events_run == 19


def test_segment_of_the_wrong_connection_fails() -> None:
    wrong = TWO_PASSIVE.replace("> @40002 P. 1:11(10) ack 1", "> @40001 P. 1:11(10) ack 1")
    message = fails_at(wrong, 13, "to port 40002 != @40001")
    assert "sent `> @40002 P. 1:11(10) ack 1" in message


def test_several_active_opens_to_named_ports() -> None:
    script = """\
0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0    fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0    connect(3, {sin_port=8081}, 16) = -1 EINPROGRESS (Operation now in progress)
+0    > @8081 S 0:0(0) <...>
+0    socket(..., SOCK_STREAM, IPPROTO_TCP) = 4
+0    fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0    connect(4, {sin_port=8082}, 16) = -1 EINPROGRESS (Operation now in progress)
+0    > @8082 S 0:0(0) <...>
+0.1  < @8082 S. 0:0(0) ack 1 win 65535 <mss 1460>
+0    > @8082 . 1:1(0) ack 1
+0    connect(4, {sin_port=8082}, 16) = 0
+0    read(3, ..., 10) = -1 EAGAIN (Resource temporarily unavailable)
+0.1  < @8081 S. 0:0(0) ack 1 win 65535 <mss 1460>
+0    > @8081 . 1:1(0) ack 1
+0    connect(3, {sin_port=8081}, 16) = 0
"""
    result = run(script)
    assert result.ok, result.describe()


# ------------------------------------------------------------------ sendmsg, recvmsg, URG


def test_sendmsg_and_recvmsg() -> None:
    script = (
        PASSIVE
        + """\
+0    sendmsg(4, {msg_name(...)=..., msg_iov(2)=[{..., 10}, {..., 20}], msg_flags=0}, 0) = 30
+0    > P. 1:31(30) ack 1
+0.1  < P. 1:11(10) ack 31 win 65535
+0    recvmsg(4, {msg_name(...)=..., msg_iov(1)=[{..., 4}], msg_flags=0}, 0) = 4
+0    recvmsg(4, {msg_name(...)=..., msg_iov(1)=[{..., 100}], msg_flags=0}, 0) = 6
"""
    )
    result = run(script)
    assert result.ok, result.describe()
    fails_at(script.replace("[{..., 4}]", "[{..., 5}]"), 12, "recvmsg() returned 5")


def test_urgent_flag_and_pointer() -> None:
    events = parse_script("0 < P.U 1:11(10) ack 1 urg 5 win 65535\n0 > .U 1:1(0) urg 0\n")
    inbound, outbound = (event.action for event in events)
    assert isinstance(inbound, Packet) and inbound.flags == "P.U" and inbound.urg == 5
    assert inbound.win == 65535 and inbound.ack == 1
    assert isinstance(outbound, Packet) and outbound.urg == 0
    # Urgent data is delivered in line (SO_OOBINLINE semantics, RFC 6093): as on Linux,
    # a read stops just before the last urgent octet (pointer 5: octets 1-5 are urgent,
    # the mark is octet 5), and the next read goes on from it.
    script = (
        PASSIVE
        + "+0.1 < P.U 1:11(10) ack 1 urg 5 win 65535\n+.04 > . 1:1(0) ack 11\n"
        + "+0 read(4, ..., 100) = 4\n+0 read(4, ..., 100) = 6\n"
    )
    assert run(script).ok, run(script).describe()
    # write() sends no urgent data: an expected urgent segment is a mismatch; send()
    # with MSG_OOB does send it.
    fails_at(
        PASSIVE + "+0 write(4, ..., 10) = 10\n+0 > P.U 1:11(10) ack 1 urg 10\n",
        10,
        "flags P. != PU.",
        "urg 0 != 10",
    )
    urgent = PASSIVE + "+0 send(4, ..., 10, MSG_OOB) = 10\n+0 > P.U 1:11(10) ack 1 urg 10\n"
    assert run(urgent).ok, run(urgent).describe()
