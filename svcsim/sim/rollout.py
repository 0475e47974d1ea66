"""Rolling-update arithmetic: ``maxSurge``/``maxUnavailable`` validation and resolution.

Pure functions after apimachinery ``intstr.GetScaledValueFromIntOrPercent``,
``ValidateRollingUpdateDeployment`` (pkg/apis/apps/validation) and ``ResolveFenceposts``
(pkg/controller/deployment/util/deployment_util.go), used by
:class:`~svcsim.sim.deployments.DeploymentController`.
"""

from __future__ import annotations


def scaled_value(value: int | str, total: int, *, round_up: bool) -> int:
    """``intstr.GetScaledValueFromIntOrPercent``: an int as-is, ``"N%"`` of ``total``."""
    if isinstance(value, int):
        return value
    percent = int(value.rstrip("%"))
    scaled, rest = divmod(percent * total, 100)
    return scaled + (1 if round_up and rest else 0)


def check_rolling_update(max_surge: int | str, max_unavailable: int | str) -> None:
    """Raise ValueError unless these are valid (``ValidateRollingUpdateDeployment``)."""
    for name, value in (("maxSurge", max_surge), ("maxUnavailable", max_unavailable)):
        ok = (isinstance(value, int) and not isinstance(value, bool) and value >= 0) or (
            isinstance(value, str) and value.endswith("%") and value[:-1].isdigit()
        )
        if not ok:
            raise ValueError(f"{name} must be an integer >= 0 or a percentage, got {value!r}")
    if isinstance(max_unavailable, str) and int(max_unavailable[:-1]) > 100:
        raise ValueError(f"maxUnavailable must not be greater than 100%, got {max_unavailable!r}")
    if _zero(max_surge) and _zero(max_unavailable):
        raise ValueError("maxUnavailable may not be 0 when maxSurge is 0")


def _zero(value: int | str) -> bool:
    return value == 0 or (isinstance(value, str) and int(value[:-1]) == 0)


def resolve_fenceposts(
    max_surge: int | str, max_unavailable: int | str, desired: int
) -> tuple[int, int]:
    """``(surge, unavailable)`` for ``desired`` replicas (``ResolveFenceposts``)."""
    surge = scaled_value(max_surge, desired, round_up=True)
    unavailable = scaled_value(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # rounding may give 0/0, which would stall the rollout
    return surge, unavailable
