"""atheris harness: an Endpoint with a connection in one of the eleven states, fed the
steps that the input bytes describe.

The first byte picks the state, the rest decodes to a Case exactly as the Hypothesis
fuzz test does (tests/security/strategies.py: weird segments, arbitrary bytes as TCP
segments and IP packets, clock moves, user calls). After every step the rig checks the
properties (tests/security/endpoint_rig.py): no exception from peer input or timers,
every state change a TRANSITIONS edge, acknowledged data delivered intact, one drop
counter per dropped input. A failed check raises AssertionError: a crash for libFuzzer,
with the input saved as crash-<sha1> to replay (python fuzz/fuzz_endpoint.py FILE).

Run: make fuzz (or .venv/bin/python fuzz/fuzz_endpoint.py -runs=100000 out/fuzz/endpoint).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Coverage feedback from tcpstack only (not from Hypothesis, which the strategies module
# imports, nor the test helpers themselves).
with atheris.instrument_imports(include=["tcpstack"]):
    from tests.security.endpoint_rig import ALL_STATES, Rig
    from tests.security.strategies import decode_case, feed_step

    from tcpstack.core.state import State


def run_input(data: bytes) -> None:
    if not data:
        return
    state: State = ALL_STATES[data[0] % len(ALL_STATES)]
    case = decode_case(data[1:])
    rig = Rig(state, case.config_name, cookies=case.cookies, preload=case.preload)
    for step in case.steps:
        feed_step(rig, step)


def main() -> None:
    atheris.Setup(sys.argv, run_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
