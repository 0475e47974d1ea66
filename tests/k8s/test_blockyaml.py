"""The fast path for plain block YAML reads exactly what the full reader reads, or hands over."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from svcsim.k8s import load_manifest_text
from svcsim.k8s.blockyaml import _FastReader
from tests.k8s.yaml_trees import assert_same_reading, fast_then_full

SLICE = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  port: 8080
endpoints:
- addresses:
  - 10.0.0.1
  nodeName: node-1
  conditions:
    ready: true
"""

# (name, text, documents read by the fast path before it hands over; None: all of them)
CASES = [
    ("kubectl style", SLICE, None),
    ("two documents", SLICE + "---\n" + SLICE.replace("web-1", "web-2"), None),
    ("leading ---, trailing ---", "---\n" + SLICE + "---\n", None),
    ("lists indented", "a:\n  - x\n  - y\nb:\n    - k: 1\n      j: 2\n", None),
    ("comments and blank lines", "# head\na: 1\n\n  # in\nb:\n# c\n  c: 2\n", None),
    (
        "YAML 1.1 types",
        "i: 80\no: 0o17\nh: 0x1f\ns: 1:20\nf: 1.5\nn: ~\nb: yes\nt: 2024-01-01\ne: =\nu: 1_000\n",
        None,
    ),
    ("quoted", "a: \"80\"\nb: 'true'\nc: ''\nd: \"x y\"\n", None),
    ("empty flow and null", "a: []\nb: {}\nc:\nd: -1\ne: a:b\nf: http://x/y\n", None),
    ("keys as written", "on: 1\n80: x\nf:spec:\n  .: {}\n", None),
    ("empty documents", "---\n---\n# only a comment\n---\na: 1\n", None),
    ("tab", "a:\n\tb: 1\n", 0),
    ("anchor and alias", "a: &x 1\nb: *x\n", 0),
    ("block scalar", "a: |\n  text\n", 0),
    ("flow list", "a: [1, 2]\n", 0),
    ("trailing comment", "a: 1 # one\n", 0),
    ("multi-line plain", "a: one\n  two\n", 0),
    ("escape", 'a: "x\\ty"\n', 0),
    ("item on next line", "a:\n-\n  b: 1\n", 0),
    ("list in list", "a:\n- - 1\n", 0),
    ("duplicate key", "a: 1\na: 2\n", 0),
    ("CRLF", "a: 1\r\nb: 2\r\n", 0),
    ("not ASCII", "a: caf\u00e9\n", 0),
    ("root list", "- a: 1\n", 0),
    ("key:value is a scalar", "a: 1\nb:c\n", 0),
    ("mapping value in a value", "a: b: c\n", 0),
    ("directive", "%YAML 1.1\n---\na: 1\n", 0),
    ("document end", "a: 1\n...\n", 0),
    ("second document handed over", "a: 1\n---\nb: &x 2\n---\nc: 3\n", 1),
    ("syntax error after fast documents", "a: 1\n---\nb: [\n---\nc: 3\n", 1),
    ("bad indentation", "a:\n    b: 1\n  c: 2\n", 0),
    ("explicit key", "? a\n: 1\n", 0),
    ("tagged value", "a: !!str 80\n", 0),
    ("huge int", "a: " + "9" * 5000 + "\n", 0),
    # Lines are read once and remembered: the same line in other places, other documents.
    ("lines repeated", "a:\n  b: []\n  c: x\nd:\n  b: []\n  c: x\n---\na:\n  b: {}\n", None),
    ("--- with trailing spaces", "a: 1\n---   \nb: 2\n", None),
    ("a line read before, out of place", "a:\n  - x\n---\n  - x\n", 1),
    ("a comment line repeated", "# c\na: 1\n---\n# c\nb: 1\n", None),
]


@pytest.mark.parametrize(("text", "handed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fast_path_reads_as_the_full_reader(text: str, handed: int | None) -> None:
    assert assert_same_reading(text) == handed


def test_repeated_empty_collections_are_distinct_objects() -> None:
    # The line `  b: []` is read once; each place it appears holds its own (mutable) list.
    docs, _, handed = fast_then_full("a:\n  b: []\n---\na:\n  b: []\n")
    assert handed is None
    first, second = docs[0][0]["a"]["b"], docs[1][0]["a"]["b"]
    assert first is not second
    assert (first.line, second.line) == (2, 5)


def test_duplicate_key_is_reported_at_its_line_after_fast_documents() -> None:
    text = SLICE + "---\n" + SLICE.replace("kind: EndpointSlice", "kind: EndpointSlice\nkind: X")
    with pytest.raises(Exception) as caught:
        load_manifest_text(text, "m.yaml")
    assert 'm.yaml:20: yaml: duplicate key "kind" (first at line 19)' in str(caught.value)


def test_field_problem_line_from_the_fast_path() -> None:
    text = SLICE + "---\n" + SLICE.replace("port: 8080", "port: eighty")
    _, _, handed = fast_then_full(text)
    assert handed is None
    with pytest.raises(Exception) as caught:
        load_manifest_text(text, "m.yaml")
    assert "m.yaml:27: EndpointSlice/default/web-1: ports[0].port: must be an integer" in str(
        caught.value
    )


# --- property: any block text built from tricky pieces reads the same both ways ------------

_PLAIN_SCALARS = st.sampled_from(
    ["80", "true", "no", "~", "null", "=", "1:20", "0x1f", "1.5e3", ".inf", "2024-01-01",
     "10.0.0.1", "-1", "a:b", "http://x", "'q'", '"q y"', "''", "[]", "{}", "svc-1", "a b"]
)  # fmt: skip
"""Scalars the fast path reads (each YAML 1.1 type, quoting, empty flow collections)."""

_SCALARS = st.one_of(
    _PLAIN_SCALARS,
    st.sampled_from(
        [
            "80",
            "true",
            "no",
            "~",
            "null",
            "=",
            "1:20",
            "0x1f",
            "1.5e3",
            ".inf",
            "2024-01-01",
            "10.0.0.1",
            "-1",
            "-",
            "a: b",
            "a:",
            "a#b",
            "a #b",
            "[]",
            "{}",
            "[1]",
            "&a",
            "*a",
            "!x",
            "|",
            ">",
            "'q'",
            '"q"',
            "'it''s'",
            '"a\\"b"',
            "%x",
            "@x",
            "?x",
            ":x",
            "- x",
            "a b",
            "a  ",
            "",
            "<<",
            "x\ty",
            "caf\u00e9",
        ]
    ),
    st.text(alphabet="ab01.:-# '\"", min_size=1, max_size=6),
)
_PLAIN_KEYS = st.sampled_from(["a", "b", "c", "d", "on", "80", "f:x", ".", "k8s.io/name", "x_y"])
_KEYS = st.one_of(
    _PLAIN_KEYS,
    st.sampled_from(["a b", "a:", "'k'", "-k", "<<", "a#", "? a", "a", "b"]),
    st.text(alphabet="ab1.:-/", min_size=1, max_size=4),
)


@st.composite
def _block(draw: st.DrawFn, indent: int, depth: int, tricky: bool) -> list[str]:
    """Lines of a block mapping at ``indent``: keys with scalars, mappings or lists.

    Without ``tricky``, only what the fast path reads (so that it is tested reading whole
    documents); with it, any piece, which mostly hands the document over.
    """
    lines: list[str] = []
    scalars = _SCALARS if tricky else _PLAIN_SCALARS
    keys = draw(st.lists(_KEYS if tricky else _PLAIN_KEYS, min_size=1, max_size=3,
                         unique=not tricky))  # fmt: skip
    for key in keys:
        pad = " " * indent
        kind = draw(st.sampled_from(["scalar", "map", "list"] if depth < 3 else ["scalar"]))
        if kind == "scalar":
            lines.append(f"{pad}{key}: {draw(scalars)}".rstrip(" ") if draw(st.booleans())
                         else f"{pad}{key}:{draw(st.sampled_from(['', ' ', '  x']))}")  # fmt: skip
        elif kind == "map":
            lines.append(f"{pad}{key}:")
            lines += draw(_block(indent + draw(st.sampled_from([1, 2, 4])), depth + 1, tricky))
        else:
            lines.append(f"{pad}{key}:")
            at = indent + draw(st.sampled_from([0, 2]))
            for _ in range(draw(st.integers(1, 2))):
                if draw(st.booleans()):
                    lines.append(f"{' ' * at}- {draw(scalars)}")
                else:
                    inner = draw(_block(at + 2, depth + 1, tricky))
                    lines.append(f"{' ' * at}- {inner[0].lstrip(' ')}")
                    lines += inner[1:]
        if draw(st.integers(0, 9)) == 0:
            odd = ["", "# c", "  # c"] + (["---", "...", "\t", "  x"] if tricky else [])
            lines.append(draw(st.sampled_from(odd)))
    return lines


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.booleans().flatmap(lambda tricky: _block(0, 0, tricky)), min_size=1, max_size=3),
    st.sampled_from(["", "---\n"]),
)
def test_any_block_text_reads_the_same(docs: list[list[str]], lead: str) -> None:
    text = lead + "---\n".join("\n".join(lines) + "\n" for lines in docs)
    assert_same_reading(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="0123456789", min_size=1, max_size=4), min_size=3, max_size=6))
def test_dotted_digits_are_text_as_the_resolvers_say(parts: list[str]) -> None:
    # The shortcut for IPv4-like scalars agrees with YAML 1.1 resolution itself.
    text = ".".join(parts)
    assert Resolver().resolve(ScalarNode, text, (True, False)) == "tag:yaml.org,2002:str"
    assert _FastReader().scalar(text) == text
