"""ICMP errors about our own segments, as the core takes them (sans-I/O).

A driver that sees ICMP (the TUN driver, tcpstack.net) parses the message and hands the
Endpoint an `IcmpReport`: the 4-tuple and sequence number of the TCP segment the message
quotes, the kind of error, and for "fragmentation needed" / "packet too big" the
next-hop MTU. `Endpoint.receive_icmp_error` finds the connection (RFC 9293 3.9.2.2,
MUST-54) and `Connection.receive_icmp_error` decides (RFC 9293 3.9.2.2):

- RFC 5927 4.1: the quoted sequence number must lie in SND.UNA =< SEG.SEQ < SND.NXT,
  else the message is dropped (a blind attacker cannot guess it).
- Soft errors (net / host unreachable, source route failed, time exceeded) never end a
  connection (RFC 1122 4.2.3.9, RFC 9293 MUST-56); the last one is kept as the
  connection's `icmp_error` (Linux's sk_err_soft) and reported instead of ETIMEDOUT if
  the connection later times out.
- Hard errors (protocol / port unreachable, administratively prohibited) end a
  connection in SYN_SENT (RFC 1122 4.2.3.9 "SHOULD abort", RFC 9293 SHLD-26; Linux's
  tcp_v4_err, which ends SYN_SENT on soft errors too) and are only recorded, as soft
  errors, in synchronized states: RFC 5927 5.2's defence against blind resets, which
  Linux applies too.
- Fragmentation needed lowers the connection's path MTU (RFC 1191, RFC 8201), never
  below the floor; an IPv6 Packet Too Big below 1280 is discarded (RFC 8201 4).

The TUN driver drops ICMP Source Quench (RFC 9293 MUST-55: silently discard) and, for
now, Parameter Problem (a soft error in 3.9.2.2 that is not delivered yet).

The errno names are what Linux reports (net/ipv4/icmp.c icmp_err_convert, indexed by the
IPv4 destination-unreachable code; net/ipv6/icmp.c icmpv6_err_convert; tcp_v4_err's
EHOSTUNREACH for time exceeded). Linux names some codes differently from the kind they
share here (7 EHOSTDOWN, 8 ENONET, 9 ENETUNREACH), so a report that carries its IPv4
code takes the errno from the per-code table; the kind still decides soft or hard. The
core only names them, drivers turn them into OSError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "IPV4_MIN_PMTU",
    "IPV4_UNREACHABLE_ERRNO_NAMES",
    "IPV6_MIN_MTU",
    "IcmpKind",
    "IcmpReport",
    "mss_for_path_mtu",
]

# Linux's net.ipv4.route.min_pmtu: a "fragmentation needed" claiming less is raised to it
# (RFC 1191 allows 68; tiny MTUs only help an attacker shrink segments, RFC 5927 7).
IPV4_MIN_PMTU = 552
# RFC 8200 5: every IPv6 link carries 1280-byte packets.
IPV6_MIN_MTU = 1280
_IPV4_HEADER = 20
_IPV6_HEADER = 40
_TCP_HEADER = 20


class IcmpKind(Enum):
    """What an ICMP(v6) error says about the segment it quotes."""

    NET_UNREACHABLE = "net_unreachable"  # ICMP 3/0, 3/6, 3/11; ICMPv6 1/0
    HOST_UNREACHABLE = "host_unreachable"  # ICMP 3/1, 3/7, 3/8, 3/12; ICMPv6 1/2, 1/3
    PROTOCOL_UNREACHABLE = "protocol_unreachable"  # ICMP 3/2
    PORT_UNREACHABLE = "port_unreachable"  # ICMP 3/3; ICMPv6 1/4
    FRAGMENTATION_NEEDED = "fragmentation_needed"  # ICMP 3/4; ICMPv6 2 (packet too big)
    SOURCE_ROUTE_FAILED = "source_route_failed"  # ICMP 3/5
    ADMIN_PROHIBITED = "admin_prohibited"  # ICMP 3/9, 3/10, 3/13-15; ICMPv6 1/1, 1/5, 1/6
    TIME_EXCEEDED = "time_exceeded"  # ICMP 11; ICMPv6 3

    @property
    def hard(self) -> bool:
        """RFC 1122 4.2.3.9 hard errors (codes 2-3; code 4 is path MTU discovery's),
        plus "administratively prohibited", which Linux also counts as fatal."""
        return self in _HARD_KINDS

    def __str__(self) -> str:
        return self.value


_HARD_KINDS = frozenset(
    {IcmpKind.PROTOCOL_UNREACHABLE, IcmpKind.PORT_UNREACHABLE, IcmpKind.ADMIN_PROHIBITED}
)

# The errno Linux reports for each IPv4 destination-unreachable code 0-15 (RFC 792, RFC
# 1812 5.2.7.1), in the order of its icmp_err_convert table. Linux also marks 6-10 and
# 13-15 fatal; here net / host unknown and host isolated (6-8) stay soft errors like net
# / host unreachable (RFC 9293 MUST-56), and the kinds of 9, 10, 13-15 are hard.
IPV4_UNREACHABLE_ERRNO_NAMES = (
    "ENETUNREACH",  # 0 net unreachable
    "EHOSTUNREACH",  # 1 host unreachable
    "ENOPROTOOPT",  # 2 protocol unreachable
    "ECONNREFUSED",  # 3 port unreachable
    "EMSGSIZE",  # 4 fragmentation needed and DF set
    "EOPNOTSUPP",  # 5 source route failed
    "ENETUNREACH",  # 6 destination network unknown
    "EHOSTDOWN",  # 7 destination host unknown
    "ENONET",  # 8 source host isolated
    "ENETUNREACH",  # 9 network administratively prohibited
    "EHOSTUNREACH",  # 10 host administratively prohibited
    "ENETUNREACH",  # 11 network unreachable for type of service
    "EHOSTUNREACH",  # 12 host unreachable for type of service
    "EHOSTUNREACH",  # 13 communication administratively prohibited
    "EHOSTUNREACH",  # 14 host precedence violation
    "EHOSTUNREACH",  # 15 precedence cutoff in effect
)

# The errno for each kind when the report carries no IPv4 code (ICMPv6, time exceeded,
# reports built without one): icmp_err_convert's for the kind's usual code (0-5, and 13
# for administratively prohibited), tcp_v4_err's EHOSTUNREACH for time exceeded.
_ERRNO_NAMES = {
    IcmpKind.NET_UNREACHABLE: "ENETUNREACH",
    IcmpKind.HOST_UNREACHABLE: "EHOSTUNREACH",
    IcmpKind.PROTOCOL_UNREACHABLE: "ENOPROTOOPT",
    IcmpKind.PORT_UNREACHABLE: "ECONNREFUSED",
    IcmpKind.FRAGMENTATION_NEEDED: "EMSGSIZE",
    IcmpKind.SOURCE_ROUTE_FAILED: "EOPNOTSUPP",
    IcmpKind.ADMIN_PROHIBITED: "EHOSTUNREACH",
    IcmpKind.TIME_EXCEEDED: "EHOSTUNREACH",
}


@dataclass(frozen=True, slots=True)
class IcmpReport:
    """An ICMP error about a segment we sent, reduced to what TCP acts on.

    local/remote are the quoted segment's source (us) and destination, so
    `four_tuple` is the Endpoint's key; `seq` is the quoted SEG.SEQ; `mtu` the next-hop
    MTU of fragmentation needed / packet too big (None or 0 when the router gave none);
    `reporter` the address that sent the ICMP message (for traces);
    `unreachable_code` the code of an IPv4 Destination Unreachable (None for any other
    message), which only picks Linux's errno: it takes no part in equality, since the
    kind is all that TCP acts on.
    """

    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    seq: int
    kind: IcmpKind
    mtu: int | None = None
    reporter: str = ""
    unreachable_code: int | None = field(default=None, compare=False)

    @property
    def four_tuple(self) -> tuple[str, int, str, int]:
        return (self.local_ip, self.local_port, self.remote_ip, self.remote_port)

    @property
    def ipv6(self) -> bool:
        return ":" in self.local_ip

    @property
    def errno_name(self) -> str:
        """The errno Linux reports for this error, e.g. 'EHOSTUNREACH' (ICMPv6's
        administratively prohibited is EACCES there)."""
        code = self.unreachable_code
        if code is not None and 0 <= code < len(IPV4_UNREACHABLE_ERRNO_NAMES):
            return IPV4_UNREACHABLE_ERRNO_NAMES[code]
        if self.kind is IcmpKind.ADMIN_PROHIBITED and self.ipv6:
            return "EACCES"
        return _ERRNO_NAMES[self.kind]


def mss_for_path_mtu(mtu: int | None, *, ipv6: bool) -> int:
    """The MSS (TCP payload without options) that fits a path MTU, the MTU first raised
    to the floor: 552 for IPv4 (Linux's min_pmtu), 1280 for IPv6 (RFC 8200)."""
    if ipv6:
        return max(mtu or 0, IPV6_MIN_MTU) - _IPV6_HEADER - _TCP_HEADER
    return max(mtu or 0, IPV4_MIN_PMTU) - _IPV4_HEADER - _TCP_HEADER
