"""Cells of notebooks/05-iptables-vs-nftables.ipynb (see notebooks/build_notebooks.py)."""

# One cell per entry, as the notebook shows it: not for the formatter to rearrange.
# fmt: off
CELLS = [
    ("md", r'''
    # 05 · iptables vs nftables: endpoint choice, sync durations, failure windows

    kube-proxy's nftables mode (GA in Kubernetes 1.33) programs one table `ip kube-proxy`
    instead of iptables chains. Two differences a user can feel:

    1. **How an endpoint is picked.** iptables mode writes a chain of `statistic` rules with
       probabilities 1/N, 1/(N-1), …, each quantised to a 31-bit threshold; nftables mode
       writes one `numgen random mod N vmap { … }`: one 32-bit draw scaled with the kernel's
       `reciprocal_scale`. Both are almost uniform; the exact shares differ.
    2. **How long a sync takes.** iptables mode's partial syncs still rewrite the
       `KUBE-SERVICES` chain of every Service; nftables mode's partial transaction holds only
       the changed Services' chains and map elements — but its first, full sync of a large
       cluster is slow. svcsim's cost models (docs/nftables.md, `svcsim/sim/synccost.py`) are
       calibrated on published figures, and failure windows follow from sync timing.

    Part 2 replays `scenarios/thousand-services-rollout.yaml` (1,000 Services over ten
    Deployments, a rolling update of one Deployment behind 100 of them) in both modes. Run
    folders go to a temporary directory that the last cell removes; seeds come from the
    scenario file, so the numbers repeat.
    '''),
    ("code", r'''
    %matplotlib inline
    import dataclasses
    import tempfile
    from fractions import Fraction
    from pathlib import Path

    import pandas as pd
    from matplotlib.figure import Figure

    from svcsim.netfilter.numgen import value_probabilities
    from svcsim.proxy.probability import (
        chain_probabilities,
        exact_selection_probabilities,
        thresholds_for,
    )
    from svcsim.runs import run_scenario
    from svcsim.scenario.load import load_scenario

    ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "scenarios").is_dir())
    SCENARIOS = ROOT / "scenarios"
    workdir = tempfile.TemporaryDirectory(prefix="svcsim-notebook-05-")
    pd.set_option("display.width", 160)
    '''),
    ("md", r'''
    ## 1. Exact per-endpoint probabilities at N = 3, 7, 100

    iptables: the probability of endpoint k is the product of "not picked" of the rules before
    it and "picked" of its own, each rule's threshold being `%0.10f` of its probability
    times 2^31 (`svcsim.proxy.probability`). nftables: endpoint k takes the draws
    `[ceil(k·2^32/N), ceil((k+1)·2^32/N))`, so its probability is a count over 2^32
    (`svcsim.netfilter.numgen`). Both are exact fractions here; the table shows the largest
    deviation from 1/N and the first and last endpoint's share.
    '''),
    ("code", r'''
    rows = []
    for n in (3, 7, 100):
        ipt = exact_selection_probabilities(thresholds_for(chain_probabilities(n)))
        nft = value_probabilities(n)
        for mode, shares in (("iptables statistic chain", ipt), ("nftables numgen", nft)):
            deviations = [float(p - Fraction(1, n)) for p in shares]
            rows.append({
                "N": n, "mode": mode,
                "first endpoint": float(shares[0]), "last endpoint": float(shares[-1]),
                "max |p - 1/N|": max(abs(d) for d in deviations),
            })
    shares = pd.DataFrame(rows).set_index(["N", "mode"])
    shares.style.format("{:.3e}", subset=["max |p - 1/N|"]).format(
        "{:.12f}", subset=["first endpoint", "last endpoint"])
    '''),
    ("code", r'''
    fig = Figure(figsize=(10, 3.4))
    axes = fig.subplots(1, 2)
    for ax, n in zip(axes, (7, 100)):
        ipt = exact_selection_probabilities(thresholds_for(chain_probabilities(n)))
        nft = value_probabilities(n)
        ax.plot([float(p - Fraction(1, n)) for p in ipt], "o-", ms=3, label="statistic chain")
        ax.plot([float(p - Fraction(1, n)) for p in nft], "s-", ms=3, label="numgen")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"N = {n}")
        ax.set_xlabel("endpoint")
        ax.set_ylabel("P(endpoint) - 1/N")
    axes[0].legend()
    fig.suptitle("Exact deviation from uniform of each endpoint's share")
    fig.tight_layout()
    fig
    '''),
    ("md", r'''
    Both are uniform to within about 1e-9 at these sizes. numgen's shares differ by at most one
    draw in 2^32 (2.3e-10) between endpoints, the first ones getting the extra draw; the
    statistic chain's rounding errors (31-bit thresholds of 10-digit probabilities) add up
    along the chain. No load test can tell either from uniform.

    ## 2. 1,000 Services and a rolling update, in both modes
    '''),
    ("code", r'''
    loaded = load_scenario(SCENARIOS / "thousand-services-rollout.yaml")

    def in_mode(mode):
        """The scenario with every node's kube-proxy in ``mode``."""
        sc = loaded.scenario
        proxy = sc.cluster.proxy.model_copy(update={"mode": mode})
        cluster = sc.cluster.model_copy(update={"proxy": proxy})
        return dataclasses.replace(loaded, scenario=sc.model_copy(update={"cluster": cluster}))

    runs = {}
    for mode in ("iptables", "nftables"):
        outcome = run_scenario(in_mode(mode), seed=loaded.scenario.seed,
                               out_dir=Path(workdir.name) / mode)
        runs[mode] = outcome.run
        print(f"{mode}: {outcome.simulated_requests:,} requests "
              f"(simulated in {outcome.wall_s:.1f} s)")
    pd.DataFrame({m: r.summary["requests"]["by_outcome"] for m, r in runs.items()})
    '''),
    ("md", r'''
    ### Sync durations

    Every kube-proxy starts with a full sync. In nftables mode the full transaction for 1,000
    Services × 3 endpoints holds about 18,000 objects (each chain added and flushed, its rules,
    the map elements), about 25 s with the cost model fitted through kubernetes PR #130119's
    cold start (10,000 Services: 3 min 14 s); in iptables mode the restore of the same
    cluster takes under half a second. During the rollout each sync rewrites the 100 Services
    behind `app-0`: iptables mode rewrites `KUBE-SERVICES` (all 1,000 Services) plus their
    chains; nftables mode only their chains and elements.
    '''),
    ("code", r'''
    def syncs(mode):
        s = runs[mode].syncs.copy()
        s["mode"] = mode
        s["kind"] = s["full"].map({True: "full", False: "partial"})
        return s

    both = pd.concat([syncs(m) for m in runs])
    summary = both.groupby(["mode", "kind"])["duration_s"].describe()[["count", "mean", "max"]]
    summary.round(3)
    '''),
    ("code", r'''
    fig = Figure(figsize=(10, 3.6))
    ax = fig.subplots()
    for mode, marker in (("iptables", "o"), ("nftables", "s")):
        s = both[both["mode"] == mode]
        ax.scatter(s["start_s"], s["duration_s"], marker=marker, label=mode, alpha=0.7)
    ax.axvline(loaded.scenario.timeline[0].at_s, color="grey", ls=":", label="rollout starts")
    ax.set_yscale("log")
    ax.set_xlabel("sync start (simulated s)")
    ax.set_ylabel("sync duration (s)")
    ax.legend()
    fig.suptitle("kube-proxy syncs on every node, both modes")
    fig
    '''),
    ("md", r'''
    ### Failure windows

    An old Pod of `app-0` stops accepting at SIGTERM; a node keeps sending new connections to
    it until its own kube-proxy's sync that removes it has ended. So the windows of
    `svc-0000` grow with the sync duration; `svc-0001` (app-1, untouched) never fails.
    '''),
    ("code", r'''
    cols = ["service", "node", "start_s", "end_s", "failed", "total", "cause"]
    windows = pd.concat(
        {m: r.windows[cols] for m, r in runs.items()}, names=["mode", "window"]
    )
    windows.round(3)
    '''),
    ("code", r'''
    failed = pd.DataFrame({
        m: r.windows.groupby("node")["failed"].sum() if len(r.windows) else pd.Series(dtype=int)
        for m, r in runs.items()
    }).fillna(0).astype(int)
    failed.loc["all nodes"] = failed.sum()
    failed
    '''),
    ("code", r'''
    fig = Figure(figsize=(10, 3.4))
    ax = fig.subplots()
    for mode in runs:
        req = runs[mode].requests
        bad = req[req["outcome"] != "ok"]
        per_second = bad.groupby(bad["t_s"].astype(int)).size()
        ax.step(per_second.index, per_second.values, where="post", label=mode)
    ax.set_xlabel("simulated s")
    ax.set_ylabel("failed requests per second")
    ax.legend()
    fig.suptitle("Failed requests to svc-0000 during the rollout, both modes")
    fig
    '''),
    ("md", r'''
    What to take away, and what not to: with these calibrations nftables mode's syncs that
    touch 100 Services take over two seconds (about 1.4 ms per transaction object), longer than
    iptables mode's restores of a 1,000-Service cluster, so this rollout's windows are longer
    in nftables mode. The per-object cost is fitted through a cold full sync of 10,000
    Services and a partial sync adding one Service (PR #126013, ~141 ms); incremental
    transactions of newer kube-proxy and nft versions are likely cheaper per object, and
    iptables mode's cost grows with the total number of Services while nftables mode's
    partial syncs do not. Set `cluster.proxy.nftSyncCost` (and `syncCost`) from your own
    nodes' `sync_proxy_rules_duration_seconds` to compare your cluster.
    '''),
    ("code", r'''
    workdir.cleanup()  # remove every run folder this notebook wrote
    '''),
]
# fmt: on
