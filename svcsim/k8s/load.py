"""Load Kubernetes manifests (as users write them, or as ``kubectl get -o yaml`` prints them).

Accepted: multi-document YAML (``---``), empty/null documents, ``kind: List`` and typed
lists (``ServiceList`` ... whose items may omit ``kind``/``apiVersion``, as the raw API
returns them), and everything ``kubectl get svc,endpointslices,pods,nodes -A -o yaml``
prints (``status``, ``managedFields``, ``resourceVersion`` and other fields that do not
matter to the data plane are ignored). Kinds read: Service, Endpoints, Pod, Node
(``v1``), EndpointSlice (``discovery.k8s.io/v1`` and ``v1beta1``) and Deployment
(``apps/v1``); other kinds are
skipped with a warning ``file:line: skipping kind X (name)``.

Every problem of every file is collected first, then raised as one :class:`ManifestErrors`
whose lines read ``file:line: Kind/namespace/name: field.path: problem``, the line being
that of the offending field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from svcsim.k8s import objects as k8s
from svcsim.k8s.blockyaml import Handover, fast_documents
from svcsim.k8s.errors import (
    MAX_EXCERPT_CHARS,
    ManifestError,
    ManifestErrors,
    problem_line,
    quote,
    shorten,
)
from svcsim.k8s.fields import Reader, YList, YMap, describe, normalize_cidr, normalize_ip
from svcsim.k8s.parse import (
    object_label,
    parse_endpoint_slice,
    parse_endpoints,
    parse_node,
    parse_pod,
    parse_service_cidr,
)
from svcsim.k8s.parse_deployment import parse_deployment
from svcsim.k8s.parse_service import parse_service
from svcsim.k8s.yamlread import (
    YamlFileError,
    YamlValueError,
    check_aliases,
    check_collection_tag,
    check_text_size,
    compose_all,
    key_text,
    mapping_pairs,
    read_file,
    scalar_value,
)

__all__ = ["Manifests", "load_manifest_text", "load_manifests", "normalize_cidr", "normalize_ip"]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
"""Files read from a directory given to :func:`load_manifests`."""


@dataclass(frozen=True, slots=True)
class Manifests:
    """The objects read from a set of manifests, in file and document order.

    ``warnings`` holds lines in the problem format for things that load but deserve a
    look: skipped kinds, unknown fields, IPs spelled non-canonically, Service fields the
    API server would refuse but kube-proxy ignores.
    """

    services: tuple[k8s.Service, ...] = ()
    endpoint_slices: tuple[k8s.EndpointSlice, ...] = ()
    endpoints: tuple[k8s.Endpoints, ...] = ()
    pods: tuple[k8s.Pod, ...] = ()
    nodes: tuple[k8s.Node, ...] = ()
    deployments: tuple[k8s.Deployment, ...] = ()
    service_cidrs: tuple[k8s.ServiceCIDR, ...] = ()
    warnings: tuple[str, ...] = ()

    def manual_endpoint_ips(self) -> list[str]:
        """Every address of the hand-made Endpoints and EndpointSlices, in document order."""
        ips = [a.ip for ep in self.endpoints for s in ep.subsets for a in s.addresses]
        ips += [a for sl in self.endpoint_slices for e in sl.endpoints for a in e.addresses]
        return ips

    @property
    def ipv4_service_cidrs(self) -> tuple[str, ...]:
        """The IPv4 CIDRs of every ServiceCIDR, in order, once each (``OnServiceCIDRsChanged``)."""
        return tuple(dict.fromkeys(c for obj in self.service_cidrs for c in obj.ipv4_cidrs))


_Parser = Callable[[YMap, Reader, str], Any]


@dataclass(frozen=True, slots=True)
class _KindSpec:
    api_versions: tuple[str, ...]
    namespaced: bool
    parse: _Parser
    bucket: str


_KINDS: Mapping[str, _KindSpec] = MappingProxyType(
    {
        "Service": _KindSpec(("v1",), True, parse_service, "services"),
        "Endpoints": _KindSpec(("v1",), True, parse_endpoints, "endpoints"),
        "Pod": _KindSpec(("v1",), True, parse_pod, "pods"),
        "Node": _KindSpec(("v1",), False, parse_node, "nodes"),
        "EndpointSlice": _KindSpec(
            ("discovery.k8s.io/v1", "discovery.k8s.io/v1beta1"),
            True,
            parse_endpoint_slice,
            "endpoint_slices",
        ),
        "Deployment": _KindSpec(("apps/v1",), True, parse_deployment, "deployments"),
        "ServiceCIDR": _KindSpec(
            ("networking.k8s.io/v1", "networking.k8s.io/v1beta1"),
            False,
            parse_service_cidr,
            "service_cidrs",
        ),
    }
)


def load_manifests(paths: Sequence[str | Path]) -> Manifests:
    """Load every object of the files in ``paths`` (a directory means its YAML/JSON files).

    Raises :class:`ManifestErrors` listing every problem of every file, including files
    that cannot be read (``path: cannot read file: ...``) and YAML syntax errors
    (``file:line: yaml: ...``).
    """
    loader = _Loader()
    for given in paths:
        path = Path(given)
        files = [path]
        if path.is_dir():
            files = sorted(
                p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file()
            )
            if not files:
                loader.problem(
                    str(given), 0, f"no {'/'.join(MANIFEST_SUFFIXES)} files in directory"
                )
        for file in files:
            source = str(given) if file is path else str(file)
            try:
                text = read_file(file)
            except YamlFileError as exc:
                loader.problem(source, exc.line, exc.message)
                continue
            loader.add_text(text, source)
    return loader.result()


def load_manifest_text(text: str, source: str) -> Manifests:
    """Load the objects of one manifest text; ``source`` names it in messages."""
    loader = _Loader()
    loader.add_text(text, source)
    return loader.result()


class _Loader:
    """Accumulates objects, problems and warnings over the files of one load."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.buckets: dict[str, list[Any]] = {spec.bucket: [] for spec in _KINDS.values()}
        self.seen: dict[tuple[str, str], str] = {}

    def problem(self, source: str, line: int, message: str) -> None:
        self.problems.append(str(ManifestError(source, line, "", "", message)))

    def result(self) -> Manifests:
        if self.problems:
            raise ManifestErrors(self.problems)
        b = self.buckets
        return Manifests(
            services=tuple(b["services"]),
            endpoint_slices=tuple(b["endpoint_slices"]),
            endpoints=tuple(b["endpoints"]),
            pods=tuple(b["pods"]),
            nodes=tuple(b["nodes"]),
            deployments=tuple(b["deployments"]),
            service_cidrs=tuple(b["service_cidrs"]),
            warnings=tuple(self.warnings),
        )

    def add_text(self, text: str, source: str) -> None:
        for data, line in _documents(text, source, self.problems):
            self.document(data, line, source, None)

    def document(
        self, data: Any, line: int, source: str, inherited: tuple[str, Any] | None
    ) -> None:
        if data is None:
            return  # empty document, or a null item: nothing to load
        if not isinstance(data, YMap):
            self.problem(
                source,
                line,
                f"document: must be a mapping (a Kubernetes object), got {describe(data)}",
            )
            return
        kind, api = data.get("kind"), data.get("apiVersion")
        if kind is None and inherited is not None:
            kind, api = inherited
        if not isinstance(kind, str) or not kind:
            self.problem(source, data.line_of("kind"), f"kind: required, got {describe(kind)}")
            return
        if kind.endswith("List") and (kind == "List" or "items" in data):
            self.items(data, kind, api, source)
            return
        spec = _KINDS.get(kind)
        label = object_label(kind, data, namespaced=spec.namespaced if spec else True)
        if spec is None:
            skipped = f"skipping kind {shorten(kind, MAX_EXCERPT_CHARS)}"
            name = label.rsplit("/", 1)[-1]
            self.warnings.append(problem_line(f"{source}:{data.line}: {skipped} ({name})"))
            return
        if api not in spec.api_versions:
            got = (
                "required"
                if api is None
                else f"must be {' or '.join(spec.api_versions)}, got {describe(api)}"
            )
            self.problems.append(
                str(ManifestError(source, data.line_of("apiVersion"), label, "apiVersion", got))
            )
            return
        reader = Reader(source, label)
        obj = spec.parse(data, reader, f"{source}:{data.line}")
        self.remember(kind, obj.meta, reader, data)
        self.buckets[spec.bucket].append(obj)
        # Fields are read in an order that suits the checks; report them top to bottom.
        self.problems.extend(str(p) for p in sorted(reader.problems, key=lambda p: p.line))
        self.warnings.extend(str(w) for w in sorted(reader.warnings, key=lambda w: w.line))

    def items(self, data: YMap, kind: str, api: Any, source: str) -> None:
        items = data.get("items")
        if items is None:
            return
        if not isinstance(items, YList):
            self.problem(
                source, data.line_of("items"), f"items: must be a list, got {describe(items)}"
            )
            return
        # A typed list (ServiceList) from the raw API omits kind/apiVersion on its items.
        inherited = (kind.removesuffix("List"), api) if kind != "List" else None
        for item, line in zip(items, items.item_lines, strict=True):
            self.document(item, line, source, inherited)

    @staticmethod
    def namespaced(kind: str) -> bool:
        """Whether objects of ``kind`` live in a namespace (Node and ServiceCIDR do not)."""
        spec = _KINDS.get(kind)
        return spec is None or spec.namespaced

    def remember(self, kind: str, meta: k8s.ObjectMeta, reader: Reader, data: YMap) -> None:
        if not meta.name:
            return
        key = (kind, meta.key if self.namespaced(kind) else meta.name)
        first = self.seen.get(key)
        if first is None:
            self.seen[key] = meta.source
        else:
            # The API server would refuse the second create (AlreadyExists).
            md = data.get("metadata")
            line = md.line_of("name") if isinstance(md, YMap) else data.line
            reader.error(line, "metadata.name", f"duplicate {kind}; first defined at {first}")


def _documents(text: str, source: str, problems: list[str]) -> Iterable[tuple[Any, int]]:
    """The documents of ``text`` as YMap/YList trees with their first line, one at a time.

    Documents of plain block YAML (most big manifests) are read by the fast path
    (:mod:`svcsim.k8s.blockyaml`); from the first document that is not, the full reader
    reads the rest. A syntax error or an exceeded limit (:mod:`svcsim.k8s.yamlread`) is
    recorded as a problem and ends the file; a document with a value that cannot be read
    (an unknown tag) is reported and skipped.
    """
    try:
        check_text_size(text)
    except YamlFileError as exc:
        problems.append(str(ManifestError(source, exc.line, "", "", exc.message)))
        return
    for read in fast_documents(text):
        if isinstance(read, Handover):
            yield from _composed_documents(read.text, source, problems)
        else:
            yield read.data, read.line


def _composed_documents(text: str, source: str, problems: list[str]) -> Iterable[tuple[Any, int]]:
    """The documents of ``text`` read by the full reader (libyaml's composer, then converted)."""
    converter = _Converter(source, problems)
    may_alias = "*" in text  # an alias is written *name: without a star there is none
    try:
        for node in compose_all(text):
            check_aliases(node, may_alias=may_alias)
            data = converter.document(node)
            if not converter.unreadable:  # else its objects would only repeat the problem
                yield data, node.start_mark.line + 1
    except YamlFileError as exc:
        problems.append(str(ManifestError(source, exc.line, "", "", exc.message)))


class _Converter:
    """Composed YAML nodes as YMap/YList/scalars, keeping 1-based lines.

    Keys are kept as written (``on:`` stays ``"on"``), values get YAML 1.1 types as
    Kubernetes' YAML reader gives them. Aliases share the converted value (``memo``);
    what they expand to was bounded before (:func:`~svcsim.k8s.yamlread.check_aliases`),
    since whatever walks the result walks every copy. A mapping or list held by a key
    takes the key's line as its own; a list item's mapping starts on its ``-`` line. A
    value that cannot be read is a problem and reads as null.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        self.constructor = SafeConstructor()
        self.memo: dict[int, Any] = {}
        self.active: set[int] = set()  # nodes on the current path: a recursive alias ends here

        self.unreadable = False  # the current document has a value that could not be read

    def problem(self, line: int, message: str) -> None:
        self.problems.append(str(ManifestError(self.source, line, "", "", message)))

    def unreadable_value(self, line: int, message: str) -> None:
        self.problem(line, message)
        self.unreadable = True

    def document(self, root: Node) -> Any:
        """The value of one document; the budget goes on from the file's earlier documents."""
        # Aliases never cross documents, and ids of freed nodes are reused: start afresh.
        self.memo.clear()
        # The constructor keeps every node it built a scalar from (for aliases), as its own
        # construct_document clears per document: without this a file's nodes all stay alive.
        self.constructor.constructed_objects.clear()
        self.unreadable = False
        return self.convert(root)

    def convert(self, node: Node) -> Any:
        """The value of ``node``: YMap, YList or a scalar (an alias gives the shared value)."""
        line = node.start_mark.line + 1
        if id(node) in self.active:
            self.unreadable_value(line, "yaml: recursive alias")
            return None
        if id(node) in self.memo:
            return self.memo[id(node)]
        self.active.add(id(node))
        try:
            value = self.build(node)
        except YamlValueError as exc:
            self.unreadable_value(exc.line, exc.message)
            value = None
        finally:
            self.active.discard(id(node))
        self.memo[id(node)] = value
        return value

    def build(self, node: Node) -> Any:
        """The value of ``node``, built from its children."""
        line = node.start_mark.line + 1
        if isinstance(node, MappingNode):
            check_collection_tag(node)
            mapping = YMap(line)
            self.fill_mapping(mapping, node)
            return mapping
        if isinstance(node, SequenceNode):
            check_collection_tag(node)
            seq = YList(line)
            for item in node.value:
                seq.append(self.convert(item))
                seq.item_lines.append(item.start_mark.line + 1)
            return seq
        assert isinstance(node, ScalarNode)
        return scalar_value(node, self.constructor)

    def fill_mapping(self, mapping: YMap, node: MappingNode) -> None:
        """Fill ``mapping`` from ``node``; a key written twice is a problem, merged keys are not."""
        written: set[str] = set()
        for pair in mapping_pairs(node):
            key_line = pair.key.start_mark.line + 1
            try:
                key = key_text(pair.key)
            except YamlValueError as exc:
                self.unreadable_value(exc.line, exc.message)
                continue
            if not pair.merged:
                if key in written:
                    first = mapping.key_lines[key]
                    message = f"yaml: duplicate key {quote(key)} (first at line {first})"
                    self.problem(key_line, message)
                written.add(key)
            fresh = id(pair.value) not in self.memo
            value = self.convert(pair.value)
            if fresh and isinstance(value, YMap | YList):
                # A missing field inside `spec:` is best reported on the `spec:` line.
                value.line = key_line
            mapping[key] = value
            mapping.key_lines[key] = key_line
