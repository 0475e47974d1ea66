"""What one kube-proxy sync writes to the kernel, how long it takes, and what it cleans up.

**Restore input.** ``syncProxyRules`` (kubernetes ``pkg/proxy/iptables/proxier.go`` @531be812)
sends one ``iptables-restore --noflush`` input. A *full* sync writes every kube-proxy chain. A
*partial* sync (KEP-3453 MinimizeIPTablesRestore, GA in v1.28) writes the filter table and the
fixed nat chains in full, but sends the ``KUBE-SVC/SVL/EXT/FW/SEP`` chains of a Service to a
discard buffer unless that Service (by ``namespace/name``) or its EndpointSlices changed since the
last successful sync; the kernel keeps those chains untouched. Both then delete stale service
chains: every nat chain with a service-chain prefix that exists in the kernel but is not active
this sync gets ``:CHAIN - [0:0]`` and ``-X CHAIN`` (skipped in large-cluster mode except once per
``syncPeriod``). A ``-X`` of a chain that a rule still jumps to makes ``iptables-restore`` fail
(libiptc refuses to delete a referenced chain), so a hand-made jump into an unchanged Service's
chain makes the next partial sync fail; the following full sync then succeeds.
:func:`plan_sync` builds that input from the compiler's full-sync output; :func:`apply_plan`
applies it to a kernel ruleset (with :func:`svcsim.netfilter.text.apply_restore`).
:func:`stale_rule_restore` is the hand-made edit of the inject-stale-rule fault.

**UDP conntrack clean-up** after a sync: :class:`StaleUdpFilter`. Also here, as plain values:
a node's kube-proxy settings (:class:`KubeProxyConfig`), its metrics (:class:`ProxyMetrics`)
and the state its rules were last programmed from (:class:`ProgrammedView`).

**Cost.** ``duration_s = base_s + per_rule_s x rules_written``, where ``rules_written`` is the
number of ``-A`` lines in the restore input. The defaults are a two-point fit through published
measurements (:data:`PUBLISHED_POINTS`):

* 897 NAT rules -> 176 ms per sync: the figure the project's issue quotes; its original source
  was not located with the search tool (UNVERIFIED). The nearest public log line found reads
  ``syncProxyRules took 176.666464ms`` (a 2019 v1.13 node; rule count not shown).
* 695,992 lines -> 12.772 s: ``time iptables-restore iptables2.log`` on a real host, kubernetes
  issue #96018 "nftables do not scale for services" (comment of 2021-02-19; the dump was
  695,992 lines, ``real 0m12.772s``, iptables-nft). Lines of the dump are counted as rules.

Solving the two equations exactly gives ``per_rule_s = (12.772 - 0.176) / (695992 - 897)
= 18.1213 us`` and ``base_s = 0.176 - 897 x per_rule_s = 0.159745 s``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from svcsim.k8s.objects import Protocol
from svcsim.netfilter.conntrack import ConntrackEntry
from svcsim.netfilter.model import JumpTarget, Ruleset
from svcsim.netfilter.text import apply_restore
from svcsim.proxy.endpoints import EndpointInfo, EndpointsMap, ServicePortInfo
from svcsim.proxy.iptables import IptablesSync
from svcsim.proxy.names import SEP_PREFIX, ServicePortName, is_service_chain
from svcsim.proxy.probability import compute_probability

NODEPORTS_TAIL_COMMENT: Final = "kubernetes service nodeports; NOTE: this must be the last rule"


@dataclass(frozen=True, slots=True)
class CalibrationPoint:
    """One published measurement: a sync writing ``rules`` rules took ``duration_s``."""

    rules: int
    duration_s: float
    source: str


PUBLISHED_POINTS: Final = (
    CalibrationPoint(
        897,
        0.176,
        "project issue 3 ('897 NAT rules ~ 176 ms per sync'); original source not located",
    ),
    CalibrationPoint(
        695_992,
        12.772,
        "kubernetes/kubernetes#96018: 695,992-line iptables-restore, real 0m12.772s",
    ),
)


@dataclass(frozen=True, slots=True)
class SyncCostModel:
    """``duration_s = base_s + per_rule_s x rules_written``."""

    base_s: float
    per_rule_s: float

    def __post_init__(self) -> None:
        if self.base_s < 0:
            raise ValueError(f"negative base_s {self.base_s!r}")
        if self.per_rule_s < 0:
            raise ValueError(f"negative per_rule_s {self.per_rule_s!r}")

    def duration_s(self, rules_written: int) -> float:
        """How long a sync writing ``rules_written`` rules takes."""
        if rules_written < 0:
            raise ValueError(f"negative rules_written {rules_written!r}")
        return self.base_s + self.per_rule_s * rules_written

    @classmethod
    def fit(cls, a: CalibrationPoint, b: CalibrationPoint) -> SyncCostModel:
        """The line through two measurements."""
        if a.rules == b.rules:
            raise ValueError(f"both points have {a.rules!r} rules")
        per_rule = (b.duration_s - a.duration_s) / (b.rules - a.rules)
        return cls(base_s=a.duration_s - a.rules * per_rule, per_rule_s=per_rule)


DEFAULT_COST: Final = SyncCostModel.fit(*PUBLISHED_POINTS)
"""The calibrated model: base 0.159745 s, 18.1213 us per rule."""
DEFAULT_BASE_S: Final = DEFAULT_COST.base_s
DEFAULT_PER_RULE_S: Final = DEFAULT_COST.per_rule_s


FULL_SYNC_PERIOD_S: Final = 3600.0
"""``proxyutil.FullSyncPeriod`` (1 h; PR kubernetes#129329 — the constant itself UNVERIFIED)."""


@dataclass(frozen=True, slots=True)
class KubeProxyConfig:
    """One node's kube-proxy timing, with kube-proxy's names and defaults."""

    min_sync_period_s: float = 1.0
    sync_period_s: float = 30.0
    """Retry interval after a failed sync (and the large-cluster stale-chain cleanup period)."""
    full_sync_period_s: float = FULL_SYNC_PERIOD_S
    informer_sync_s: float = 2.0
    """From (re)start until both informers have synced."""
    watch_delay_s: float = 0.1
    """API server -> this kube-proxy's informers."""
    cost: SyncCostModel = DEFAULT_COST

    def __post_init__(self) -> None:
        for name in ("min_sync_period_s", "informer_sync_s", "watch_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"negative {name} {getattr(self, name)!r}")
        if self.sync_period_s <= 0:
            raise ValueError(f"sync_period_s must be > 0, got {self.sync_period_s!r}")
        if self.full_sync_period_s < self.min_sync_period_s:
            raise ValueError(
                f"full_sync_period_s {self.full_sync_period_s!r} < "
                f"min_sync_period_s {self.min_sync_period_s!r}"
            )


@dataclass(slots=True)
class ProxyMetrics:
    """kube-proxy's metrics for one node, cumulative over restarts (upstream resets on restart)."""

    sync_proxy_rules_duration_seconds: list[float] = field(default_factory=list)
    """Every sync attempt, failed ones included (upstream observes in a defer)."""
    sync_full_proxy_rules_duration_seconds: list[float] = field(default_factory=list)
    sync_partial_proxy_rules_duration_seconds: list[float] = field(default_factory=list)
    network_programming_duration_seconds: list[float] = field(default_factory=list)
    """Sync end - trigger time, one per trigger time applied by a successful sync."""
    sync_proxy_rules_last_timestamp_seconds: float = math.nan
    sync_proxy_rules_iptables_restore_failures_total: int = 0
    sync_proxy_rules_iptables_partial_restore_failures_total: int = 0
    sync_proxy_rules_iptables_last: int = 0
    """Rules written by the last sync attempt (filter + nat ``-A`` lines)."""


@dataclass(frozen=True, slots=True)
class ProgrammedView:
    """The informer state a node's rules were last programmed from (its last successful sync)."""

    synced_at_s: float
    """Start of that sync: the state is the informer state at this time."""
    installed_at_s: float
    """End of that sync: when the kernel got the rules."""
    service_ports: Mapping[ServicePortName, ServicePortInfo]
    endpoints_map: EndpointsMap

    def endpoints(self, spn: ServicePortName) -> tuple[EndpointInfo, ...]:
        """Endpoints of ``spn`` (all conditions, as the endpoints map holds them)."""
        return self.endpoints_map.get(spn, ())


class RestoreError(RuntimeError):
    """``iptables-restore`` rejected the input; the kernel keeps its previous rules."""


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """The restore input of one sync and what it touches."""

    full: bool
    restore_text: str
    rules_written: int
    """``-A`` lines in :attr:`restore_text` (the cost model's input)."""
    rewritten_nat_chains: frozenset[str]
    """nat chains the input flushes and rewrites (stale ones included)."""
    deleted_chains: tuple[str, ...]
    """Stale nat chains deleted with ``-X``, in the order written."""
    target: Ruleset
    """For a full sync, the compiled ruleset the kernel ends up with."""


def service_chains(
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: EndpointsMap,
    services: Iterable[str],
) -> frozenset[str]:
    """Every chain the ports of ``services`` (``namespace/name``) may own this sync.

    ``KUBE-SVC/SVL/EXT/FW`` of each port and ``KUBE-SEP`` of each of its endpoints: the chains
    a partial sync rewrites for a changed Service (a superset of those it actually writes).
    """
    wanted = set(services)
    chains: set[str] = set()
    for spn in service_ports:
        if f"{spn.namespace}/{spn.name}" not in wanted:
            continue
        chains.update((spn.cluster_chain, spn.local_chain, spn.external_chain, spn.firewall_chain))
        chains.update(spn.endpoint_chain(ep.text) for ep in endpoints_map.get(spn, ()))
    return frozenset(chains)


def _chain_of(line: str) -> str | None:
    """The chain a restore line declares (``:CHAIN``) or appends to (``-A CHAIN``)."""
    if line.startswith(":"):
        return line[1:].split(" ", 1)[0]
    if line.startswith("-A "):
        return line[3:].split(" ", 1)[0]
    return None


_CACHE_LIMIT: Final = 256
"""Entries per memo below (each may hold a whole restore text); the oldest go first."""

_NatLine = tuple[str, str, bool]
"""A nat line of the compiled restore input: (line, its chain, True for a ``:CHAIN`` line)."""
_split_texts: dict[int, tuple[str, tuple[str, ...], tuple[_NatLine, ...]]] = {}


def _split(text: str) -> tuple[tuple[str, ...], tuple[_NatLine, ...]]:
    """The lines outside the nat table, and the nat chain/rule lines, of a restore input.

    Memoised by identity (the entry holds the text): the compiler hands every node that syncs
    the same state the same text object.
    """
    hit = _split_texts.get(id(text))
    if hit is not None:
        return hit[1], hit[2]
    other: list[str] = []
    nat: list[_NatLine] = []
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
    if len(_split_texts) >= _CACHE_LIMIT:
        del _split_texts[next(iter(_split_texts))]  # oldest first
    _split_texts[id(text)] = (text, tuple(other), tuple(nat))
    return tuple(other), tuple(nat)


_plans: dict[tuple[object, ...], tuple[IptablesSync, SyncPlan]] = {}


def plan_sync(
    compiled: IptablesSync,
    changed_chains: Iterable[str],
    *,
    full: bool,
    existing_nat_chains: Iterable[str],
    delete_stale: bool = True,
) -> SyncPlan:
    """The restore input of a full or partial sync (see the module docstring).

    ``compiled`` is the full-sync output for the informer state at the sync's start;
    ``changed_chains`` the chains of the changed Services (:func:`service_chains`; unused by a
    full sync); ``existing_nat_chains`` what ``iptables-save -t nat`` lists at that moment.
    The plan is a pure function of these (of ``compiled``, only its text and ruleset) and is
    memoised, so nodes in the same state share one plan.
    """
    changed = frozenset(changed_chains)
    existing = tuple(existing_nat_chains)
    text, target = compiled.restore_text, compiled.ruleset
    key = (id(text), id(target), full, changed, existing, delete_stale)
    hit = _plans.get(key)
    if hit is not None:
        return hit[1]
    plan = _plan(text, target, changed, full=full, existing=existing, delete_stale=delete_stale)
    if len(_plans) >= _CACHE_LIMIT:
        del _plans[next(iter(_plans))]  # oldest first
    _plans[key] = (compiled, plan)
    return plan


def _plan(
    text: str,
    target: Ruleset,
    changed: frozenset[str],
    *,
    full: bool,
    existing: tuple[str, ...],
    delete_stale: bool,
) -> SyncPlan:
    other, nat = _split(text)
    out = list(other)
    nat_chain_lines: list[str] = []
    nat_rule_lines: list[str] = []
    active: set[str] = set()
    for line, chain, is_decl in nat:
        if is_decl:
            active.add(chain)
        if full or chain in changed or not is_service_chain(chain):
            (nat_chain_lines if is_decl else nat_rule_lines).append(line)
    stale = (
        tuple(sorted(c for c in existing if is_service_chain(c) and c not in active))
        if delete_stale
        else ()
    )
    nat_chain_lines += [f":{c} - [0:0]" for c in stale]
    tail = next(
        (i for i, line in enumerate(nat_rule_lines) if NODEPORTS_TAIL_COMMENT in line),
        len(nat_rule_lines),
    )
    nat_rule_lines[tail:tail] = [f"-X {c}" for c in stale]
    out += ["*nat", *nat_chain_lines, *nat_rule_lines, "COMMIT"]
    rules = sum(1 for line in out if line.startswith("-A "))
    rewritten = frozenset(c for line in nat_chain_lines if (c := _chain_of(line)) is not None)
    return SyncPlan(full, "\n".join(out) + "\n", rules, rewritten, stale, target)


_applied: dict[tuple[int, int], tuple[Ruleset, SyncPlan, Ruleset]] = {}


def apply_plan(kernel_ruleset: Ruleset, plan: SyncPlan) -> Ruleset:
    """The kernel's ruleset after the restore; raises :class:`RestoreError` if it fails.

    A full sync leaves exactly the compiled ruleset (every kube-proxy chain rewritten, stale
    ones deleted, jump rules ensured). A partial sync is applied line by line with
    ``iptables-restore --noflush`` semantics on top of ``kernel_ruleset``; its result is a
    pure function of the two frozen inputs and is memoised by their identities (successes
    only; the entry holds both inputs).
    """
    if plan.full:
        # Every active kube-proxy chain is flushed in the same restore, so no -X can fail.
        return plan.target
    key = (id(kernel_ruleset), id(plan))
    hit = _applied.get(key)
    if hit is not None:
        return hit[2]
    result = apply_restore(kernel_ruleset, plan.restore_text, noflush=True)
    for chain in plan.deleted_chains:
        for table in result.tables:
            for holder in table.chains:
                for rule in holder.rules:
                    target = rule.target
                    if isinstance(target, JumpTarget) and target.chain == chain:
                        raise RestoreError(
                            f"iptables-restore: -X {chain}: chain is still referenced from "
                            f"{holder.name} (Too many links)"
                        )
    if len(_applied) >= _CACHE_LIMIT:
        del _applied[next(iter(_applied))]  # oldest first
    _applied[key] = (kernel_ruleset, plan, result)
    return result


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


@dataclass(frozen=True, slots=True)
class StaleUdpFilter:
    """``CleanStaleEntries``: which UDP conntrack entries kube-proxy deletes after a sync.

    An entry goes if its original destination is a UDP Service's ClusterIP / LB IP / external IP
    and its reply source is not a *serving* endpoint IP of that Service (traffic policy, topology
    and terminating state are ignored), or if its original destination port is a UDP NodePort
    and its reply source is not a serving endpoint of that Service. Upstream maps each IP to the
    last UDP port's set (Go map order); here sets of ports sharing an IP are united.
    """

    service_ips: Mapping[str, frozenset[str]]
    node_ports: Mapping[int, frozenset[str]]

    @classmethod
    def from_maps(
        cls, service_ports: Mapping[ServicePortName, ServicePortInfo], endpoints_map: EndpointsMap
    ) -> StaleUdpFilter:
        """Build the filter from kube-proxy's maps after a sync."""
        ips: dict[str, frozenset[str]] = {}
        ports: dict[int, frozenset[str]] = {}
        for spn, svc in service_ports.items():
            if spn.protocol != Protocol.UDP:
                continue
            serving = frozenset(ep.ip for ep in endpoints_map.get(spn, ()) if ep.serving)
            for ip in (svc.cluster_ip, *svc.load_balancer_vips, *svc.external_ips):
                ips[ip] = ips.get(ip, frozenset()) | serving
            if svc.node_port:
                ports[svc.node_port] = ports.get(svc.node_port, frozenset()) | serving
        return cls(ips, ports)

    def matches(self, proto: str, orig_dst_ip: str, orig_dst_port: int, reply_src_ip: str) -> bool:
        """True if a flow with these fields is deleted."""
        if proto != "udp":
            return False
        serving = self.service_ips.get(orig_dst_ip)
        if serving is not None and reply_src_ip not in serving:
            return True
        serving = self.node_ports.get(orig_dst_port)
        return serving is not None and reply_src_ip not in serving

    def matches_entry(self, entry: ConntrackEntry) -> bool:
        """:meth:`matches` for a conntrack entry."""
        o = entry.original
        return self.matches(o.proto, o.dst_ip, o.dst_port, entry.reply.src_ip)
