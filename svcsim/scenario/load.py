"""Load a scenario file: YAML -> :class:`Scenario`, manifests read and checked, all errors at once.

Every problem becomes one line ``file:LINE: field.path: message``, LINE being the line of the
offending key; problems in Kubernetes manifests are the k8s loader's lines, unchanged. All
problems of the scenario and of its manifests are collected, then raised together as
:class:`ScenarioErrors`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from svcsim.k8s.errors import ManifestErrors, quote
from svcsim.k8s.fields import describe
from svcsim.k8s.load import Manifests, load_manifest_text
from svcsim.k8s.yamlread import YamlFileError, read_file
from svcsim.scenario.checks import ScenarioObjects, check_scenario
from svcsim.scenario.cluster import DEFAULT_NODE_COUNT
from svcsim.scenario.dns import DNS_ORIGIN, ClusterDns, coredns_manifest, dns_ip
from svcsim.scenario.errors import ScenarioErrors
from svcsim.scenario.locate import (
    YamlDoc,
    error_loc,
    error_message,
    field_vocabulary,
    format_path,
    locate,
    parse_yaml,
)
from svcsim.scenario.overrides import Override, apply_overrides, mark_problems
from svcsim.scenario.refs import NameTarget
from svcsim.scenario.schema import UNION_TAGS, Scenario

MANIFEST_SUFFIXES: Final = (".yaml", ".yml", ".json")
"""Files read from a directory named by a manifest ``path``."""


@dataclass(frozen=True, slots=True)
class ManifestText:
    """The raw text of one manifest file or inline block, and where it came from.

    ``source`` is the file the text is in (the scenario file itself for inline text);
    ``first_line`` is the line of ``source`` the text starts on; ``origin`` is the field
    that named it (``manifests[0]``, ``timeline[3].manifest``).
    """

    source: str
    text: str
    origin: str
    first_line: int = 1

    def padded(self) -> str:
        """The text moved down to ``first_line``, so a parser's line numbers are ``source``'s."""
        return "\n" * (self.first_line - 1) + self.text


@dataclass(frozen=True, slots=True)
class LoadedScenario:
    """A validated scenario, the directory its relative paths start from, and its manifests.

    ``manifests`` are the objects present at the start, in file order; ``timeline_manifests``
    maps the index of each ``add-service`` action to its text. ``warnings`` are the k8s
    loader's warnings (skipped kinds and the like) and the semantic checks' (values allocated,
    references that work only later; :mod:`svcsim.scenario.checks`).
    """

    scenario: Scenario
    path: Path
    base_dir: Path
    manifests: tuple[ManifestText, ...] = ()
    timeline_manifests: Mapping[int, ManifestText] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    overrides: tuple[Override, ...] = ()
    """The ``--set`` overrides applied to the file's document before validation."""


def load_scenario(
    path: str | Path,
    *,
    allow_outside_paths: bool = False,
    overrides: Sequence[Override] = (),
) -> LoadedScenario:
    """Read, validate and default the scenario at ``path``; ScenarioErrors lists every problem.

    Manifest files the scenario names (``manifests[].path``, ``timeline[].manifest.path``)
    must be inside the scenario's directory (symlinks resolved) unless
    ``allow_outside_paths``: a scenario from elsewhere must not read, and quote in its
    errors, any file of the machine. ``overrides`` (``--set KEY=VALUE``) are set in the
    document before anything is checked, so their values are checked as written ones and
    problems they cause end with ``(from --set KEY=VALUE)``
    (:mod:`svcsim.scenario.overrides`).
    """
    source = str(path)
    file = Path(path)
    try:
        text = read_file(file)
    except YamlFileError as exc:
        where = f"{source}:{exc.line}" if exc.line else source
        raise ScenarioErrors([f"{where}: {exc.message}"]) from None
    doc, syntax = parse_yaml(text, source)
    if doc is None:
        raise ScenarioErrors(syntax)
    if not isinstance(doc.data, dict):
        raise ScenarioErrors(
            [
                *syntax,
                f"{source}:{doc.root_line}: must be a mapping with "
                f"apiVersion: svcsim/v1 and kind: Scenario, "
                f"got {describe(doc.data)}",
            ]
        )
    syntax.extend(apply_overrides(doc, overrides, source))
    own: list[tuple[int, str]] = [(_line_of(p), p) for p in syntax]
    base_dir = file.parent
    texts = _Texts(doc, source, base_dir, own, allow_outside_paths=allow_outside_paths)
    manifests = texts.section(doc.data.get("manifests"), ("manifests",))
    from_manifests = _nodes_from_manifests(doc, source, manifests, own)
    scenario = _validate(_with_default_name(doc.data, file), doc, source, own)
    timeline_manifests = texts.timeline(doc.data.get("timeline"))
    added_dns = _coredns(scenario, manifests, source) if scenario is not None else None
    if added_dns is not None:
        manifests.append(added_dns[0])
    checked, warnings = _check_manifests([*manifests, *timeline_manifests.values()])
    if added_dns is not None and scenario is not None and scenario.cluster.dns is None:
        warnings = (*warnings, added_dns[1])  # asked for by cluster.dns: no surprise
    if scenario is not None and not own:
        # What the scenario means, once every part reads well (else its findings are noise).
        objects = None if checked else _objects(manifests, timeline_manifests)
        meaning = check_scenario(
            scenario, doc, source, objects, nodes_from_manifests=from_manifests
        )
        checked.extend(meaning.problems)
        warnings = (*warnings, *meaning.warnings)
    # Problems of inline manifests carry this file's lines: sort them in with the rest.
    own.extend((_line_of(p), p) for p in checked if p.startswith(f"{source}:"))
    foreign = texts.foreign + [p for p in checked if not p.startswith(f"{source}:")]
    if own or foreign or scenario is None:
        own.sort(key=lambda item: item[0])  # stable: same-line problems keep their order
        raise ScenarioErrors(mark_problems([p for _, p in own], overrides, source) + foreign)
    return LoadedScenario(
        scenario,
        file,
        base_dir,
        tuple(manifests),
        timeline_manifests,
        warnings,
        tuple(overrides),
    )


NODES_FROM_MANIFESTS = "fromManifests"
"""``cluster.nodes: fromManifests``: the nodes are the manifests' Node objects (a dump's)."""


def _nodes_from_manifests(
    doc: YamlDoc, source: str, manifests: list[ManifestText], own: list[tuple[int, str]]
) -> bool:
    """Replace ``cluster.nodes: fromManifests`` by the manifests' Node objects; True if done.

    Each Node gives a node named as it is, with its first InternalIP, its Pod CIDR, its
    ``topology.kubernetes.io/zone`` label and its allocatable CPU (rounded up to whole CPUs).
    A Node without InternalIP or Pod CIDR is a problem at its line; so is finding no Node.
    """
    cluster = doc.data.get("cluster")
    if not isinstance(cluster, dict) or cluster.get("nodes") != NODES_FROM_MANIFESTS:
        return False
    line = doc.lines.get(("cluster", "nodes"), doc.root_line)
    try:
        nodes = [n for n in parse_manifests(manifests).nodes if n.meta.name]
    except ManifestErrors:
        nodes = []  # the manifests' own problems are reported with the others
        broken = True
    else:
        broken = False
    filled: list[dict[str, Any]] = []
    for node in nodes:
        lacks = [what for what, have in (("InternalIP", node.internal_ips),
                                         ("podCIDR", node.pod_cidrs)) if not have]  # fmt: skip
        if lacks:
            why = (
                f"has no {' and no '.join(lacks)}: cluster.nodes {NODES_FROM_MANIFESTS} needs both"
            )
            own.append((line, f"{node.meta.source}: Node/{node.meta.name}: {why}"))
            continue
        spec: dict[str, Any] = {
            "name": node.meta.name,
            "ip": node.internal_ips[0],
            "podCIDR": node.pod_cidrs[0],
        }
        if node.zone:
            spec["zone"] = node.zone
        if node.cpu_millis > 0:
            spec["cpus"] = max(1, math.ceil(node.cpu_millis / 1000))
        filled.append(spec)
    if not nodes and not broken:
        why = f"{NODES_FROM_MANIFESTS}, but the manifests hold no Node object"
        own.append((line, f"{source}:{line}: cluster.nodes: {why}"))
    cluster["nodes"] = filled or DEFAULT_NODE_COUNT  # (problems above say why it is empty)
    return True


def _line_of(problem: str) -> int:
    m = re.match(r"[^:]*:(\d+):", problem)
    return int(m[1]) if m else 0


def _with_default_name(data: dict[str, Any], file: Path) -> dict[str, Any]:
    """``data`` with ``metadata.name`` set from the file name when the file has none."""
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict) or "name" in metadata:
        return data
    name = re.sub(r"[^a-z0-9.-]+", "-", file.stem.lower()).strip("-.")
    return {**data, "metadata": {**metadata, "name": name}}


_VOCABULARY: Final = field_vocabulary()


def _validate(
    data: dict[str, Any], doc: YamlDoc, source: str, out: list[tuple[int, str]]
) -> Scenario | None:
    try:
        return Scenario.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        for err in exc.errors():
            line, path = locate(doc, error_loc(err), UNION_TAGS)
            if any(path[: len(bad)] == bad for bad in doc.unreadable):
                continue  # the YAML reader has reported this value already
            where = f"{format_path(path)}: " if path else ""
            out.append(
                (line, f"{source}:{line}: {where}{error_message(err, _VOCABULARY, Scenario)}")
            )
        return None


class _Texts:
    """Collects manifest texts named by a scenario (read from raw data: works on invalid files).

    Problems on the scenario's own lines go to ``out``; problems located in a manifest
    file (a bad byte, a file too large) to ``foreign``.
    """

    def __init__(
        self,
        doc: YamlDoc,
        source: str,
        base_dir: Path,
        out: list[tuple[int, str]],
        *,
        allow_outside_paths: bool = False,
    ) -> None:
        self.doc = doc
        self.source = source
        self.base_dir = base_dir
        self.out = out
        self.foreign: list[str] = []
        self.allow_outside_paths = allow_outside_paths

    def problem(self, path: tuple[str | int, ...], message: str) -> None:
        line = self.doc.lines.get(path, self.doc.root_line)
        self.out.append((line, f"{self.source}:{line}: {format_path(path)}: {message}"))

    def section(self, entries: Any, where: tuple[str | int, ...]) -> list[ManifestText]:
        texts: list[ManifestText] = []
        if isinstance(entries, list):
            for i, entry in enumerate(entries):
                texts.extend(self.entry(entry, (*where, i)))
        return texts

    def timeline(self, actions: Any) -> dict[int, ManifestText]:
        found: dict[int, ManifestText] = {}
        if not isinstance(actions, list):
            return found
        for i, action in enumerate(actions):
            if isinstance(action, dict) and action.get("action") == "add-service":
                texts = self.entry(action.get("manifest"), ("timeline", i, "manifest"))
                if len(texts) == 1:
                    found[i] = texts[0]
                elif texts:
                    self.problem(
                        ("timeline", i, "manifest", "path"),
                        "must name one file here, not a directory",
                    )
        return found

    def entry(self, entry: Any, where: tuple[str | int, ...]) -> list[ManifestText]:
        if not isinstance(entry, dict):
            return []  # the schema reports the wrong shape
        if "path" in entry and "inline" in entry:
            return []  # the schema reports it; reading either would be a guess
        origin = format_path(where)
        inline = entry.get("inline")
        if isinstance(inline, str):
            first = self.doc.text_starts.get((*where, "inline"), 1)
            return [ManifestText(self.source, inline, origin, first)]
        rel = entry.get("path")
        if not isinstance(rel, str) or not rel.strip():
            return []
        at = (*where, "path")
        target = self.base_dir / rel
        if "\0" in rel:
            self.problem(at, "must not contain a NUL character (\\0)")
            return []
        if not self.inside(at, rel, target):
            return []
        if target.is_dir():
            files = sorted(
                p for p in target.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file()
            )
            if not files:
                kinds = "/".join(MANIFEST_SUFFIXES)
                self.problem(at, f"no {kinds} files in {target}")
        elif target.is_file():
            files = [target]
        else:
            self.problem(at, f"file not found: {target}")
            return []
        texts = []
        for file in files:
            if file is not target and not self.inside(at, str(file), file):
                continue  # a symlink in the directory that leads out of it
            try:
                texts.append(ManifestText(str(file), read_file(file), origin))
            except YamlFileError as exc:
                if exc.line:
                    self.foreign.append(f"{file}:{exc.line}: {exc.message}")
                else:
                    why = exc.message.removeprefix("cannot read file: ")
                    self.problem(at, f"cannot read {file}: {why}")
        return texts

    def inside(self, at: tuple[str | int, ...], shown: str, target: Path) -> bool:
        """Whether ``target`` may be read: inside the scenario's directory, or allowed anyway."""
        if self.allow_outside_paths:
            return True
        try:
            real = target.resolve()
            root = self.base_dir.resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a bad name
            self.problem(at, f"cannot resolve {quote(shown)}: {exc}")
            return False
        if real.is_relative_to(root):
            return True
        self.problem(
            at,
            f"outside the scenario's directory: {quote(shown)} is {quote(str(real))}"
            " (pass --allow-outside-paths to read it)",
        )
        return False


def _coredns(
    scenario: Scenario, manifests: list[ManifestText], source: str
) -> tuple[ManifestText, str] | None:
    """CoreDNS's manifests and a warning, if names are looked up and the manifests lack kube-dns.

    Needed when ``cluster.dns`` is set or a workload dials ``dns:NAME:PORT``
    (:mod:`svcsim.scenario.dns`); the warning is for the second case only (without
    ``cluster.dns``, the user may not expect CoreDNS Pods in the cluster).
    """
    dns = scenario.cluster.dns
    named = any(isinstance(w.target, NameTarget) for w in scenario.workloads)
    if dns is None and not named:
        return None
    dns = dns or ClusterDns()
    try:
        keys = {s.meta.key for s in parse_manifests(manifests).services}
    except ManifestErrors:
        return None  # the manifests' own problems are reported with the others
    wanted = dns.service if "/" in dns.service else f"default/{dns.service}"
    if wanted in keys:
        return None
    text = coredns_manifest(dns, scenario.cluster.service_cidr)
    warning = (
        f"{source}: no Service {wanted} in the manifests: added CoreDNS as kubeadm deploys it "
        f"(Service {wanted} at {dns.cluster_ip or dns_ip(scenario.cluster.service_cidr)}, "
        f"Deployment coredns with {dns.replicas} replicas; docs/dns.md)"
    )
    return ManifestText(f"{source} ({DNS_ORIGIN})", text, DNS_ORIGIN), warning


def _check_manifests(texts: list[ManifestText]) -> tuple[list[str], tuple[str, ...]]:
    """Problem lines and warnings of the k8s loader over ``texts``, passed through unchanged."""
    problems: list[str] = []
    warnings: list[str] = []
    for mt in texts:
        try:
            loaded = load_manifest_text(mt.padded(), mt.source)
        except ManifestErrors as exc:
            problems.extend(exc.problems)
            continue
        warnings.extend(loaded.warnings)
    return problems, tuple(warnings)


def parse_manifests(texts: Iterable[ManifestText]) -> Manifests:
    """Parse manifest texts (already checked by :func:`load_scenario`) into one Manifests."""
    merged: dict[str, list[object]] = {}
    for text in texts:
        part = load_manifest_text(text.padded(), text.source)
        for name in Manifests.__dataclass_fields__:
            if name != "warnings":
                merged.setdefault(name, []).extend(getattr(part, name))
    return Manifests(**{k: tuple(v) for k, v in merged.items()})  # type: ignore[arg-type]


def _objects(
    manifests: Iterable[ManifestText], timeline: Mapping[int, ManifestText]
) -> ScenarioObjects:
    """The parsed objects of texts :func:`_check_manifests` found sound."""
    added = {index: parse_manifests([text]) for index, text in timeline.items()}
    return ScenarioObjects(parse_manifests(manifests), added)
