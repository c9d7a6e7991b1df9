"""Fuzzing an Endpoint with a connection in each of the eleven states (Hypothesis).

Every example builds a fresh Endpoint whose tracked connection is in one state (reached
through the public API, tests/security/endpoint_rig.py), then applies up to eight steps
(tests/security/strategies.py): arbitrary bytes as TCP segments or IP packets,
well-formed but weird segments, the clock moving, user calls. After every step the rig
asserts the properties: no exception escapes (user calls may raise InvalidOperation),
every state change is a TRANSITIONS edge, acknowledged data reaches the application
intact, and every dropped input increments exactly one named drop counter.

Budget: 20,000 examples in the default run, split evenly across the states (1,819
each). TCPSTACK_FUZZ_EXAMPLES=N sets the total for the default test; the opt-in
`-m slow` test runs 1,000,000 (or TCPSTACK_FUZZ_SLOW_EXAMPLES). Both use a
deterministic profile: derandomized, no deadline, no example database, so CI sees the
same examples every run; TCPSTACK_FUZZ_SEED=S explores a different, still
reproducible, stream of examples.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given

from tcpstack.core.state import State
from tests.security.endpoint_rig import ALL_STATES, Rig
from tests.security.strategies import CASE, Case, feed_step, fuzz_profile

DEFAULT_TOTAL = int(os.environ.get("TCPSTACK_FUZZ_EXAMPLES", "20000"))
SLOW_TOTAL = int(os.environ.get("TCPSTACK_FUZZ_SLOW_EXAMPLES", "1000000"))


def run_case(state: State, case: Case) -> None:
    rig = Rig(state, case.config_name, cookies=case.cookies, preload=case.preload)
    for step in case.steps:
        feed_step(rig, step)


@pytest.mark.parametrize("state", ALL_STATES, ids=str)
@fuzz_profile(DEFAULT_TOTAL)
@given(case=CASE)
def test_fuzz_endpoint(state: State, case: Case) -> None:
    run_case(state, case)


@pytest.mark.slow
@pytest.mark.parametrize("state", ALL_STATES, ids=str)
@fuzz_profile(SLOW_TOTAL)
@given(case=CASE)
def test_fuzz_endpoint_slow(state: State, case: Case) -> None:
    run_case(state, case)
