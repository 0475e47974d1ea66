"""The batched traffic engine: anonymous flows resolved for a whole chunk in a few array operations.

Most attempts are *anonymous*: a new TCP connection per request, or a UDP exchange from a fresh
port, to a Service whose rules are a chain of statistic matches without session affinity. For
those, the node's dispatch (:class:`~svcsim.netfilter.index.Dispatch`) depends only on the
source's *class* (which source CIDRs of the ruleset it falls in, and its address type), the
destination and the protocol; and what each of the dispatch's outcomes leads to (outcome,
cause, Pod, app) depends only on the state that holds between two control-plane events. So per
state the engine builds one *group* per (workload, node, source class): the chain's thresholds
and the classified outcome of each of its endpoints. Groups of equal dispatch, dial and
kube-proxy state are one group, so nodes with the same rules share it (built once per state).
A group outlives a change of state when nothing it reads changed: its node's rules and
kube-proxy state, the dial, and what :func:`~svcsim.traffic.classify.classify_inputs` reads
for each of its outcomes; the other groups are rebuilt. After a sync of nodes in step (one
ruleset object), a workload's pairs there are regrouped as one class: the first pair looks its
dispatch up, the others take it where their network answers alike and their representative
is kept (a check each, not a lookup each).
A chunk is then resolved for all groups at once (:mod:`svcsim.traffic.groups`): one draws
matrix (row = attempt, from the attempt's seed), the first statistic rule whose draw decides
(as ``Dispatch.choose``), a gather of the classified outcomes, service times by app, and the
conntrack lifetimes added to the nodes' :class:`~svcsim.traffic.occupancy.OccupancyBook`. No
Python code runs per attempt. Dispatches come from a
:class:`~svcsim.traffic.dispatch.DispatchCache` (exact reuse across syncs and nodes).

While only such attempts are in play, far from a full conntrack table, the engine does not
even resolve each window between two events: it lets attempts wait until something they
depend on changes (or a second has passed), then resolves them against the snapshot of the
state they met, which gives the same records with far fewer, larger batches.

Everything else goes through the shared per-flow path with :class:`IndexPath` (the dispatch
index's exact ``resolve`` and the node's live recent lists): keep-alive and fixed-port UDP
workloads, dispatches with recent matches (ClientIP affinity) or not shaped as a chain, and
every attempt on a node whose conntrack table could fill up within the chunk. Those loops are
per attempt, and small in the scenarios that need them. Nodes in IPVS mode have no dispatch to
group: their schedulers keep state across flows (rr's pointer, lc's counts, persistence), so
all their attempts go per flow (:mod:`svcsim.traffic.ipvs_path`). So does every attempt whose
client's node is in userspace mode: kube-proxy's round robin and dials there are process state
that each connection changes (:mod:`svcsim.traffic.userspace_path`). Such pairs get no group,
and a run with IPVS or userspace nodes never defers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple
from weakref import WeakKeyDictionary

import numpy as np
import numpy.typing as npt

from svcsim.netfilter.index import MAX_PATHS, Dispatch, DispatchTooLargeError
from svcsim.netfilter.ipvs import IpvsState
from svcsim.netfilter.model import Ruleset
from svcsim.netfilter.nft_index import NftDispatch
from svcsim.netfilter.packet import Outcome as NfOutcome
from svcsim.netfilter.packet import parse_ip
from svcsim.sim.kernel import Kernel, NftRules
from svcsim.traffic.attempts import Attempts, Client, Results
from svcsim.traffic.classify import Wait, classify, classify_deps, classify_inputs
from svcsim.traffic.context import ProxyState, TrafficContext
from svcsim.traffic.core import CHUNK_MAX_S, EngineCore
from svcsim.traffic.dispatch import DispatchCache
from svcsim.traffic.draws import service_uniforms
from svcsim.traffic.fate import (
    CAUSE_CODE,
    OUTCOME_CODE,
    REFUSED,
    anonymous_expiry_arrays,
    finish_arrays,
)
from svcsim.traffic.groups import (
    NO_SPINE,
    NOT_SERVED,
    PER_FLOW,
    REGROUPED,
    UNGROUPED,
    GroupKey,
    Groups,
    Representatives,
    RulesetSources,
    SourceMemos,
    Spine,
    chain_choice,
    chain_spine,
    sources_of,
)
from svcsim.traffic.index_path import IndexPath
from svcsim.traffic.nft_dispatch import nft_changes
from svcsim.traffic.occupancy import OccupancyBook
from svcsim.traffic.spec import WorkloadSpec
from svcsim.traffic.targets import Dial

I32 = npt.NDArray[np.int32]
DEFER_MAX_ATTEMPTS = 50_000
"""Pending attempts at most (expected) before they are resolved anyway."""
GROUPS_SPARE = 256
"""Outdated groups kept at most before all are built afresh (each adds to every materialise)."""
NAMES_MAX = 1 << 12
"""Distinct sets of names read kept before those no memo uses are dropped."""
KEPT_ROWS_MAX = 1 << 14
"""Classified outcomes kept across states at most (then they are classified afresh)."""
ALIKE_MAX = 1 << 12
"""Lookups kept for nodes in step (:meth:`TrafficEngine._new_memo`) before starting over."""
PARTS_ALIKE_MAX = 256
"""Pairs of sources compared (:meth:`TrafficEngine._rep_kept`) kept before starting over."""
HOST_KEYS_MAX = 1 << 16
"""Sources' parsed addresses kept before starting over."""


class _KeptRow(NamedTuple):
    """A row id's classification kept across states: what it depended on, read, and gave."""

    deps: tuple[int, ...]
    """The classification's dependency key (:func:`~svcsim.traffic.classify.classify_deps`)."""
    inputs: tuple[object, ...]
    """What it read (:func:`~svcsim.traffic.classify.classify_inputs`)."""
    codes: dict[str, int]
    """The row of codes it gave."""


@dataclass(slots=True)
class _DispatchMemo:
    """A (workload, client) pair's dispatch, and what it was found with.

    The node's kernel generation it is known to hold for is the engine's ``_memo_gen`` entry
    of the pair (an array, so that a sync's pairs are checked at once).
    """

    dial: Dial
    rep: str
    """The source it was looked up for (:meth:`TrafficEngine._representative`)."""
    dispatch: Dispatch | NftDispatch
    names: frozenset[Any]
    """What its walks read: ``(table, chain)`` of iptables chains, or nf_tables reads."""
    sources: RulesetSources
    """The rules' sources :attr:`rep` was found with (:func:`~svcsim.traffic.groups.sources_of`)."""


SharedKey = tuple[Dispatch | NftDispatch, Dial, ProxyState]
"""What groups alike share: a dispatch, a dial and kube-proxy's state on the node."""


class _SharedRows(NamedTuple):
    """A shared group's outcome rows, and its place among the shared groups."""

    rids: list[int]
    """Its rows' ids (:meth:`TrafficEngine._row_id`), one per dispatch outcome."""
    rows: list[dict[str, int]]
    """The rows it was built with (kept row objects: unchanged rows are the very same)."""
    seq: int
    """When its key entered :attr:`TrafficEngine._shared` (the dict's order)."""


class _PartsAlike(NamedTuple):
    """Two rules' sources compared (see :meth:`TrafficEngine._reps_kept`)."""

    old: RulesetSources
    new: RulesetSources
    """Both held: the key names them by identity."""
    known: int
    """How many known sources were compared."""
    alike: bool
    """Whether every known source has the same ``-s`` part under both."""
    moved: set[tuple[int, int]]
    """The single addresses in one ``hosts`` only (a source there changes its part)."""


class _Alike(NamedTuple):
    """A pair's dispatch lookup, for pairs on nodes holding the very same rules."""

    rules: Ruleset | NftRules
    """The rules it was looked up under (an entry serves only pairs whose node holds them)."""
    kernel: Kernel
    """The node's kernel it was looked up on."""
    dispatch: Dispatch | NftDispatch
    names: frozenset[Any]


def _changed(
    old: Ruleset | NftRules | IpvsState, new: Ruleset | NftRules | IpvsState
) -> frozenset[Any]:
    """What a dispatch may have read that differs between ``old`` and ``new``.

    iptables: ``(table, chain)`` of every chain that is not the very same object in both;
    nf_tables: :func:`~svcsim.traffic.nft_dispatch.nft_changes`. IPVS nodes have no
    dispatches (their flows go per flow): asking is an error.
    """
    if old is new:
        return frozenset()
    if isinstance(old, IpvsState) or isinstance(new, IpvsState):
        raise ValueError("IPVS-mode nodes have no dispatches to keep")
    if isinstance(old, NftRules) and isinstance(new, NftRules):
        return nft_changes(old, new)
    if isinstance(old, NftRules) or isinstance(new, NftRules):  # pragma: no cover
        raise ValueError("a node's kernel changed its mode")
    before = {(t.name, c.name): c for t in old.tables for c in t.chains}
    after = {(t.name, c.name): c for t in new.tables for c in t.chains}
    return frozenset(k for k in before.keys() | after.keys() if before.get(k) is not after.get(k))


class TrafficEngine(EngineCore):
    """Traffic resolved in vectorised batches between control-plane events.

    ``advance_to(t_s)`` resolves every attempt starting in ``[now, t_s)``; ``finish()`` records
    what is still in flight at the end. See :mod:`svcsim.traffic.core` for the shared rules.
    """

    def __init__(
        self,
        specs: Iterable[WorkloadSpec],
        ctx: TrafficContext,
        *,
        block_s: float = 1.0,
        flush_rows: int = 1 << 16,
    ) -> None:
        nodes = sorted(ctx.kernels)
        self.occupancy = OccupancyBook(len(nodes))
        self.dispatches = DispatchCache()
        self._path = IndexPath(
            ctx, self.occupancy, self.dispatches, {n: i for i, n in enumerate(nodes)}
        )
        super().__init__(tuple(specs), ctx, self._path, block_s=block_s, flush_rows=flush_rows)
        self._groups = Groups()
        self._gid = np.full((len(self.specs), 0), UNGROUPED, dtype=np.int32)
        self._known_sources: list[str] = []
        self._sources = SourceMemos()
        self._reps = Representatives(self._sources)
        self._dispatch_of: dict[tuple[int, int], _DispatchMemo] = {}
        self._alike: dict[tuple[str, str, Dial], _Alike] = {}
        """The last lookup per (rules identity, representative, origin, dial) (see
        :meth:`_new_memo`)."""
        self._parts_alike: dict[tuple[int, int], _PartsAlike] = {}
        """Per (old, new) sources by identity (held): how they compare (:meth:`_reps_kept`)."""
        self._host_keys: dict[str, tuple[int, int]] = {}
        """Sources' addresses as ``hosts`` holds them (:meth:`_host_key`)."""
        self._memo_gen = np.full((len(self.specs), 0), -1, dtype=np.int64)
        """Per pair: the kernel generation its dispatch memo holds for (-1: no memo)."""
        self._memo_names = np.zeros((len(self.specs), 0), dtype=np.int32)
        """Per pair: the index in :attr:`_names` of what its memo's walks read."""
        self._names: list[frozenset[Any]] = []
        self._names_index: dict[int, int] = {}
        """:attr:`_names` entries by identity (each entry holds its object)."""
        self._pairs_of: (
            tuple[
                object,
                npt.NDArray[np.intp],
                npt.NDArray[np.intp],
                list[np.ndarray[Any, np.dtype[np.int32]]],
            ]
            | None
        ) = None
        """:meth:`_pairs`: its key, the pairs, and the client arrays (held: ids stay theirs)."""
        self._node_rules: list[Ruleset | NftRules | IpvsState] = []
        """Each node's ruleset when the view last changed (what its pairs were grouped on)."""
        self._spines: WeakKeyDictionary[Dispatch | NftDispatch, Spine | None] = WeakKeyDictionary()
        self._row_ids: dict[tuple[Dial, NfOutcome, ProxyState], int] = {}
        self._row_args: list[tuple[Dial, NfOutcome, ProxyState]] = []
        self._rows: dict[int, dict[str, int]] = {}
        self._kept_rows: dict[int, _KeptRow] = {}
        self._rows_by_service: dict[str, set[int]] = {}
        self._rows_by_ip: dict[str, set[int]] = {}
        self._slices_seen: dict[str, int] = {}
        self._network_seen = -1
        self._outside_seen = 0
        self._shared: dict[SharedKey, int] = {}
        self._shared_rows: dict[SharedKey, _SharedRows] = {}
        self._shared_seq = 0
        """The next :attr:`_SharedRows.seq`."""
        self._keys_of_row: dict[int, dict[SharedKey, None]] = {}
        """Per row id: the shared keys whose groups were built with it (some maybe gone)."""
        self._states: list[ProxyState] = []
        self._states_version: int | None = None
        """The state version :attr:`_states` was read at."""
        self._dials: list[Dial | None] = []
        self._per_flow = np.array([s.per_flow for s in self.specs], dtype=np.bool_)
        self._per_flow_w = [s.per_flow for s in self.specs]
        self._fail_wait = np.array([s.failure_wait_s("connect") for s in self.specs])
        timeouts = [ctx.kernels[n].conntrack.timeouts for n in nodes]
        self._time_wait = np.array([t.tcp_time_wait_s for t in timeouts])
        self._syn_sent = np.array([t.tcp_syn_sent_s for t in timeouts])
        self._udp_s = np.array([t.udp_s for t in timeouts])
        self._deferrable = False
        self._max_rate = sum(max((r for _, r in s.rate), default=0.0) for s in self.specs)
        limited = [i for i, n in enumerate(nodes) if ctx.kernels[n].conntrack.max_entries > 0]
        self._limited = np.array(limited, dtype=np.intp)
        """Indices of the nodes whose conntrack table has a limit (limits never change)."""
        self._limited_tables = [ctx.kernels[nodes[i]].conntrack for i in limited]
        self._limited_max = np.array([t.max_entries for t in self._limited_tables], dtype=np.int64)
        self._ipvs = frozenset(i for i, n in enumerate(nodes) if ctx.kernels[n].mode == "ipvs")
        """Indices of IPVS-mode nodes: all their attempts go per flow."""
        self._userspace = {n for n in nodes if ctx.kernels[n].mode == "userspace"}

    def notices(self) -> list[str]:
        """One line per destination whose rules branched beyond the dispatch index's bound.

        Its new connections were walked rule by rule: the same records, only slower.
        """
        nodes: dict[tuple[str, str, int], set[str]] = {}
        for node, (_, _, dst, protocol, dport) in self.dispatches.too_large:
            nodes.setdefault((dst, protocol, dport), set()).add(node)
        bound = min((k.max_paths for k in self.ctx.kernels.values()), default=MAX_PATHS)
        return super().notices() + [
            f"new connections to {dst}:{dport}/{protocol} have more than {bound:,} ways "
            f"through the rules of {len(names)} node(s) ({', '.join(sorted(names)[:3])}"
            f"{', ...' if len(names) > 3 else ''}): too many to index, so each was walked rule "
            "by rule (exact, slower)"
            for (dst, protocol, dport), names in sorted(nodes.items())
        ]

    def conntrack_flushed(self, node: str) -> None:
        """Forget the node's anonymous entries too (see :meth:`EngineCore.conntrack_flushed`)."""
        super().conntrack_flushed(node)
        self.occupancy.clear(self.node_index[node])

    def _untracked_counts(self, t_s: float) -> npt.NDArray[np.int64]:
        """The anonymous per-request flows of each node still in its table at ``t_s``."""
        return self.occupancy.live_all(t_s)

    def _view_changed(self) -> None:
        old, new = self._old_view_key, self._view_key
        # Every kube-proxy state change (crash, restart, block, a sync starting or ceasing
        # to fail, a cut) changes the state version: a change of rules alone keeps them.
        version = self.ctx.state_version()
        if version == self._states_version:
            states = self._states
        else:
            states = list(map(self.ctx.proxy_state, self.nodes))
        dials = list(self.dials)
        if (
            not isinstance(old, tuple)
            or not isinstance(new, tuple)
            or len(self._groups.fast) > 2 * len(self._shared) + GROUPS_SPARE
        ):
            self._groups = self._new_groups()
            self._gid = np.full((len(self.specs), len(self.clients)), UNGROUPED, dtype=np.int32)
            self._shared.clear()
            self._shared_rows.clear()
            self._keys_of_row.clear()
            self._rows.clear()
            if len(self._row_args) > KEPT_ROWS_MAX:
                self._row_ids.clear()  # no group names a row id any more
                self._row_args.clear()
                self._kept_rows.clear()
                self._rows_by_service.clear()
                self._rows_by_ip.clear()
        else:
            # A group reads its node's rules, the dial, kube-proxy's state on the node and, for
            # its rows, the API/network truth about its outcomes' destinations. Pairs whose
            # node or dial changed are regrouped; every other group stays if its rows do.
            self._grow_gid()
            if old[:2] != new[:2]:
                self._reclassify(states)
            # Both per-node scans only when something per node changed (cost by what changed).
            restated: list[int] = []
            if states != self._states:
                restated = [
                    i for i, (x, y) in enumerate(zip(self._states, states, strict=True)) if x != y
                ]
            if restated:
                self._gid[:, np.isin(self._client_node, restated)] = UNGROUPED
            if old[2] != new[2]:
                resynced = [
                    i
                    for i, (a, b) in enumerate(zip(old[2], new[2], strict=True))
                    if a != b and i not in restated and self.nodes[i] not in self._userspace
                ]
                if resynced:
                    self._keep_untouched(resynced, old[2])
            for w, (was, now) in enumerate(zip(self._dials, dials, strict=True)):
                if was != now:
                    self._gid[w] = UNGROUPED
            self._groups.keys.clear()
        self._states, self._states_version, self._dials = states, version, dials
        # A node's rules change only with its kernel generation (the key's last part).
        if not (isinstance(old, tuple) and isinstance(new, tuple) and old[2] == new[2]):
            self._node_rules = [kernel.rules for kernel in self._kernel_list]
        # Deferring needs every group of this state built now, while the state holds.
        self._deferrable = not self._per_flow.any() and not self._ipvs and not self._userspace
        if self._deferrable:
            ws, cs = self._pairs()
            gids = self._gid[ws, cs]
            ungrouped = np.flatnonzero(gids == UNGROUPED)
            if len(ungrouped):
                self._regroup(ws[ungrouped].tolist(), cs[ungrouped].tolist(), states)
            if len(ws):  # a workload may have no clients yet (0 replicas)
                gids = self._gid[ws, cs]
                # Every pair was asked: < 0 is PER_FLOW (its rules branch beyond the index's
                # bound, so it is walked per flow).
                self._deferrable = bool((gids >= 0).all()) and bool(
                    self._groups.materialise()["fast"][gids].all()
                )

    def _pairs(self) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """Every (workload, client) pair in play now (workloads with a dial), as two arrays.

        Kept while the workloads' client arrays (replaced when their clients change) and which
        workloads have a dial stay the same.
        """
        key = (tuple(map(id, self._clients_of)), tuple(d is None for d in self.dials))
        if self._pairs_of is None or self._pairs_of[0] != key:
            live = [w for w in range(len(self.specs)) if self.dials[w] is not None]
            sizes = [len(self._clients_of[w]) for w in live]
            ws = np.repeat(np.array(live, dtype=np.intp), sizes)
            cs = np.concatenate(
                [self._clients_of[w].astype(np.intp) for w in live] or [np.empty(0, np.intp)]
            )
            self._pairs_of = (key, ws, cs, list(self._clients_of))
        return self._pairs_of[1], self._pairs_of[2]

    def _keep_untouched(self, nodes: list[int], generations: tuple[int, ...]) -> None:
        """Regroup the pairs on ``nodes`` (new rules) whose dispatch may have changed.

        A sync usually rewrites one Service's chains: a pair whose walks read none of the
        chains that changed keeps its dispatch, hence its group (chains are interned, so an
        unchanged chain is the very same object; anything else counts as changed).
        ``generations`` are the nodes' kernel generations the pairs were grouped at.

        Nodes in step share both rulesets, hence what changed: the pairs of all nodes with the
        same change are tested at once, each distinct set of names read once.
        """
        kernels = self.ctx.kernels
        by_change: dict[tuple[int, int], tuple[frozenset[Any], list[int]]] = {}
        for i in nodes:
            if i in self._ipvs:
                continue  # no pair there has a group
            old, new = self._node_rules[i], kernels[self.nodes[i]].rules
            key = (id(old), id(new))
            found = by_change.get(key)
            if found is None:
                found = by_change[key] = (_changed(old, new), [])
            found[1].append(i)
        if not by_change:
            return
        node_gen = np.array(generations, dtype=np.int64)
        new_gen = np.array([kernels[n].generation for n in self.nodes], dtype=np.int64)
        not_per_flow = ~self._per_flow[:, None]
        for changed, members in by_change.values():
            cols = np.flatnonzero(np.isin(self._client_node, members))
            if not len(cols):
                continue
            node = self._client_node[cols]
            gid = self._gid[:, cols]
            names = self._memo_names[:, cols]
            # A memo made under the rules the pair was grouped at, that read nothing changed.
            held = (gid >= 0) & (self._memo_gen[:, cols] == node_gen[node])
            kept = np.zeros_like(held)
            if held.any():
                distinct = np.unique(names[held])
                ok = np.zeros(len(self._names), dtype=np.bool_)
                ok[distinct] = [changed.isdisjoint(self._names[j]) for j in distinct.tolist()]
                kept = held & ok[names]
                if kept.any():
                    w_kept, c_kept = np.nonzero(kept)
                    self._memo_gen[w_kept, cols[c_kept]] = new_gen[node[c_kept]]
            # Pairs per flow under the old rules are asked again, but not per-flow workloads.
            again = ~kept & ((gid >= 0) | not_per_flow)
            if again.any():
                w_again, c_again = np.nonzero(again)
                self._gid[w_again, cols[c_again]] = UNGROUPED

    def _reclassify(self, states: list[ProxyState]) -> None:
        """Rebuild the groups whose rows changed with the API/network truth; renumber pairs."""
        self._rows.clear()
        affected = self._affected_rows()
        if affected is not None and states == self._states:
            self._reclassify_rows(affected)
        else:
            self._reclassify_all(states, affected)

    def _reclassify_all(self, states: list[ProxyState], affected: set[int] | None) -> None:
        """:meth:`_reclassify` looking at every shared group (``affected``: None for every row).

        A group whose key's kube-proxy state no node is in any more is dropped (no pair can
        name it: theirs are regrouped, their state changed).
        """
        groups = self._groups
        remap = np.arange(len(groups.fast), dtype=np.int32)
        shared: dict[SharedKey, int] = {}
        for key, gid in self._shared.items():
            dispatch, _, state = key
            # Rows read kube-proxy's state through a node in that state (any will do).
            node = groups.node[gid]
            if states[node] != state:
                in_state = next((i for i, s in enumerate(states) if s == state), None)
                if in_state is None:
                    continue  # no pair can name it: theirs are regrouped (their state changed)
                node = in_state
            rids, old_rows, seq = self._shared_rows[key]
            if affected is not None and affected.isdisjoint(rids):
                shared[key] = gid
                continue
            name = self.nodes[node]
            rows = [self._row_at(r, name) for r in rids]
            if all(a is b for a, b in zip(rows, old_rows, strict=True)):
                shared[key] = gid
                continue
            shared[key] = remap[gid] = self._add_regrouped(node, dispatch, rows)
            self._shared_rows[key] = _SharedRows(rids, rows, seq)
        self._shared = shared
        held = self._gid >= 0
        self._gid[held] = remap[self._gid[held]]

    def _reclassify_rows(self, affected: set[int]) -> None:
        """:meth:`_reclassify` when kube-proxy's states stayed: only groups of ``affected`` rows.

        Every shared group then has a node in its state (states changed only at a reclassify,
        which drops the groups left without one), so the others are kept as they are, as the
        full pass keeps them; the groups holding an affected row are looked at in the order of
        :attr:`_shared` (so rebuilt groups are numbered as that pass numbers them). Their
        other rows are kept: a row not affected classifies as it did (the very same object).
        """
        of_row = self._keys_of_row
        shared, shared_rows = self._shared, self._shared_rows
        keys = {key for r in affected for key in of_row.get(r, ()) if key in shared}
        if not keys:
            return
        groups = self._groups
        remap: npt.NDArray[np.int32] | None = None
        for key in sorted(keys, key=lambda k: shared_rows[k].seq):
            gid = shared[key]
            rids, old_rows, seq = shared_rows[key]
            node = groups.node[gid]
            name = self.nodes[node]
            rows = [
                self._row_at(r, name) if r in affected else old
                for r, old in zip(rids, old_rows, strict=True)
            ]
            if all(a is b for a, b in zip(rows, old_rows, strict=True)):
                continue
            if remap is None:
                remap = np.arange(len(groups.fast), dtype=np.int32)
            shared[key] = remap[gid] = self._add_regrouped(node, key[0], rows)
            shared_rows[key] = _SharedRows(rids, rows, seq)
        if remap is not None:
            held = self._gid >= 0
            self._gid[held] = remap[self._gid[held]]

    def _add_regrouped(
        self, node: int, dispatch: Dispatch | NftDispatch, rows: list[dict[str, int]]
    ) -> int:
        """A shared group of ``dispatch`` rebuilt with ``rows`` (classified through ``node``)."""
        spine = self._spines[dispatch]
        return self._groups.add(
            REGROUPED, node, spine is not None, spine if spine is not None else NO_SPINE, rows
        )

    def _affected_rows(self) -> set[int] | None:
        """Row ids whose dependencies moved since the last call (None: maybe any).

        A row depends on its dial's Service's slices and on the Pod network at its
        destination (see :func:`~svcsim.traffic.classify.classify_deps`): only rows naming a
        Service whose slices version moved, or an IP that changed, can classify differently.
        """
        network = self.ctx.network
        ips = network.changed_ips_since(self._network_seen)
        self._network_seen = network.version
        if self.ctx.outside_version != self._outside_seen:
            self._outside_seen = self.ctx.outside_version
            ips = None  # a hand-made endpoint went down or up: rare, so look at every row
        affected: set[int] = set()
        for service, rids in self._rows_by_service.items():
            version = self.ctx.slices_version(service)
            if self._slices_seen.get(service) != version:
                self._slices_seen[service] = version
                affected |= rids
        if ips is None:
            return None
        for ip in ips:
            affected |= self._rows_by_ip.get(ip, set())
        return affected

    def _new_groups(self) -> Groups:
        groups = Groups()
        groups.time_ids, groups.service_times = self._groups.time_ids, self._groups.service_times
        return groups

    def _grow_gid(self) -> None:
        """Room in the per-pair arrays for every client registered."""
        n = len(self.clients)
        if self._gid.shape[1] < n:
            grown = np.full((len(self.specs), n), UNGROUPED, dtype=np.int32)
            grown[:, : self._gid.shape[1]] = self._gid
            self._gid = grown
        had = self._memo_gen.shape[1]
        if had < n:
            width = max(n, 2 * had)  # grown by doubling: a column per new client is quadratic
            gen = np.full((len(self.specs), width), -1, dtype=np.int64)
            gen[:, :had] = self._memo_gen
            names = np.zeros((len(self.specs), width), dtype=np.int32)
            names[:, :had] = self._memo_names
            self._memo_gen, self._memo_names = gen, names

    def _names_id(self, names: frozenset[Any]) -> int:
        """The index of ``names`` (by identity) in :attr:`_names`."""
        found = self._names_index.get(id(names))
        if found is None or self._names[found] is not names:
            if len(self._names) >= NAMES_MAX:
                self._renumber_names()
            found = self._names_index[id(names)] = len(self._names)
            self._names.append(names)
        return found

    def _renumber_names(self) -> None:
        """Keep only the names some memo still uses (the list grows with every build)."""
        used = sorted({memo.names for memo in self._dispatch_of.values()}, key=id)
        self._names = list(used)
        self._names_index = {id(n): j for j, n in enumerate(self._names)}
        for (w, c), memo in self._dispatch_of.items():
            self._memo_names[w, c] = self._names_index[id(memo.names)]

    def _can_defer(self, t_s: float) -> bool:
        """Only anonymous fast-path traffic, for at most a chunk, far from a full table."""
        if not self._deferrable:
            return False
        expected = self._max_rate * (t_s - self._span_start)
        if t_s - self._span_start >= CHUNK_MAX_S or expected > DEFER_MAX_ATTEMPTS:
            return False
        if not len(self._limited):
            return True
        # Every limited node at once (a Python test per node and call shows at 100 nodes).
        tables = self._limited_tables
        held = np.fromiter(map(len, tables), dtype=np.int64, count=len(tables))
        margin = self.occupancy.bounds()[self._limited] + held + 2 * expected
        return not bool((margin + 100 >= self._limited_max).any())

    # --- groups ---------------------------------------------------------------------------------

    def _representative(self, node: str, src: str) -> str:
        kernel = self.ctx.kernels[node]
        rules = kernel.rules
        if isinstance(rules, IpvsState):
            raise ValueError(f"node {node} is in IPVS mode: no source classes")
        return self._reps.of(rules, kernel.network, src, self._known_sources)

    def _rep_kept(self, memo: _DispatchMemo, sources: RulesetSources, src: str) -> bool:
        """True if ``memo.rep`` is still ``src``'s representative on its node under ``sources``.

        A representative is the first known source whose signature (its ``-s`` part and its
        address type on the node) is ``src``'s (:class:`~svcsim.traffic.groups.Representatives`).
        Address types on a node never change, and known sources are only appended after the
        memo's; so if ``src`` and every known source have the same ``-s`` part under both
        sources, the first alike is the same source. Syncs mostly change endpoints, whose
        addresses are rarely clients': one set comparison per pair of sources, not a
        representative per pair.
        """
        return self._reps_kept(memo.sources, sources, [src])[0]

    def _reps_kept(self, old: RulesetSources, new: RulesetSources, srcs: list[str]) -> list[bool]:
        """For each of ``srcs``: True if its representative under ``old`` is its one under ``new``.

        See :meth:`_rep_kept`. A source's ``-s`` part is whether its address is one of the
        single addresses (``hosts``), and the wider networks holding it: the same under both
        when the wider networks are (one shared :attr:`RulesetSources.in_wide`) and the
        address is in both ``hosts`` or in neither.
        """
        if old is new:
            return [True] * len(srcs)
        if old.in_wide is not new.in_wide:
            return [False] * len(srcs)  # other wider networks: found afresh (rare)
        known = self._known_sources
        key = (id(old), id(new))
        found = self._parts_alike.get(key)
        if found is None or found.known != len(known):
            if len(self._parts_alike) >= PARTS_ALIKE_MAX:
                self._parts_alike.clear()
            moved = old.hosts ^ new.hosts
            alike = all(self._host_key(r) not in moved for r in known)
            found = self._parts_alike[key] = _PartsAlike(old, new, len(known), alike, moved)
        if not found.alike:
            return [False] * len(srcs)
        moved = found.moved
        return [self._host_key(src) not in moved for src in srcs]

    def _host_key(self, src: str) -> tuple[int, int]:
        """``src`` as ``hosts`` holds addresses: (IP version, integer)."""
        found = self._host_keys.get(src)
        if found is None:
            if len(self._host_keys) >= HOST_KEYS_MAX:
                self._host_keys.clear()
            address = parse_ip(src)
            found = self._host_keys[src] = (address.version, int(address))
        return found

    def _group_ids(self, chunk: Attempts) -> I32:
        """The group of each attempt; :data:`PER_FLOW` for the per-flow workloads."""
        self._grow_gid()
        gid = self._gid[chunk.w, chunk.client]
        missing = gid == UNGROUPED
        if missing.any():
            pairs = {
                (int(w), int(c))
                for w, c in zip(chunk.w[missing], chunk.client[missing], strict=True)
            }
            for w, c in sorted(pairs):
                self._gid[w, c] = self._group_of(w, c)
            gid = self._gid[chunk.w, chunk.client]
        return gid

    def _regroup(self, ws: list[int], cs: list[int], states: list[ProxyState]) -> None:
        """Group the pairs ``(ws[k], cs[k])`` (as :meth:`_group_of`), nodes in step at once.

        After a sync of nodes in step, a workload's pairs on those nodes mostly had one
        dispatch and representative and now hold one ruleset object: such pairs form a class,
        whose first pair is grouped alone and the others after it (:meth:`_regroup_alike`).
        """
        clients, node_index, kernels = self.clients.clients, self.node_index, self._kernel_list
        classes: dict[tuple[int, int, int, str, str], list[int]] = {}
        for w, c in zip(ws, cs, strict=True):
            memo = self._dispatch_of.get((w, c))
            if memo is None or self._per_flow_w[w]:
                self._gid[w, c] = self._group_of(w, c, states)
                continue
            client = clients[c]
            rules = kernels[node_index[client.node]].rules
            key = (w, id(rules), id(memo.sources), memo.rep, client.origin)
            classes.setdefault(key, []).append(c)
        for (w, _, _, rep, _), members in classes.items():
            self._regroup_alike(w, rep, members, states)

    def _regroup_alike(
        self, w: int, rep: str, members: list[int], states: list[ProxyState]
    ) -> None:
        """Group workload ``w``'s pairs of ``members``: the first alone, the others as it.

        ``members``: clients whose memos had ``rep`` and one sources, on nodes holding one
        rules object. A pair is grouped like the first if its representative stays ``rep``
        (:meth:`_reps_kept`), its node takes the first's dispatch
        (:meth:`~svcsim.traffic.dispatch.DispatchCache.adopt_many`) and a group of that
        dispatch, dial and its kube-proxy state exists; any other pair is grouped alone.
        """
        first, rest = members[0], members[1:]
        self._gid[w, first] = self._group_of(w, first, states)
        clients, node_index, kernels = self.clients.clients, self.node_index, self._kernel_list
        like = kernels[node_index[clients[first].node]]
        memo = self._dispatch_of.get((w, first))
        if (
            not rest
            or memo is None
            or memo.rep != rep
            or self._gid[w, first] < 0
            or isinstance(like.rules, IpvsState)
            # Found under the rules the class holds (not a memo kept from earlier rules).
            or memo.sources is not sources_of(like.rules, self._sources)
        ):
            for c in rest:
                self._gid[w, c] = self._group_of(w, c, states)
            return
        dial = memo.dial
        old_sources = self._dispatch_of[(w, rest[0])].sources  # the class's: one object
        kept = self._reps_kept(old_sources, memo.sources, [clients[c].ip for c in rest])
        nodes = [node_index[clients[c].node] for c in rest]
        took = self.dispatches.adopt_many(
            [kernels[i] for i in nodes],
            like,
            rep,
            clients[first].origin,
            dial.ip,
            dial.protocol,
            dial.port,
        )
        names = self._memo_names[w, first]
        for c, i, k, t in zip(rest, nodes, kept, took, strict=True):
            gid = self._shared.get((memo.dispatch, dial, states[i])) if k and t else None
            if gid is None:
                self._gid[w, c] = self._group_of(w, c, states)
                continue
            self._dispatch_of[(w, c)] = memo  # the same dial, rep, dispatch, reads, sources
            self._memo_gen[w, c] = kernels[i].generation
            self._memo_names[w, c] = names
            self._gid[w, c] = gid

    def _group_of(self, w: int, client_id: int, states: list[ProxyState] | None = None) -> int:
        """The pair's group id (:data:`PER_FLOW` if it has none).

        ``states``: every node's kube-proxy state read just now, by node index (else read here).
        """
        client = self.clients.clients[client_id]
        i = self.node_index[client.node]
        if self._per_flow_w[w] or client.node in self._userspace or i in self._ipvs:
            return PER_FLOW
        dial = self.dials[w]
        assert dial is not None
        kernel = self._kernel_list[i]
        # The dispatch stays valid while the node's rules and the dial do (across API changes).
        memo = self._dispatch_of.get((w, client_id))
        if memo is None or self._memo_gen[w, client_id] != kernel.generation or memo.dial != dial:
            memo = self._new_memo(w, client_id, client, kernel, dial, memo)
            if memo is None:
                return PER_FLOW  # too many ways through the rules to index: walked per flow
        rep, dispatch = memo.rep, memo.dispatch
        key = GroupKey(w, client.node, rep)
        found = self._groups.keys.get(key)
        if found is not None:
            return found
        # A group is its dispatch's chain and the rows of its outcomes; rows depend on the node
        # only through kube-proxy's state there. So groups of equal (dispatch, dial, state) are
        # one group: nodes sharing a dispatch (DispatchCache) share it, built once per state.
        state = (
            self.ctx.proxy_state(client.node)
            if states is None
            else states[self.node_index[client.node]]
        )
        shared_key = (dispatch, dial, state)
        found = self._shared.get(shared_key)
        if found is not None:
            self._groups.alias(key, found)
            return found
        if dispatch in self._spines:
            spine = self._spines[dispatch]
        else:
            spine = self._spines[dispatch] = chain_spine(dispatch)
        rids = [self._row_id(dial, o, state) for o in dispatch.outcomes]
        rows = [self._row_at(r, client.node) for r in rids]
        fast = spine is not None
        found = self._shared[shared_key] = self._groups.add(
            key,
            self.node_index[client.node],
            fast,
            spine if spine is not None else NO_SPINE,
            rows,
        )
        self._shared_rows[shared_key] = _SharedRows(rids, rows, self._shared_seq)
        self._shared_seq += 1
        for r in rids:
            self._keys_of_row.setdefault(r, {})[shared_key] = None
        return found

    def _new_memo(
        self,
        w: int,
        client_id: int,
        client: Client,
        kernel: Kernel,
        dial: Dial,
        old: _DispatchMemo | None,
    ) -> _DispatchMemo | None:
        """The pair's dispatch under the node's current rules (None: too large to index).

        Nodes in step hold the very same rules object: the first pair asks the dispatch
        cache, the pairs of the other nodes with the same representative and dial take that
        dispatch if their network answers alike (:meth:`DispatchCache.adopt`), and keep their
        representative if the rules' sources leave it so (:meth:`_rep_kept`). The same
        dispatch and representative as asking afresh, with a few checks per pair.
        """
        rules = kernel.rules
        assert not isinstance(rules, IpvsState)  # IPVS nodes' pairs go per flow
        sources = sources_of(rules, self._sources)
        if old is not None and self._rep_kept(old, sources, client.ip):
            rep = old.rep
        else:
            rep = self._representative(client.node, client.ip)
        # One entry per (representative, origin, dial): the rules it holds are checked by
        # identity, and a newer ruleset's lookup replaces it, so replaced rulesets (and their
        # kernels' dispatches) are not kept alive for hours as entries never hit again.
        alike_key = (rep, client.origin, dial)
        like = self._alike.get(alike_key)
        args = (rep, client.origin, dial.ip, dial.protocol, dial.port)
        if (
            like is not None
            and like.rules is rules
            and self.dispatches.adopt(kernel, like.kernel, *args)
        ):
            dispatch, names = like.dispatch, like.names
        else:
            try:
                dispatch, names = self.dispatches.lookup_reads(kernel, *args)
            except DispatchTooLargeError:
                return None
            if len(self._alike) >= ALIKE_MAX:
                self._alike.clear()
            self._alike[alike_key] = _Alike(rules, kernel, dispatch, names)
        memo = self._dispatch_of[(w, client_id)] = _DispatchMemo(
            dial, rep, dispatch, names, sources
        )
        self._grow_gid()
        self._memo_gen[w, client_id] = kernel.generation
        self._memo_names[w, client_id] = self._names_id(names)
        return memo

    def _row_id(self, dial: Dial, outcome: NfOutcome, state: ProxyState) -> int:
        """A number for ``(dial, outcome, state)``, so that rows are memoised by a cheap key."""
        key = (dial, outcome, state)
        found = self._row_ids.get(key)
        if found is None:
            found = self._row_ids[key] = len(self._row_args)
            self._row_args.append(key)
            # What the row depends on (see _affected_rows), indexed for invalidation.
            if dial.service is not None:
                self._rows_by_service.setdefault(dial.service, set()).add(found)
            self._rows_by_ip.setdefault(outcome.destination[0], set()).add(found)
        return found

    def _row_at(self, rid: int, node: str) -> dict[str, int]:
        """The classified outcome :meth:`_row_id` ``rid`` as codes, memoised per state.

        The node only matters through kube-proxy's state there (the key's).
        """
        found = self._rows.get(rid)
        if found is not None:
            return found
        dial, outcome, _ = self._row_args[rid]
        # Across states, the row stays while everything classify reads for it does: surely
        # so while what those inputs depend on did not change (most rows, most of the time).
        deps = classify_deps(outcome, dial, self.ctx)
        kept = self._kept_rows.get(rid)
        if kept is not None and kept.deps == deps:
            found = self._rows[rid] = kept.codes
            return found
        inputs = classify_inputs(outcome, dial, self.ctx)
        if kept is not None and kept.inputs == inputs:
            found = self._rows[rid] = kept.codes
            self._kept_rows[rid] = _KeptRow(deps, inputs, found)
            return found
        res = classify(outcome, dial, node, self.ctx)
        time_id = NOT_SERVED
        if res.app is not None:
            # A row names the app's service-time distribution, not the app: apps with equal
            # distributions draw alike, so a chunk draws once per distinct distribution.
            # The ids outlive a state (kept rows hold them), so they are the engine's.
            times = self._groups.service_times
            service_time = self.ctx.service_time_of(res.app)
            known = self._groups.time_ids.get(service_time)
            if known is None:
                known = self._groups.time_ids[service_time] = len(times)
                times.append(service_time)
            time_id = known
        found = self._rows[rid] = {
            "outcome": OUTCOME_CODE[res.outcome], "cause": CAUSE_CODE[res.cause],
            "endpoint": self.vocab.code(res.endpoint), "pod": self.vocab.code(res.pod),
            "time": time_id, "wait": int(res.wait), "accepted": int(res.accepted),
            "served": int(res.served), "refused": int(OUTCOME_CODE[res.outcome] == REFUSED),
            "icmp": int(res.icmp),
        }  # fmt: skip
        self._kept_rows[rid] = _KeptRow(deps, inputs, found)
        return found

    # --- resolution -----------------------------------------------------------------------------

    def _resolve(self, chunk: Attempts, nodes: I32, seeds: npt.NDArray[np.uint64]) -> Results:
        results = Results.blank(len(chunk))
        gid = self._group_ids(chunk)
        arrays = self._groups.materialise()
        fast = gid >= 0
        if fast.any():
            fast[fast] = arrays["fast"][gid[fast]]
        t0 = float(chunk.t[0])
        counts = np.bincount(nodes, minlength=len(self.nodes))
        for node in self._path.crowded(self.nodes, counts):
            if not self._path.has_room(self.nodes[node], t0, int(counts[node])):
                fast[nodes == node] = False  # could fill up: every flow there in order
        slow = np.flatnonzero(~fast)
        if len(slow):
            self._resolve_per_flow(chunk, seeds, slow, results)
        quick = np.flatnonzero(fast)
        if len(quick):
            self._resolve_fast(chunk, nodes, seeds, quick, gid[quick], arrays, results)
        return results

    def _resolve_fast(
        self,
        chunk: Attempts,
        nodes: I32,
        seeds: npt.NDArray[np.uint64],
        idx: npt.NDArray[np.intp],
        g: I32,
        a: dict[str, npt.NDArray[Any]],
        results: Results,
    ) -> None:
        whole = len(idx) == len(chunk)  # the usual case: no gathers, no scatters

        def pick(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return x if whole else x[idx]

        seeds, w, node, t = pick(seeds), pick(chunk.w), pick(nodes), pick(chunk.t)
        oid = a["offset"][g] + chain_choice(a, g, seeds)
        # Gathers copy: outcome and cause may be changed in place below.
        outcome, cause, served = a["outcome"][oid], a["cause"][oid], a["served"][oid]
        service_s = np.zeros(len(idx))
        if served.any():
            u = service_uniforms(seeds)
            time_id = a["time"][oid]
            used = time_id[served]
            if used.min() == used.max():  # one distribution (the common case)
                service_s = self._groups.service_times[int(used[0])].quantile(u)
            else:
                for k in np.unique(used).tolist():
                    m = time_id == k
                    service_s[m] = self._groups.service_times[k].quantile(u[m])
        fail_wait = np.where(a["wait"][oid] == int(Wait.CONNECT), self._fail_wait[w], 0.0)
        latency = finish_arrays(
            outcome, cause, served, service_s, fail_wait, self._request_timeout[w]
        )
        tcp = ~self._udp[w]
        expiry = anonymous_expiry_arrays(
            tcp,
            a["accepted"][oid],
            served,
            a["refused"][oid],
            t,
            latency,
            self._time_wait[node],
            self._syn_sent[node],
            self._udp_s[node],
        )
        held = ~np.isnan(expiry)
        self.occupancy.add(node[held].astype(np.intp), expiry[held])
        # A served TCP flow may yet be reset (its entry then closes early): keep its expiry.
        kept = np.where(held & tcp & served, expiry, np.nan)
        columns = {
            "latency": latency,
            "outcome": outcome,
            "cause": cause,
            "endpoint": a["endpoint"][oid],
            "pod": a["pod"][oid],
            "served": served,
            "expiry": kept,
            "icmp": a["icmp"][oid],
        }
        if whole:
            for name, column in columns.items():
                setattr(results, name, column)
            results.new_flow = np.ones(len(idx), dtype=np.bool_)
        else:
            for name, column in columns.items():
                getattr(results, name)[idx] = column
            results.new_flow[idx] = True
