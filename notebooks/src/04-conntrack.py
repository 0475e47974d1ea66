"""Cells of notebooks/04-conntrack.ipynb (see notebooks/build_notebooks.py)."""

# One cell per entry, as the notebook shows it: not for the formatter to rearrange.
# fmt: off
CELLS = [
    ("md", r'''
    # 04 · Conntrack: when the kernel remembers a decision the rules have changed

    kube-proxy's `statistic` chain (notebook 01) picks an endpoint for the **first** packet of a
    flow only. The DNAT decision is stored in the node's conntrack table and every later packet
    of the flow follows the entry, not the rules. That is what makes a TCP connection stick to
    one Pod, and it has consequences when the rules change under a long-lived flow:

    1. **The UDP DNS black hole** (`scenarios/udp-dns-stale-conntrack.yaml`): a client that
       sends every query from one UDP socket is one long "flow" to the kernel. When the DNS
       Pod is replaced, that flow keeps going to the old Pod until its conntrack entry is
       deleted: by kube-proxy's clean-up, or, if kube-proxy is down, by a timeout that every
       query pushes further away. A client using a fresh source port per query never notices.
    2. **Keep-alive connections pinning load** (`scenarios/keepalive-imbalance.yaml`): Pods
       added by a scale-up get no requests from clients whose connections are already open.
    3. **A full table** (`scenarios/conntrack-full.yaml`): when the table is full, new flows
       are dropped.

    Run folders go to a temporary directory that the last cell removes; seeds come from the
    scenario files.
    '''),
    ("code", r'''
    %matplotlib inline
    import tempfile
    from pathlib import Path

    import pandas as pd
    from matplotlib.figure import Figure

    from svcsim import plots
    from svcsim.runs import run_scenario
    from svcsim.scenario.load import load_scenario

    ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "scenarios").is_dir())
    SCENARIOS = ROOT / "scenarios"
    workdir = tempfile.TemporaryDirectory(prefix="svcsim-notebook-04-")
    pd.set_option("display.width", 160)

    def run(path, label=None):
        """Run the scenario file into the temporary directory; return (scenario, run)."""
        loaded = load_scenario(path)
        label = label or loaded.scenario.metadata.name
        seed = loaded.scenario.seed if loaded.scenario.seed is not None else 1
        outcome = run_scenario(loaded, seed=seed, out_dir=Path(workdir.name) / label)
        print(f"{label}: {outcome.simulated_requests:,} requests "
              f"(simulated in {outcome.wall_s:.2f} s), seed {seed}")
        return loaded, outcome.run
    '''),
    ("md", r'''
    ## 1. The UDP DNS black hole

    One CoreDNS-like Pod behind `kube-dns` (UDP 53), which keeps answering for 5 s after
    SIGTERM (a "lameduck" period) and then exits. Two kinds of clients:

    * `legacy-client`, one Pod on node-2, sends 20 queries/s **from a single socket** (fixed
      source port). To conntrack that is one UDP flow; since it saw replies it is *assured*
      and lives `udpStreamTimeout` (120 s) after its **last packet**, answered or not.
    * `resolver`, one Pod per node, 90 queries/s in total, **a fresh source port per query**:
      every query is a new flow and consults the node's current rules.

    The timeline: the DNS Pod is deleted at 20 s (kube-proxy running everywhere), its
    replacement is deleted at 60 s, and node-2's kube-proxy crashes at 64 s, after its rules
    already point at the third Pod. `legacy-client` pauses from 120 s to 250 s.
    '''),
    ("code", r'''
    dns_scenario, dns = run(SCENARIOS / "udp-dns-stale-conntrack.yaml")
    print([f"{a.action} at {a.at_s:g} s" + (f" ({a.node})" if getattr(a, "node", None) else "")
           for a in dns_scenario.scenario.timeline])
    q = dns.requests
    phases = [0, 20, 25, 25.5, 60, 65, 120, 250, dns.manifest["duration_s"]]
    by_phase = (
        q.assign(phase=pd.cut(q["t_s"], phases))
        .groupby(["workload", "phase"], observed=True)["outcome"]
        .value_counts()
        .unstack(fill_value=0)
    )
    by_phase.loc[:, (by_phase != 0).any()]
    '''),
    ("md", r'''
    `resolver` never fails. `legacy-client` fails twice, very differently:

    * **25 s to about 25.3 s, a handful of queries.** The old Pod exits at 25 s; the
      client's conntrack entry still points at it, so its queries are refused (ICMP port
      unreachable). The EndpointSlice drops the Pod at 25.05 s, node-2's kube-proxy syncs and
      then runs its UDP conntrack clean-up, which deletes every `kube-dns` entry whose reply
      source is no longer a serving endpoint (kube-proxy's `conntrack` cleanup after each
      sync, pkg/proxy/conntrack). The next query is a new flow to the new Pod.
    * **65 s to 120 s, every single query.** Same start, but node-2's kube-proxy is down, so
      nothing deletes the entry, and every query (20 per second) refreshes its 120 s
      timeout. The client is black-holed for as long as it keeps asking. It stops at 120 s;
      its last query keeps the entry alive until about 240 s; when it resumes at 250 s the
      entry is gone and its first query is a new flow, through node-2's rules (unchanged since
      63 s, and already pointing at the current Pod), and succeeds.

    The clean-ups kube-proxy ran, per node (`deleted` counts the entries it removed):
    '''),
    ("code", r'''
    cleanups = dns.events[dns.events["kind"] == "conntrack-cleanup"]
    cleanups.loc[cleanups["detail"] != "deleted=0", ["t_s", "node", "detail"]].round(3)
    '''),
    ("md", r'''
    Only one clean-up ever found something to delete: node-2's, at 25.31 s, the entry of
    `legacy-client`. There is no clean-up on node-2 after 64 s: kube-proxy is not running.

    The picture below shows where each client's queries went. Every dot is a query (the
    resolver's are thinned to one in ten), at its send time, on the row of the DNS Pod its
    flow reached; red ones failed. The resolver follows the rules; the legacy client follows
    its conntrack entry.
    '''),
    ("code", r'''
    pods = dns.events[dns.events["kind"] == "pod-scheduled"]
    ip_to_pod = {d.removeprefix("ip="): o.split("/")[-1]
                 for o, d in zip(pods["object"], pods["detail"], strict=True) if "coredns" in o}
    rows = {ep: i for i, ep in enumerate(sorted(q["endpoint"].astype(str).unique()))}

    fig = Figure(figsize=(10, 5.5), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True, sharey=True)
    for ax, workload, step in ((axes[0], "legacy-client", 1), (axes[1], "resolver", 10)):
        w = q[q["workload"] == workload].iloc[::step]
        y = w["endpoint"].astype(str).map(rows).to_numpy()
        failed = (w["outcome"] != "ok").to_numpy()
        ax.plot(w["t_s"][~failed], y[~failed], "|", color="tab:green", markersize=8, label="ok")
        ax.plot(w["t_s"][failed], y[failed], "|", color="tab:red", markersize=8, label="failed")
        ax.set_title(f"{workload}" + (" (fixed source port)" if step == 1 else
                                      " (fresh source port per query; 1 in 10 shown)"),
                     pad=14)
        ax.grid(axis="x", alpha=0.3)
        for t in (20, 60, 64):
            ax.axvline(t, color="grey", linestyle=":", linewidth=1)
    for t, text, align in ((20, "delete-pod", "center"), (60, "delete-pod ", "right"),
                           (64, " kube-proxy on node-2 down", "left")):
        axes[0].annotate(text, (t, 1.0), xycoords=("data", "axes fraction"), va="bottom",
                         ha=align, fontsize="small", color="grey")
    labels = [f"{ip_to_pod.get(ep.split(':')[0], '?')}\n({ep})" for ep in rows]
    axes[0].set_yticks(range(len(rows)), labels)
    axes[0].set_ylim(-0.5, len(rows) - 0.5)
    axes[0].legend(loc="upper left")
    axes[1].set_xlabel("simulated time (s), query send time")
    fig.supylabel("DNS Pod the query reached")
    fig
    '''),
    ("md", r'''
    Two more views from the standard figures: the outcome timeline for `kube-dns` (both
    clients together), whose failure windows are all `stale-conntrack` on node-2, and the
    rule staleness, where node-2's kube-proxy outage (hatched) starts at 64 s.

    The failure windows are cut per (Service, client node) wherever two failures were sent
    more than a gap apart: twenty median spacings between that pair's failures, between 0.5 s
    and 5 s (here 1 s, for a client failing 20 times a second). Only a chance lull of a second
    in the client's Poisson arrivals could split the continuous black hole from 65 to 120 s
    into two windows.
    '''),
    ("code", r'''
    plots.outcome_timeline(dns)
    '''),
    ("code", r'''
    dns.windows[["node", "start_s", "end_s", "last_end_s", "failed", "total", "cause",
                 "outcomes"]].round(3)
    '''),
    ("code", r'''
    plots.rule_staleness(dns)
    '''),
    ("md", r'''
    The lesson is in the client, not in the cluster: a resolver that uses one socket for all its
    queries (some older libc and language runtimes do) depends on conntrack entries being
    deleted when the DNS Pod goes, which only kube-proxy does. A fresh source port per query
    costs nothing and makes every query follow the current rules.

    ## 2. Keep-alive connections pin load to the old Pods

    Three `frontend` Pods each keep a pool of 4 long-lived connections to `web` and spread
    300 requests/s (in total) over them. The rules are consulted when a connection opens,
    i.e. in the first second, and the 12 connections land on `web`'s 3 Pods at random. At
    30 s `web` is scaled from 3 to 6 Pods; the new Pods are Ready and in every node's rules a
    few seconds later.
    '''),
    ("code", r'''
    keepalive_path = SCENARIOS / "keepalive-imbalance.yaml"
    keep_scenario, keep = run(keepalive_path)
    keep.endpoints
    '''),
    ("md", r'''
    `endpoints` lists the endpoints that received requests, so the new Pods are not even there.
    Put the Ready Pods next to their request counts after the scale-up:
    '''),
    ("code", r'''
    def shares_after(r, t0):
        """Every web Pod that became Ready, with its requests (and share) sent from t0 on."""
        ready = r.events[(r.events["kind"] == "pod-ready")
                         & r.events["object"].str.contains("/web-")]
        after = r.requests[(r.requests["t_s"] >= t0)
                           & (r.requests["service"] == "default/web:http")]
        counts = after["pod"].astype(str).value_counts()
        table = pd.DataFrame({
            "ready at (s)": ready["t_s"].to_numpy(),
            "requests after": counts.reindex(ready["object"]).fillna(0).astype(int).to_numpy(),
        }, index=pd.Index(ready["object"].str.split("/").str[-1], name="web Pod"))
        table["share"] = (table["requests after"] / len(after)).round(3)
        return table

    T_SCALE = 40.0  # a few seconds after the scale-up: every node's rules have all 6 Pods
    shares_after(keep, T_SCALE)
    '''),
    ("md", r'''
    The new Pods get **nothing**: no connection was ever reopened, so the `statistic` chain
    that would send a sixth of new connections to each of them is never consulted. For
    contrast, the same scenario with a new connection per request (the YAML text edited, one
    line):
    '''),
    ("code", r'''
    text = keepalive_path.read_text(encoding="utf-8")
    old_line = "connection: {model: keepalive, connections: 4}"
    assert old_line in text, "keepalive-imbalance.yaml no longer has the expected line"
    per_request_path = Path(workdir.name) / "keepalive-imbalance-per-request.yaml"
    per_request_path.write_text(text.replace(old_line, "connection: {model: per-request}"),
                                encoding="utf-8")
    _, per_request = run(per_request_path, "per-request")
    shares_after(per_request, T_SCALE)
    '''),
    ("code", r'''
    plots.endpoint_shares(keep)
    '''),
    ("code", r'''
    plots.endpoint_shares(per_request)
    '''),
    ("md", r'''
    With keep-alive (first figure) the three bands never change: the scale-up at 30 s does not
    show at all. With a connection per request (second figure) three new colours appear a few
    seconds after 30 s and every Pod settles at about 1/6. The uneven split among the old Pods
    in the keep-alive run is the same effect at a smaller scale: 12 connections drawn at random
    over 3 Pods rarely split 4/4/4, and whatever they drew, they keep.

    Remedies all close connections: a client-side maximum connection age, a server that sends
    `Connection: close` now and then (or HTTP/2 `GOAWAY`), or a proxy/mesh that balances
    requests rather than connections.

    ## 3. A full conntrack table drops new flows

    kube-proxy sets `nf_conntrack_max` from `conntrack.maxPerCore` × CPUs (at least
    `conntrack.min`). `conntrack-full.yaml` gives node-1 a table of 3000 entries, while each
    node's client opens 100 short TCP connections per second whose entries linger 120 s in
    TIME_WAIT after they close: about 12 000 entries in steady state, four times what node-1
    holds.
    '''),
    ("code", r'''
    _, full = run(SCENARIOS / "conntrack-full.yaml")
    full.requests.groupby(["src_node", "outcome"], observed=True).size().unstack(fill_value=0)
    '''),
    ("code", r'''
    plots.conntrack_usage(full)
    '''),
    ("md", r'''
    node-1's table fills after about 30 s (3000 entries at 100 per second) and stays pinned at
    its limit: from then on a new connection finds no free entry, and since TIME_WAIT entries
    are *assured*, the kernel's early drop frees none of them, so the SYN is dropped (outcome
    `dropped`, cause `conntrack-full`). Room only appears as the oldest entries expire, 120 s
    after they were made, and the table fills again as fast as it drains. node-2 and node-3
    climb towards 12 000 entries in their 131 072-entry tables and never drop anything.
    '''),
    ("code", r'''
    plots.outcome_timeline(full)
    '''),
    ("md", r'''
    ## Summary

    * Conntrack, not the rules, decides where every packet after the first one goes. A
      long-lived flow keeps its endpoint whatever kube-proxy writes later.
    * For UDP with a fixed source port that flow can outlive its endpoint: only kube-proxy's
      clean-up (after a sync) removes the stale entry, and without kube-proxy an active client
      keeps it alive forever.
    * For TCP keep-alive it means load follows connections: Pods added later get nothing until
      connections are reopened.
    * The table itself is finite: when it is full, new flows are dropped, on that node only.
    '''),
    ("code", r'''
    workdir.cleanup()  # remove every run folder this notebook wrote
    '''),
]
# fmt: on
