"""Synthetic runs for the figure and report tests (built once per session; see synthetic.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from svcsim.plots import render_all
from svcsim.results import Run
from tests.plots.synthetic import Spec, build_run

RunFactory = Callable[[Spec], Run]


@pytest.fixture(scope="session")
def make_run(tmp_path_factory: pytest.TempPathFactory) -> RunFactory:
    """Build (and cache per spec) a synthetic run folder and load it."""
    cache: dict[str, Run] = {}

    def make(spec: Spec) -> Run:
        key = repr(spec)
        if key not in cache:
            cache[key] = build_run(tmp_path_factory.mktemp("run") / "run", spec)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def rolling_run(make_run: RunFactory) -> Run:
    """Two Services, three nodes, a rolling update, a blocked sync and a kube-proxy crash."""
    return make_run(Spec())


@pytest.fixture(scope="session")
def rolling_pngs(rolling_run: Run) -> dict[str, bytes]:
    """The standard figures of ``rolling_run`` as PNG bytes (rendered once)."""
    return render_all(rolling_run)


@pytest.fixture(scope="session")
def quiet_run(make_run: RunFactory) -> Run:
    """No rollout, no fault: no failures at all."""
    return make_run(Spec(rollout=False, crash=False, block=False))


@pytest.fixture(scope="session")
def single_endpoint_run(make_run: RunFactory) -> Run:
    """One Service with one Pod."""
    return make_run(Spec(services=(("solo", 80),), pods_per_service=1, rollout=False))


@pytest.fixture(scope="session")
def empty_run(make_run: RunFactory) -> Run:
    """Control plane only: zero requests, no conntrack samples beyond the ramp."""
    return make_run(Spec(rate_per_s=0.0, rollout=False, crash=False, block=False))


@pytest.fixture(params=["rolling", "quiet", "single", "empty"])
def any_run(request: pytest.FixtureRequest) -> Run:
    """Each of the runs above in turn."""
    name = {
        "rolling": "rolling_run",
        "quiet": "quiet_run",
        "single": "single_endpoint_run",
        "empty": "empty_run",
    }[request.param]
    run: Run = request.getfixturevalue(name)
    return run
