"""Cells of notebooks/08-dns-and-nodes.ipynb (see notebooks/build_notebooks.py)."""

# One cell per entry, as the notebook shows it: not for the formatter to rearrange.
# fmt: off
CELLS = [
    ("md", r'''
    # 08 · DNS, ICMP limits, and nodes that fail, lose the API server, or sit behind a load balancer

    Most Service outages do not start in kube-proxy alone. Clients find Services through
    CoreDNS, which is a Deployment behind a Service like any other; the kernel rate-limits the
    ICMP errors that make a REJECT an instant "connection refused"; a node loses power or the
    API server while it keeps forwarding; a cloud load balancer keeps sending to a node whose
    Pods are gone; topology hints keep a zone's traffic at home whether the zone can take it or
    not. Each is timed by a component *around* kube-proxy, with its own timers, and this
    notebook replays one scenario for each and derives what happens from those timers:

    * `scenarios/dns-coredns-rollout.yaml`: CoreDNS rolled out while node-2's kube-proxy is down.
    * `scenarios/dns-5s-delay.yaml`: the A/AAAA conntrack insert race, and its fixes.
    * `scenarios/icmp-rate-limit.yaml`: REJECTs of a Service scaled to zero, rate-limited.
    * `scenarios/node-failure.yaml`: node-2 stops at 23 s and boots again at 150 s.
    * `scenarios/node-partition.yaml`: node-3 loses the API server for 90 s during a rollout.
    * `scenarios/lb-drain-local.yaml` and `lb-drain-local-prestop.yaml`: draining a node behind
      an `externalTrafficPolicy: Local` load balancer, without and with a preStop sleep.
    * `scenarios/topology-hints.yaml`: `trafficDistribution: PreferClose` against
      `service.kubernetes.io/topology-mode: Auto`.

    Run folders go to a temporary directory that the last cell removes; seeds come from the
    scenario files.
    '''),
    ("code", r'''
    %matplotlib inline
    import math
    import tempfile
    from pathlib import Path

    import pandas as pd

    from svcsim import plots
    from svcsim.runs import run_scenario
    from svcsim.scenario.load import load_scenario
    from svcsim.scenario.overrides import parse_setting, single_overrides

    ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "scenarios").is_dir())
    SCENARIOS = ROOT / "scenarios"
    workdir = tempfile.TemporaryDirectory(prefix="svcsim-notebook-08-")
    pd.set_option("display.width", 160)

    def run(name, *sets):
        """Run scenarios/<name>.yaml (with `--set` overrides) in the temporary directory.

        Returns (scenario, run)."""
        overrides = single_overrides([parse_setting(s) for s in sets])
        loaded = load_scenario(SCENARIOS / f"{name}.yaml", overrides=overrides)
        folder = Path(workdir.name) / "-".join([name, *(s.split("=")[0] for s in sets)])
        outcome = run_scenario(loaded, seed=loaded.scenario.seed, out_dir=folder)
        print(f"{name} {' '.join(sets)}: {outcome.simulated_requests:,} requests, "
              f"seed {loaded.scenario.seed}")
        return loaded.scenario, outcome.run

    def events(r, *kinds):
        """The run's control-plane events of these kinds, in time order."""
        e = r.events[r.events["kind"].isin(kinds)]
        return e[["t_s", "kind", "node", "object", "detail"]].reset_index(drop=True)

    def windows_table(r):
        """The failure windows, rounded to milliseconds."""
        return r.windows[["service", "node", "start_s", "end_s", "failed", "causes"]].round(3)
    '''),
    ("md", r'''
    ## 1. CoreDNS rolled out while a node's kube-proxy is down

    Every request of `dns-coredns-rollout` first resolves `web` as glibc does in a Pod
    (`ndots:5`: `web.default.svc.cluster.local` is asked first), over UDP through the client
    node's rules and conntrack to a CoreDNS Pod, then connects to the ClusterIP it got. CoreDNS
    is rolled out at 20 s with every kube-proxy up, and again at 70 s while node-2's is down
    (60 s to 120 s).
    '''),
    ("code", r'''
    dr_scenario, dr = run("dns-coredns-rollout")
    display(windows_table(dr))
    failed = dr.requests[dr.requests["outcome"] != "ok"]
    by = ["src_node", "workload", "cause", "outcome"]
    failed.groupby(by, observed=True).size().rename("requests")
    '''),
    ("md", r'''
    The first rollout costs nothing: each old CoreDNS Pod answers for 5 s after SIGTERM
    (`lameduck`), long after every node dropped it. The second is different on node-2: its
    rules still send queries to the old Pods. Once they are gone, glibc waits `timeout` (5 s) per
    try, tries `attempts` (2) times on the same socket (the same conntrack entry, the same dead
    Pod), gives up on the search-list name, asks `web` as is (two tries more) and fails: the
    failed lookups' latency is 2 names × 2 tries × 5 s.
    '''),
    ("code", r'''
    timeouts = failed[failed["cause"] == "dns-timeout"]
    lat = timeouts["latency_s"]
    print(f"dns-timeout latency: median {lat.median():.3f} s, {(lat.round(3) == 20).mean():.0%} "
          f"exactly 20 s (2 names x 2 attempts x 5 s); the shorter ones started around 76 s, "
          f"where some tries were refused at once")
    print("failed requests by node:", failed.groupby("src_node", observed=True).size().to_dict())
    '''),
    ("code", r'''
    plots.outcome_timeline(dr)
    '''),
    ("md", r'''
    ## 2. The 5-second delay: A and AAAA lose the conntrack insert race

    glibc sends a lookup's A and AAAA queries together from one UDP socket. On a multi-CPU node
    the two packets can pass netfilter at once: each gets its own unconfirmed conntrack entry
    and its own DNAT draw between the CoreDNS Pods, and the second to be confirmed clashes with
    the first. Kernel 5.4 merges a clash of identical entries but drops the packet when the
    draws picked different Pods (fixed in 5.7). The client gets one answer, waits its 5 s
    timeout for the other, then sends both again one at a time. How often two packets are
    processed concurrently is not in any source: `cluster.dns.conntrackRace.probability` is an
    assumption (0.05 here); with two CoreDNS Pods half of the races pick different Pods.
    '''),
    ("code", r'''
    d5_scenario, d5 = run("dns-5s-delay")
    race = d5_scenario.cluster.dns.conntrack_race
    expected = race.probability * (1 - 1 / d5_scenario.cluster.dns.replicas)
    retries = d5.events[d5.events["kind"] == "dns-retry"]
    rows = []
    for workload, reqs in d5.requests.groupby("workload", observed=True):
        delayed = reqs[reqs["latency_s"] > 5]
        rows.append({"workload": workload, "requests": len(reqs), "delayed > 5 s": len(delayed),
                     "share %": round(100 * len(delayed) / len(reqs), 2),
                     "p50 ms": round(1000 * reqs["latency_s"].median(), 1),
                     "max s": round(reqs["latency_s"].max(), 3)})
    n = (d5.requests["workload"] == "glibc").sum()
    print(f"kernel {race.kernel_version}, race probability {race.probability}: expected "
          f"{n * expected:.1f} ± {(n * expected * (1 - expected)) ** 0.5:.1f} delayed of {n} "
          f"glibc requests ({100 * expected:.2f} %); dns-retry events: {len(retries)}")
    pd.DataFrame(rows)
    '''),
    ("code", r'''
    print(retries["detail"].iloc[0])
    '''),
    ("md", r'''
    This seed's 44 is 2.6 standard deviations above the expected count; seeds 1 to 6 give 24 to
    34. A delayed request is late by exactly the timeout plus the two answers in turn. The
    `single-request-reopen` client (its Pods set `dnsConfig.options`) never races. The other two
    fixes apply to the whole cluster, as `--set` overrides of the same scenario: NodeLocal
    DNSCache (Pods ask a cache on their own node over NOTRACK rules, so there is no conntrack
    entry to race; misses go to CoreDNS over TCP), and a kernel that resolves every clash.
    '''),
    ("code", r'''
    variants = {
        "kernel 5.4": d5,
        "NodeLocal DNSCache": run("dns-5s-delay", "cluster.dns.nodeLocalCache.enabled=true")[1],
        "kernel 6.8": run("dns-5s-delay", 'cluster.dns.conntrackRace.kernelVersion="6.8"')[1],
    }
    pd.DataFrame({name: r.requests.groupby("workload", observed=True)["latency_s"]
                  .apply(lambda s: int((s > 5).sum())) for name, r in variants.items()})
    '''),
    ("md", r'''
    ## 3. A REJECT is not always "connection refused"

    A Service with no endpoints is REJECTed by kube-proxy's rules: an ICMP port-unreachable
    that the node's kernel rate-limits per destination (`net.ipv4.icmp_ratelimit` 1000 ms with
    a burst of 6) and host-wide (`icmp_msgs_per_sec` 1000, `icmp_msgs_burst` 50). A suppressed
    error leaves the client's SYN unanswered: it retransmits (Linux 6.5+: after 1, 2, 3, 4 s,
    then doubling), each retransmit meeting the rules of its own instant. In `icmp-rate-limit`
    web is scaled to zero at 3 s and back to two Pods at 10 s, while a Pod sends 100 new
    connections a second (`connectTimeout: 5s`) and a host-network client on node-1 sends 20.
    '''),
    ("code", r'''
    ir_scenario, ir = run("icmp-rate-limit")
    req = ir.requests.assign(second=ir.requests["t_s"].astype(int))
    table = (req[req["workload"] == "frontend-to-web"]
             .groupby(["second", "outcome"], observed=True).size().unstack(fill_value=0))
    table.loc[2:13].T
    '''),
    ("code", r'''
    rejected = req[req["cause"] == "no-endpoints"]
    for workload, rows in rejected.groupby("workload", observed=True):
        first, last = rows["end_s"].min(), rows["end_s"].max()
        print(f"{workload}: {len(rows)} refused by the REJECT from {first:.2f} s to {last:.2f} s")
    pod = rejected[rejected["workload"] == "frontend-to-web"]["end_s"]
    print(f"the Pod's bucket: 6 at once + 1 per second over {pod.max() - pod.min():.2f} s "
          f"allows at most {6 + int(pod.max() - pod.min())}")
    '''),
    ("md", r'''
    The host-network client gets its error over loopback, where the per-destination bucket does
    not apply: every connection is refused at once. The Pod gets 6 errors, then about one a
    second; every other connection retransmits. Those started before ~8.4 s run out of
    retransmits before web is back in the rules (~12.4 s) and time out (`icmp-rate-limited`);
    later ones connect late, their latency a whole number of retransmit intervals plus the
    answer.
    '''),
    ("code", r'''
    late = req[(req["workload"] == "frontend-to-web") & (req["outcome"] == "ok")
               & (req["latency_s"] > 0.5)]
    late["latency_s"].round(0).value_counts().sort_index().rename("late ok, by seconds waited")
    '''),
    ("code", r'''
    plots.outcome_timeline(ir)
    '''),
    ("md", r'''
    ## 4. A node loses power

    Nothing tells the control plane that node-2 stopped. Its kubelet renewed the node's Lease
    every 10 s (`nodeLeaseDurationSeconds` 40 × 0.25); the node lifecycle controller checks every
    5 s (`nodeMonitorPeriod`) and marks a node NotReady at the first check where the Lease is
    older than `nodeMonitorGracePeriod` (50 s since Kubernetes 1.32). Only then are its Pods
    marked not ready, and only then do the other nodes' kube-proxies stop sending to them.
    '''),
    ("code", r'''
    nf_scenario, nf = run("node-failure")
    events(nf, "node-failed", "node-not-ready", "pods-evicted", "node-recovered", "node-ready")
    '''),
    ("code", r'''
    lc = nf_scenario.cluster.node_lifecycle
    failed = nf.events.loc[nf.events["kind"] == "node-failed", "t_s"].iloc[0]
    renew = lc.node_lease_duration_seconds * 0.25
    last_lease = math.floor(failed / renew) * renew
    not_ready = (math.floor((last_lease + lc.node_monitor_grace_period_s)
                            / lc.node_monitor_period_s) + 1) * lc.node_monitor_period_s
    print(f"node-2 failed at {failed:g} s; its last Lease renewal was at {last_lease:g} s")
    print(f"first check more than {lc.node_monitor_grace_period_s:g} s later: {not_ready:g} s")
    windows_table(nf)
    '''),
    ("md", r'''
    Every other node's window runs from the failure to just after the NotReady check (the
    EndpointSlice update and one sync later): about 52 s of timeouts (`node-down`: nothing
    answers, not even with a reset) for a Pod that died at 23 s. A shorter grace period shortens
    the window, and turns every network blip longer than it into NotReady nodes and evictions.
    '''),
    ("code", r'''
    plots.outcome_timeline(nf)
    '''),
    ("md", r'''
    ## 5. A node loses the API server during a rollout

    A partitioned node keeps running: its Pods serve, its kernel forwards with the rules it has.
    But its kube-proxy hears of nothing: while `web` is rolled out, node-3's client keeps
    sending to the old Pods as they go (`node-partitioned`), until the partition heals and
    kube-proxy relists. The rollout itself stalls: one of its new Pods was scheduled onto node-3
    before the control plane noticed the silence, and node-3's kubelet never heard of it.
    '''),
    ("code", r'''
    np_scenario, npart = run("node-partition")
    display(windows_table(npart))
    events(npart, "node-partitioned", "node-not-ready", "node-recovered", "node-ready")
    '''),
    ("code", r'''
    plots.outcome_timeline(npart)
    '''),
    ("md", r'''
    ## 6. Draining a node behind a cloud load balancer

    With `externalTrafficPolicy: Local`, a node only serves external traffic with its own Pods,
    and the cloud load balancer learns which nodes have some from kube-proxy's health check on
    the Service's `healthCheckNodePort` (200 with local ready endpoints, else 503). It probes
    every 8 s and needs 3 failures in a row (GCE's defaults): up to ~25 s during which it still
    sends to a drained node.
    '''),
    ("code", r'''
    lb_scenario, lb = run("lb-drain-local")
    display(windows_table(lb))
    events(lb, "node-drained", "lb-node-unhealthy", "lb-node-healthy")
    '''),
    ("code", r'''
    plots.outcome_timeline(lb)
    '''),
    ("md", r'''
    The fix is on the Pod: a preStop sleep longer than the load balancer's detection time keeps
    the terminating Pod serving (kube-proxy falls back to serving terminating endpoints when a
    node has no ready local one) until the load balancer has stopped sending.
    '''),
    ("code", r'''
    lbp_scenario, lbp = run("lb-drain-local-prestop")
    print(lbp.requests["outcome"].value_counts().to_dict())
    events(lbp, "node-drained", "lb-node-unhealthy")
    '''),
    ("md", r'''
    ## 7. Topology hints: PreferClose against topology-mode Auto

    Three zones, one node each, equal CPU. `web-close` asks for `trafficDistribution:
    PreferClose`: every endpoint is hinted to its own zone, with no overload protection.
    `web-auto` asks for `topology-mode: Auto`: the EndpointSlice controller shares endpoints out
    by the zones' CPU and removes all hints when a zone would get fewer than `desired / 1.2`.
    '''),
    ("code", r'''
    th_scenario, th = run("topology-hints")
    events(th, "topology-hints")
    '''),
    ("code", r'''
    served = th.requests[th.requests["endpoint"] != ""]
    shares = (served.groupby(["service", "endpoint"], observed=True).size()
              .groupby(level=0).transform(lambda s: (100 * s / s.sum()).round(1)))
    shares.rename("share %").to_frame()
    '''),
    ("md", r'''
    `web-close`'s single Pods in zone-b and zone-c each take a third of all requests while
    zone-a's two Pods take a sixth each. `web-auto`'s spread changes with its hints: uniform
    with 4 Pods (no hints), zone-local with 6, uniform again with 5.
    '''),
    ("code", r'''
    plots.endpoint_shares(th, "default/web-close:http")
    '''),
    ("code", r'''
    workdir.cleanup()
    '''),
]
