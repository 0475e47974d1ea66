"""The error a scenario that does not load raises: every problem, one line each.

A line reads ``file:LINE: field.path: message`` (``scenarios/x.yaml:12: workloads[0].rate:
must be > 0, got -5``), LINE being the line of that key in the file; problems found in
Kubernetes manifests keep the k8s loader's own format. Every line goes through
:func:`svcsim.k8s.errors.problem_line`: control characters escaped, length capped; and a
problem repeated in the same form is shown only a few times, the last one counting the rest
(:func:`svcsim.k8s.errors.collapse_lines`).
"""

from __future__ import annotations

from collections.abc import Sequence

from svcsim.k8s.errors import collapse_lines, problem_line


class ScenarioErrors(ValueError):  # noqa: N818 - a collection of problems, as ManifestErrors
    """All problems found while loading a scenario; ``problems`` holds one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        if not problems:
            raise ValueError("ScenarioErrors needs at least one problem")
        self.problems = collapse_lines([problem_line(p) for p in problems])
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in scenario:"
        return "\n".join([head, *self.problems])
