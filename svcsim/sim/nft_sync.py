"""The nftables transaction of one kube-proxy sync, and the table the kernel holds after it.

kube-proxy's nftables proxier (kubernetes ``pkg/proxy/nftables/proxier.go`` @b0f823e6, the
version :mod:`svcsim.proxy.nftables` compiles) sends one ``nft -f`` transaction per sync:

* **Full sync** (at start, after a failure, and when the last full sync is ``FullSyncPeriod``
  old): ``setupNFTables`` re-adds the table, the fixed chains (flushed and rewritten), sets and
  maps; every map and set of service elements is flushed and refilled
  (``nftElementStorage.reset``); every active service chain is added, flushed and rewritten.
* **Partial sync**: no ``setupNFTables``; the chains of a service port whose Service (by
  ``namespace/name``) and EndpointSlices did not change since the last successful sync are
  skipped (``skipServiceUpdate``); map and set elements are written only where they differ
  from what kube-proxy last wrote (``ensureElem``: add, or delete + add for a new value;
  ``cleanupLeftoverKeys``: delete the ones no longer wanted).
* Both flush the service chains (names with a ``/``) that exist but are no longer active and
  note them as stale; a later sync deletes those stale for over a second, in a transaction of
  its own, before its main one (a failure there is logged and counted, the sync goes on).
  Stale affinity sets are deleted in the main transaction.

A transaction is atomic: it fails as a whole (the kernel keeps its table) or applies as a
whole. :func:`plan_nft_sync` gives the table after the transaction and its size in objects
(one line of ``nft -f`` input each: add, flush, delete), the cost model's input
(:class:`~svcsim.sim.synccost.NftSyncCostModel`). :func:`stale_endpoint_edit` is the
inject-stale-rule fault's hand edit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Final

from svcsim.netfilter.nft_parse import ParseMemo, parse_table
from svcsim.netfilter.nft_statements import ParsedTable
from svcsim.netfilter.nftables import NftChain, NftRule, NftTable
from svcsim.proxy.endpoints import EndpointInfo
from svcsim.proxy.gcpause import collector_paused
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.nftables_names import chain_service, endpoint_chain_base, service_chain_base

STALE_CHAIN_DELAY_S: Final = 1.0
"""A flushed stale chain is deleted by the first sync starting more than this after it."""
AFFINITY_PREFIX: Final = "affinity-"


service_of = chain_service
"""``namespace/name`` of the Service owning a service chain or affinity set, else None."""


def is_service_chain(name: str) -> bool:
    """``isServiceChainName``: kube-proxy's per-service chains are the names with a ``/``."""
    return "/" in name


@dataclass(frozen=True, slots=True)
class NftSyncPlan:
    """One sync's transaction: the kernel's table after it, and its size."""

    full: bool
    table: NftTable
    """The table after the transaction applies."""
    objects_written: int
    """Lines of the ``nft -f`` input: adds, flushes and deletes (the cost model's input)."""
    stale_chains: dict[str, float]
    """Service chains flushed as stale and when they were first found so (kube-proxy's
    ``staleChains``), after this transaction."""


def _rules_by_chain(table: NftTable) -> dict[str, list[NftRule]]:
    out: dict[str, list[NftRule]] = {c.name: [] for c in table.chains}
    for rule in table.rules:
        out.setdefault(rule.chain, []).append(rule)
    return out


def plan_nft_sync(
    installed: NftTable | None,
    compiled: NftTable,
    changed_services: Iterable[str],
    *,
    full: bool,
    now_s: float,
    stale_chains: Mapping[str, float],
) -> NftSyncPlan:
    """The transaction that takes the kernel's ``installed`` table to kube-proxy's wish.

    ``compiled`` is the full-sync table from the informer state; ``changed_services`` the
    ``namespace/name`` of Services whose Service or slices changed since the last successful
    sync (ignored by a full sync). Chains kube-proxy skips keep what the kernel holds (a
    hand edit there survives); stale service chains stay, flushed, until deleted. Planned with
    the cyclic garbage collector paused (:mod:`svcsim.proxy.gcpause`).
    """
    with collector_paused():
        return _plan(installed, compiled, changed_services, full, now_s, stale_chains)


def parse_installed(table: NftTable, memo: ParseMemo) -> ParsedTable:
    """:func:`~svcsim.netfilter.nft_parse.parse_table` of a table a sync installs.

    With the collector paused: at 10,000 Services the parse holds 10^5 chains alive.
    """
    with collector_paused():
        return parse_table(table, memo)


def _plan(
    installed: NftTable | None,
    compiled: NftTable,
    changed_services: Iterable[str],
    full: bool,
    now_s: float,
    stale_chains: Mapping[str, float],
) -> NftSyncPlan:
    old = installed if installed is not None else NftTable(compiled.family, compiled.name)
    old_rules, new_rules = _rules_by_chain(old), _rules_by_chain(compiled)
    changed = frozenset(changed_services)
    objects = 0
    chains: list[NftChain] = list(compiled.chains)
    rules: dict[str, list[NftRule]] = {}
    for chain in compiled.chains:
        name = chain.name
        service = is_service_chain(name)
        written = (
            full or name not in old_rules or (service and service_of(name) in changed)
            # Not a service chain: setupNFTables writes it on full syncs only.
        )
        if written:
            rules[name] = new_rules[name]
            objects += 2 + len(new_rules[name])  # add chain, flush chain, its rules
        else:
            rules[name] = old_rules[name]
    stale = dict(stale_chains)
    for chain in old.chains:
        if is_service_chain(chain.name) and chain.name not in new_rules:
            chains.append(chain)
            rules[chain.name] = []
            objects += 1  # flush chain
            stale.setdefault(chain.name, now_s)
    for name in list(stale):
        if name in new_rules:
            del stale[name]
    objects += _element_objects(old, compiled, full)
    objects += _set_objects(old, compiled, changed, full)
    if full:
        objects += 1  # add table
    table = replace(
        compiled,
        chains=tuple(chains),
        rules=tuple(r for c in chains for r in rules[c.name]),
    )
    return NftSyncPlan(full, table, objects, stale)


def _element_objects(old: NftTable, new: NftTable, full: bool) -> int:
    if full:  # flush every container of elements, then add every element
        containers = {e.container for e in new.elements} | {s.name for s in new.sets}
        return len(new.elements) + sum(
            1 for s in new.sets if s.name in containers and not s.name.startswith(AFFINITY_PREFIX)
        )
    before = {(e.container, e.key): e.value for e in old.elements}
    after = {(e.container, e.key): e.value for e in new.elements}
    added = sum(1 for k in after if k not in before)
    rewritten = sum(2 for k, v in after.items() if k in before and before[k] != v)
    deleted = sum(1 for k in before if k not in after)
    return added + rewritten + deleted


def _set_objects(old: NftTable, new: NftTable, changed: frozenset[str], full: bool) -> int:
    """Set and map declarations written, and stale affinity sets deleted."""
    kept = {s.name for s in new.sets}
    deleted = sum(1 for s in old.sets if s.name.startswith(AFFINITY_PREFIX) and s.name not in kept)
    if full:
        return len(new.sets) + deleted
    written = sum(
        1 for s in new.sets if s.name.startswith(AFFINITY_PREFIX) and service_of(s.name) in changed
    )
    return written + deleted


def delete_stale_chains(
    table: NftTable, stale_chains: Mapping[str, float], now_s: float
) -> tuple[NftTable, dict[str, float], int, bool]:
    """The clean-up transaction at a sync's start: delete chains stale for over a second.

    Returns the table after it, the stale chains left, the objects written and whether the
    transaction failed: deleting a chain some rule or map element still jumps to fails
    (``EBUSY``), and the whole transaction with it. Either way the deleted names leave
    ``staleChains`` (upstream re-finds a surviving chain at the end of the sync).
    """
    due = {n for n, t in stale_chains.items() if t < now_s - STALE_CHAIN_DELAY_S}
    left = {n: t for n, t in stale_chains.items() if n not in due}
    if not due:
        return table, left, 0, False
    referenced = {
        word
        for rule in table.rules
        if rule.chain not in due
        for word in rule.rule.replace(",", " ").split()
        if word in due
    } | {word for e in table.elements for v in e.value for word in v.split() if word in due}
    if referenced:
        return table, left, len(due), True
    return (
        replace(
            table,
            chains=tuple(c for c in table.chains if c.name not in due),
            rules=tuple(r for r in table.rules if r.chain not in due),
        ),
        left,
        len(due),
        False,
    )


def stale_endpoint_edit(
    table: NftTable, spn: ServicePortName, endpoint: str
) -> tuple[str, NftTable]:
    """The hand edit that makes ``spn``'s service chain also send to ``endpoint``.

    What kube-proxy would have written for one more endpoint, last in the numgen map: an
    endpoint chain (masquerade hairpin, DNAT) and the Service's numgen rule replaced with one
    of modulus ``N + 1`` whose element ``N`` goes to it. Returns the ``nft -f`` input
    (knftables syntax; the replaced rule is named by its position, which ``nft`` addresses by
    handle) and the table after it.
    """
    ip, colon, port = endpoint.rpartition(":")
    if not colon or not ip or not port.isdigit():
        raise ValueError(f"endpoint must be IP:port, got {endpoint!r}")
    base = service_chain_base(spn)
    chain = f"service-{base}"
    rules = [r for r in table.rules if r.chain == chain]
    if not rules:
        raise ValueError(f"no {chain} chain for {spn.text} in the kernel")
    numgen = next((r for r in rules if r.rule.startswith("numgen random mod ")), None)
    if numgen is None:
        raise ValueError(f"{chain} has no numgen rule")
    info = EndpointInfo(ip=ip, port=int(port), ready=True, serving=True, terminating=False)
    ep_chain = f"endpoint-{endpoint_chain_base(spn, info)}"
    words = numgen.rule.split()
    n = int(words[3])
    inner = numgen.rule[numgen.rule.index("{") + 1 : numgen.rule.rindex("}")].strip()
    replaced = f"numgen random mod {n + 1} vmap {{ {inner} , {n} : goto {ep_chain} }}"
    fam = f"{table.family} {table.name}"
    proto = spn.protocol_lower
    added = (
        NftRule(ep_chain, f"ip saddr {ip} jump mark-for-masquerade"),
        NftRule(ep_chain, f"meta l4proto {proto} dnat to {endpoint}"),
    )
    handle = rules.index(numgen) + 1
    text = "\n".join(
        [
            f"add chain {fam} {ep_chain}",
            *(f"add rule {fam} {ep_chain} {r.rule}" for r in added),
            f"replace rule {fam} {chain} handle {handle} {replaced}",
        ]
    )
    new_rules = [NftRule(r.chain, replaced, r.comment) if r is numgen else r for r in table.rules]
    chains = table.chains
    if table.chain(ep_chain) is None:
        chains = (*chains, NftChain(ep_chain))
    else:
        new_rules = [r for r in new_rules if r.chain != ep_chain]
    edited = replace(table, chains=chains, rules=(*new_rules, *added))
    return text + "\n", edited
