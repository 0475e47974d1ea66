"""Reading manifests safely: tags, aliases, encoding, escaping, excerpts, API name rules."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from svcsim.k8s import ManifestErrors, load_manifest_text, load_manifests
from svcsim.k8s.errors import MAX_PROBLEM_CHARS, problem_line, quote

SVC = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n"  # lines 1-4
PORTS = "spec:\n  clusterIP: 10.96.0.10\n  ports: [{port: 80}]\n"


def problems(text: str) -> list[str]:
    with pytest.raises(ManifestErrors) as info:
        load_manifest_text(text, "m.yaml")
    return info.value.problems


BAD = [
    pytest.param(
        SVC + "  namespace: !custom x\n" + PORTS,
        ["m.yaml:5: yaml: unknown tag !custom"],
        id="unknown-tag",
    ),
    pytest.param(
        SVC + "  labels: !!set {a, b}\n" + PORTS,
        ["m.yaml:5: yaml: unsupported tag !!set"],
        id="set",
    ),
    pytest.param(
        SVC + "spec:\n  clusterIP: !!binary aGVsbG8=\n  ports: [{port: 80}]\n",
        ["m.yaml:6: yaml: unsupported tag !!binary"],
        id="binary",
    ),
    pytest.param(
        SVC + "  ? [a, b]\n  : 1\n" + PORTS,
        ["m.yaml:5: yaml: a mapping key must be a string, not a list"],
        id="complex-key",
    ),
    pytest.param(
        SVC + "spec: {<<: [1]}\n",
        ["m.yaml:5: yaml: a merge key (<<) takes a mapping or a list of mappings"],
        id="bad-merge",
    ),
    pytest.param(
        'apiVersion: v1\nkind: Service\nmetadata:\n  name: "web\\nm.yaml:1: fine"\n' + PORTS,
        [
            "m.yaml:4: Service/default/web\\nm.yaml:1: fine: metadata.name: must be lowercase "
            "letters, digits and '-', starting with a letter and ending alphanumeric; "
            "got 'web\\nm.yaml:1: fine'"
        ],
        id="newline-in-name",
    ),
    pytest.param(
        SVC + '  namespace: "\\e[31mred"\n' + PORTS,
        [
            "m.yaml:5: Service/\\x1b[31mred/web: metadata.namespace: must be lowercase letters, "
            "digits and '-', starting and ending alphanumeric; got '\\x1b[31mred'"
        ],
        id="escape-in-namespace",
    ),
    pytest.param(
        SVC + "  labels: {app: web, 'bad key!': x, ok: 'bad value!', "
        "example.com/a: b, -x/y: z, " + "k" * 64 + ": v}\n" + PORTS,
        [
            "m.yaml:5: Service/default/web: metadata.labels.bad key!: key name part must be "
            "alphanumeric characters, '-', '_' or '.', starting and ending alphanumeric; "
            "got 'bad key!'",
            "m.yaml:5: Service/default/web: metadata.labels.ok: must be empty or alphanumeric "
            "characters, '-', '_' or '.', starting and ending alphanumeric; got 'bad value!'",
            "m.yaml:5: Service/default/web: metadata.labels.-x/y: key prefix part must be "
            "lowercase letters, digits, '-' and '.', starting and ending alphanumeric; got '-x'",
            "m.yaml:5: Service/default/web: metadata.labels." + "k" * 64 + ": key name part "
            "must be no more than 63 characters, got 64",
        ],
        id="labels",
    ),
    pytest.param(
        SVC + "spec:\n  clusterIP: 10.96.0.10\n  ports: [{port: 80}]\n  selector: {app: 'a b'}\n",
        [
            "m.yaml:8: Service/default/web: spec.selector.app: must be empty or alphanumeric "
            "characters, '-', '_' or '.', starting and ending alphanumeric; got 'a b'"
        ],
        id="selector-value",
    ),
    pytest.param(
        SVC + "  annotations: {'a/b/c': free text is fine here}\n" + PORTS,
        [
            "m.yaml:5: Service/default/web: metadata.annotations.a/b/c: key must be "
            "[prefix/]name, with at most one '/'; got 'a/b/c'"
        ],
        id="annotation-key",
    ),
    pytest.param(
        SVC + "  annotations: {a: '" + "x" * (256 * 1024) + "'}\n" + PORTS,
        [
            "m.yaml:5: Service/default/web: metadata.annotations: may not be more than "
            "262,144 bytes in total, got 262,145"
        ],
        id="annotations-size",
    ),
    pytest.param(
        '"' + "a whole file as one string " * 1000 + '"\n',
        [
            "m.yaml:1: document: must be a mapping (a Kubernetes object), got "
            + quote("a whole file as one string " * 1000)
        ],
        id="non-mapping-document",
    ),
    pytest.param(
        SVC + "spec:\n  clusterIP: 10.96.0.10\n  ports: [{port: " + "9" * 400 + "}]\n",
        [
            "m.yaml:7: Service/default/web: spec.ports[0].port: must be 1..65535, "
            "got an integer of 400 digits"
        ],
        id="huge-port",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_input_is_one_short_located_line_each(text: str, expected: list[str]) -> None:
    found = problems(text)
    assert found == expected
    assert all(len(line) < 400 and "\n" not in line for line in found)


def test_labels_as_the_api_server_takes_them_load() -> None:
    text = SVC + (
        "  labels: {app.kubernetes.io/name: web, version: v1.2_3, empty: '', a: A-b.c_9}\n"
    )
    loaded = load_manifest_text(text + PORTS, "m.yaml")
    assert dict(loaded.services[0].meta.labels)["empty"] == ""


def test_skipped_kind_warning_is_one_short_line() -> None:
    loaded = load_manifest_text("apiVersion: v1\nkind: " + '"Con\\nfig' + "x" * 500 + '"\n', "m")
    [warning] = loaded.warnings
    assert "\n" not in warning and len(warning) < 120


def test_alias_bomb_in_a_manifest_is_refused_quickly() -> None:
    rows = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: x}", "data:"]
    rows.append('  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]')
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        rows.append(f"  {name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    started = time.perf_counter()
    found = problems("\n".join(rows) + "\n")
    assert time.perf_counter() - started < 5
    assert len(found) == 1
    assert found[0].startswith("m.yaml:")
    assert "yaml: aliases expand to more than 1,000,000 nodes" in found[0]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (SVC.encode() + b"  namespace: caf\xe9\n", "5: not valid UTF-8 (byte 0xe9 at column 17)"),
        (b"\xfe\xff", "1: not valid UTF-8 (byte 0xfe at column 1)"),
    ],
)
def test_invalid_utf8_in_a_file(tmp_path: Path, data: bytes, expected: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(data)
    with pytest.raises(ManifestErrors) as info:
        load_manifests([path])
    assert info.value.problems == [f"{path}:{expected}"]


def test_control_character_position_is_a_line() -> None:
    assert problems(SVC + "spec:\n  clusterIP: \x07\n") == [
        "m.yaml:6: yaml: character U+0007 is not allowed in YAML (column 14)"
    ]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\nb", "a\\nb"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("tab\there", "tab\\there"),
        ("\u2028\u202e\x85", "\\u2028\\u202e\\x85"),
        ("plain café ✓", "plain café ✓"),
    ],
)
def test_problem_line_escapes_controls(raw: str, shown: str) -> None:
    assert problem_line(f"f:1: {raw}") == f"f:1: {shown}"


def test_problem_line_keeps_both_ends_of_a_long_line() -> None:
    line = problem_line("f:1: " + "x" * 1000 + " the message")
    assert len(line) == MAX_PROBLEM_CHARS - 1
    assert line.startswith("f:1: xxx") and line.endswith("the message")


@pytest.mark.parametrize("alias", ["", "  other: &o x\n  again: *o\n"], ids=["no-star", "alias"])
def test_too_deep_a_manifest_is_refused_with_or_without_aliases(alias: str) -> None:
    # Without a '*' in the file the loader checks only the depth: same limit, same line.
    deep = "[" * 120 + "]" * 120
    text = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\ndata:\n{alias}  d: {deep}\n"
    line = text.count("\n")
    assert problems(text) == [f"m.yaml:{line}: yaml: nested deeper than 100 levels"]


def test_the_converter_keeps_no_nodes_of_earlier_documents() -> None:
    from svcsim.k8s.load import _Converter
    from svcsim.k8s.yamlread import compose_all

    text = "".join(f"---\na: {i}\nb: true\nc: [1, 2]\n" for i in range(3))
    converter = _Converter("m.yaml", [])
    for node in compose_all(text):
        converter.document(node)
    kept = converter.constructor.constructed_objects
    # Only the last document's scalars (ints and bools are built by the YAML constructor).
    assert kept and all(n.start_mark.line >= 8 for n in kept)
