"""The part both engines share: time, arrivals, retries, in-flight requests and recording.

:meth:`EngineCore.advance_to` takes every attempt starting in ``[now, t)`` - new arrivals and
due retries - and resolves them against the state that holds in that interval, in
chronological chunks: a chunk never spans more than the smallest retry back-off, so a retry
produced by a chunk always starts after it and every node sees its attempts in time order.
How a chunk is resolved is the engine's business (:meth:`EngineCore._resolve`); everything
else happens here, identically for the batched engine and the per-request reference.

Attempts served by a Pod stay *in flight* until their end: a Backend that crashes or exits
before then resets them (``reset`` / ``backend-exited`` at that instant for TCP; a UDP request
just gets no answer: ``timeout``). Failed attempts (anything but ``ok`` and ``misrouted``) are
retried with the workload's back-off, as new attempts from the same client, if it still exists.
Attempts are recorded when their outcome is final; :meth:`EngineCore.finish` records the rest.

REJECTed attempts meet the nodes' ICMP rate limits after each chunk is resolved, in the
chunk's order (:mod:`svcsim.traffic.icmp`): one whose error was suppressed comes back as its
client's next SYN, an attempt at a later time like a retry (but the same attempt, recorded
once from its first SYN).

userspace mode: when a node's kube-proxy process exits, the requests in flight through it (served
attempts of Service-targeted workloads from that node) are reset at that instant (UDP: no
answer), cause ``proxy-exited``, and the connections through it break.
"""

from __future__ import annotations

import itertools
import math
import operator
from functools import partial
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from svcsim.results.schema import Cause
from svcsim.sim.network import Backend, BackendState
from svcsim.traffic.arrivals import PIECE_MAX_ARRIVALS, ArrivalStream
from svcsim.traffic.attempts import (
    Attempts,
    Client,
    ClientRegistry,
    RecordBuffer,
    Results,
    Rows,
    Vocab,
)
from svcsim.traffic.context import TrafficContext
from svcsim.traffic.draws import SeedBank
from svcsim.traffic.fate import CAUSE_CODE, MISROUTED, OK, OUTCOME_CODE, RESET, TIMEOUT
from svcsim.traffic.flows import Connection, KernelPath, PerFlow
from svcsim.traffic.icmp import IcmpLimits
from svcsim.traffic.ipvs_path import IpvsFlows
from svcsim.traffic.spec import (
    ExternalSource,
    HostSource,
    LoadBalancerSource,
    PodSource,
    ServiceTarget,
    WorkloadSpec,
)
from svcsim.traffic.targets import Dial, dial_for

CHUNK_MAX_S: Final = 1.0
CHUNK_MIN_S: Final = 0.01
CHUNK_MAX_ATTEMPTS: Final = PIECE_MAX_ARRIVALS
"""Most attempts resolved in one chunk, and most new arrivals expected in one flushed window:
what bounds the traffic path's working memory whatever the rate."""
BACKEND_EXITED = CAUSE_CODE[Cause.BACKEND_EXITED]
PROXY_EXITED = CAUSE_CODE[Cause.PROXY_EXITED]
NODE_DOWN = CAUSE_CODE[Cause.NODE_DOWN]
ICMP_RATE_LIMITED = CAUSE_CODE[Cause.ICMP_RATE_LIMITED]
_GENERATION = operator.attrgetter("generation")
_KILLING = frozenset({BackendState.CRASHED, BackendState.EXITED, BackendState.UNREACHABLE})


class EngineCore:
    """Shared driver of :class:`~svcsim.traffic.engine.TrafficEngine` and the reference."""

    def __init__(
        self,
        specs: tuple[WorkloadSpec, ...],
        ctx: TrafficContext,
        path: KernelPath,
        *,
        block_s: float = 1.0,
        flush_rows: int = 1 << 16,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate workload names in {names}")
        self.specs = specs
        self.ctx = ctx
        self.now = 0.0
        self._span_start = 0.0
        self.vocab = Vocab()
        self.nodes = sorted(ctx.kernels)
        self.node_index = {n: i for i, n in enumerate(self.nodes)}
        self._kernel_list = [ctx.kernels[n] for n in self.nodes]
        """Each node's kernel, in node order (a node keeps its kernel)."""
        self._tables = [kernel.conntrack for kernel in self._kernel_list]
        """Each node's conntrack table, in node order (a kernel keeps its table)."""
        self.clients = ClientRegistry()
        ipvs = any(k.mode == "ipvs" for k in ctx.kernels.values())
        self.flows = (IpvsFlows if ipvs else PerFlow)(ctx, specs, path, self.vocab)
        self.buffer = RecordBuffer(
            ctx.recorder, self.vocab, names, self.clients, self.nodes, flush_rows
        )
        self._arrivals = [
            ArrivalStream(s.rate, ctx.rng(f"workload/{s.name}"), block_s) for s in specs
        ]
        self._seeds = SeedBank(
            len(self.nodes), lambda i: ctx.rng(f"kernel/{self.nodes[i]}/statistic")
        )
        self._next_id = 0
        self._retries = Attempts.empty()
        self._inflight: Rows | None = None
        self.icmp = IcmpLimits(specs, ctx, self.clients, self.nodes)
        """What REJECTs' ICMP errors become (the nodes' ICMP rate limits)."""
        backoffs = [s.retries.backoff_s for s in specs if s.retries.max > 0]
        shortest = min(backoffs) if backoffs else CHUNK_MAX_S
        self.chunk_s = min(max(shortest, CHUNK_MIN_S), CHUNK_MAX_S)
        self.chunk_max_attempts = CHUNK_MAX_ATTEMPTS
        """Most attempts per chunk and most expected arrivals per window (tests lower it)."""
        self._max_retries = np.array([s.retries.max for s in specs], dtype=np.int16)
        self._backoff = np.array([s.retries.backoff_s for s in specs])
        self._request_timeout = np.array([s.request_timeout_s for s in specs])
        self._udp = np.array([s.protocol == "udp" for s in specs], dtype=np.bool_)
        self._connect_wait = np.array([s.failure_wait_s("connect") for s in specs])
        self._view_key: object = None
        self._old_view_key: object = None
        self._backend_changes = 0
        self._clients_of: list[np.ndarray[Any, np.dtype[np.int32]]] = [
            np.empty(0, np.int32) for _ in specs
        ]
        self._client_source: list[tuple[object, ...] | None] = [None] * len(specs)
        """What each workload's clients were last made from (client Pods; () for others)."""
        self.dials: list[Dial | None] = [None] * len(specs)
        self._dial_code = np.zeros(len(specs), dtype=np.int32)
        self._dial_made: list[tuple[object, str, Dial | None] | None] = [None] * len(specs)
        """Per workload: the Service object and node address its last dial was made from."""
        self._alive: set[int] = set()
        self._alive_mask = np.zeros(0, dtype=np.bool_)
        self._client_node = np.zeros(0, dtype=np.int32)
        ctx.network.on_state_change(self._on_backend)
        # --- userspace mode: requests run through the node's kube-proxy process.
        self._proxied_w = np.array([isinstance(s.target, ServiceTarget) for s in specs])
        for node in self.nodes:
            if ctx.kernels[node].mode == "userspace":
                ctx.kernels[node].sockets.on_process_exit(partial(self._on_proxy_exit, node))

    # --- the per-window view of the world ---------------------------------------------------

    def _state_key(self) -> object:
        return (
            self.ctx.state_version(),
            self._backend_changes,
            tuple(map(_GENERATION, self._kernel_list)),
        )

    def _refresh_view(self, key: object) -> None:
        """Snapshot what the traffic path reads (clients, dials) for the state ``key``."""
        old = self._view_key
        self._old_view_key = old
        self._view_key = key
        # Clients and dials read the API and the Pod network only: a change of rules alone
        # (the kernels' generations, the key's last part) leaves them as they are.
        if not (isinstance(old, tuple) and isinstance(key, tuple) and old[:2] == key[:2]):
            self._refresh_clients()
        self._view_changed()

    def _refresh_clients(self) -> None:
        kernels = self.ctx.kernels
        alive: set[int] = set()
        for w, spec in enumerate(self.specs):
            members = self._members(spec)
            if self._client_source[w] != members:  # the same clients: the same ids
                self._client_source[w] = members
                ids = [self.clients.id_of(c) for c in self._clients(spec, members)]
                self._clients_of[w] = np.array(ids, dtype=np.int32)
            alive.update(self._clients_of[w].tolist())
            service = None
            if isinstance(spec.target, ServiceTarget):
                service = self.ctx.service(spec.target.service)
            node_ip = ""
            if isinstance(spec.source, ExternalSource | HostSource):
                node_ip = kernels[spec.source.node].network.node_ips[0]
            # dial_for is a pure function of frozen values: the same Service object and node
            # address give the same dial (most API changes touch no workload's Service).
            made = self._dial_made[w]
            if made is not None and made[0] is service and made[1] == node_ip:
                dial = made[2]
            else:
                dial = dial_for(spec.target, spec.source, spec.protocol, service, node_ip)
                self._dial_made[w] = (service, node_ip, dial)
            # A Service that disappears is still dialled at its last address (cached DNS).
            self.dials[w] = dial if dial is not None else self.dials[w]
            current = self.dials[w]
            self._dial_code[w] = self.vocab.code(current.label) if current is not None else 0
        n = len(self.clients)
        if len(self._client_node) != n:  # clients are only ever added; a client keeps its node
            self._client_node = np.array(
                [self.node_index[c.node] for c in self.clients.clients], dtype=np.int32
            )
        if alive == self._alive and len(self._alive_mask) == n:
            return  # the same clients alive: nothing to drop, the same mask
        self._alive = alive
        self._alive_mask = np.zeros(n, dtype=np.bool_)
        self._alive_mask[list(alive)] = True
        self.flows.drop_clients(alive, self.now)

    def _members(self, spec: WorkloadSpec) -> tuple[object, ...]:
        """What the workload's clients are made from now (the same members: the same clients).

        Client Pods for a Pod source; the nodes a load balancer sends to; for a host or
        external source its node while that node runs (nothing, once it has failed).
        """
        source = spec.source
        if isinstance(source, PodSource):
            return tuple(self.ctx.client_pods(source.selector))
        if isinstance(source, LoadBalancerSource):
            assert isinstance(spec.target, ServiceTarget)
            return self.ctx.load_balancer_nodes(spec.target.service)
        return (source.node,) if self.ctx.machine_up(source.node) else ()

    def _clients(self, spec: WorkloadSpec, members: tuple[Any, ...]) -> list[Client]:
        """The workload's clients: its client Pods, its load balancer's nodes, or one source."""
        source = spec.source
        if isinstance(source, PodSource):
            return [Client(key, ip, node, "pod") for key, ip, node in members]
        if isinstance(source, LoadBalancerSource):
            return [Client(f"lb@{node}", source.ip, node, "external") for node in members]
        if not members:
            return []  # the host's processes died with it; nothing enters a failed node
        node_ip = self.ctx.kernels[source.node].network.node_ips[0]
        if isinstance(source, ExternalSource):
            return [Client(f"external@{source.node}", source.ip, source.node, "external")]
        return [Client(f"host@{source.node}", node_ip, source.node, "host")]

    def _view_changed(self) -> None:
        """Hook: the world changed; drop whatever was cached for the old state."""

    def _can_defer(self, t_s: float) -> bool:
        """Hook: whether attempts up to ``t_s`` may wait to be resolved with this snapshot.

        Only if their resolution reads nothing but per-state snapshots (never live kernel or
        network state), so that resolving them after the world moved on changes nothing.
        """
        return False

    # --- time -----------------------------------------------------------------------------------

    def advance_to(self, t_s: float) -> None:
        """Resolve every attempt starting in ``[now, t_s)`` against the state holding now.

        An engine may keep the attempts pending while nothing they depend on changes
        (:meth:`_can_defer`); they are resolved, against the snapshot of that state, as soon
        as something does, or at :meth:`flush`.
        """
        if t_s <= self.now:
            return
        key = self._state_key()
        if key != self._view_key:
            self.flush()  # what is pending met the old state
            self._refresh_view(key)
        self.now = t_s
        if not self._can_defer(t_s):
            self.flush()

    def flush(self) -> None:
        """Resolve every pending attempt (those starting before ``now``).

        A span expected to bring more than :attr:`chunk_max_attempts` new arrivals is
        resolved in consecutive windows that each stay under it, as if the world had been
        advanced window by window: memory stays bounded at any rate. (Spans under the cap,
        all of them at ordinary rates, are resolved in one piece, exactly as without it.)
        """
        t0, t1 = self._span_start, self.now
        if t1 <= t0:
            return
        for a, b in self._windows(t0, t1):
            self._flush_window(a, b)
        self._span_start = t1

    def _windows(self, t0: float, t1: float) -> list[tuple[float, float]]:
        """``[t0, t1)`` cut into equal windows each expected to hold at most the cap."""
        peak = sum(stream.max_rate(t0, t1) for stream in self._arrivals)
        parts = math.ceil(peak * (t1 - t0) / self.chunk_max_attempts)
        if parts <= 1:
            return [(t0, t1)]
        cuts = [t0 + (t1 - t0) * j / parts for j in range(parts)] + [t1]
        return list(itertools.pairwise(cuts))

    def _flush_window(self, t0: float, t1: float) -> None:
        """Resolve the arrivals in ``[t0, t1)`` and every retry due before ``t1``."""
        self._complete_inflight(t1)
        parts = [self._arrivals_in(t0, t1)]
        if len(self._retries):
            due = self._retries.t < t1
            parts.append(self._retries.take(due))
            self._retries = self._retries.take(~due)
        self._run(Attempts.concat(parts).sorted(), t1)

    def conntrack_flushed(self, node: str) -> None:
        """Note that ``node``'s whole conntrack table was just flushed (``conntrack -F``).

        Call it after deleting every entry of the node's table; the batched engine then
        forgets the anonymous entries it counts outside the table. (Partial deletions, such as
        kube-proxy's UDP clean-up, need no call: anonymous flows are never looked up again,
        only counted, and the few it would remove are counted until they expire.)
        """
        self.flush()

    def conntrack_counts(self, t_s: float) -> dict[str, int]:
        """Live conntrack entries of every node at ``t_s`` (for sampling; never going back).

        Resolves pending attempts first, so every flow started before ``t_s`` is counted.
        """
        self.flush()
        counts = self._untracked_counts(t_s).tolist()
        # Tracked entries: only tables holding any are counted entry by entry (a sample of
        # 100 nodes whose flows are all anonymous is then one pass over the table sizes).
        tables = self._tables
        held = np.fromiter(map(len, tables), dtype=np.int64, count=len(tables))
        for i in np.flatnonzero(held).tolist():
            counts[i] += tables[i].count(t_s)
        return dict(zip(self.nodes, counts, strict=True))

    def _untracked_counts(self, t_s: float) -> np.ndarray[Any, np.dtype[np.int64]]:
        """Entries counted outside the nodes' ConntrackTables, by node index (none here)."""
        return np.zeros(len(self.nodes), dtype=np.int64)

    def notices(self) -> list[str]:
        """What the user should know about how the traffic was resolved."""
        return self.icmp.notices()

    def recorded_through(self) -> float:
        """A time before which every attempt sent is with the Recorder (flushes the records).

        Attempts are recorded when their outcome is known: the earliest one still in flight,
        or not yet resolved, bounds it; so does the earliest start (``t0``) of an attempt
        still retransmitting its SYN after a rate-limited ICMP error (it is recorded as sent
        then, once a later SYN is answered or the client gives up).
        """
        self.buffer.flush()
        through = self._span_start
        if self._inflight is not None and len(self._inflight):
            through = min(through, float(self._inflight.t.min()))
        if len(self._retries):
            began = self._retries.t0[self._retries.syn > 0]
            if len(began):
                through = min(through, float(began.min()))
        return through

    def finish(self) -> None:
        """Record everything still in flight (as if it completed) and flush the records."""
        self.flush()
        if self._inflight is not None:
            self.buffer.add(self._inflight)
            self._inflight = None
        # Attempts still retransmitting their SYN: as if no later SYN got an answer.
        waiting = self._retries.take(self._retries.syn > 0)
        if len(waiting):
            nodes = self._client_node[waiting.client]
            kernels = [self.ctx.kernels[self.nodes[int(n)]] for n in nodes]
            self._unanswered(waiting, waiting.t0 + self.icmp.give_up_s(waiting, kernels))
        self._retries = Attempts.empty()
        self.buffer.flush()

    def _unanswered(self, attempts: Attempts, end: npt.NDArray[np.float64]) -> None:
        """Record retransmitting ``attempts`` as ``timeout`` / ``icmp-rate-limited`` at ``end``.

        For those whose client went away, or that were still waiting when the run ended.
        """
        if not len(attempts):
            return
        results = Results.blank(len(attempts))
        results.outcome[:] = TIMEOUT
        results.cause[:] = ICMP_RATE_LIMITED
        nodes = self._client_node[attempts.client]
        rows = Rows.of(attempts, results, nodes, self._dial_code[attempts.w])
        rows.t = attempts.t0
        rows.latency = end - attempts.t0
        rows.end = end
        self.buffer.add(rows)

    def _new_ids(self, n: int) -> np.ndarray[Any, np.dtype[np.int64]]:
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        return ids

    def _arrivals_in(self, t0: float, t1: float) -> Attempts:
        """Every workload's new attempts in ``[t0, t1)``, workload by workload (ids in order).

        Each arrival's uniform picks one of the workload's current clients; a workload with no
        client (or no address to dial) loses its arrivals.
        """
        times, uniforms, ws, clients = [], [], [], []
        for w, stream in enumerate(self._arrivals):
            t, u = stream.take(t0, t1)  # taken even if unused: streams never go back
            of_w = self._clients_of[w]
            if len(t) and len(of_w) and self.dials[w] is not None:
                times.append(t)
                uniforms.append(u)
                ws.append(w)
                clients.append(of_w)
        if not times:
            return Attempts.empty()
        counts = np.array([len(t) for t in times])
        sizes = np.array([len(c) for c in clients])
        per_row = np.repeat(sizes, counts)
        pick = np.minimum((np.concatenate(uniforms) * per_row).astype(np.int64), per_row - 1)
        first = np.repeat(np.cumsum(sizes) - sizes, counts)  # each workload's clients' start
        n = int(counts.sum())
        return Attempts.first(
            self._new_ids(n),
            np.concatenate(times),
            np.repeat(np.array(ws, dtype=np.int32), counts),
            np.concatenate(clients)[first + pick],
            np.zeros(n, np.int16),
        )

    def _run(self, pending: Attempts, t1: float) -> None:
        while len(pending):
            cut = min(t1, float(pending.t[0]) + self.chunk_s)
            # At most the cap per chunk (retries can pile up beyond a window's arrivals); a
            # shorter chunk keeps the invariant that its retries start after it.
            k = min(int(np.searchsorted(pending.t, cut, side="left")), self.chunk_max_attempts)
            if k == len(pending):
                chunk, pending = pending, Attempts.empty()
            else:
                chunk, pending = pending.take(slice(0, k)), pending.take(slice(k, None))
            # A retry whose client has gone is abandoned.
            alive = self._alive_mask[chunk.client]
            if not alive.all():
                # A retransmit whose client has gone ends its attempt unanswered.
                gone = chunk.take(~alive)
                self._unanswered(gone.take(gone.syn > 0), gone.t)
                chunk = chunk.take(alive)
                if not len(chunk):
                    continue
            nodes = self._client_node[chunk.client]
            seeds = self._assign_seeds(nodes)
            results = self._resolve(chunk, nodes, seeds)
            rows, syns = self._rows_after_icmp(chunk, nodes, results)
            if len(syns):  # SYN retransmits: at least 1 s on, so after this chunk
                due = syns.t < t1
                pending = Attempts.concat([pending, syns.take(due)]).sorted()
                self._retries = Attempts.concat([self._retries, syns.take(~due)])
            retries = self._settle(rows, t1)
            if len(retries):
                due = retries.t < t1
                pending = Attempts.concat([pending, retries.take(due)]).sorted()
                self._retries = Attempts.concat([self._retries, retries.take(~due)])

    def _rows_after_icmp(
        self, chunk: Attempts, nodes: npt.NDArray[np.int32], results: Results
    ) -> tuple[Rows, Attempts]:
        """The chunk's rows once the nodes' ICMP limits had their say, and the SYNs resent.

        REJECTed attempts whose error was suppressed are either final (``icmp-rate-limited``)
        or not yet: their client retransmits (:mod:`svcsim.traffic.icmp`), and they leave the
        rows. A retransmit's row is the attempt's: from its first SYN, with the time since in
        its latency (a client that got no answer gave up at its connect timeout from then).
        """
        again = self.icmp.settle(chunk, nodes, results) if results.icmp.any() else None
        rows = Rows.of(chunk, results, nodes, self._dial_code[chunk.w])
        if chunk.syn.any():
            waited = rows.latency + (chunk.t - chunk.t0)
            limit = np.where(rows.served, np.inf, self._connect_wait[chunk.w])
            rows.t = chunk.t0
            rows.latency = np.minimum(waited, limit)
            rows.end = rows.t + rows.latency
        if again is None or not again.any():
            return rows, Attempts.empty()
        resent = chunk.take(again)
        kernels = [self.ctx.kernels[self.nodes[int(n)]] for n in nodes[again]]
        syns = self.icmp.retransmits(resent, kernels, self._new_ids(len(resent)))
        return rows.take(~again), syns

    def _assign_seeds(
        self, nodes: np.ndarray[Any, np.dtype[np.int32]]
    ) -> np.ndarray[Any, np.dtype[np.uint64]]:
        # Each node's attempts, in their (chronological) order, take its next seeds.
        return self._seeds.take(nodes)

    def _resolve(
        self,
        chunk: Attempts,
        nodes: np.ndarray[Any, np.dtype[np.int32]],
        seeds: np.ndarray[Any, np.dtype[np.uint64]],
    ) -> Results:
        """Resolve one chronological chunk of attempts (engine-specific)."""
        results = Results.blank(len(chunk))
        self._resolve_per_flow(chunk, seeds, np.arange(len(chunk)), results)
        return results

    def _resolve_per_flow(
        self,
        chunk: Attempts,
        seeds: np.ndarray[Any, np.dtype[np.uint64]],
        index: np.ndarray[Any, np.dtype[np.intp]],
        results: Results,
    ) -> None:
        """Resolve the attempts at ``index`` one at a time, in order, into ``results``."""
        code = self.vocab.code
        for i in index.tolist():
            w, cid = int(chunk.w[i]), int(chunk.client[i])
            dial = self.dials[w]
            assert dial is not None
            r = self.flows.resolve(
                w, cid, self.clients[cid], dial, int(seeds[i]), float(chunk.t[i])
            )
            results.latency[i] = r.latency
            results.outcome[i] = OUTCOME_CODE[r.outcome]
            results.cause[i] = CAUSE_CODE[r.cause]
            results.endpoint[i] = code(r.endpoint)
            results.pod[i] = code(r.pod)
            results.new_flow[i] = r.new_flow
            results.conn_id[i] = r.conn_id
            results.served[i] = r.served
            results.handle[i] = r.handle
            results.icmp[i] = r.icmp

    # --- outcomes, retries and in-flight requests ----------------------------------------------

    def _settle(self, rows: Rows, t1: float) -> Attempts:
        """Record final rows, keep in-flight ones; the retries the final failures cause."""
        flying = rows.served & (rows.end > t1)
        if not flying.any():
            self.buffer.add(rows)
            return self._retries_for(rows)
        moving = rows.take(flying)
        self._inflight = moving if self._inflight is None else Rows.concat([self._inflight, moving])
        final = ~flying  # selected lazily, without copying the rows
        self.buffer.add(rows, final)
        return self._retries_for(rows, final)

    def _retries_for(self, rows: Rows, among: npt.NDArray[np.bool_] | None = None) -> Attempts:
        """Retries of the failed rows (of those ``among`` marks, if given)."""
        failed = (rows.outcome != OK) & (rows.outcome != MISROUTED)
        again = failed & (rows.attempt < self._max_retries[rows.w])
        if among is not None:
            again &= among
        if not again.any():
            return Attempts.empty()
        r = rows.take(again)
        t = r.end + self._backoff[r.w] * np.exp2(r.attempt.astype(np.float64))
        return Attempts.first(
            self._new_ids(len(r)), t, r.w, r.client, (r.attempt + 1).astype(np.int16)
        )

    def _complete_inflight(self, t: float) -> None:
        if self._inflight is None:
            return
        done = self._inflight.end <= t
        if done.all():  # the usual case: requests last far less than a chunk
            finished, self._inflight = self._inflight, None
        elif done.any():
            finished = self._inflight.take(done)
            self._inflight = self._inflight.take(~done)
        else:
            return
        self.buffer.add(finished)
        self._retries = Attempts.concat([self._retries, self._retries_for(finished)])

    def _on_backend(self, backend: Backend, old: BackendState, now_s: float) -> None:
        """PodNetwork listener: a crash or exit resets what the Backend was serving."""
        self.flush()  # what is pending met the state before this change
        self._backend_changes += 1
        reset_conns: set[int] = set()
        if backend.state in _KILLING and self._inflight is not None and len(self._inflight):
            hit = (self._inflight.pod == self.vocab.code(backend.pod)) & (
                self._inflight.end > now_s
            )
            if hit.any():
                killed = self._inflight.take(hit)
                self._inflight = self._inflight.take(~hit)
                if backend.state is BackendState.UNREACHABLE:
                    self._lose(killed)
                else:
                    reset_conns = self._kill(killed, now_s)
        self.flows.backend_changed(backend, now_s, reset_conns)

    def _on_proxy_exit(self, node: str, now_s: float) -> None:
        """A userspace kube-proxy exited: what ran through it is reset (module docstring)."""
        self.flush()  # what is pending met the process alive
        if not self.ctx.machine_up(node):
            return  # the node failed: its clients died with it
        reset_conns: set[int] = set()
        if self._inflight is not None and len(self._inflight):
            rows = self._inflight
            hit = (
                (rows.node == self.node_index[node])
                & rows.served
                & self._proxied_w[rows.w]
                & (rows.end > now_s)
            )
            if hit.any():
                killed = rows.take(hit)
                self._inflight = rows.take(~hit)
                reset_conns = self._kill(killed, now_s, PROXY_EXITED)
        self.flows.proxy_exited(node, now_s, reset_conns)

    def _lose(self, rows: Rows) -> None:
        """In-flight requests whose Pod's node failed: no answer, no RST; clients time out."""
        rows.outcome[:] = TIMEOUT
        rows.cause[:] = NODE_DOWN
        rows.latency[:] = self._request_timeout[rows.w]
        rows.end[:] = rows.t + rows.latency
        rows.served[:] = False
        self.buffer.add(rows)
        self._retries = Attempts.concat([self._retries, self._retries_for(rows)])

    def _kill(self, rows: Rows, now_s: float, cause: int = BACKEND_EXITED) -> set[int]:
        udp = self._udp[rows.w]
        rows.outcome[:] = np.where(udp, TIMEOUT, RESET)
        rows.cause[:] = cause
        rows.latency[:] = np.where(udp, self._request_timeout[rows.w], now_s - rows.t)
        rows.end[:] = np.where(udp, rows.t + rows.latency, now_s)
        rows.served[:] = False
        conns: set[int] = set()
        for i in np.flatnonzero(~udp).tolist():
            handle = rows.handle[i]
            if isinstance(handle, Connection):
                conns.add(handle.conn_id)
            elif handle is not None:
                self.flows.reset_anonymous(self.nodes[int(rows.node[i])], handle, now_s)
            elif not np.isnan(rows.expiry[i]):
                self.flows.reset_anonymous(
                    self.nodes[int(rows.node[i])], float(rows.expiry[i]), now_s
                )
        self.buffer.add(rows)
        self._retries = Attempts.concat([self._retries, self._retries_for(rows)])
        return conns
