"""The seed's claims C1-C19 in English, each with the line of the Chinese original
(shared/seed/tcp-states-zh.md) that makes it, quoted word for word.

The quotes are copied from the seed with its own punctuation; only the line breaks of the
original are dropped (the test compares them with the file, ignoring whitespace).
Where the seed is imprecise the English says what tcpstack shows instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SeedClaim:
    id: str
    english: str
    chinese: tuple[str, ...]  # sentences of tcp-states-zh.md, verbatim
    correction: str = ""  # where RFC 9293 / Linux say otherwise, what tcpstack follows


def _join(*parts: str) -> str:
    return "".join(parts)


SEED_CLAIMS: dict[str, SeedClaim] = {
    claim.id: claim
    for claim in (
        SeedClaim(
            "C1",
            "A TCP connection is in one of eleven states: CLOSED, LISTEN, SYN_SENT, "
            "SYN_RECEIVED (SYN_RCVD), ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, "
            "CLOSING, LAST_ACK and TIME_WAIT.",
            ('CLOSED - 初始状态, 表示 TCP 连接是"关闭着的"或"未打开的".',),
        ),
        SeedClaim(
            "C2",
            "The active opener goes CLOSED -> SYN_SENT -> ESTABLISHED -> FIN_WAIT_1 -> "
            "FIN_WAIT_2 -> TIME_WAIT -> CLOSED.",
            (
                "对客户端(也可以是服务器, 客户端主动打开链接, 服务器被动打开):",
                "CLOSED -> SYN_SENT -> ESTABLISHED -> FIN_WAIT_1 -> FIN_WAIT_2 -> TIME_WAIT -> "
                "CLOSED",
            ),
        ),
        SeedClaim(
            "C3",
            "The passive opener goes CLOSED -> LISTEN -> SYN_RCVD -> ESTABLISHED -> "
            "CLOSE_WAIT -> LAST_ACK -> CLOSED.",
            (
                "对服务端:",
                "CLOSED -> LISTEN -> SYN_RCVD -> ESTABLISHED -> CLOSE_WAIT -> LAST_ACK -> CLOSED",
            ),
        ),
        SeedClaim(
            "C4",
            "In FIN_WAIT_1, a segment that carries the peer's FIN and the ACK of our FIN "
            "takes the connection straight to TIME_WAIT, skipping FIN_WAIT_2.",
            (
                "注: 若客户端到达 FIN_WAIT_1, 它同时接收到服务器的FIN, ACK, "
                "则它会直接跳过FIN_WAIT_2而到达TIME_WAIT状态",
            ),
        ),
        SeedClaim(
            "C5",
            "Simultaneous open (four segments) and simultaneous close (FIN_WAIT_1 -> CLOSING "
            "-> TIME_WAIT -> CLOSED on both sides) exist and are handled.",
            ("注: 客户端和服务器端可能同时打开连接或同时关闭连接(很少), 这时处理稍微不大一样.",),
            "A simultaneous open goes SYN_SENT -> SYN_RECEIVED -> ESTABLISHED on both sides "
            "(RFC 9293 figure 5), not SYN_SENT -> ESTABLISHED as the seed writes.",
        ),
        SeedClaim(
            "C6",
            "SYN_RECEIVED is short-lived; withholding the final ACK of the handshake holds "
            "the server in it (and its SYN+ACK is retransmitted).",
            (
                "在正常情况下, 这个状态是服务器端的 SOCKET 在建立 TCP 连接时的三次握手会话过程中的"
                "一个中间状态, 很短暂, 基本上用 netstat 很难看到这种状态(除非故意写一个监测程序, "
                "将三次 TCP 握手过程中最后一个 ACK 报文不予发送).",
            ),
        ),
        SeedClaim(
            "C7",
            "FIN_WAIT_2 is a half-closed connection with no timeout in the RFC: a peer that "
            "never closes keeps it forever. Linux bounds orphaned ones with tcp_fin_timeout "
            "(60 s), which tcpstack follows.",
            (
                _join(
                    "FIN_WAIT_2 是没有超时的 (不像 TIME_WAIT 状态), ",
                    "这种状态下如果对方不关闭(不配合完成 4 次挥手过程), ",
                    "那这个 FIN_WAIT_2 状态将一直保持到系统重启, ",
                    "越来越多的 FIN_WAIT_2 状态会导致内核崩溃.",
                ),
            ),
        ),
        SeedClaim(
            "C8",
            "CLOSE_WAIT lasts until the application calls close(); an application that "
            "never closes leaks connections in CLOSE_WAIT.",
            ("简单地说, 当你处于 CLOSE_WAIT 状态下, 需要完成的事情是等待你去关闭连接.",),
        ),
        SeedClaim(
            "C9",
            "CLOSING: both sides sent FIN, and each received the other's FIN before the ACK "
            "of its own.",
            (
                "但是 CLOSING 状态表示一方发送 FIN 报文后, 并没有收到对方的 ACK 报文, "
                "反而却也收到了对方的 FIN 报文.",
            ),
        ),
        SeedClaim(
            "C10",
            "LAST_ACK: the passive closer has sent its FIN and waits for its ACK, then goes "
            "to CLOSED.",
            (
                "当被动关闭的一方在发送 FIN 报文后, 等待对方的 ACK 报文的时候, "
                "就处于 LAST_ACK 状态.",
            ),
        ),
        SeedClaim(
            "C11",
            "TIME_WAIT lasts 2*MSL (Linux: a fixed 60 s) for two reasons: if the final ACK "
            "is lost the peer resends its FIN and TIME_WAIT must ACK it again (a CLOSED end "
            "would answer RST: 'connection reset'); and old duplicates must die out before "
            "the same 4-tuple is used again.",
            (
                "如果 A 端不维持 TIME_WAIT 状态, 而是处于 CLOSED 状态, 那么 A 端将响应 RST 分节, "
                "B 端收到后将此分节解释成一个错误(在 java 中会抛出 connection reset 的 "
                "SocketException).",
                "为了避免这个情况,`TCP 协议不允许处于 TIME_WAIT 状态的连接启动一个新的可用连接, "
                "因为 TIME_WAIT 状态持续 2MSL, 就可以保证当成功建立一个新 TCP 连接的时候, "
                "来自旧连接重复分组已经在网络中消逝.`",
            ),
            "tcp_fin_timeout is Linux's orphaned FIN_WAIT_2 timeout, not the MSL; Linux's "
            "TIME_WAIT is a compile-time 60 s.",
        ),
        SeedClaim(
            "C12",
            "A close takes four segments normally, four when simultaneous, and three when "
            "the passive side has nothing more to send and answers the FIN with FIN+ACK.",
            (
                "当主动方准备断开连接时, 被动方刚好数据传输完毕(但是未发送FIN). "
                "此时被动方在接收到`FIN`后, 回复`FIN+ACK`",
            ),
            "In the three-segment close the passive side still passes through CLOSE_WAIT, "
            "briefly, before LAST_ACK ('LASK_ACK' in the seed).",
        ),
        SeedClaim(
            "C13",
            "SO_LINGER with a zero timeout makes close() send RST and skip TIME_WAIT; the "
            "peer sees 'connection reset'. Usually a bad idea, but it works.",
            (
                _join(
                    "这时我们可以通过设置 SOCKET 变量的 SO_LINGER 标志来避免 SOCKET ",
                    "在 close() 之后进入 TIME_WAIT 状态, ",
                    "这时将通过发送 RST 强制终止 TCP 连接(取代正常的 TCP 四次握手的终止方式).",
                ),
            ),
        ),
        SeedClaim(
            "C14",
            "Why a 3-way open but a 4-way close: SYN and ACK can share a segment, but on "
            "close the ACK of the peer's FIN and our own FIN are usually separate, because "
            "we may still have data to send.",
            (
                "它可以把 ACK 和 SYN (ACK 起应答作用, 而 SYN 起同步作用) 放在一个报文里来发送.",
                "所以它这里的 ACK 报文和 FIN 报文多数情况下都是分开发送的.",
            ),
        ),
        SeedClaim(
            "C15",
            "TCP keepalive is off by default and enabled per socket (SO_KEEPALIVE): after "
            "TCP_KEEPIDLE of silence (any segment received restarts it) it sends up to "
            "TCP_KEEPCNT probes every TCP_KEEPINTVL, each with sequence number SND.NXT - 1; "
            "if none is answered the connection is dropped with a timeout.",
            (
                "TCP KeepAlive 默认状况下是关闭, 可以被上层应用开启和关闭.",
                "TCP 保活探测报文序列号 = 前一个TCP报文序列号 - 1. "
                "即下一次正常报文号等于ACK序列号.",
            ),
        ),
        SeedClaim(
            "C16",
            "Go turns keepalive on for dialed and accepted connections, with idle = "
            "interval = 15 s.",
            (
                "在 Go 的 TCP 的客户端连接的时候, 默认是开启 KeepAlive, 并且 `TCP_KEEPINTVL` 和 "
                "`TCP_KEEPIDELE` 的默认时长是15秒(除非设置 Dialer.KeepAlive 参数)",
            ),
        ),
        SeedClaim(
            "C17",
            "Keepalive detects dead peers (crash, reboot, network loss) and keeps NAT and "
            "firewall mappings alive.",
            (
                "检测挂掉的连接(导致挂掉的原因很多,服务停止, 网络波动, 宕机, 服务重启等)",
                "防止因为网络不活动而断连(NAT代理或者防火墙的时候, 经常出现这种问题)",
            ),
        ),
        SeedClaim(
            "C18",
            "Application heartbeats differ: independent of the transport, they can carry "
            "data and prove the peer application works; keepalive only proves its stack "
            "answers.",
            ("KeepAlive 仅代表连接保持着, 而心跳往往代表客户端可正常工作.",),
        ),
        SeedClaim(
            "C19",
            "HTTP keep-alive is connection reuse (several requests in series on one "
            "connection); TCP keepalive is liveness probing.",
            ("HTTP 的 KeepAlive 意图在于连接复用, 同一个连接上串行方式请求-响应数据.",),
        ),
    )
}

__all__ = ["SEED_CLAIMS", "SeedClaim"]
