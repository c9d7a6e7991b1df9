"""atheris harness: arbitrary bytes through the TCP codec and the IP layer.

Properties (an AssertionError or any other exception is a crash for libFuzzer):

- decode_segment either returns a Segment or raises MalformedSegment, the core's
  documented error for bytes that are not a TCP segment;
- a decoded segment encodes again, and decoding that gives the same segment (the
  codec round-trips everything it accepts);
- IpLayer.classify (the TUN driver's first step) never raises; a TCP payload it hands
  on obeys the first property.

Run: make fuzz (or .venv/bin/python fuzz/fuzz_codec.py -runs=100000 out/fuzz/codec).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["tcpstack"]):
    from tcpstack.core.codec import decode_segment, encode_segment
    from tcpstack.core.errors import MalformedSegment
    from tcpstack.net.packet import IpLayer, TcpPayload

SRC = "10.0.0.1"
DST = "10.0.0.2"
_IP_LAYER = IpLayer({DST})


def check_segment_bytes(data: bytes, src: str, dst: str) -> None:
    for verify in (True, False):
        try:
            seg = decode_segment(data, src, dst, verify_checksum=verify)
        except MalformedSegment:
            continue
        wire = encode_segment(seg, src, dst)
        again = decode_segment(wire, src, dst)
        assert again == seg, f"round trip changed {seg!r} into {again!r}"


def test_one_input(data: bytes) -> None:
    check_segment_bytes(data, SRC, DST)
    inbound = _IP_LAYER.classify(data)
    if isinstance(inbound, TcpPayload):
        with contextlib.suppress(MalformedSegment):
            decode_segment(inbound.data, inbound.src, inbound.dst)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
