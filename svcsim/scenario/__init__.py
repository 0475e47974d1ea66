"""Scenario files: the schema, its defaults and validation, durations, and loading.

``load_scenario("scenarios/x.yaml")`` gives a :class:`LoadedScenario` (the typed, fully
defaulted :class:`Scenario`, the directory relative paths start from, and the raw manifest
texts) or raises :class:`ScenarioErrors` listing every problem as ``file:line: field: message``.
Building the simulated world from it is another module's job.
"""

from svcsim.scenario.durations import (
    Duration,
    PositiveDuration,
    format_duration,
    parse_duration,
)
from svcsim.scenario.errors import ScenarioErrors
from svcsim.scenario.load import LoadedScenario, ManifestText, load_scenario
from svcsim.scenario.schema import (
    API_VERSION,
    KIND,
    Scenario,
    scenario_json_schema,
)

__all__ = [
    "API_VERSION",
    "KIND",
    "Duration",
    "LoadedScenario",
    "ManifestText",
    "PositiveDuration",
    "Scenario",
    "ScenarioErrors",
    "format_duration",
    "load_scenario",
    "parse_duration",
    "scenario_json_schema",
]
