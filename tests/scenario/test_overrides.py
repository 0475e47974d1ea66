"""``--set KEY=VALUE``: the key and value grammar, and overrides checked as the file is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from svcsim.scenario.errors import ScenarioErrors
from svcsim.scenario.load import load_scenario
from svcsim.scenario.overrides import (
    OverrideError,
    combinations,
    parse_key,
    parse_setting,
    parse_settings,
    single_overrides,
    split_values,
)
from tests.sweep.sweep_cases import line_of, tiny_scenario


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("seed", ("seed",)),
        ("cluster.proxy.minSyncPeriod", ("cluster", "proxy", "minSyncPeriod")),
        ("workloads[0].rate", ("workloads", 0, "rate")),
        ("workloads[12][3].x", ("workloads", 12, 3, "x")),
        ('apps["web.v2"].startup', ("apps", "web.v2", "startup")),
        ("cluster.delays.kubeProxyWatch.node-3", ("cluster", "delays", "kubeProxyWatch", "node-3")),
    ],
)
def test_keys_are_paths_as_problem_lines_print_them(key: str, path: tuple[Any, ...]) -> None:
    assert parse_key(key) == path


@pytest.mark.parametrize("key", ["", ".a", "a..b", "a.", "a[x]", "a[0]b", "[0]", "a b", "a[-1]"])
def test_a_malformed_key_is_refused_naming_it(key: str) -> None:
    with pytest.raises(OverrideError, match="--set"):
        parse_key(key)


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("0s,1s,5s", ("0s", "1s", "5s")),
        ("5s", ("5s",)),
        ("[a,b]", ("[a,b]",)),
        ("[a,b],[c]", ("[a,b]", "[c]")),
        ('"a,b",c', ('"a,b"', "c")),
        ("'a,b'", ("'a,b'",)),
        ("{x: 1, y: 2},3", ("{x: 1, y: 2}", "3")),
        (" 1 , 2 ", ("1", "2")),
        ("", ("",)),
    ],
)
def test_values_split_on_commas_outside_brackets_and_quotes(
    text: str, pieces: tuple[str, ...]
) -> None:
    assert split_values(text) == pieces


@pytest.mark.parametrize(
    ("text", "texts", "values"),
    [
        ("a=5s", ("5s",), ("5s",)),
        ("a=100,300", ("100", "300"), (100, 300)),
        ("a=true", ("true",), (True,)),
        ("a=[x,y]", ("[x,y]",), (["x", "y"],)),
        ('a="1,2"', ('"1,2"',), ("1,2",)),
        ("a=", ("",), (None,)),
    ],
)
def test_values_are_read_as_yaml_and_kept_as_written(
    text: str, texts: tuple[str, ...], values: tuple[Any, ...]
) -> None:
    setting = parse_setting(text)
    assert (setting.texts, setting.values) == (texts, values)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["noequals"], "expected KEY=VALUE"),
        (["=5"], "expected KEY=VALUE"),
        (["a=1,1"], 'value "1" listed twice'),
        (["a=1", "a=2"], "a: key given twice"),
        (["a=[1,"], "not a YAML value"),
    ],
)
def test_bad_settings_are_one_line_errors(texts: list[str], message: str) -> None:
    with pytest.raises(OverrideError, match=r"^--set ") as caught:
        parse_settings(texts)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_single_run_refuses_several_values_and_says_how_to_write_a_comma() -> None:
    with pytest.raises(OverrideError, match=r"2 values given.*\[a,b\]"):
        single_overrides(parse_settings(["a=1,2"]))


def test_combinations_vary_the_first_key_slowest() -> None:
    combos = combinations(parse_settings(["a=1,2", "b=x,y,z"]))
    assert [" ".join(map(str, c)) for c in combos] == [
        "a=1 b=x", "a=1 b=y", "a=1 b=z", "a=2 b=x", "a=2 b=y", "a=2 b=z",
    ]  # fmt: skip
    assert combinations(()) == ((),)


def _load(path: Path, *sets: str) -> Any:
    return load_scenario(path, overrides=single_overrides(parse_settings(list(sets))))


def test_an_override_changes_the_validated_scenario(tmp_path: Path) -> None:
    loaded = _load(
        tiny_scenario(tmp_path),
        "cluster.proxy.minSyncPeriod=250ms",
        "workloads[0].rate=42",
        "seed=3",
        "cluster.delays.kubeProxyWatch.node-2=2s",
    )
    sc = loaded.scenario
    assert sc.cluster.proxy.min_sync_period_s == 0.25
    assert sc.workloads[0].rate_per_s == 42
    assert sc.seed == 3
    assert sc.cluster.delays.kube_proxy_watch_s["node-2"] == 2.0
    assert str(loaded.overrides[0]) == "cluster.proxy.minSyncPeriod=250ms"


def test_a_mapping_missing_in_the_file_is_created_for_a_schema_key(tmp_path: Path) -> None:
    loaded = _load(tiny_scenario(tmp_path), "cluster.proxy.conntrack.min=5000")
    assert loaded.scenario.cluster.proxy.conntrack.min == 5000


@pytest.mark.parametrize(
    ("override", "line_text", "expected"),
    [
        (
            "workloads[0].rate=-5",
            "rate: 100",
            "workloads[0].rate: must be > 0, got -5 (from --set workloads[0].rate=-5)",
        ),
        (
            "cluster.proxy.minSyncPerod=1s",
            "proxy:",
            "cluster.proxy.minSyncPerod: unknown field (did you mean 'minSyncPeriod'?) "
            "(from --set cluster.proxy.minSyncPerod=1s)",
        ),
        (
            "nosuchfield=1",
            "apiVersion",
            "nosuchfield: unknown field (fields here: apiVersion, apps, cluster, duration, kind, "
            "manifests, metadata, records, seed, timeline, workloads) (from --set nosuchfield=1)",
        ),
        (
            "cluster.proxyy.minSyncPeriod=1s",
            "cluster:",
            "cluster.proxyy: unknown field (did you mean 'proxy'?) "
            "(from --set cluster.proxyy.minSyncPeriod=1s)",
        ),
        (
            "workloads[3].rate=1",
            "workloads:",
            "workloads[3]: no such item: the list has 1 (from --set workloads[3].rate=1)",
        ),
        (
            "cluster.nodes[0].name=x",
            "nodes: 2",
            "cluster.nodes: must be a list to take [0], got 2 (from --set cluster.nodes[0].name=x)",
        ),
        (
            "cluster.proxy=[a,b]",
            "proxy:",
            "cluster.proxy: must be a mapping, got a list (from --set cluster.proxy=[a,b])",
        ),
        (
            "cluster.proxy.syncPeriod=500ms",
            "minSyncPeriod: 1s",
            "cluster.proxy.minSyncPeriod: must be <= syncPeriod (500ms), got 1s "
            "(with --set cluster.proxy.syncPeriod=500ms)",
        ),
    ],
)
def test_override_problems_are_the_files_lines_plus_the_override(
    tmp_path: Path, override: str, line_text: str, expected: str
) -> None:
    path = tiny_scenario(tmp_path)
    with pytest.raises(ScenarioErrors) as caught:
        _load(path, override)
    assert caught.value.problems == [f"{path}:{line_of(line_text)}: {expected}"]


def test_a_problem_of_the_file_itself_is_not_blamed_on_an_override(tmp_path: Path) -> None:
    path = tiny_scenario(tmp_path)
    path.write_text(path.read_text().replace("rate: 100", "rate: -1"))
    with pytest.raises(ScenarioErrors) as caught:
        _load(path, "seed=3")
    assert caught.value.problems == [
        f"{path}:{line_of('rate: 100')}: workloads[0].rate: must be > 0, got -1"
    ]
