"""Reading scenario files safely: tags, numbers, aliases, encoding, escaping, file paths."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from svcsim.k8s.yamlread import MAX_FILE_BYTES
from svcsim.scenario import ScenarioErrors, load_scenario

from .input_cases import BILLION_LAUGHS, HEAD, MERGE_BOMB, problems_of

TOP_FIELDS = (
    "(fields here: apiVersion, apps, cluster, duration, kind, manifests, metadata, records, seed, "
    "timeline, workloads)"
)
"""What an unknown top-level key is told."""

BIG = "1" + "0" * 400  # 401 digits: float() of it overflows

BAD_INPUT = [
    pytest.param(
        "duration: !custom 5s\n",
        ["s.yaml:3: duration: yaml: unknown tag !custom"],
        id="unknown-tag",
    ),
    pytest.param(
        "metadata: !thing {name: x}\n",
        ["s.yaml:3: metadata: yaml: unknown tag !thing"],
        id="unknown-tag-on-mapping",
    ),
    pytest.param(
        "duration: !!python/object:os.system x\n",
        ["s.yaml:3: duration: yaml: unsupported tag !!python/object:os.system"],
        id="python-object",
    ),
    pytest.param(
        "duration: !!binary '@@@'\n",
        ["s.yaml:3: duration: yaml: unsupported tag !!binary"],
        id="binary",
    ),
    pytest.param(
        "metadata: !!set {a, b}\n", ["s.yaml:3: metadata: yaml: unsupported tag !!set"], id="set"
    ),
    pytest.param(
        "timeline: !!omap [{a: 1}]\n",
        ["s.yaml:3: timeline: yaml: unsupported tag !!omap"],
        id="omap",
    ),
    pytest.param(
        "duration: !!int abc\n",
        ['s.yaml:3: duration: yaml: cannot read "abc" as an integer'],
        id="bad-int",
    ),
    pytest.param(
        "duration: !!bool maybe\n",
        ['s.yaml:3: duration: yaml: cannot read "maybe" as a boolean'],
        id="bad-bool",
    ),
    pytest.param(
        "seed: " + "9" * 5000 + "\n",
        ['s.yaml:3: seed: yaml: cannot read "' + "9" * 57 + '\u2026" as an integer'],
        id="int-beyond-4300-digits",
    ),
    pytest.param(
        "? [a, b]\n: 1\n",
        ["s.yaml:3: yaml: a mapping key must be a string, not a list"],
        id="complex-key",
    ),
    pytest.param(
        "metadata:\n  ? {a: 1}\n  : x\n",
        ["s.yaml:4: metadata: yaml: a mapping key must be a string, not a mapping"],
        id="complex-key-mapping",
    ),
    pytest.param("metadata: {name: !!timestamp 2001-12-14}\n", [], id="timestamp-is-text"),
    pytest.param(
        "metadata: {description: 2001-12-14 21:59:43.10 -5}\n", [], id="implicit-timestamp-is-text"
    ),
    pytest.param(
        "duration: !!timestamp 2001-12-14\n",
        ["s.yaml:3: duration: invalid duration '2001-12-14': use e.g. 250ms, 30s, 2m"],
        id="timestamp-where-duration",
    ),
    pytest.param(
        f"duration: {BIG}\n",
        ["s.yaml:3: duration: must be a finite number of seconds, got an integer of 401 digits"],
        id="huge-int-duration",
    ),
    pytest.param(
        f"duration: {BIG}h\n",
        ['s.yaml:3: duration: must be a finite number of seconds, got "1' + "0" * 56 + '\u2026"'],
        id="huge-text-duration",
    ),
    pytest.param(
        "duration: 1.0e+400\n",
        ["s.yaml:3: duration: must be a finite number of seconds, got inf"],
        id="float-overflow-duration",
    ),
    pytest.param(
        "duration: .nan\n",
        ["s.yaml:3: duration: must be a finite number of seconds, got nan"],
        id="nan-duration",
    ),
    pytest.param(
        f"workloads: [{{name: a, from: {{host: node-1}}, to: web, rate: {BIG}}}]\n",
        ["s.yaml:3: workloads[0].rate: must be a finite number, got an integer of 401 digits"],
        id="huge-int-rate",
    ),
    pytest.param(
        "workloads: [{name: a, from: {host: node-1}, to: web, rate: .inf}]\n",
        ["s.yaml:3: workloads[0].rate: must be a finite number, got inf"],
        id="inf-rate",
    ),
    pytest.param(
        f"seed: {BIG}\n",
        [
            "s.yaml:3: seed: must be < 340282366920938463463374607431768211456, got an "
            "integer of 401 digits"
        ],
        id="huge-seed",
    ),
    pytest.param(
        'metadata:\n  "a\\nb": 1\n',
        ['s.yaml:4: metadata["a\\nb"]: unknown field (fields here: description, name)'],
        id="newline-in-key",
    ),
    pytest.param(
        'metadata:\n  "\\e[31mred": 1\n',
        ['s.yaml:4: metadata["\\u001b[31mred"]: unknown field (fields here: description, name)'],
        id="escape-in-key",
    ),
    pytest.param(
        'metadata: {name: "web\\nfake.yaml:1: all good"}\n',
        [
            "s.yaml:3: metadata.name: must be lowercase letters, digits, '-' and '.', "
            "starting and ending alphanumeric; got 'web\\nfake.yaml:1: all good'"
        ],
        id="newline-in-value",
    ),
    pytest.param(
        "metadata:\n  ? " + "k" * 5000 + "\n  : 1\n",
        [
            's.yaml:4: metadata["'
            + "k" * 57
            + '\u2026"]: unknown field (fields here: description, name)'
        ],
        id="huge-key",
    ),
    pytest.param(
        'workloads: [{name: a, from: {pods: {"bad key!": x, ok: "a b"}}, to: web, rate: 1}]\n',
        [
            's.yaml:3: workloads[0].from.pods["bad key!"]: key name part must be alphanumeric '
            "characters, '-', '_' or '.', starting and ending alphanumeric; got 'bad key!'",
            "s.yaml:3: workloads[0].from.pods.ok: must be empty or alphanumeric characters, "
            "'-', '_' or '.', starting and ending alphanumeric; got 'a b'",
        ],
        id="pod-selector-labels",
    ),
    pytest.param(
        "a: &a [*a]\n",
        ["s.yaml:3: a[0]: yaml: recursive alias", f"s.yaml:3: a: unknown field {TOP_FIELDS}"],
        id="recursive-alias",
    ),
    pytest.param(
        "b: &b {x: 1}\nc: {<<: *b, x: 2}\n",
        [f"s.yaml:3: b: unknown field {TOP_FIELDS}", f"s.yaml:4: c: unknown field {TOP_FIELDS}"],
        id="merge-key-overridden-is-not-a-duplicate",
    ),
    pytest.param(
        "c: {<<: 5}\n",
        ["s.yaml:3: c: yaml: a merge key (<<) takes a mapping or a list of mappings"],
        id="merge-of-a-scalar",
    ),
    pytest.param(
        "x: " + "[" * 101 + "]" * 101 + "\n",
        ["s.yaml:3: yaml: nested deeper than 100 levels"],
        id="too-deep",
    ),
    pytest.param(
        "metadata:\n  description: a\x1b[31mb\n",
        ["s.yaml:4: yaml: character U+001B is not allowed in YAML (column 17)"],
        id="raw-escape-character",
    ),
]


@pytest.mark.parametrize(("body", "expected"), BAD_INPUT)
def test_bad_input_is_one_located_line_each(tmp_path: Path, body: str, expected: list[str]) -> None:
    assert problems_of(tmp_path, (HEAD + body).encode()) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            HEAD.encode() + b"metadata:\n  description: caf\xe9\n",
            "s.yaml:4: not valid UTF-8 (byte 0xe9 at column 19)",
        ),
        (b"\xff" + HEAD.encode(), "s.yaml:1: not valid UTF-8 (byte 0xff at column 1)"),
        (
            HEAD.encode() + b"seed: 1\n" * 3 + b"# \xc3\x28\n",
            "s.yaml:6: not valid UTF-8 (byte 0xc3 at column 3)",
        ),
    ],
    ids=["latin-1", "first-byte", "bad-continuation"],
)
def test_invalid_utf8_names_line_and_column(tmp_path: Path, data: bytes, expected: str) -> None:
    assert problems_of(tmp_path, data) == [expected]


@pytest.mark.parametrize("bomb", [BILLION_LAUGHS, MERGE_BOMB], ids=["lists", "merge-keys"])
def test_alias_bomb_is_refused_quickly(tmp_path: Path, bomb: str) -> None:
    started = time.perf_counter()
    found = problems_of(tmp_path, bomb.encode())
    assert time.perf_counter() - started < 5  # minutes and gigabytes before the limit
    assert len(found) == 1
    assert "yaml: aliases expand to more than 1,000,000 nodes" in found[0]


def test_file_too_large(tmp_path: Path) -> None:
    data = HEAD.encode() + b"#" * MAX_FILE_BYTES
    assert problems_of(tmp_path, data) == [
        "s.yaml:1: file too large: more than 16,777,216 bytes (the limit, 16 MiB)"
    ]


@pytest.mark.parametrize(
    "data",
    [
        HEAD + "metadata: {name: " + '"' + "\\n\\e" * 10_000 + '"' + "}\n",
        "just one long string " * 5_000,  # not a mapping: the whole file was echoed
        HEAD + "duration: " + "9" * 2_000 + "x\n",
    ],
    ids=["control-characters", "non-mapping-document", "long-duration-text"],
)
def test_every_line_short_and_single(tmp_path: Path, data: str) -> None:
    found = problems_of(tmp_path, data.encode())
    assert found
    for line in found:
        assert "\n" not in line and "\x1b" not in line
        assert len(line) < 200


# --- file paths ---------------------------------------------------------------------------

SERVICE = (
    "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
    "spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n"
)


def scenario_naming(tmp_path: Path, path: str) -> Path:
    """A scenario in ``tmp_path/scn`` whose one manifest is ``path``."""
    scn = tmp_path / "scn"
    scn.mkdir(exist_ok=True)
    file = scn / "s.yaml"
    file.write_text(HEAD + f"manifests:\n  - path: {path}\n", encoding="utf-8")
    return file


@pytest.mark.parametrize("path", ["../secret.yaml", "sub/../../secret.yaml", "{abs}"])
def test_manifest_path_outside_the_scenario_directory(tmp_path: Path, path: str) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("root:x:0:0:the secret\n")
    path = path.replace("{abs}", str(secret))
    file = scenario_naming(tmp_path, path)
    with pytest.raises(ScenarioErrors) as err:
        load_scenario(file)
    [line] = err.value.problems
    assert line.startswith(f"{file}:4: manifests[0].path: outside the scenario's directory: ")
    assert line.endswith("(pass --allow-outside-paths to read it)")
    assert "the secret" not in line


def test_symlink_leading_outside_is_outside(tmp_path: Path) -> None:
    (tmp_path / "secret.yaml").write_text(SERVICE)
    file = scenario_naming(tmp_path, "link.yaml")
    os.symlink(tmp_path / "secret.yaml", tmp_path / "scn" / "link.yaml")
    with pytest.raises(ScenarioErrors) as err:
        load_scenario(file)
    assert "manifests[0].path: outside the scenario's directory" in err.value.problems[0]


def test_symlink_inside_a_named_directory_is_checked_too(tmp_path: Path) -> None:
    (tmp_path / "secret.yaml").write_text(SERVICE)
    file = scenario_naming(tmp_path, "manifests")
    (tmp_path / "scn" / "manifests").mkdir()
    os.symlink(tmp_path / "secret.yaml", tmp_path / "scn" / "manifests" / "link.yaml")
    with pytest.raises(ScenarioErrors) as err:
        load_scenario(file)
    assert "outside the scenario's directory" in err.value.problems[0]


def test_allow_outside_paths_reads_them(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(SERVICE)
    file = scenario_naming(tmp_path, "../web.yaml")
    loaded = load_scenario(file, allow_outside_paths=True)
    assert [m.source for m in loaded.manifests] == [str(tmp_path / "scn" / "../web.yaml")]


def test_paths_inside_are_read(tmp_path: Path) -> None:
    file = scenario_naming(tmp_path, "m/web.yaml")
    (tmp_path / "scn" / "m").mkdir()
    (tmp_path / "scn" / "m" / "web.yaml").write_text(SERVICE)
    assert len(load_scenario(file).manifests) == 1


def test_manifest_file_with_a_bad_byte_is_reported_at_its_own_line(tmp_path: Path) -> None:
    file = scenario_naming(tmp_path, "web.yaml")
    (tmp_path / "scn" / "web.yaml").write_bytes(SERVICE.encode() + b"# \xff\n")
    with pytest.raises(ScenarioErrors) as err:
        load_scenario(file)
    assert err.value.problems == [
        f"{tmp_path}/scn/web.yaml:5: not valid UTF-8 (byte 0xff at column 3)"
    ]


def test_nul_in_a_manifest_path(tmp_path: Path) -> None:
    file = scenario_naming(tmp_path, '"a\\0b.yaml"')
    with pytest.raises(ScenarioErrors) as err:
        load_scenario(file)
    assert err.value.problems == [
        f"{file}:4: manifests[0].path: must not contain a NUL character (\\0)"
    ]


def test_nul_in_the_scenario_path(tmp_path: Path) -> None:
    with pytest.raises(ScenarioErrors) as err:
        load_scenario(tmp_path / "a\0b.yaml")
    assert err.value.problems == [f"{tmp_path}/a\\x00b.yaml: cannot read file: embedded null byte"]


def test_a_long_address_is_quoted_as_an_excerpt(tmp_path: Path) -> None:
    body = HEAD + "cluster: {serviceCIDR: '" + "x" * 300 + "'}\n"
    [line] = problems_of(tmp_path, body.encode())
    assert line == (
        "s.yaml:3: cluster.serviceCIDR: must be an IPv4 CIDR such as 10.244.0.0/16, "
        "got '" + "x" * 58 + "\u2026"
    )
