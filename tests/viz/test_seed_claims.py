"""The claims table of the report: every claim, and every quote really in the seed."""

from __future__ import annotations

import re

import pytest

from tcpstack.scenarios.catalog import SCENARIOS
from tcpstack.scenarios.claims import CLAIMS
from tcpstack.viz.seed_claims import SEED_CLAIMS
from tests.viz.support import SEED_ZH


def test_every_claim_has_english_and_chinese() -> None:
    assert list(SEED_CLAIMS) == [f"C{i}" for i in range(1, 20)] == list(CLAIMS)
    for claim in SEED_CLAIMS.values():
        assert claim.english and claim.chinese


def test_every_scenario_claim_is_in_the_table() -> None:
    for item in SCENARIOS.values():
        assert set(item.claims) <= set(SEED_CLAIMS)


def test_quotes_are_verbatim_lines_of_the_seed() -> None:
    if not SEED_ZH.exists():
        pytest.skip(f"the seed document is not beside the repository ({SEED_ZH})")
    seed = re.sub(r"\s+", "", SEED_ZH.read_text(encoding="utf-8"))
    for claim in SEED_CLAIMS.values():
        for quote in claim.chinese:
            assert re.sub(r"\s+", "", quote) in seed, (claim.id, quote)
