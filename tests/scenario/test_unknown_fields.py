"""An unknown key is told what the mapping it is in takes: the field it was meant to be, or all."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcsim.scenario.locate import fields_at
from svcsim.scenario.schema import Scenario
from tests.scenario.texts import problems_of

HEAD = "apiVersion: svcsim/v1\nkind: Scenario\nduration: 10s\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Nothing close: the mapping's fields (a manifest entry takes path or inline).
        ("manifests: [{file: a.yaml}]", "manifests[0].file: unknown field (fields here: inline, "
         "path)"),
        ("metadata: {name: x, labelz: {}}", "metadata.labelz: unknown field (fields here: "
         "description, name)"),
        # Cut short, or one letter off: the field of this mapping, not of another.
        ("cluster: {proxy: {minSync: 1s}}", "cluster.proxy.minSync: unknown field (did you mean "
         "'minSyncPeriod'?)"),
        ("cluster: {nodez: 3}", "cluster.nodez: unknown field (did you mean 'nodes'?)"),
        ("cluster: {proxy: {conntrack: {maxPerCor: 5}}}", "cluster.proxy.conntrack.maxPerCor: "
         "unknown field (did you mean 'maxPerCore'?)"),
        # Through a list and a tagged union (the action picks the model).
        ("timeline: [{at: 1s, action: rollout, deployment: web, maxSurg: 1}]",
         "timeline[0].maxSurg: unknown field (did you mean 'maxSurge'?)"),
    ],
)  # fmt: skip
def test_unknown_keys_are_told_the_fields_here(tmp_path: Path, body: str, expected: str) -> None:
    problems = problems_of(tmp_path, HEAD + body + "\n")
    assert any(p.endswith(expected) for p in problems), problems


@pytest.mark.parametrize(
    ("loc", "fields"),
    [
        (("manifests", 0), ("inline", "path")),
        (("metadata",), ("description", "name")),
        (("cluster", "proxy", "conntrack", "tcpTimeout"), None),  # a scalar, not a mapping
        (("no", "such"), None),
    ],
)
def test_fields_at_follows_the_models(
    loc: tuple[str | int, ...], fields: tuple[str, ...] | None
) -> None:
    assert fields_at(Scenario, loc) == fields
