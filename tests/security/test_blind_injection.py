"""Blind (off-path) injection at an established connection (RFC 5961).

An attacker who knows the 4-tuple but not the sequence numbers sprays spoofed RST, SYN,
RST+ACK and data segments with random SEQ and ACK at the server while the client
uploads. The connection must survive, the upload must arrive intact, and the server's
challenge ACKs must stay within the Endpoint's limit per second (RFC 5961 7).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tcpstack.core.config import Config
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.isn import KeyedIsnGenerator
from tcpstack.core.segment import Datagram, Flag, Segment
from tcpstack.core.state import State
from tests.security.support import MS, SECOND, Network

CLIENT = "10.0.0.1"
SERVER = "10.0.0.2"
LIMIT = 1000  # challenge ACKs per second (the default)
ATTACK_FLAGS = (Flag.RST, Flag.SYN, Flag.RST | Flag.ACK, Flag.ACK | Flag.PSH)


@dataclass
class Outcome:
    injected: int
    challenge_acks: int
    rate_limited: int
    peak_per_second: int
    server_datagrams: int
    uploaded: int


def run_attack(spoofed: int, seconds: int, seed: int = 1) -> Outcome:
    rng = random.Random(seed)
    config = Config()
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
    for step in range(1, steps + 1):
        now = step * MS
        if written < len(upload):
            written += conn.send(upload[written : written + 256], now=now)
        for _ in range(per_step):
            flags = rng.choice(ATTACK_FLAGS)
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
    now = steps * MS
    while len(received) < len(upload) and now < (seconds + 30) * SECOND:
        now += 10 * MS
        net.tick(now)
        received += accepted.receive(now=now)
    assert conn.state is State.ESTABLISHED and accepted.state is State.ESTABLISHED
    assert bytes(received) == upload  # every byte, in order, nothing injected
    limiter = server.challenge_limiter
    assert limiter.peak_per_window <= LIMIT
    assert limiter.sent <= LIMIT * (seconds + 1)
    assert server.stats["challenge_ack.sent"] == limiter.sent
    return Outcome(
        spoofed,
        limiter.sent,
        limiter.suppressed,
        limiter.peak_per_window,
        net.sent[SERVER],
        len(upload),
    )


def test_blind_injection_100k() -> None:
    # The figure: 100,000 spoofed segments, 10,000 a second for 10 s, against a
    # limit of 1,000 challenge ACKs a second.
    outcome = run_attack(100_000, seconds=10)
    print(outcome)
    assert outcome.injected == 100_000
    assert outcome.rate_limited > 0
