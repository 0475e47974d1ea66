"""Errors raised while loading Kubernetes manifests.

Every problem is one line a user can jump to from an editor or a terminal:
``file:line: Kind/namespace/name: field.path: problem``. The loader collects all problems
of all files before raising, so one run shows every mistake at once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ManifestError:
    """One problem in one manifest, pointing at the line of the offending field.

    ``obj`` is ``Kind/namespace/name`` (``Kind/name`` for cluster-scoped kinds such as
    Node), or ``""`` when the problem is not about an object (YAML syntax, unreadable
    file). ``field`` is the JSON path of the field (``spec.ports[0].port``), or ``""``.
    ``line`` is 1-based; 0 means "no line" (a file that cannot be read).
    """

    source: str
    line: int
    obj: str
    field: str
    message: str

    def __str__(self) -> str:
        parts = [f"{self.source}:{self.line}" if self.line > 0 else self.source]
        if self.obj:
            parts.append(self.obj)
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class ManifestErrors(ValueError):  # noqa: N818 (name fixed by the project API)
    """All problems found while loading manifests; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]) -> None:
        if not problems:
            raise ValueError("ManifestErrors needs at least one problem")
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in manifests:"
        return "\n".join([head, *self.problems])
