"""kube-proxy's nftables-mode compiler: the table ``ip kube-proxy`` after a full sync.

A pure function from (Services, EndpointSlices, :class:`NodeContext`, Service CIDRs) to an
:class:`~svcsim.netfilter.nftables.NftTable`, modelled on kubernetes
``pkg/proxy/nftables/proxier.go`` @b0f823e6. That is the one version of the file read for
this package's nftables modules; later kube-proxy versions renamed and re-prioritised the
filter chains (``filter-prerouting-pre-dnat`` ...); those are not modelled.

This module assembles the table: the fixed part (``setupNFTables``) and one part per service
port, written by :mod:`svcsim.proxy.nftables_rules` and named by
:mod:`svcsim.proxy.nftables_names`. With a run's :class:`NameMemo` it remembers each port's
part and remakes only the ports whose inputs changed (what a partial sync's transaction is
spliced from: :mod:`svcsim.sim.nft_splice`).

Which endpoints a node uses is the shared categorisation (:mod:`svcsim.proxy.topology`), as for
iptables mode. Service ports are visited in ServicePortName order (upstream iterates a Go map);
the order only changes the order of elements in the text, which upstream's tests sort away.

Not modelled (yet): IPv6 and the interface-name local-traffic detectors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import chain as concat
from itertools import compress, count, repeat
from operator import and_, attrgetter, is_, not_
from typing import Any, NamedTuple, overload

from svcsim.k8s.objects import EndpointSlice, Service
from svcsim.memo import BoundedMemo
from svcsim.netfilter.derived import LazyTuple, differing
from svcsim.netfilter.nftables import NftChain, NftElement, NftRule, NftSet, NftTable
from svcsim.proxy.context import NodeContext
from svcsim.proxy.endpoints import (
    EndpointInfo,
    EndpointsMap,
    ServicePortInfo,
    build_endpoints_map,
    build_service_port_map,
)
from svcsim.proxy.gcpause import collector_paused, promote_to_oldest
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.nft_elements import (
    ElementItems,
    ElementKey,
    TableElements,
    assembled_elements,
    flat_elements,
    replaced_elements,
)
from svcsim.proxy.nftables_names import (
    TABLE_COMMENT,
    TABLE_FAMILY,
    TABLE_NAME,
    chain_service,
    hash_and_truncate,
)
from svcsim.proxy.nftables_rules import Builder, check_context, write_service_port, write_setup


class _PartShape(NamedTuple):
    """What a sync asks of a :class:`PortPart` beyond its objects (made on first ask)."""

    grouped: tuple[NftRule, ...]
    owner: str | None


_NAME = attrgetter("name")


@dataclass(frozen=True, slots=True)
class PortPart:
    """What one service port adds to the transaction: its chains, sets, rules and elements."""

    chains: tuple[NftChain, ...]
    sets: tuple[NftSet, ...]
    rules: tuple[NftRule, ...]
    elements: tuple[tuple[tuple[str, tuple[str, ...]], NftElement], ...]
    chain_items: tuple[tuple[str, NftChain], ...] = field(init=False, repr=False, compare=False)
    """``chains`` by name (what ``dict.update`` takes)."""
    set_items: tuple[tuple[str, NftSet], ...] = field(init=False, repr=False, compare=False)
    """``sets`` by name."""
    _shape: _PartShape | None = field(default=None, init=False, repr=False, compare=False)
    """:attr:`grouped` and :attr:`owner` once asked (a full compile never asks)."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "chain_items", tuple(zip(map(_NAME, self.chains), self.chains, strict=True))
        )
        object.__setattr__(
            self, "set_items", tuple(zip(map(_NAME, self.sets), self.sets, strict=True))
        )

    def _shaped(self) -> _PartShape:
        shape = self._shape
        if shape is None:
            by_chain: dict[str, list[NftRule]] = {c.name: [] for c in self.chains}
            for rule in self.rules:
                by_chain.setdefault(rule.chain, []).append(rule)
            grouped = tuple(r for rs in by_chain.values() for r in rs)
            names = [*(c.name for c in self.chains), *(s.name for s in self.sets)]
            owners = {chain_service(n) for n in names} or {""}
            # A truncated name (hashAndTruncate's "...") no longer names its port.
            own = (
                len(by_chain) == len(self.chains)
                and len(owners) == 1
                and not any(n.endswith("...") for n in names)
            )
            shape = _PartShape(grouped, owners.pop() if own else None)
            object.__setattr__(self, "_shape", shape)
        return shape

    @property
    def grouped(self) -> tuple[NftRule, ...]:
        """``rules`` grouped by chain, chains in ``chains`` order (as a sync's plan lays them)."""
        return self._shaped().grouped

    @property
    def owner(self) -> str | None:
        """The Service (``namespace/name``) its chains and sets are all named after, if one.

        Only if its rules are all in its own chains too (``""``: it has no chain or set);
        else None.
        """
        return self._shaped().owner

    def owned_by(self, service: str) -> bool:
        """True if every chain and set of this part is ``service``'s and holds its own rules."""
        return self.owner == service or self.owner == ""


@dataclass(frozen=True, slots=True, eq=False)
class TableLayout:
    """How a table compiled with a :class:`NameMemo` was assembled (a partial sync splices it).

    ``setup`` is the fixed part (``setupNFTables``, block 0), then each port's part in sync
    order (block ``i + 1`` for port ``i``); ``written`` the table's elements by key (and the
    keys several blocks write); ``services`` each Service's port numbers in ``ports``;
    ``serial`` numbers the layouts a :class:`NameMemo` made, and ``derivation`` says which
    ports' parts were replaced in which earlier layout to make this one (None: assembled whole).
    """

    setup: PortPart
    ports: tuple[ServicePortName, ...]
    parts: tuple[PortPart, ...]
    written: TableElements
    services: Mapping[str, tuple[int, ...]]
    serial: int
    derivation: LayoutDerivation | None

    @property
    def elements(self) -> Mapping[ElementKey, NftElement]:
        """The table's element for each ``(container, key)`` (read only)."""
        return self.written.by_key


class LayoutDerivation(NamedTuple):
    """How a :class:`TableLayout` was made from an earlier one."""

    base: int
    """The earlier layout's ``serial``."""
    replaced: tuple[int, ...]
    """The ports (numbers in ``ports``, ascending) whose part is another object now."""


class _PortKey(NamedTuple):
    """What one service port's nf_tables objects are written from (values)."""

    port: ServicePortInfo
    endpoints: tuple[EndpointInfo, ...]
    context: NodeContext


_PortTuple = tuple[ServicePortInfo, tuple[EndpointInfo, ...], NodeContext]
"""A :class:`_PortKey` as a plain tuple: equal to it, and ten times cheaper to make (the
compiler asks once per service port per sync)."""


class NameMemo:
    """:func:`hash_and_truncate` and each service port's objects remembered, owned by a run.

    A simulated kube-proxy compiles every Service at every sync on every node; the names, and
    a port's objects for the same (port, endpoints, node context), are the same each time.
    Each memo holds at most ``limit`` entries (:class:`~svcsim.memo.BoundedMemo`).
    """

    __slots__ = ("assemblies", "by_identity", "layouts", "names", "orders", "parts", "serials")

    def __init__(self, limit: int = 1 << 18) -> None:
        self.names: BoundedMemo[str, str] = BoundedMemo("hashed nf_tables chain names", limit)
        """``hashAndTruncate`` by the name it hashes."""
        self.parts: BoundedMemo[_PortTuple, PortPart] = BoundedMemo(
            "nf_tables objects of a service port by (port, endpoints, context)", limit
        )
        """A service port's objects by what they are written from (values)."""
        self.by_identity: BoundedMemo[tuple[int, int, int], PortPart] = BoundedMemo(
            "nf_tables objects of a service port by the identities of (port, endpoints, context)",
            limit,
        )
        """The same, asked first by identity: successive syncs' maps hold the same objects for
        what did not change, and hashing a port's endpoints by value costs more than a lookup."""
        self.orders: BoundedMemo[int, tuple[ServicePortName, ...]] = BoundedMemo(
            "the last service ports in sync order, by their number", 16
        )
        """Port names in ServicePortName order (sorted once per set of names)."""
        self.layouts: BoundedMemo[int, TableLayout] = BoundedMemo(
            "how the last tables were assembled, by table identity", 16
        )
        """:class:`TableLayout` of the tables compiled last (see :meth:`layout`)."""
        self.assemblies: BoundedMemo[int, _Assembly] = BoundedMemo(
            "the last table assembled per node context (identity), with its inputs", 1 << 10
        )
        """What the next compile for the same context remakes only the changed ports of (one
        per node: a run's nodes each have their context)."""
        self.serials = count(1)
        """Numbers for the layouts made (:attr:`TableLayout.serial`)."""

    def layout(self, table: NftTable) -> TableLayout | None:
        """How ``table`` was assembled, if it is one of the last tables compiled with this."""
        return self.layouts.get(id(table))

    def part(self, key: _PortTuple) -> PortPart | None:
        """The objects remembered for ``key`` (a :class:`_PortKey` or the equal tuple), if any."""
        return self.parts.get(key)

    def remember(self, key: _PortKey, part: PortPart) -> None:
        """Remember ``part`` for ``key``."""
        self.parts.put(key, part)

    def __call__(self, name: str) -> str:
        """``hash_and_truncate(name)``."""
        found = self.names.get(name)
        if found is None:
            found = self.names.put(name, hash_and_truncate(name))
        return found


def _service_order(spn: ServicePortName) -> tuple[str, str]:
    return spn.text, str(spn.protocol)


def table_from_maps(
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: EndpointsMap,
    ctx: NodeContext,
    service_cidrs: Sequence[str],
    names: NameMemo | None = None,
) -> NftTable:
    """The table after a full sync from kube-proxy's own maps (``svcPortMap``, ``endpointsMap``).

    ``names`` remembers chain names and each service port's objects across calls (a run's, a
    benchmark's; computed afresh without one). Built with the cyclic garbage collector paused
    (:mod:`svcsim.proxy.gcpause`).
    """
    check_context(ctx)
    with collector_paused():
        return _table(service_ports, endpoints_map, ctx, service_cidrs, names)


def _table(
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: EndpointsMap,
    ctx: NodeContext,
    service_cidrs: Sequence[str],
    names: NameMemo | None,
) -> NftTable:
    b = Builder() if names is None else Builder(hashed=names)
    write_setup(b, ctx, service_cidrs)
    layout: TableLayout | None = None
    if names is not None:
        spliced = _reassemble(b, service_ports, endpoints_map, ctx, names)
        if spliced is not None:
            return spliced
    if names is None:
        for spn in sorted(service_ports, key=_service_order):
            write_service_port(b, service_ports[spn], endpoints_map.get(spn, ()), ctx)
    elif (layout := _assemble(b, service_ports, endpoints_map, ctx, names)) is None:
        # Two ports wrote a chain of the same name (the first one stays, as write_service_port
        # adds them): assembled one object at a time instead.
        b = Builder(hashed=names)
        write_setup(b, ctx, service_cidrs)
        for spn in _ordered(service_ports, names):
            part = _port_part(service_ports[spn], endpoints_map.get(spn, ()), ctx, names)
            for chain in part.chains:
                b.chains.setdefault(chain.name, chain)
            for nft_set in part.sets:
                b.sets[nft_set.name] = nft_set
            b.rules.extend(part.rules)
            b.elements.update(part.elements)
    table = NftTable(
        family=TABLE_FAMILY,
        name=TABLE_NAME,
        comment=TABLE_COMMENT,
        chains=tuple(b.chains.values()),
        sets=tuple(b.sets.values()),
        rules=tuple(b.rules),
        elements=tuple(b.elements.values()),
    )
    if layout is not None and names is not None:
        names.layouts.put(id(table), layout, holds=table)
        _remember_assembly(names, ctx, layout, service_ports, endpoints_map)
    # A whole new table, which lives on: not worth a young collection's walk.
    promote_to_oldest()
    return table


@dataclass(frozen=True, slots=True, eq=False)
class _MapsSeen:
    """The compiler's two input maps as the last compile saw them, in their own key order.

    A compile given maps with the very same keys in the same order (a sync's maps mostly are)
    finds the ports whose inputs changed by identity of values, hashing no key.
    """

    port_keys: tuple[ServicePortName, ...]
    port_values: tuple[ServicePortInfo, ...]
    port_places: tuple[int, ...]
    """Each port key's number in sync order."""
    endpoint_keys: tuple[ServicePortName, ...]
    endpoint_values: tuple[tuple[EndpointInfo, ...], ...]
    endpoint_places: tuple[int | None, ...]
    """Each endpoint key's port number in sync order (None: endpoints of no service port)."""


@dataclass(frozen=True, slots=True, eq=False)
class _Assembly:
    """What the last collision-free table of a node context was assembled from."""

    layout: TableLayout
    infos: tuple[ServicePortInfo, ...]
    endpoints: tuple[tuple[EndpointInfo, ...], ...]
    seen: _MapsSeen


def _inputs(
    ports: tuple[ServicePortName, ...],
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: EndpointsMap,
) -> tuple[tuple[ServicePortInfo, ...], tuple[tuple[EndpointInfo, ...], ...]]:
    infos = tuple(map(service_ports.__getitem__, ports))
    endpoints = tuple(map(endpoints_map.get, ports, repeat((), len(ports))))
    return infos, endpoints


def _seen(
    ports: tuple[ServicePortName, ...],
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: EndpointsMap,
) -> _MapsSeen:
    place = dict(zip(ports, count()))
    port_keys, endpoint_keys = tuple(service_ports), tuple(endpoints_map)
    return _MapsSeen(
        port_keys,
        tuple(service_ports.values()),
        tuple(map(place.__getitem__, port_keys)),
        endpoint_keys,
        tuple(endpoints_map.values()),
        tuple(map(place.get, endpoint_keys)),
    )


def _remember_assembly(
    names: NameMemo,
    ctx: NodeContext,
    layout: TableLayout,
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: EndpointsMap,
) -> None:
    infos, endpoints = _inputs(layout.ports, service_ports, endpoints_map)
    seen = _seen(layout.ports, service_ports, endpoints_map)
    names.assemblies.put(id(ctx), _Assembly(layout, infos, endpoints, seen), holds=ctx)


def _changed_ports(
    last: _Assembly,
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: EndpointsMap,
    names: NameMemo,
) -> tuple[_Assembly, list[int]] | None:
    """The numbers of the ports whose inputs changed since ``last`` (ascending), and the inputs.

    The returned assembly holds the inputs now (its ``layout`` still ``last``'s). None if the
    ports are not ``last``'s.
    """
    seen = last.seen
    port_keys, endpoint_keys = tuple(service_ports), tuple(endpoints_map)
    port_values, endpoint_values = tuple(service_ports.values()), tuple(endpoints_map.values())
    if port_keys == seen.port_keys and endpoint_keys == seen.endpoint_keys:
        ports = last.layout.ports
        # Equal inputs write equal objects: a value-equal new object counts as unchanged.
        changed: set[int | None] = {
            seen.port_places[d] for d in differing(seen.port_values, port_values)
        }
        changed.update(
            seen.endpoint_places[d] for d in differing(seen.endpoint_values, endpoint_values)
        )
        numbers = sorted(i for i in changed if i is not None)  # None: of no service port
        infos, endpoints = list(last.infos), list(last.endpoints)
        for i in numbers:
            infos[i] = service_ports[ports[i]]
            endpoints[i] = endpoints_map.get(ports[i], ())
        seen = replace(seen, port_values=port_values, endpoint_values=endpoint_values)
        now = _Assembly(last.layout, tuple(infos), tuple(endpoints), seen)
        return now, numbers
    ports = _ordered(service_ports, names)
    if ports != last.layout.ports:
        return None
    infos_now, endpoints_now = _inputs(ports, service_ports, endpoints_map)
    same = map(and_, map(is_, infos_now, last.infos), map(is_, endpoints_now, last.endpoints))
    numbers = list(compress(count(), map(not_, same)))
    seen = _seen(ports, service_ports, endpoints_map)
    return _Assembly(last.layout, infos_now, endpoints_now, seen), numbers


class _ElementBlocks(Sequence[ElementItems]):
    """Each block's element items, block 0 the fixed part (a view: nothing copied)."""

    __slots__ = ("parts", "setup")

    def __init__(self, setup: PortPart, parts: Sequence[PortPart]) -> None:
        self.setup, self.parts = setup, parts

    def __len__(self) -> int:
        return len(self.parts) + 1

    @overload
    def __getitem__(self, number: int) -> ElementItems: ...

    @overload
    def __getitem__(self, number: slice) -> Sequence[ElementItems]: ...

    def __getitem__(self, number: int | slice) -> ElementItems | Sequence[ElementItems]:
        if isinstance(number, slice):
            return [self[n] for n in range(*number.indices(len(self)))]
        return self.setup.elements if number == 0 else self.parts[number - 1].elements


def _joined(blocks: tuple[PortPart, ...], field_name: str) -> tuple[Any, ...]:
    """One field (``chains``, ``sets``, ``rules``) of every block, concatenated."""
    return tuple(concat.from_iterable(map(attrgetter(field_name), blocks)))


def _assembled_table(blocks: tuple[PortPart, ...]) -> NftTable:
    """The table of ``blocks`` as :func:`_assemble` makes it, listed only when read."""
    return NftTable(
        family=TABLE_FAMILY,
        name=TABLE_NAME,
        comment=TABLE_COMMENT,
        chains=LazyTuple(partial(_joined, blocks, "chains")),
        sets=LazyTuple(partial(_joined, blocks, "sets")),
        rules=LazyTuple(partial(_joined, blocks, "rules")),
        elements=LazyTuple(lambda: flat_elements(map(attrgetter("elements"), blocks))),
    )


def _reassemble(
    b: Builder,
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: EndpointsMap,
    ctx: NodeContext,
    names: NameMemo,
) -> NftTable | None:
    """The table from the last one of this context, remaking only the ports that changed.

    ``b`` holds the fixed part. None (assemble in full) unless the fixed part and the ports
    are the last table's and each remade port's chains and sets are its own Service's (named
    after its port, so no two ports' names meet). The table is the blocks' objects
    concatenated, elements merged as ``dict.update`` does (:func:`_assemble`'s table), listed
    only when read (:class:`~svcsim.netfilter.derived.LazyTuple`); the elements by key are
    the last table's with the remade ports' changes (:mod:`svcsim.proxy.nft_elements`).
    """
    last = names.assemblies.get(id(ctx))
    if last is None:
        return None
    old = last.layout
    setup = PortPart(
        tuple(b.chains.values()), tuple(b.sets.values()), tuple(b.rules), tuple(b.elements.items())
    )
    if setup != old.setup:
        return None
    found = _changed_ports(last, service_ports, endpoints_map, names)
    if found is None:
        return None
    now, numbers = found
    parts = list(old.parts)
    replaced: list[int] = []
    for i in numbers:
        part = _port_part(now.infos[i], now.endpoints[i], ctx, names)
        if not part.owned_by(old.ports[i].service):
            return None
        if part is not parts[i]:
            parts[i] = part
            replaced.append(i + 1)
    new_parts = tuple(parts)
    written = replaced_elements(
        old.written,
        _ElementBlocks(old.setup, old.parts),
        _ElementBlocks(old.setup, new_parts),
        replaced,
    )
    table = _assembled_table((old.setup, *new_parts))
    derivation = LayoutDerivation(old.serial, tuple(n - 1 for n in replaced))
    layout = TableLayout(
        old.setup, old.ports, new_parts, written, old.services, next(names.serials), derivation
    )
    names.layouts.put(id(table), layout, holds=table)
    names.assemblies.put(id(ctx), replace(now, layout=layout), holds=ctx)
    return table


def _ordered(
    service_ports: Mapping[ServicePortName, ServicePortInfo], names: NameMemo
) -> tuple[ServicePortName, ...]:
    """The port map's names in sync order, sorted once per set of names.

    The last order of as many names is reused when the map holds each of its names (then it
    holds exactly those): successive syncs mostly see the same ports.
    """
    found = names.orders.get(len(service_ports))
    if found is None or not all(map(service_ports.__contains__, found)):
        found = tuple(sorted(service_ports, key=_service_order))
        names.orders.put(len(service_ports), found)
    return found


def _port_part(
    svc: ServicePortInfo, endpoints: tuple[EndpointInfo, ...], ctx: NodeContext, names: NameMemo
) -> PortPart:
    """One port's objects: remembered by identity, else by value, else written on their own."""
    ikey = (id(svc), id(endpoints), id(ctx))
    part = names.by_identity.get(ikey)
    if part is not None:
        return part
    # Asked with the plain tuple equal to the _PortKey stored below (see proxy/caches.py).
    part = names.part((svc, endpoints, ctx))
    if part is None:
        alone = Builder(hashed=names)
        write_service_port(alone, svc, endpoints, ctx)
        part = PortPart(
            tuple(alone.chains.values()),
            tuple(alone.sets.values()),
            tuple(alone.rules),
            tuple(alone.elements.items()),
        )
        names.remember(_PortKey(svc, endpoints, ctx), part)
    names.by_identity.put(ikey, part, holds=(svc, endpoints, ctx))
    return part


def _assemble(
    b: Builder,
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: EndpointsMap,
    ctx: NodeContext,
    names: NameMemo,
) -> TableLayout | None:
    """Add every port's remembered objects to ``b`` as :func:`write_service_port` adds them.

    Chains are added a port at a time (``dict.update``: the last of two equal names would
    win, where ``write_service_port`` keeps the first). Returns how the table is assembled, or
    None if two chain or set names met (``b`` is then to be thrown away).
    """
    chains, sets, rules, elements = b.chains, b.sets, b.rules, b.elements
    setup = PortPart(
        tuple(chains.values()), tuple(sets.values()), tuple(rules), tuple(elements.items())
    )
    expected_chains, expected_sets = len(chains), len(sets)
    get = endpoints_map.get
    ports = _ordered(service_ports, names)
    parts = []
    for spn in ports:
        part = _port_part(service_ports[spn], get(spn, ()), ctx, names)
        parts.append(part)
        chains.update(part.chain_items)
        expected_chains += len(part.chains)
        sets.update(part.set_items)
        expected_sets += len(part.sets)
        rules.extend(part.rules)
        elements.update(part.elements)
    if len(chains) != expected_chains or len(sets) != expected_sets:
        return None
    written = assembled_elements(elements, _ElementBlocks(setup, parts))
    return TableLayout(
        setup, ports, tuple(parts), written, _by_service(ports), next(names.serials), None
    )


def _by_service(ports: Sequence[ServicePortName]) -> dict[str, tuple[int, ...]]:
    """Each Service's port numbers in ``ports``."""
    found: dict[str, list[int]] = {}
    for i, spn in enumerate(ports):
        found.setdefault(spn.service, []).append(i)
    return {service: tuple(numbers) for service, numbers in found.items()}


def compile_nftables(
    services: Iterable[Service],
    endpoint_slices: Iterable[EndpointSlice],
    ctx: NodeContext,
    service_cidrs: Sequence[str] = (),
) -> NftTable:
    """The ``ip kube-proxy`` table of a clean node after kube-proxy's nftables full sync.

    ``service_cidrs`` are the IPv4 Service CIDRs kube-proxy knows (``OnServiceCIDRsChanged``);
    with none, no "Drop traffic to unallocated ClusterIPs" rule is written, as upstream.
    """
    return table_from_maps(
        build_service_port_map(services),
        build_endpoints_map(endpoint_slices, ctx.node_name),
        ctx,
        service_cidrs,
    )
