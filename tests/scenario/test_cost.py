"""Run cost estimates and the limits validate and run share: refused at a line, with the fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from svcsim.cli.main import app
from svcsim.scenario import ScenarioErrors, load_scenario
from svcsim.scenario.cost import (
    COUNTED_REQUEST_PEAK_BYTES,
    MAX_RATE_PER_S,
    MEMORY_LIMIT_BYTES,
    NODE_PEAK_BYTES,
    NODE_SECOND_PEAK_BYTES,
    PREVIEW_MEMORY_BYTES,
    REQUEST_PEAK_BYTES,
    estimate,
    expected_requests,
)
from svcsim.scenario.durations import parse_duration
from tests.scenario.validation import problems, validate

HEAD = "apiVersion: svcsim/v1\nkind: Scenario\n"


def _workload(**rate: Any) -> dict[str, Any]:
    return {"name": "w", "from": {"host": "node-1"}, "to": "web", **rate}


@pytest.mark.parametrize(
    ("rate", "duration", "expected"),
    [
        pytest.param({"rate": 100.0}, "1m", 6_000.0, id="constant"),
        pytest.param(
            {"rateSchedule": [{"at": "10s", "rate": 10.0}, {"at": "30s", "rate": 100.0}]},
            "1m",
            10 * 20 + 100 * 30.0,
            id="schedule",
        ),
        pytest.param(
            {"rateSchedule": [{"at": "0s", "rate": 50.0}, {"at": "1m", "rate": 1e6}]},
            "1m",
            3_000.0,
            id="step-at-the-end-sends-nothing",
        ),
    ],
)
def test_expected_requests(rate: dict[str, Any], duration: str, expected: float) -> None:
    s = validate(duration=duration, workloads=[_workload(**rate)])
    assert expected_requests(s.workloads[0], s.duration_s) == pytest.approx(expected)


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + body, encoding="utf-8")
    return path


def _problems(tmp_path: Path, body: str) -> list[str]:
    with pytest.raises(ScenarioErrors) as err:
        load_scenario(_write(tmp_path, body))
    return [p.replace(f"{tmp_path}/", "") for p in err.value.problems]


WORKLOAD = "workloads:\n  - {name: w, from: {host: node-1}, to: web, rate: %s}\n"
WEB = (
    "manifests:\n  - inline: '{apiVersion: v1, kind: Service, metadata: {name: web}, "
    "spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}}'\n"
)
"""The Service :data:`WORKLOAD` sends to (so that a file with both runs as written)."""

REFUSED = [
    pytest.param(
        WORKLOAD % "1000000000",
        [f"s.yaml:4: workloads[0].rate: must be <= {MAX_RATE_PER_S}, got 1000000000"],
        id="rate-1e9",
    ),
    pytest.param(
        "duration: 1000000000s\n" + WORKLOAD % "10",
        [
            "s.yaml:3: duration: the run would need ~4.1 TiB of memory (~10.0 billion requests, "
            "3 nodes x 277777h46m40s of conntrack samples), over the limit of 8.0 GiB; set "
            "duration to at most 530h33m20s"
        ],
        id="duration-1e9s",
    ),
    pytest.param(
        WORKLOAD % "1000000",
        [
            "s.yaml:4: workloads[0].rate: the run would need ~22.4 GiB of memory (~60.0 million "
            "requests, 3 nodes x 1m of conntrack samples), over the limit of 8.0 GiB; set "
            "duration to at most 21.4s or lower the rates to at most ~357,869 requests/s in all"
        ],
        id="default-duration-blames-the-rate",
    ),
    pytest.param(
        "duration: 1000000000s\n",
        [
            "s.yaml:3: duration: the run would need ~447.0 GiB of memory (3 nodes x 277777h46m40s "
            "of conntrack samples), over the limit of 8.0 GiB; set duration to at most "
            "4944h26m40s"
        ],
        id="no-traffic-still-records-samples",
    ),
]


@pytest.mark.parametrize(("body", "expected"), REFUSED)
def test_runs_over_the_limits_are_refused_at_a_line(
    tmp_path: Path, body: str, expected: list[str]
) -> None:
    assert _problems(tmp_path, body) == expected


@pytest.mark.parametrize("rate", [1_000.0, 1e6, MAX_RATE_PER_S])
def test_the_suggested_duration_is_the_longest_that_fits(rate: float) -> None:
    [(_, message)] = problems(duration="1000h", workloads=[_workload(rate=rate)])
    found = re.search(r"set duration to at most (\S+)", message)
    assert found is not None
    longest = parse_duration(found[1])
    s = validate(duration=longest, workloads=[_workload(rate=rate)])
    assert estimate(s).memory_bytes <= MEMORY_LIMIT_BYTES
    assert problems(duration=longest * 1.01, workloads=[_workload(rate=rate)])


def test_estimate_counts_requests_and_node_seconds() -> None:
    s = validate(duration="10m", cluster={"nodes": 20}, workloads=[_workload(rate=5000.0)])
    cost = estimate(s)
    assert (cost.requests, cost.nodes, cost.node_seconds) == (3_000_000, 20, 12_000)
    assert not cost.retries
    assert cost.memory_bytes > 3_000_000 * REQUEST_PEAK_BYTES
    assert cost.large  # ~1.1 GiB
    assert cost.describe().startswith("~3.0 million requests, 20 nodes, ~1.1 GiB of memory, ~")


@pytest.mark.parametrize(
    ("records", "refused"),
    [("every-request", True), ("failures-and-aggregates", False)],
)
def test_the_day_fits_only_when_attempts_are_counted(records: str, refused: bool) -> None:
    # issue 13's day: 100 nodes, 1,000 requests/s, 24 h: ~86 million attempts.
    day = {"duration": "24h", "cluster": {"nodes": 100}, "records": records,
           "workloads": [_workload(rate=1000.0)]}  # fmt: skip
    if refused:
        [(where, _)] = problems(**day)
        assert where == ("duration",)
        return
    cost = estimate(validate(**day))
    assert cost.counted and cost.request_bytes == COUNTED_REQUEST_PEAK_BYTES
    assert cost.memory_bytes == pytest.approx(
        86_400_000 * COUNTED_REQUEST_PEAK_BYTES
        + 100 * NODE_PEAK_BYTES
        + 100 * 86_400 * NODE_SECOND_PEAK_BYTES
    )
    assert cost.memory_bytes <= MEMORY_LIMIT_BYTES


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_validate_prints_the_estimate_of_a_large_run(tmp_path: Path) -> None:
    rate = PREVIEW_MEMORY_BYTES / REQUEST_PEAK_BYTES / 60 * 1.5
    path = _write(tmp_path, WORKLOAD % f"{rate:.0f}" + WEB)
    code, out, err = _cli("validate", str(path))
    assert code == 0
    assert out == f"{path}: ok (3 nodes, 1 workload, 0 timeline actions)\n"
    assert re.fullmatch(
        rf"warning: {re.escape(str(path))}: large run: ~4\.0 million requests, 3 nodes, "
        r"~1\.5 GiB of memory, ~\d+ (s|min) of wall time\n",
        err,
    )


def test_validate_is_quiet_about_a_small_run(tmp_path: Path) -> None:
    code, _, err = _cli("validate", str(_write(tmp_path, WORKLOAD % "100" + WEB)))
    assert (code, err) == (0, "")


def test_run_refuses_what_validate_refuses_before_simulating(tmp_path: Path) -> None:
    path = _write(tmp_path, "duration: 1000000000s\n")
    out_dir = tmp_path / "run"
    code, out, err = _cli("run", str(path), "--out", str(out_dir))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"{path}:3: duration: the run would need")
    assert not out_dir.exists()


def test_a_big_cluster_is_previewed_even_without_traffic() -> None:
    ranges = {"nodeCIDR": "192.168.0.0/16", "clusterCIDR": "10.128.0.0/9"}
    cost = estimate(validate(duration="5s", cluster={"nodes": 5000, **ranges}))
    assert cost.large
    assert cost.describe().startswith("~0 requests, 5,000 nodes, ~1.6 GiB of memory, ~")
    assert not estimate(validate(duration="5s")).large
