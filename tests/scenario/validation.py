"""Validating scenario sections straight through the models, for tests that read problems."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from svcsim.scenario import Scenario

BASE: dict[str, Any] = {"apiVersion": "svcsim/v1", "kind": "Scenario"}


def validate(**sections: Any) -> Scenario:
    """A Scenario from these top-level sections, validated as a file is (by YAML key)."""
    return Scenario.model_validate({**BASE, **sections}, by_name=False)


def problems(**sections: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """``(location, message)`` of every problem of a scenario that must not validate."""
    with pytest.raises(ValidationError) as err:
        validate(**sections)
    return [(tuple(e["loc"]), e["msg"]) for e in err.value.errors()]
