"""Failure causes as docs/results.md defines them, and a check of a requests table against them."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.results.schema import Cause, Outcome

RESULTS_DOC = Path(__file__).resolve().parents[2] / "docs" / "results.md"


def documented_causes() -> set[str]:
    """The causes listed in the "Causes" table of docs/results.md (first column, in backticks)."""
    text = RESULTS_DOC.read_text(encoding="utf-8")
    section = text[text.index("## Causes") :]
    section = section[: section.find("\n## ", 1) if "\n## " in section[1:] else None]
    return set(re.findall(r"^\| `([a-z-]+)` \|", section, re.M))


def check_causes(requests: pd.DataFrame) -> None:
    """ok ⇔ no cause; misrouted ⇒ ip-reused; every other outcome ⇒ a documented cause."""
    ok = requests["outcome"] == Outcome.OK.value
    no_cause = requests["cause"] == Cause.NONE.value
    assert (ok == no_cause).all(), requests.loc[ok != no_cause, ["outcome", "cause"]].value_counts()
    misrouted = requests["outcome"] == Outcome.MISROUTED.value
    assert (requests.loc[misrouted, "cause"] == Cause.IP_REUSED.value).all()
    assert set(requests.loc[~ok, "cause"]) <= documented_causes()


MIN_OK_SHARE = 0.9
"""Lowest share of ok requests expected of a shipped scenario's cut-short run (any mode)."""
DESIGNED_TO_FAIL = {
    "icmp-rate-limit": 0.25,
}
"""Scenarios whose point is a long outage in the cut-short run, and the ok share they keep:
icmp-rate-limit's Service has no endpoint for ~8 s of the 10 s after its first action; the
connections REJECTed then wait out their connect timeout or connect late (docs/icmp.md), and
in userspace mode kube-proxy itself accepts and resets every one (no REJECT)."""


def min_ok_share(name: str, default: float = MIN_OK_SHARE) -> float:
    """The lowest ok share scenario ``name`` must keep (:data:`DESIGNED_TO_FAIL`)."""
    return min(default, DESIGNED_TO_FAIL.get(name, default))
