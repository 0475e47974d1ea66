"""Why one request of a run went as it did: the troubleshooting path, step by step.

The source article's path for "ServiceIP:Port cannot be reached from a Pod", walked with the
simulated state at the request's instant (:mod:`svcsim.instant` re-simulates the control plane
to it) and the run's records:

1. the request as recorded (client, node, Service, endpoint, outcome, cause);
2. does the Service exist, with which cluster IP and ports;
3. which endpoints the API holds for it, and which are ready;
4. what the client node's kube-proxy last synced, and when (and whether it was running);
5. where that node's rules send such a connection (every destination they can pick), and
   whether this request followed an existing conntrack entry instead (a request whose DNS
   lookup failed: where its queries to kube-dns went; a headless Service: no rules at all);
6. what the destination Pod was doing;

and it ends with the cause in one sentence. Each step is data (:class:`Step`); the CLI prints
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.instant import run_at
from svcsim.netfilter.icmp_limit import XRLIM_BURST_FACTOR
from svcsim.netfilter.index import DispatchTooLargeError
from svcsim.results import Run, load
from svcsim.results.records import REQUEST_NUMBER
from svcsim.results.schema import RecordLevel
from svcsim.scenario.refs import matching_service_ports
from svcsim.scenario.world import World


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the path: a question and what the run says."""

    title: str
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Explanation:
    """The steps for one request and the one-sentence cause."""

    request: int
    steps: tuple[Step, ...]
    cause: str
    notes: tuple[str, ...] = field(default_factory=tuple)


class ExplainError(ValueError):
    """No such request, or nothing to explain; the message is one line."""


def pick_request(run: Run, *, request: int | None, first_failure: bool, service: str | None) -> int:
    """The row of ``requests`` to explain: given, or the first failure (of ``service``).

    ``request`` numbers every attempt of the run in record order (the rows of
    ``requests.parquet`` at record level ``every-request``). A run at
    ``failures-and-aggregates`` kept only its failed attempts, with that number in the
    ``request`` column: any other attempt cannot be explained, and the error says so.
    """
    r = run.requests
    if request is not None:
        total = int(run.summary.get("requests", {}).get("total", len(r)))
        if not 0 <= request < total:
            raise ExplainError(f"--request {request}: the run has requests 0..{total - 1}")
        if run.manifest.get("records") != RecordLevel.FAILURES_AND_AGGREGATES.value:
            return request
        numbers = r[REQUEST_NUMBER].to_numpy() if REQUEST_NUMBER in r.columns else []
        found = np.flatnonzero(np.asarray(numbers) == request)
        if not len(found):
            raise ExplainError(
                f"--request {request}: not kept; this run's record level "
                f"{RecordLevel.FAILURES_AND_AGGREGATES.value} keeps only failed attempts (it "
                f"did not fail): run the scenario with records: every-request to explain it"
            )
        return int(found[0])
    failed = r["outcome"].astype(str) != "ok"
    if service is not None:
        names = r["service"].astype(str)
        try:
            ports = matching_service_ports(service, names.unique())
        except ValueError as exc:
            raise ExplainError(f"--service {service}: {exc}") from None
        mask = names.isin(ports)
        if not mask.any():
            raise ExplainError(f"--service {service}: no request of the run went to it")
        failed &= mask
    if not failed.any():
        what = f" to {service}" if service else ""
        raise ExplainError(f"no request{what} failed in this run: nothing to explain")
    return int(failed.to_numpy().argmax())


def explain(run_dir: Path, row: int) -> Explanation:
    """The troubleshooting path for request ``row`` of the run in ``run_dir``."""
    run = load(run_dir)
    req = run.requests.iloc[row]
    t = float(req["t_s"])
    state = run_at(run_dir, t)
    world = state.world
    node = str(req["src_node"])
    service_port = str(req["service"])
    service_key = service_port.rpartition(":")[0] if "/" in service_port else service_port
    endpoint, outcome, cause = str(req["endpoint"]), str(req["outcome"]), str(req["cause"])
    steps: list[Step] = []
    steps.append(
        Step(
            "The request",
            (
                f"#{_number(req, row)}: {req['workload']} from {req['client']} on {node} "
                f"to {service_port} at {t:.3f} s",
                f"outcome {outcome}"
                + (f" (cause {cause})" if cause else "")
                + f" after {float(req['latency_s']):.3f} s"
                + (f", answered by {endpoint}" if endpoint and outcome == "ok" else "")
                + (f", sent to {endpoint}" if endpoint and outcome != "ok" else ""),
            ),
        )
    )
    svc = world.api.get("Service", service_key)
    if svc is None:
        steps.append(Step("Does the Service exist?", (f"no: {service_key} did not exist then",)))
    else:
        ports = ", ".join(f"{p.name or p.port} {p.port}/{p.protocol.value}" for p in svc.ports)
        steps.append(
            Step(
                "Does the Service exist?",
                (f"yes: {service_key}, cluster IP {svc.cluster_ip}, ports {ports}",),
            )
        )
    steps.append(Step("Does it have ready endpoints?", _endpoints(world, service_key)))
    steps.append(Step(f"What did {node}'s kube-proxy last program?", _proxy(run, world, node, t)))
    steps.append(Step(f"Where do {node}'s rules send it?", _rules(world, node, req, run)))
    steps.append(Step("What was the destination doing?", _destination(run, world, endpoint, t)))
    if cause == "icmp-rate-limited":
        cause_text = _icmp_cause(run, world, req, node)
    else:
        cause_text = _cause(run, req, node, t)
    retries = _dns_retries(run, req)
    if retries:
        steps.append(Step("Did the DNS lookup wait for a lost query?", retries))
        if not cause:
            cause_text = (
                f"nothing went wrong at the destination, but the DNS lookup was delayed: "
                f"{retries[0]}"
            )
    return Explanation(_number(req, row), tuple(steps), cause_text)


def _dns_retries(run: Run, req: pd.Series) -> tuple[str, ...]:
    """The ``dns-retry`` events of the request's lookup (the conntrack insert race), as text.

    A retry belongs to the request when it names the request's client Pod and happened
    while the request was in flight.
    """
    ev = run.events
    t, end = float(req["t_s"]), float(req["end_s"])
    mine = ev[
        (ev["kind"].astype(str) == "dns-retry")
        & (ev["object"].astype(str) == f"pod/{req['client']}")
        & (ev["t_s"] >= t)
        & (ev["t_s"] <= end + 1e-9)
    ]
    lines = []
    for _, e in mine.iterrows():
        detail = str(e["detail"])
        lost = detail.partition(" name=")[2].partition(" ")[2] or detail
        lines.append(f"{lost} (at {float(e['t_s']):.3f} s)")
    return tuple(lines)


def _number(req: pd.Series, row: int) -> int:
    """The request's number among all attempts (its row unless only failures were kept)."""
    return int(req[REQUEST_NUMBER]) if REQUEST_NUMBER in req.index else row


def _endpoints(world: World, service_key: str) -> tuple[str, ...]:
    namespace, _, name = service_key.partition("/")
    lines: list[str] = []
    for sl in world.api.list("EndpointSlice"):
        if sl.meta.namespace != namespace or sl.service_name != name:
            continue
        for ep in sl.endpoints:
            if ep.is_ready:
                state = "ready"
            elif ep.is_serving:
                state = "serving, terminating"
            else:
                state = "not ready, terminating" if ep.conditions.terminating else "not ready"
            lines.append(f"{', '.join(ep.addresses)} ({ep.target_ref or 'no Pod'}): {state}")
    return tuple(lines) or ("none: the API holds no endpoint for it",)


def _proxy(run: Run, world: World, node: str, t: float) -> tuple[str, ...]:
    proxy = world.proxies[node]
    lines = [f"kube-proxy is {'running' if proxy.up else 'not running'}"
             + ("" if proxy.api_reachable else ", cut off from the API server")]  # fmt: skip
    syncs = run.syncs[(run.syncs["node"].astype(str) == node) & (run.syncs["end_s"] <= t)]
    ok = syncs[syncs["ok"].astype(bool)]
    if len(ok):
        last = ok.iloc[-1]
        kind = "full" if bool(last["full"]) else "partial"
        lines.append(
            f"its last successful sync ({kind}) ran {float(last['start_s']):.3f} -> "
            f"{float(last['end_s']):.3f} s, from the API state of "
            f"{float(last['applied_through_s']):.3f} s"
        )
    else:
        lines.append("no successful sync before this instant: the rules are the start's")
    failed = syncs[~syncs["ok"].astype(bool)]
    if len(failed) and (not len(ok) or float(failed["end_s"].max()) > float(ok["end_s"].max())):
        lines.append(
            f"its syncs were failing (last failure ended {float(failed['end_s'].max()):.3f} s)"
        )
    later = run.syncs[(run.syncs["node"].astype(str) == node) & (run.syncs["end_s"] > t)
                      & run.syncs["ok"].astype(bool)]  # fmt: skip
    if len(later):
        lines.append(f"its next successful sync ended at {float(later['end_s'].min()):.3f} s")
    return tuple(lines)


def _opened(run: Run, req: pd.Series) -> list[str]:
    """The request that opened the connection (conntrack entry) ``req`` followed, if recorded."""
    conn = int(req["conn_id"])
    if conn < 0:
        return []
    r = run.requests
    same = r[(r["conn_id"] == conn) & r["new_flow"].astype(bool)]
    if not len(same):
        return []
    first = same.iloc[0]
    when = float(first["t_s"])
    to = first["endpoint"] or "nowhere"
    return [
        f"the entry was made by the connection's first request at {when:.3f} s "
        f"(connection {conn}), when the rules sent it to {to}"
    ]


def _rules(world: World, node: str, req: pd.Series, run: Run) -> tuple[str, ...]:
    lines: list[str] = []
    cause = str(req["cause"])
    service_port = str(req["service"])
    dns = world.coredns
    if cause.startswith("dns-") and cause != "dns-stale" and dns is not None:
        # The lookup failed: no connection was made; its queries met kube-dns's rules.
        service_port = dns.config.service_port
        lines.append("the request never connected: its DNS lookup failed (docs/dns.md); its "
                     f"queries went to {service_port}")  # fmt: skip
    elif (_dial(world, service_port) or ("",))[0] == "None":
        return (
            "none: a headless Service has no rules; the client dialled the Pod IP of its DNS "
            f"answer directly (no DNAT): {req['endpoint'] or 'no address'}",
        )
    elif not bool(req["new_flow"]):
        lines.append("this request used an existing connection / conntrack entry: no rule was "
                     "consulted for it")  # fmt: skip
        lines.extend(_opened(run, req))
    kernel = world.kernels[node]
    lines.append(f"the rules installed at {kernel.installed_at_s:.3f} s hold, for this Service:")
    dial = _dial(world, service_port)
    client = str(req["client"])
    src = next((p.pod_ip for p in world.api.list("Pod") if p.meta.key == client), None)
    if dial is None or src is None:
        lines.append("(the client or the Service's address is gone at this instant)")
        return tuple(lines)
    ip, port, protocol = dial
    if kernel.ipvs is not None and kernel.ipvs_table is not None:
        # IPVS mode: the virtual server and what its scheduler picks from (live weights).
        vs = kernel.ipvs.lookup(protocol, ip, port)
        if vs is None:
            lines.append(f"  no IPVS virtual server for {ip}:{port}/{protocol}")
            return tuple(lines)
        persistent = f", persistent {vs.persistent_timeout_s} s" if vs.persistent_timeout_s else ""
        lines.append(f"  IPVS virtual server {vs.hostport} ({vs.scheduler}{persistent}):")
        servers = kernel.ipvs_table.real_servers(vs.key)
        # (explain re-simulates the control plane only: the connection counts are not known)
        lines.extend(f"    -> {d.address}:{d.port} weight {d.weight}" for d in servers)
        if not any(d.weight > 0 for d in servers):
            lines.append("    no real server of weight > 0: ICMP port unreachable (refused)")
        return tuple(lines)
    try:
        if kernel.nft is None:
            dispatch = kernel.index.lookup(src, "pod", ip, protocol, port)
            chances = dispatch.outcome_probabilities(assume_empty_recent=True)
            for o, p in zip(dispatch.outcomes, chances, strict=True):
                lines.append(f"  {o.describe()}  (p = {float(p):.4f})")
        else:
            from svcsim.netfilter.nft_index import build_nft_dispatch
            from svcsim.netfilter.packet import Packet

            packet = Packet(src, ip, protocol, port, origin="pod")
            nft = build_nft_dispatch(
                kernel.nft.parsed, packet, kernel.network, max_paths=kernel.max_paths
            )
            lines.extend(f"  {o.describe()}" for o in nft.outcomes)
    except DispatchTooLargeError:
        lines.append(f"  (more than {kernel.max_paths:,} ways through the rules: not listed)")
    return tuple(lines)


def _dial(world: World, service_port: str) -> tuple[str, int, str] | None:
    key, _, port_name = service_port.rpartition(":")
    svc = world.api.get("Service", key)
    if svc is None:
        return None
    for p in svc.ports:
        if p.name == port_name or str(p.port) == port_name or not port_name:
            return svc.cluster_ip, p.port, p.protocol.value.lower()
    return None


def _destination(run: Run, world: World, endpoint: str, t: float) -> tuple[str, ...]:
    if not endpoint:
        return ("no endpoint was chosen",)
    ip = endpoint.rpartition(":")[0]
    owner = world.network.lookup(ip)
    if owner is None:
        lines = [f"nothing held {ip} at that instant (no Pod: packets to it go unanswered)"]
    else:
        lines = [f"{ip} was Pod {owner.pod} on {owner.node}: {owner.state.value} since "
                 f"{owner.since_s:.3f} s"]  # fmt: skip
    ev = run.events
    mine = ev[ev["detail"].astype(str).str.contains(f"ip={ip}", regex=False)]
    pods = set(mine["object"].astype(str))
    history = ev[ev["object"].astype(str).isin(pods) & (ev["t_s"] <= t + 60)]
    for _, e in history.iterrows():
        lines.append(f"  {float(e['t_s']):8.3f} s  {e['kind']}  {e['object']}")
    return tuple(lines)


def _icmp_cause(run: Run, world: World, req: pd.Series, node: str) -> str:
    """Why a REJECTed request timed out: the errors the node had just sent that client.

    The ICMP errors that reached the client are its ``refused`` / ``no-endpoints`` records
    from ``node``, each sent at its ``end_s``; the per-destination bucket holds at most
    ``XRLIM_BURST_FACTOR`` x ``icmp_ratelimit`` of tokens (docs/icmp.md).
    """
    client = str(req["client"])
    ip = next((p.pod_ip for p in world.api.list("Pod") if p.meta.key == client), None)
    if ip is None and client.startswith(("host@", "external@")):
        ip = "the node's own address" if client.startswith("host@") else "the external client"
    limit = world.kernels[node].icmp.sysctls
    window_s = XRLIM_BURST_FACTOR * limit.ratelimit_ms / 1000
    r = run.requests
    gave_up = float(req["end_s"])
    sent = r[(r["src_node"].astype(str) == node) & (r["client"].astype(str) == client)
             & (r["outcome"].astype(str) == "refused") & (r["cause"].astype(str) == "no-endpoints")
             & (r["end_s"] <= gave_up) & (r["end_s"] > gave_up - window_s)]  # fmt: skip
    dial = _dial(world, str(req["service"]))
    waited = (
        "got no answer and waited its request timeout"
        if dial is not None and dial[2] == "udp"
        else "retransmitted its SYN until its connect timeout"
    )
    return (
        f"REJECT by {node}'s rules (the Service had no endpoint there); the ICMP "
        f"port-unreachable to {ip or client} was rate-limited ({len(sent)} sent to it in the "
        f"{window_s:g} s before the client gave up; the kernel allows a burst of "
        f"{XRLIM_BURST_FACTOR}, then one per {limit.ratelimit_ms} ms, and "
        f"{limit.msgs_per_sec}/s host-wide): the client {waited} and timed out at {gave_up:.3f} s"
    )


def _cause(run: Run, req: pd.Series, node: str, t: float) -> str:
    cause, endpoint = str(req["cause"]), str(req["endpoint"])
    if not cause:
        return f"nothing went wrong: {endpoint or 'the destination'} answered"
    ip = endpoint.rpartition(":")[0]
    ev = run.events
    syncs = run.syncs[(run.syncs["node"].astype(str) == node) & run.syncs["ok"].astype(bool)
                      & (run.syncs["end_s"] > t)]  # fmt: skip
    next_sync = f"{float(syncs['end_s'].min()):.2f} s" if len(syncs) else "the end of the run"
    pods = set(ev[ev["detail"].astype(str).str.contains(f"ip={ip}", regex=False)]["object"])
    gone = ev[ev["object"].isin(pods) & ev["kind"].isin(["pod-terminating", "pod-exited"])]
    deleted = f"{float(gone['t_s'].min()):.2f} s" if len(gone) else "before"
    stale_like = {
        "stale-rule": f"{node}'s kube-proxy had not synced yet",
        "proxy-down": f"{node}'s kube-proxy was not running",
        "sync-blocked": f"{node}'s kube-proxy syncs were failing",
        "node-partitioned": f"{node} could not reach the API server",
    }
    if cause in stale_like:
        faults = ev[(ev["kind"] == "fault") & ev["detail"].astype(str).str.contains(endpoint)]
        if not len(gone) and len(faults):
            hand = faults.iloc[0]
            return (f"{node} DNATs to {endpoint} by a rule kube-proxy did not write "
                    f"({hand['detail']} at {float(hand['t_s']):.2f} s), which no Pod holds; "
                    f"{node}'s next kube-proxy sync ended at {next_sync}")  # fmt: skip
        if not len(gone):
            return (f"{node} DNATs to {ip}, which no Pod holds ({stale_like[cause]}); "
                    f"{node}'s kube-proxy synced next at {next_sync}")  # fmt: skip
        return (f"{node} still DNATs to {ip}, deleted at {deleted} ({stale_like[cause]}); "
                f"{node}'s kube-proxy applied the change at {next_sync}")  # fmt: skip
    sentences = {
        "pod-terminating": f"{endpoint} belonged to a Pod that was terminating (since {deleted})",
        "pod-not-ready": f"{endpoint} belonged to a Pod whose app was not listening yet",
        "pod-crashed": f"{endpoint} belonged to a Pod whose container had crashed",
        "no-endpoints": f"{node}'s rules held no endpoint for the Service (REJECT or DROP)",
        "node-down": f"{endpoint}'s node had failed: nothing answered",
        "stale-conntrack": f"an existing conntrack entry still sent the flow to {endpoint}",
        "conntrack-full": f"{node}'s conntrack table was full: the new flow was dropped",
        "ip-reused": f"{ip} belonged to another Pod by then",
        "no-service-rule": f"{node} had no rule for the Service's address at all",
        "endpoint-down": f"the hand-made endpoint {endpoint} was down",
        "dns-timeout": "the client's DNS lookup got no answer from kube-dns (timeout x attempts)",
        "dns-refused": "every try of the client's DNS lookup was refused (kube-dns unreachable)",
        "dns-nxdomain": "every name the client's resolver tried was NXDOMAIN (no such Service)",
        "dns-stale": f"{endpoint} came from a DNS answer, but no Pod held it any more",
    }
    return sentences.get(cause, f"cause {cause} (docs/results.md defines it)")
