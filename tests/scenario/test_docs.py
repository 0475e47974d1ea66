"""docs/scenario.md stays true: its full example loads, its tables name every field."""

from __future__ import annotations

import re
from pathlib import Path

from svcsim.scenario import load_scenario, scenario_json_schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "scenario.md"


def full_example() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("<!-- full-example")
    m = re.search(r"```yaml\n(.*?)```", text[start:], re.S)
    assert m is not None
    return m.group(1)


def test_full_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "rolling-update.yaml"
    path.write_text(full_example(), encoding="utf-8")
    s = load_scenario(path).scenario
    assert s.metadata.name == "rolling-update"
    assert len(s.cluster.nodes) == 3
    assert s.cluster.node("node-3").ip == "192.168.0.13"
    assert s.cluster.proxy.for_node("node-3").min_sync_period_s == 5.0
    assert len(s.timeline) == 12


def test_every_field_is_documented() -> None:
    schema = scenario_json_schema()
    keys: set[str] = set(schema["properties"])
    for definition in schema["$defs"].values():
        keys.update(definition.get("properties", {}))
    doc = DOC.read_text(encoding="utf-8")
    missing = sorted(
        k for k in keys if not re.search(rf"(?<![A-Za-z]){re.escape(k)}(?![A-Za-z])", doc)
    )
    assert missing == []
