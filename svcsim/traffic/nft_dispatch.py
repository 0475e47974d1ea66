"""nf_tables dispatches that survive syncs which do not touch them, shared between nodes.

The nf_tables counterpart of :mod:`svcsim.traffic.dispatch`. A walk through a parsed table
(:func:`~svcsim.netfilter.nft_eval.walk_nft`) is a deterministic function of the packet, the
forced answers, and what it reads: chains by name, map elements by key, set elements by key,
whether a map or set exists, set timeouts, which sets are dynamic, the base chains, and the
node network's answers. :class:`NftDispatchCache` builds each dispatch on a table whose
containers note every read, and reuses it - on the same node under a later table, or on
another node - wherever each read gives the same value. That is exact: the walks would ask
the same questions and get the same answers. Chains are interned by the run's
:class:`~svcsim.netfilter.nft_parse.ParseMemo`, so an unchanged chain is the same object.

:func:`nft_changes` lists the reads two tables answer differently: what a sync changed, for
the engine's "keep the groups whose dispatch read nothing that changed".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from svcsim.memo import BoundedMemo
from svcsim.netfilter.nft_index import NftDispatch, build_nft_dispatch
from svcsim.netfilter.nft_statements import ParsedTable
from svcsim.netfilter.packet import NodeNetwork, Origin, Packet
from svcsim.sim.kernel import Kernel, NftRules
from svcsim.traffic.recording import RecordingNetwork

ReadKey = tuple[object, ...]
"""What a walk read: ``("chain", name)``, ``("chain?", name)``, ``("map", name, key)``,
``("map?", name)``, ``("set", name, key)``, ``("set?", name)``, ``("timeout", name)``,
``("dynamic", name)``, ``("hooks",)``."""

HOOKS: ReadKey = ("hooks",)


def read_value(rules: NftRules, key: ReadKey) -> object:
    """What ``key`` reads in ``rules`` (the same value the recording noted)."""
    kind, parsed = key[0], rules.parsed
    if kind == "chain":
        return parsed.chains.get(str(key[1]))
    if kind == "chain?":
        return key[1] in parsed.chains
    if kind == "map":
        return parsed.maps.get(str(key[1]), {}).get(key[2])  # type: ignore[call-overload]
    if kind == "map?":
        return key[1] in parsed.maps
    if kind == "set":
        return key[2] in parsed.sets.get(str(key[1]), frozenset())
    if kind == "set?":
        return key[1] in parsed.sets
    if kind == "timeout":
        return parsed.timeouts.get(str(key[1]))
    if kind == "dynamic":
        return key[1] in rules.dynamic
    return parsed.base_chains


_PRESENCE: Final = MappingProxyType(
    {"chain": "chain?", "sets": "set?", "map": "map?", "timeout": "timeout"}
)
"""The read kind noting "is there a ... called key" for each container kind."""


class _Recorder:
    """A container that notes each key read, with the value read."""

    def __init__(self, kind: str, base: Any, reads: dict[ReadKey, object], *prefix: object):
        self.kind, self.base, self.reads, self.prefix = kind, base, reads, prefix

    def _note(self, key: object, value: object) -> None:
        self.reads[(self.kind, *self.prefix, key)] = value

    def get(self, key: object, default: object = None) -> object:
        value = self.base.get(key)
        self._note(key, value)
        return value if value is not None else default

    def __contains__(self, key: object) -> bool:
        found = key in self.base
        if self.kind in ("set", "dynamic"):
            self._note(key, found)
        else:  # "is there a chain / set called key"
            self.reads[(_PRESENCE[self.kind], key)] = found
        return found

    def __getitem__(self, key: object) -> object:
        value = self.base[key]
        if self.kind == "sets":
            return _Recorder("set", value, self.reads, key)
        self._note(key, value)
        return value


class _Maps(_Recorder):
    """Maps by name: each map handed out notes the element keys read."""

    def get(self, key: object, default: object = None) -> object:
        found = self.base.get(key)
        self.reads[("map?", key)] = found is not None
        return _Recorder("map", found, self.reads, key) if found is not None else default


def _recording(rules: NftRules, reads: dict[ReadKey, object]) -> tuple[ParsedTable, Any]:
    parsed = rules.parsed
    reads[HOOKS] = parsed.base_chains
    table = ParsedTable(
        name=parsed.name,
        chains=_Recorder("chain", parsed.chains, reads),  # type: ignore[arg-type]
        base_chains=parsed.base_chains,
        sets=_Recorder("sets", parsed.sets, reads),  # type: ignore[arg-type]
        maps=_Maps("map", parsed.maps, reads),  # type: ignore[arg-type]
        timeouts=_Recorder("timeout", parsed.timeouts, reads),  # type: ignore[arg-type]
    )
    return table, _Recorder("dynamic", rules.dynamic, reads)


def _same(a: object, b: object) -> bool:
    return a is b or a == b


@dataclass(slots=True)
class _Built:
    """A dispatch and what it read besides its packet."""

    dispatch: NftDispatch
    reads: tuple[tuple[ReadKey, object], ...]
    answers: tuple[tuple[tuple[str, Any], Any], ...]
    names: frozenset[ReadKey] = field(init=False)
    holds: BoundedMemo[int, NftRules] = field(
        default_factory=lambda: BoundedMemo("nf_tables rules known to give every read", 8)
    )
    """The :class:`NftRules` known to give every read, by identity (each its own value, so
    its id stays unique while it is kept)."""
    networks: list[NodeNetwork] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.names = frozenset(key for key, _ in self.reads)

    def holds_on(self, rules: NftRules, network: NodeNetwork) -> bool:
        """True if every read and network answer is the same under ``rules`` and ``network``."""
        if id(rules) not in self.holds:
            if not all(_same(read_value(rules, k), v) for k, v in self.reads):
                return False
            self.holds.put(id(rules), rules)
        if not any(n is network for n in self.networks):
            if any(getattr(network, m)(arg) != a for (m, arg), a in self.answers):
                return False
            self.networks.append(network)
        return True


_Key = tuple[str, Origin, str, str, int]


class NftDispatchCache:
    """nf_tables dispatches per node and key, revalidated when the node's table changes.

    ``built`` counts enumerations, ``reused`` the times a dispatch served a new table or
    another node without one.
    """

    def __init__(self, keep: int = 8) -> None:
        self._nodes: dict[tuple[str, _Key], tuple[_Built, int]] = {}
        self._shared: dict[_Key, list[_Built]] = {}
        self._keep = keep
        self.built = 0
        self.reused = 0

    def lookup_reads(
        self, kernel: Kernel, src: str, origin: Origin, dst: str, protocol: str, dport: int
    ) -> tuple[NftDispatch, frozenset[ReadKey]]:
        """The dispatch for this key under ``kernel``'s table, and the reads it depends on."""
        rules = kernel.nft
        assert rules is not None
        key = (src, origin, dst, protocol, dport)
        entry = self._nodes.get((kernel.node, key))
        if entry is not None and entry[1] == kernel.generation:
            return entry[0].dispatch, entry[0].names
        if entry is not None and entry[0].holds_on(rules, kernel.network):
            self.reused += 1
            built = entry[0]
        else:
            candidates = self._shared.setdefault(key, [])
            for built in candidates:
                if built.holds_on(rules, kernel.network):
                    self.reused += 1
                    break
            else:
                built = self._build(kernel, rules, Packet(src, dst, protocol, dport, origin=origin))
                candidates.insert(0, built)
                del candidates[self._keep :]
        self._nodes[(kernel.node, key)] = (built, kernel.generation)
        return built.dispatch, built.names

    def _build(self, kernel: Kernel, rules: NftRules, packet: Packet) -> _Built:
        reads: dict[ReadKey, object] = {}
        table, dynamic = _recording(rules, reads)
        network = RecordingNetwork(kernel.network)
        dispatch = build_nft_dispatch(
            table, packet, network, max_paths=kernel.max_paths, dynamic=dynamic
        )
        # Rebind the dispatch to the real table (it walks it when a set is checked after an
        # update); the recording wrappers are only for building.
        dispatch.table = rules.parsed
        answers = tuple((q, a) for q, a in network.answers.items() if q[0] != "out_interface")
        self.built += 1
        built = _Built(dispatch, tuple(reads.items()), answers)
        built.holds.put(id(rules), rules)
        return built


def nft_changes(old: NftRules, new: NftRules) -> frozenset[ReadKey]:
    """Every read that ``old`` and ``new`` answer differently (see :data:`ReadKey`)."""
    if old is new:
        return frozenset()
    a, b = old.parsed, new.parsed
    out: set[ReadKey] = set()
    if a.base_chains != b.base_chains:
        out.add(HOOKS)
    for name in a.chains.keys() | b.chains.keys():
        x, y = a.chains.get(name), b.chains.get(name)
        if x is not y and x != y:
            out.add(("chain", name))
        if (x is None) != (y is None):
            out.add(("chain?", name))
    for name in a.maps.keys() | b.maps.keys():
        x_map, y_map = a.maps.get(name), b.maps.get(name)
        if (x_map is None) != (y_map is None):
            out.add(("map?", name))
        if x_map is not y_map:
            for key, _ in (x_map or {}).items() ^ (y_map or {}).items():
                out.add(("map", name, key))
    for name in a.sets.keys() | b.sets.keys():
        x_set, y_set = a.sets.get(name), b.sets.get(name)
        if (x_set is None) != (y_set is None):
            out.add(("set?", name))
        if x_set is not y_set:
            for key in (x_set or frozenset()) ^ (y_set or frozenset()):
                out.add(("set", name, key))
    for name in a.timeouts.keys() | b.timeouts.keys():
        if a.timeouts.get(name) != b.timeouts.get(name):
            out.add(("timeout", name))
    for name in old.dynamic ^ new.dynamic:
        out.add(("dynamic", name))
    return frozenset(out)
