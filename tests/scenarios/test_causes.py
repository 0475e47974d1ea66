"""Every failed attempt of every shipped scenario says why, in words docs/results.md defines."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from svcsim.results.schema import Cause, Outcome
from svcsim.traffic import ReferenceEngine, TrafficEngine
from tests.scenarios.conftest import SCENARIOS_DIR
from tests.scenarios.engines import shipped_requests

RESULTS_DOC = Path(__file__).resolve().parents[2] / "docs" / "results.md"


def documented_causes() -> set[str]:
    """The causes listed in the "Causes" table of docs/results.md (first column, in backticks)."""
    text = RESULTS_DOC.read_text(encoding="utf-8")
    section = text[text.index("## Causes") :]
    section = section[: section.find("\n## ", 1) if "\n## " in section[1:] else None]
    return set(re.findall(r"^\| `([a-z-]+)` \|", section, re.M))


def test_every_cause_is_documented() -> None:
    assert documented_causes() == {c.value for c in Cause if c is not Cause.NONE}


def check_causes(requests: pd.DataFrame) -> None:
    """ok ⇔ no cause; misrouted ⇒ ip-reused; every other outcome ⇒ a documented cause."""
    ok = requests["outcome"] == Outcome.OK.value
    no_cause = requests["cause"] == Cause.NONE.value
    assert (ok == no_cause).all(), requests.loc[ok != no_cause, ["outcome", "cause"]].value_counts()
    misrouted = requests["outcome"] == Outcome.MISROUTED.value
    assert (requests.loc[misrouted, "cause"] == Cause.IP_REUSED.value).all()
    assert set(requests.loc[~ok, "cause"]) <= documented_causes()


@pytest.mark.parametrize("path", sorted(SCENARIOS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_failures_have_documented_causes_in_both_engines(path: Path) -> None:
    batched = shipped_requests(path, TrafficEngine)
    reference = shipped_requests(path, ReferenceEngine)
    assert len(batched) > 100
    check_causes(batched)
    check_causes(reference)
    pd.testing.assert_frame_equal(batched, reference, check_exact=True)
