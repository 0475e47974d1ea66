"""Cells of notebooks/06-proxy-modes.ipynb (see notebooks/build_notebooks.py)."""

# One cell per entry, as the notebook shows it: not for the formatter to rearrange.
# fmt: off
CELLS = [
    ("md", r'''
    # 06 · Four data planes, one cluster: userspace, iptables, IPVS (rr and lc), nftables

    The source article describes three ways kube-proxy implements a Service, and kube-proxy
    has since gained a fourth:

    * **userspace** (removed after v1.25): iptables *portal* rules redirect a Service's address
      to a port kube-proxy itself listens on; kube-proxy picks an endpoint round robin, dials
      it (trying the next one if the dial fails) and copies bytes both ways;
    * **iptables**: per-Service chains pick an endpoint with a chain of `statistic` rules and
      DNAT to it; the kernel does all the work;
    * **IPVS**: each Service address is an IPVS virtual server whose scheduler (here `rr`,
      round robin, and `lc`, least connections) picks a real server; terminating endpoints are
      drained at weight 0;
    * **nftables**: one `numgen random mod N` map per Service.

    `scenarios/proxy-modes.yaml` has three episodes: `web` is scaled from 3 to 6 Pods at 30 s
    while one workload keeps long-lived connections, kube-proxy on node-3 crashes at 60 s and
    `web` is rolled out at 70 s while it is down (it restarts at 100 s). This notebook replays
    it in each mode, same seed, and compares failures, when and where they happened, latency
    and how load spread. Run folders go to a temporary directory that the last cell removes.
    '''),
    ("code", r'''
    %matplotlib inline
    import tempfile
    from pathlib import Path

    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

    from svcsim.runs import run_scenario
    from svcsim.scenario.load import load_scenario
    from svcsim.scenario.overrides import parse_setting, single_overrides

    ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "scenarios").is_dir())
    SCENARIO = ROOT / "scenarios" / "proxy-modes.yaml"
    workdir = tempfile.TemporaryDirectory(prefix="svcsim-notebook-06-")
    pd.set_option("display.width", 160)

    MODES = {
        "userspace": ["cluster.proxy.mode=userspace"],
        "iptables": ["cluster.proxy.mode=iptables"],
        "ipvs rr": ["cluster.proxy.mode=ipvs", "cluster.proxy.ipvs.scheduler=rr"],
        "ipvs lc": ["cluster.proxy.mode=ipvs", "cluster.proxy.ipvs.scheduler=lc"],
        "nftables": ["cluster.proxy.mode=nftables"],
    }
    runs = {}
    for label, sets in MODES.items():
        overrides = single_overrides([parse_setting(s) for s in sets])
        loaded = load_scenario(SCENARIO, overrides=overrides)
        outcome = run_scenario(loaded, out_dir=Path(workdir.name) / label.replace(" ", "-"),
                               figures=False)
        runs[label] = outcome.run
        print(f"{label:10} {outcome.simulated_requests:,} requests, simulated in "
              f"{outcome.wall_s:.1f} s")
    '''),
    ("md", r'''
    ## 1. What failed, and why

    The same requests (same seed, same arrivals) met five data planes. Each failed request
    carries the cause svcsim found for it (docs/results.md).
    '''),
    ("code", r'''
    outcomes = pd.DataFrame(
        {m: r.summary["requests"]["by_outcome"] for m, r in runs.items()}
    ).fillna(0).astype(int)
    outcomes
    '''),
    ("code", r'''
    def causes(run):
        failed = run.requests[run.requests["outcome"] != "ok"]
        return failed.groupby(["workload", "cause"], observed=True).size()

    pd.DataFrame({m: causes(r) for m, r in runs.items()}).fillna(0).astype(int)
    '''),
    ("md", r'''
    ## 2. When and where: failures per second, by mode

    The crash (60 s) changes nothing by itself in the kernel-based modes: the rules stay in
    the kernel. The rollout (70 s) is what hurts node-3 there: its rules keep naming the old
    Pods until kube-proxy restarts and syncs at 100 s. In userspace mode the crash itself is
    the outage on node-3: its kube-proxy process *was* the data path.
    '''),
    ("code", r'''
    fig = Figure(figsize=(11, 4))
    ax = fig.subplots()
    for mode, run in runs.items():
        req = run.requests
        bad = req[req["outcome"] != "ok"]
        per_second = bad.groupby(bad["t_s"].astype(int)).size()
        per_second = per_second.reindex(range(0, 121), fill_value=0)
        ax.step(per_second.index, per_second.values, where="post", label=mode)
    for at, what in ((30, "scale-up"), (60, "crash"), (70, "rollout"), (100, "restart")):
        ax.axvline(at, color="grey", ls=":", lw=0.8)
        ax.text(at + 0.5, ax.get_ylim()[1] * 0.92, what, fontsize=8, color="grey")
    ax.set_xlabel("simulated s")
    ax.set_ylabel("failed requests per second")
    ax.legend()
    fig.suptitle("Failed requests, every workload, per kube-proxy mode")
    fig
    '''),
    ("code", r'''
    def failed_by_node(run):
        req = run.requests
        return req[req["outcome"] != "ok"].groupby("src_node", observed=True).size()

    by_node = pd.DataFrame({m: failed_by_node(r) for m, r in runs.items()}).fillna(0).astype(int)
    by_node.loc["all nodes"] = by_node.sum()
    by_node
    '''),
    ("code", r'''
    fig = Figure(figsize=(10, 3.4))
    ax = fig.subplots()
    per_node = by_node.drop(index="all nodes")
    x = np.arange(len(per_node.columns))
    bottom = np.zeros(len(x))
    for node, row in per_node.iterrows():
        ax.bar(x, row.values, bottom=bottom, label=node)
        bottom += row.values
    ax.set_xticks(x, per_node.columns)
    ax.set_ylabel("failed requests")
    ax.legend(title="client's node")
    fig.suptitle("Where the failures were: by the client's node, per mode")
    fig
    '''),
    ("md", r'''
    Read off the table: in the kernel-based modes nearly every failure is node-3's, from the
    rollout at 70 s to kube-proxy's restart and first sync (its rules still name the deleted
    Pods: `proxy-down`); node-1 and node-2 fail up to about a hundred requests each, in the
    short windows of their own syncs (`stale-rule`). Userspace mode fails *every* request from
    node-3 for the whole 40 s (`proxy-not-listening`: the portals point at a port nobody
    listens on), but nothing on node-1 and node-2: when a dial to a terminating Pod fails,
    kube-proxy dials the next endpoint, so the client never sees the dead Pod.

    ## 3. Latency

    A userspace proxy copies every byte through kube-proxy (a cost svcsim adds per request,
    docs/userspace.md) and hides a dead endpoint behind dial retries: the request succeeds,
    late. The kernel-based modes answer at the endpoint's service time or fail.
    '''),
    ("code", r'''
    def latency(run):
        ok = run.requests[run.requests["outcome"] == "ok"]
        q = ok.groupby("workload", observed=True)["latency_s"].quantile([0.5, 0.99, 0.999])
        return (q * 1e3).round(2)

    pd.DataFrame({m: latency(r) for m, r in runs.items()}).rename_axis(
        ["workload", "quantile"]).rename(columns=lambda c: f"{c} (ms)")
    '''),
    ("md", r'''
    ## 4. Load spread after the scale-up

    Between the scale-up (30 s, new Pods ready about 2 s later) and the crash (60 s) nothing
    else happens. Per-request connections spread over all six Pods in every mode; the
    keep-alive workload's connections were opened before the scale-up and stay where they
    are. The table gives each workload's share of requests that the three new Pods served.
    '''),
    ("code", r'''
    def new_pod_share(run):
        req = run.requests
        window = req[(req["t_s"] >= 35) & (req["t_s"] < 60) & (req["outcome"] == "ok")]
        first = set(req[(req["t_s"] < 30) & (req["outcome"] == "ok")]["endpoint"])
        new = ~window["endpoint"].isin(first)
        return new.groupby(window["workload"], observed=True).mean().round(3)

    pd.DataFrame({m: new_pod_share(r) for m, r in runs.items()})
    '''),
    ("code", r'''
    fig = Figure(figsize=(11, 3.6))
    axes = fig.subplots(1, len(runs), sharey=True)
    for ax, (mode, run) in zip(axes, runs.items()):
        req = run.requests
        window = req[(req["t_s"] >= 35) & (req["t_s"] < 60) & (req["outcome"] == "ok")]
        shares = window.groupby("endpoint", observed=True).size()
        shares = (shares / shares.sum()).sort_values(ascending=False)
        ax.bar(range(len(shares)), shares.values)
        ax.axhline(1 / 6, color="grey", ls=":", lw=0.8)
        ax.set_title(mode, fontsize=9)
        ax.set_xlabel("endpoint (by share)")
    axes[0].set_ylabel("share of requests, 35-60 s")
    fig.suptitle("Load spread over web's six Pods after the scale-up (dotted: 1/6)")
    fig.tight_layout()
    fig
    '''),
    ("md", r'''
    The per-request workload reaches the new Pods in every mode, but differently: random
    choice (iptables, nftables) and round robin (userspace, IPVS rr) give them half of it,
    their share by count; IPVS `lc` sends them *all* of it. Least-connection counts the
    keep-alive connections pinned to the three old Pods as active, so a fresh connection
    always finds a new Pod with fewer — which, here, evens out the total load (the bars).
    No mode moves a keep-alive connection: `batch`'s share on the new Pods stays 0.

    ## What to take away

    * The kernel-based modes differ little in *whether* requests fail during a rollout with a
      dead kube-proxy: each keeps its last rules; they differ in how an endpoint is picked and
      how long syncs take (notebook 05 for iptables vs nftables).
    * Userspace mode turns a kube-proxy crash into an outage of its node's connections, and
      turns dead endpoints into latency instead of errors.
    * Long-lived connections pin load wherever they were opened; no scheduler can move an
      established connection. `lc` steers *new* connections to the least busy servers, which
      can balance the total load where random choice and round robin cannot.
    '''),
    ("code", r'''
    workdir.cleanup()  # remove every run folder this notebook wrote
    '''),
]
# fmt: on
