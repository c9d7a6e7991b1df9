"""Blind (off-path) injection at established connections (RFC 5961).

An attacker who knows the 4-tuple but not the sequence numbers sprays spoofed RST, SYN,
RST+ACK and data segments with random SEQ and ACK at the server while the client
uploads. The connection must survive, the upload must arrive intact, and the server's
challenge ACKs must stay within RFC 5961 section 7's limits, applied as Linux's
tcp_send_challenge_ack does: first per connection (one per Config.invalid_ack_ratelimit,
500 ms), then the Endpoint's stack-wide 1,000 per second. Against one connection the
per-connection limit is the one that binds; against many, the stack-wide one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tcpstack.core.config import Config
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.isn import KeyedIsnGenerator
from tcpstack.core.segment import Datagram, Flag, Segment
from tcpstack.core.state import State
from tests.security.support import MS, SECOND, Network

CLIENT = "10.0.0.1"
SERVER = "10.0.0.2"
LIMIT = 1000  # challenge ACKs per second for the whole stack (the default)
PER_CONNECTION_INTERVAL = 500 * MS  # Config().invalid_ack_ratelimit
ATTACK_FLAGS = (Flag.RST, Flag.SYN, Flag.RST | Flag.ACK, Flag.ACK | Flag.PSH)
# The reason counters of the drops that call for a challenge ACK (RFC 5961 3.2, 4.2,
# 5.2). They count every such drop, whether a limit then holds the ACK back or not.
CHALLENGE_REASONS = (
    "conn.syn_out_of_window",
    "conn.syn_synchronized",
    "conn.rst_not_exact",
    "conn.ack_unsent",
    "conn.ack_too_old",
)


@dataclass
class Outcome:
    injected: int
    spoofed_syns: int
    syn_challenges: int  # SYNs dropped for a challenge ACK (RFC 5961 4.2)
    challenge_triggers: int  # segments that called for a challenge ACK
    challenge_acks: int  # sent
    conn_rate_limited: int  # held back by the per-connection limit
    stack_rate_limited: int  # held back by the stack-wide limiter
    peak_per_second: int
    server_datagrams: int
    uploaded: int
    # Virtual ms of the steps in which a challenge ACK was sent / a trigger arrived.
    challenge_steps: list[int] = field(repr=False, default_factory=list)
    trigger_steps: list[int] = field(repr=False, default_factory=list)


def challenge_triggers(server: Endpoint) -> int:
    return sum(server.stats[name] for name in CHALLENGE_REASONS)


def run_attack(spoofed: int, seconds: int, seed: int = 1) -> Outcome:
    rng = random.Random(seed)
    config = Config()
    assert config.invalid_ack_ratelimit == PER_CONNECTION_INTERVAL
    client = Endpoint(CLIENT, isn_generator=KeyedIsnGenerator(b"c" * 32), config=config)
    server = Endpoint(SERVER, isn_generator=KeyedIsnGenerator(b"s" * 32), config=config)
    server.listen(80)
    net = Network(client, server)
    conn = client.connect(SERVER, 80, now=0)
    net.settle(0)
    accepted = server.accept(80)
    assert accepted is not None and accepted.state is State.ESTABLISHED
    steps = seconds * 1000
    per_step = spoofed // steps
    upload = bytes(rng.getrandbits(8) for _ in range(256)) * (steps // 2)
    written = 0
    received = bytearray()
    spoofed_syns = 0
    challenge_steps: list[int] = []
    trigger_steps: list[int] = []
    for step in range(1, steps + 1):
        now = step * MS
        if written < len(upload):
            written += conn.send(upload[written : written + 256], now=now)
        triggers_before = challenge_triggers(server)
        sent_before = server.stats["challenge_ack.sent"]
        for _ in range(per_step):
            flags = rng.choice(ATTACK_FLAGS)
            spoofed_syns += flags == Flag.SYN
            payload = b"EVIL" * 25 if flags & Flag.PSH else b""
            seg = Segment(
                conn.local_port,
                80,
                rng.getrandbits(32),
                rng.getrandbits(32),
                flags,
                65535,
                0,
                payload=payload,
            )
            server.receive_datagram(Datagram(CLIENT, SERVER, seg), now=now)
        net.tick(now)
        received += accepted.receive(now=now)
        if challenge_triggers(server) > triggers_before:
            trigger_steps.append(step)
        sent_now = server.stats["challenge_ack.sent"] - sent_before
        assert sent_now <= 1, "at most one challenge ACK per 500 ms, so per 1 ms step"
        if sent_now:
            challenge_steps.append(step)
    now = steps * MS
    while len(received) < len(upload) and now < (seconds + 30) * SECOND:
        now += 10 * MS
        net.tick(now)
        received += accepted.receive(now=now)
    assert conn.state is State.ESTABLISHED and accepted.state is State.ESTABLISHED
    assert bytes(received) == upload  # every byte, in order, nothing injected
    limiter = server.challenge_limiter
    assert server.stats["challenge_ack.sent"] == limiter.sent
    assert server.stats["challenge_ack.rate_limited"] == limiter.suppressed
    return Outcome(
        injected=spoofed,
        spoofed_syns=spoofed_syns,
        syn_challenges=server.stats["conn.syn_out_of_window"]
        + server.stats["conn.syn_synchronized"],
        challenge_triggers=challenge_triggers(server),
        challenge_acks=limiter.sent,
        conn_rate_limited=server.stats["challenge_ack.conn_rate_limited"],
        stack_rate_limited=limiter.suppressed,
        peak_per_second=limiter.peak_per_window,
        server_datagrams=net.sent[SERVER],
        uploaded=len(upload),
        challenge_steps=challenge_steps,
        trigger_steps=trigger_steps,
    )


def test_blind_injection_100k_at_one_connection() -> None:
    # The figure: 100,000 spoofed segments, 10,000 a second for 10 s.
    outcome = run_attack(100_000, seconds=10)
    print(outcome)
    assert outcome.injected == 100_000
    # Every spoofed SYN calls for a challenge ACK (RFC 5961 4.2: in the window or not);
    # spoofed RSTs and data only when their random SEQ falls in the window.
    assert outcome.syn_challenges == outcome.spoofed_syns
    assert outcome.challenge_triggers >= outcome.spoofed_syns
    # A quarter of the segments are SYNs, ten segments a millisecond: a millisecond
    # without one has probability 0.75**10 (5.6 %), so a trigger follows each 500 ms
    # interval within a few ms, and the per-connection limit lets exactly two challenge
    # ACKs out per second: 20 in 10 s. Being at least 500 ms apart, at most two fall in
    # any one-second window of the stack-wide limiter, far below its 1,000: it never
    # refuses. Before the per-connection limit the same attack drew 10,000 challenge
    # ACKs (1,000 a second) and the stack-wide limiter held back 15,089 of the 25,089.
    assert outcome.challenge_acks == 20
    assert outcome.stack_rate_limited == 0
    assert outcome.peak_per_second == 2
    assert outcome.conn_rate_limited == outcome.challenge_triggers - 20
    # The exact times: a challenge ACK goes out at the first trigger at least 500 ms
    # after the previous one (Linux's __tcp_oow_rate_limited), and only then.
    expected: list[int] = []
    for step in outcome.trigger_steps:
        if not expected or (step - expected[-1]) * MS >= PER_CONNECTION_INTERVAL:
            expected.append(step)
    assert outcome.challenge_steps == expected


def test_many_connections_meet_the_stack_wide_limit() -> None:
    """750 connections, each sent a spoofed SYN every 500 ms for 2 s and a second one
    1 ms after each. The second is always within 500 ms of the first: held back per
    connection, before the stack-wide limiter sees it. The first is exactly 500 ms after
    the previous one and passes; 750 connections then ask for 1,500 challenge ACKs a
    second, and the stack-wide limiter (RFC 5961 7, 1,000 a second) lets 1,000 out."""
    connections = 750
    config = Config()
    assert config.invalid_ack_ratelimit == PER_CONNECTION_INTERVAL
    client = Endpoint(CLIENT, isn_generator=KeyedIsnGenerator(b"c" * 32), config=config)
    server = Endpoint(SERVER, isn_generator=KeyedIsnGenerator(b"s" * 32), config=config)
    server.listen(80, backlog=connections)
    net = Network(client, server)
    ports = []
    for _ in range(connections):  # one at a time: the SYN backlog (256) never fills
        ports.append(client.connect(SERVER, 80, now=0).local_port)
        net.settle(0)
    accepted = [server.accept(80) for _ in range(connections)]
    assert all(c is not None and c.state is State.ESTABLISHED for c in accepted)
    assert net.sent[SERVER] == connections  # the SYN,ACKs
    rng = random.Random(2)
    start = 1 * SECOND
    answers: list[int] = []  # challenge ACKs the server sent at each instant
    for round_ in range(4):
        for offset in (0, 1 * MS):
            now = start + round_ * PER_CONNECTION_INTERVAL + offset
            for port in ports:
                seg = Segment(port, 80, rng.getrandbits(32), 0, Flag.SYN, 65535, 0)
                server.receive_datagram(Datagram(CLIENT, SERVER, seg), now=now)
            before = net.sent[SERVER]
            net.settle(now)
            answers.append(net.sent[SERVER] - before)
    # The limiter's window opens at the first challenge ACK (1.0 s) and again at 2.0 s:
    # in each, 750 at its start and the remaining 250 of 1,000 half a second later.
    assert answers == [750, 0, 250, 0, 750, 0, 250, 0]
    assert server.stats["challenge_ack.sent"] == 2000
    assert server.stats["challenge_ack.rate_limited"] == 1000
    assert server.stats["challenge_ack.conn_rate_limited"] == 4 * connections
    assert server.stats["conn.syn_out_of_window"] + server.stats["conn.syn_synchronized"] == (
        8 * connections
    )
    assert server.challenge_limiter.peak_per_window == LIMIT
    assert all(c is not None and c.state is State.ESTABLISHED for c in accepted)
