"""The scenario a run ran, as one self-contained file a run folder keeps (``scenario.yaml``).

Every default filled in, the ``--set`` overrides applied, the run's seed set, and every
manifest inlined (files and directories as they were read, timeline ``add-service`` manifests
too), so ``svcsim run RUN_FOLDER`` replays the run on another machine without the original
files and gets the same records (wall-clock fields aside).
"""

from __future__ import annotations

from typing import Any

import yaml

from svcsim.scenario.load import LoadedScenario

HEADER = (
    "# The scenario of this run as it ran: defaults filled in, manifests inlined, seed fixed.\n"
    "# Replay it with `svcsim run <this run folder>` (or `svcsim run scenario.yaml`).\n"
)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the inlined manifests) as ``|`` blocks, so they read as written."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def replayable_scenario(loaded: LoadedScenario, seed: int) -> str:
    """The text of ``scenario.yaml`` for a run of ``loaded`` with ``seed``."""
    data: dict[str, Any] = loaded.scenario.model_dump(by_alias=True, mode="json")
    data["seed"] = seed
    proxy = loaded.scenario.cluster.proxy
    if proxy.mode != "ipvs" and all(o.mode != "ipvs" for o in proxy.nodes.values()):
        # IPVS settings are refused where no node runs IPVS: their defaults are not written.
        del data["cluster"]["proxy"]["ipvs"]
    data["manifests"] = [{"inline": m.text} for m in loaded.manifests]
    timeline = data.get("timeline") or []
    for index, text in loaded.timeline_manifests.items():
        timeline[index]["manifest"] = {"inline": text.text}
    return HEADER + yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True)
