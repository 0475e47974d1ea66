"""The restore input of one kube-proxy sync, and applying it to the kernel's ruleset.

``syncProxyRules`` (kubernetes ``pkg/proxy/iptables/proxier.go`` @531be812) sends one
``iptables-restore --noflush`` input. A *full* sync writes every kube-proxy chain. A *partial*
sync (KEP-3453 MinimizeIPTablesRestore, GA in v1.28) writes the filter table and the fixed nat
chains in full, but sends the ``KUBE-SVC/SVL/EXT/FW/SEP`` chains of a Service to a discard
buffer unless that Service (by ``namespace/name``) or its EndpointSlices changed since the last
successful sync; the kernel keeps those chains untouched. Both then delete stale service chains:
every nat chain with a service-chain prefix that exists in the kernel but is not active this
sync gets ``:CHAIN - [0:0]`` and ``-X CHAIN`` (skipped in large-cluster mode except once per
``syncPeriod``). A ``-X`` of a chain that a rule still jumps to makes ``iptables-restore`` fail
(libiptc refuses to delete a referenced chain), so a hand-made jump into an unchanged Service's
chain makes the next partial sync fail; the following full sync then succeeds.

:func:`plan_sync` builds that input from the compiler's full-sync output; :func:`apply_plan`
applies it to a kernel ruleset (with :func:`svcsim.netfilter.text.apply_restore`).
:func:`stale_rule_restore` is the hand-made edit of the inject-stale-rule fault. What a sync
costs is :mod:`svcsim.sim.synccost`. Nodes in step plan the same sync: the memos are the run's
(:class:`~svcsim.sim.caches.RunCaches`, passed in; without one a call computes afresh).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from svcsim.netfilter.model import ChainNames, JumpTarget, Ruleset, Table
from svcsim.netfilter.text import apply_restore
from svcsim.proxy.endpoints import EndpointsMap, ServicePortInfo
from svcsim.proxy.gcpause import collector_paused
from svcsim.proxy.iptables import IptablesSync
from svcsim.proxy.iptables_assembly import NatLine
from svcsim.proxy.names import SEP_PREFIX, ServicePortName, is_service_chain
from svcsim.proxy.probability import compute_probability
from svcsim.sim.caches import (
    PortChainsKey,
    RestoreKey,
    RunCaches,
    ServiceChainsKey,
    SplitText,
    SyncPlanKey,
)
from svcsim.sim.restore_plan import PlanShape, plan_shape, rewritten

NODEPORTS_TAIL_COMMENT: Final = "kubernetes service nodeports; NOTE: this must be the last rule"


class RestoreError(RuntimeError):
    """``iptables-restore`` rejected the input; the kernel keeps its previous rules."""


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """The restore input of one sync and what it touches."""

    full: bool
    rules_written: int
    """``-A`` lines in :attr:`restore_text` (the cost model's input)."""
    rewritten_nat_chains: frozenset[str]
    """nat chains the input flushes and rewrites (stale ones included)."""
    deleted_chains: tuple[str, ...]
    """Stale nat chains deleted with ``-X``, in the order written."""
    target: Ruleset
    """The compiled ruleset: for a full sync, what the kernel ends up with; for a partial one,
    where the chains the input rewrites come from."""
    declared: tuple[tuple[str, tuple[str, ...]], ...] | None
    """``(table, chains)`` in the order the input declares them (``:CHAIN``), when every
    ``-A`` line of the input appends to a chain it declares, each with all of its compiled
    rules; None when that does not hold (the input is then applied line by line)."""
    write_text: Callable[[], str] = field(repr=False, compare=False)
    """Writes :attr:`restore_text` (called once, when it is first read)."""
    _text: list[str] = field(default_factory=list, repr=False, compare=False)
    """:attr:`restore_text` once written (a one-element list: the frozen object's cache)."""

    @property
    def restore_text(self) -> str:
        """The ``iptables-restore --noflush`` input, written when first read.

        The simulation needs only the plan's counts and chains; the text of a 10,000-Service
        sync is ~40 MB, so it is written only for whoever reads it (tests, the CLI).
        """
        if not self._text:
            self._text.append(self.write_text())
        return self._text[0]


_SERVICE_OF: Final = operator.attrgetter("service")


def service_chains(
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: EndpointsMap,
    services: Iterable[str],
    caches: RunCaches | None = None,
) -> frozenset[str]:
    """Every chain the ports of ``services`` (``namespace/name``) may own this sync.

    ``KUBE-SVC/SVL/EXT/FW`` of each port and ``KUBE-SEP`` of each of its endpoints: the chains
    a partial sync rewrites for a changed Service (a superset of those it actually writes).
    Every node lists the chains of every port at every partial sync; ports and endpoint tuples
    are shared frozen objects, so each (port, endpoints) pair is named once per run.
    """
    wanted = frozenset(services)
    if not wanted:
        return frozenset()
    caches = caches if caches is not None else RunCaches()
    # Nodes in step ask with the same shared maps and the same changes: named once for all.
    key = ServiceChainsKey(id(service_ports), id(endpoints_map), wanted)
    found = caches.service_chain_sets.get(key)
    if found is None:
        found = caches.service_chain_sets.put(
            key,
            _service_chains(service_ports, endpoints_map, wanted, caches),
            holds=(service_ports, endpoints_map),
        )
    return found


def _service_chains(
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: EndpointsMap,
    wanted: frozenset[str],
    caches: RunCaches,
) -> frozenset[str]:
    """:func:`service_chains` computed (each port's chains memoised by identity)."""
    memo = caches.port_chains
    chains: set[str] = set()
    names = tuple(service_ports)
    # The changed Services' ports picked at C level: 10,000 ports, a few wanted.
    picked = itertools.compress(names, map(wanted.__contains__, map(_SERVICE_OF, names)))
    for spn in picked:
        eps = endpoints_map.get(spn, ())
        key = PortChainsKey(id(spn), id(eps))
        owned = memo.get(key)
        if owned is None:
            owned = (
                spn.cluster_chain,
                spn.local_chain,
                spn.external_chain,
                spn.firewall_chain,
                *(spn.endpoint_chain(ep.text) for ep in eps),
            )
            memo.put(key, owned, holds=(spn, eps))
        chains.update(owned)
    return frozenset(chains)


def chain_names(table: Table | None, caches: RunCaches | None = None) -> Sequence[str]:
    """The chains ``iptables-save`` lists for ``table``, in order (none for no table).

    The table's :meth:`~svcsim.netfilter.model.Table.names_view`: one view per table, which
    reads :meth:`Table.names` (derived once, carried over to tables made from it by a
    partial restore that keeps them) only when used. A plan reads it only on its slow path,
    so a kernel table whose names a restore left underived (it deleted chains) never derives
    ~110,000 of them for a sync. ``caches`` is accepted for the callers' symmetry.
    """
    del caches  # the table holds its names itself
    return () if table is None else table.names_view()


def _chain_of(line: str) -> str | None:
    """The chain a restore line declares (``:CHAIN``) or appends to (``-A CHAIN``)."""
    if line.startswith(":"):
        return line[1:].split(" ", 1)[0]
    if line.startswith("-A "):
        return line[3:].split(" ", 1)[0]
    return None


def _split(text: str, caches: RunCaches) -> SplitText:
    """The lines outside the nat table, and the nat chain/rule lines, of a restore input.

    Memoised by identity (the entry holds the text): the compiler hands every node that syncs
    the same state the same text object.
    """
    hit = caches.split_texts.get(id(text))
    if hit is not None:
        return hit
    other: list[str] = []
    nat: list[NatLine] = []
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        if table != "nat" or line.startswith("*") or line == "COMMIT":
            if table != "nat":
                other.append(line)
            continue
        chain = _chain_of(line)
        if chain is not None:
            nat.append((line, chain, line.startswith(":")))
    return caches.split_texts.put(id(text), SplitText(tuple(other), tuple(nat)), holds=text)


def plan_sync(
    compiled: IptablesSync,
    changed_chains: Iterable[str],
    *,
    full: bool,
    existing_nat_chains: Iterable[str],
    delete_stale: bool = True,
    caches: RunCaches | None = None,
    kernel_nat: Table | None = None,
) -> SyncPlan:
    """The restore input of a full or partial sync (see the module docstring).

    ``compiled`` is the full-sync output for the informer state at the sync's start;
    ``changed_chains`` the chains of the changed Services (:func:`service_chains`; unused by a
    full sync); ``existing_nat_chains`` what ``iptables-save -t nat`` lists at that moment, and
    ``kernel_nat`` (optional) the kernel's nat table it lists: given, stale chains are found
    from the two tables' changes rather than by a scan of every name
    (:func:`~svcsim.sim.restore_plan.stale_chains`; same result).
    The plan is a pure function of these (of ``compiled``, only its assembly and ruleset) and
    is memoised in the run's ``caches`` (None: computed afresh), so nodes in the same state
    share one plan. Its counts and chains are worked out from where each service port's
    chains are in the compiled state (:mod:`svcsim.sim.restore_plan`), so a partial plan
    costs what changed, not the whole ruleset; its text is written only when read. A
    compiled state of another shape is planned from its text.
    """
    caches = caches if caches is not None else RunCaches()
    changed = frozenset(changed_chains)
    existing = (
        existing_nat_chains
        if isinstance(existing_nat_chains, tuple | ChainNames)
        else tuple(existing_nat_chains)
    )
    key = SyncPlanKey(
        id(compiled.assembly), id(compiled.ruleset), full, changed, id(existing), delete_stale
    )
    hit = caches.sync_plans.get(key)
    if hit is not None:
        return hit
    # Building big, acyclic state: the cyclic collector would mostly rescan it (gcpause.py).
    with collector_paused():
        shape = plan_shape(
            compiled,
            changed,
            full=full,
            existing=existing,
            stale=delete_stale,
            kernel_nat=kernel_nat,
        )
        if shape is not None:
            plan = _plan_of_shape(compiled, changed, shape, caches)
        else:
            plan = _plan(
                *_sections(compiled, caches),
                compiled.ruleset,
                changed,
                full=full,
                existing=existing,
                delete_stale=delete_stale,
            )
    return caches.sync_plans.put(key, plan, holds=(compiled, existing))


def _sections(compiled: IptablesSync, caches: RunCaches) -> SplitText:
    sections = compiled.restore_sections
    if sections is not None:
        return SplitText(*sections)
    return _split(compiled.restore_text, caches)


def _plan_of_shape(
    compiled: IptablesSync, changed: frozenset[str], shape: PlanShape, caches: RunCaches
) -> SyncPlan:
    """The plan of ``shape``; its text, when read, is written from the compiled sections."""

    def write_text() -> str:
        other, nat = _sections(compiled, caches)
        return _plan_lines(other, nat, changed, full=shape.full, stale=shape.stale)

    return SyncPlan(
        shape.full,
        shape.rules_written,
        frozenset(shape.nat_declared),
        shape.stale,
        compiled.ruleset,
        (("filter", shape.filter_declared), ("nat", shape.nat_declared)),
        write_text,
    )


def _plan_lines(
    other: tuple[str, ...],
    nat: tuple[NatLine, ...],
    changed: frozenset[str],
    *,
    full: bool,
    stale: tuple[str, ...],
) -> str:
    """The restore input: ``other`` (the filter table), then the nat lines a sync writes."""
    out = list(other)
    nat_chain_lines: list[str] = []
    nat_rule_lines: list[str] = []
    for line, chain, is_decl in nat:
        if full or chain in changed or not is_service_chain(chain):
            (nat_chain_lines if is_decl else nat_rule_lines).append(line)
    nat_chain_lines += [f":{c} - [0:0]" for c in stale]
    tail = next(
        (i for i, line in enumerate(nat_rule_lines) if NODEPORTS_TAIL_COMMENT in line),
        len(nat_rule_lines),
    )
    nat_rule_lines[tail:tail] = [f"-X {c}" for c in stale]
    out += ["*nat", *nat_chain_lines, *nat_rule_lines, "COMMIT"]
    return "\n".join(out) + "\n"


def _plan(
    other: tuple[str, ...],
    nat: tuple[NatLine, ...],
    target: Ruleset,
    changed: frozenset[str],
    *,
    full: bool,
    existing: Sequence[str],
    delete_stale: bool,
) -> SyncPlan:
    """The plan worked out from the compiled text's lines (any shape of compiled state)."""
    active = {chain for _, chain, is_decl in nat if is_decl}
    stale = (
        tuple(sorted(c for c in existing if is_service_chain(c) and c not in active))
        if delete_stale
        else ()
    )
    text = _plan_lines(other, nat, changed, full=full, stale=stale)
    out = text.splitlines()
    rules = sum(1 for line in out if line.startswith("-A "))
    rewritten = frozenset(
        c
        for line in out[out.index("*nat") :]
        if line.startswith(":") and (c := _chain_of(line)) is not None
    )
    return SyncPlan(full, rules, rewritten, stale, target, _declared(out), lambda: text)


def _declared(lines: list[str]) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    """:attr:`SyncPlan.declared` of a restore input's lines.

    None if some ``-A`` line appends to a chain the input does not declare (that chain's
    other rules would then stay, so it is no copy of the compiled chain).
    """
    tables: dict[str, list[str]] = {}
    written: set[tuple[str, str]] = set()
    table = ""
    for line in lines:
        if line.startswith("*"):
            table = line[1:]
            tables.setdefault(table, [])
        elif line.startswith(":"):
            tables[table].append(line[1:].split(" ", 1)[0])
        elif line.startswith("-A "):
            written.add((table, line[3:].split(" ", 1)[0]))
    declared = {(t, c) for t, chains in tables.items() for c in chains}
    if not written <= declared:
        return None
    return tuple((t, tuple(chains)) for t, chains in tables.items())


def apply_plan(kernel_ruleset: Ruleset, plan: SyncPlan, caches: RunCaches | None = None) -> Ruleset:
    """The kernel's ruleset after the restore; raises :class:`RestoreError` if it fails.

    A full sync leaves exactly the compiled ruleset (every kube-proxy chain rewritten, stale
    ones deleted, jump rules ensured). A partial sync has ``iptables-restore --noflush``
    semantics on top of ``kernel_ruleset``: each chain the input declares is flushed and gets
    the rules its ``-A`` lines append, which are the compiled chain's rules (taken as data
    from :attr:`SyncPlan.target`, not parsed back from the text; when
    :attr:`SyncPlan.declared` is None the text is applied line by line), then the ``-X``
    chains go. The result is a pure function of the two frozen inputs and is memoised by
    their identities in the run's ``caches`` (successes only; the entry holds both inputs),
    and built with the run's interner, so a rewritten chain equal to a compiled one is that
    very object. None: computed afresh.
    """
    if plan.full:
        # Every active kube-proxy chain is flushed in the same restore, so no -X can fail.
        return plan.target
    caches = caches if caches is not None else RunCaches()
    key = RestoreKey(id(kernel_ruleset), id(plan))
    hit = caches.applied_restores.get(key)
    if hit is not None:
        return hit
    interner = caches.compile.interner
    with collector_paused():  # copying a big ruleset: see plan_sync
        if plan.declared is None:
            result = apply_restore(
                kernel_ruleset, plan.restore_text, noflush=True, interner=interner
            )
        else:
            result = rewritten(
                kernel_ruleset, plan.target, plan.declared, plan.deleted_chains, interner
            )
    for chain in plan.deleted_chains:
        # Counted jumps (carried over from table to table) tell whether any rule is left.
        if any(table.jump_count(chain) for table in result.tables):
            holder = _first_referrer(result, chain)
            raise RestoreError(
                f"iptables-restore: -X {chain}: chain is still referenced from "
                f"{holder} (Too many links)"
            )
    return caches.applied_restores.put(key, result, holds=(kernel_ruleset, plan))


def _first_referrer(ruleset: Ruleset, chain: str) -> str:
    """The first chain (in table and chain order) holding a rule that jumps to ``chain``."""
    for table in ruleset.tables:
        for holder in table.chains:
            for rule in holder.rules:
                target = rule.target
                if isinstance(target, JumpTarget) and target.chain == chain:
                    return holder.name
    raise AssertionError(f"no rule jumps to {chain}")


def stale_rule_restore(
    kernel_ruleset: Ruleset, spn: ServicePortName, endpoint: str, *, own_chain: bool = True
) -> str:
    """The ``iptables-restore --noflush`` input that makes ``spn`` also send to ``endpoint``.

    With ``own_chain`` (the default) it is what kube-proxy would have written for one more
    endpoint placed first in the Service's ``KUBE-SVC`` chain::

        *nat
        :KUBE-SEP-<h> - [0:0]
        -A KUBE-SEP-<h> -m comment --comment NS/SVC:PORT -s IP -j KUBE-MARK-MASQ
        -A KUBE-SEP-<h> -m comment --comment NS/SVC:PORT -m P -p P -j DNAT --to-destination EP
        -I KUBE-SVC-<s> 1 -m comment --comment "NS/SVC:PORT -> EP" -m statistic
           --mode random --probability 1/(n+1) -j KUBE-SEP-<h>        (one line)
        COMMIT

    where ``<h>`` is the chain name kube-proxy gives that endpoint and ``n`` counts the endpoint
    rules already in the chain, so every endpoint then gets 1/(n+1) of new flows. That SEP
    chain is stale for kube-proxy: its next *partial* sync tries ``-X`` on it, fails (the jump
    still references it), and the following full sync removes both. With ``own_chain=False``
    the DNAT rule itself goes first in ``KUBE-SVC`` (same comment and statistic match, then
    ``-m P -p P -j DNAT --to-destination EP``): no chain to delete, so it survives partial
    syncs of other Services and goes when this Service changes or at a full sync.
    """
    svc_chain = spn.cluster_chain
    chain = kernel_ruleset.chain("nat", svc_chain)
    if chain is None:
        raise ValueError(f"no {svc_chain} chain for {spn.text} in the kernel")
    ip, colon, port = endpoint.rpartition(":")
    if not colon or not ip or not port.isdigit():
        raise ValueError(f"endpoint must be IP:port, got {endpoint!r}")
    dispatch = sum(
        1
        for r in chain.rules
        if isinstance(r.target, JumpTarget)
        and r.target.chain.startswith(SEP_PREFIX)
        and "--rcheck" not in r.text
    )
    proto = spn.protocol_lower
    head = f'-m comment --comment "{spn.text} -> {endpoint}" -m statistic --mode random '
    head += f"--probability {compute_probability(dispatch + 1)}"
    dnat = f"-m {proto} -p {proto} -j DNAT --to-destination {endpoint}"
    lines = ["*nat"]
    if own_chain:
        sep = spn.endpoint_chain(endpoint)
        lines += [
            f":{sep} - [0:0]",
            f"-A {sep} -m comment --comment {spn.text} -s {ip} -j KUBE-MARK-MASQ",
            f"-A {sep} -m comment --comment {spn.text} {dnat}",
            f"-I {svc_chain} 1 {head} -j {sep}",
        ]
    else:
        lines.append(f"-I {svc_chain} 1 {head} {dnat}")
    return "\n".join([*lines, "COMMIT"]) + "\n"
