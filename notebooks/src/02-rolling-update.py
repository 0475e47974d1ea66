"""Cells of notebooks/02-rolling-update.ipynb (see notebooks/build_notebooks.py)."""

# One cell per entry, as the notebook shows it: not for the formatter to rearrange.
# fmt: off
CELLS = [
    ("md", r'''
    # 02 · Rolling updates: failure windows, preStop, and minSyncPeriod

    A rolling update replaces a Deployment's Pods one at a time. Kubernetes does everything in
    the "right" order: a new Pod becomes Ready before an old one is deleted, and the deleted
    Pod is marked *terminating* in its EndpointSlice at once. And still, without a `preStop`
    hook, requests fail. The reason is that two things happen in parallel and nobody waits for
    the slower one:

    * the old Pod's process gets SIGTERM the moment the Pod is deleted and (in this scenario)
      stops accepting connections right away;
    * every node keeps sending new connections to it until **its own** kube-proxy has seen the
      EndpointSlice change and finished a sync that rewrites the rules.

    This notebook replays `scenarios/rolling-update.yaml` (3 nodes, 3 `web` replicas behind a
    ClusterIP Service, 300 new TCP connections per second from a `frontend` Pod on each node,
    a rollout at 20 s; node-3's kube-proxy sees API changes 1 s late), explains each failure
    window from the configured delays, shows that a 5 s `preStop` sleep removes them
    (`scenarios/rolling-update-prestop.yaml`), and then turns kube-proxy's `minSyncPeriod` to
    see how the windows move.

    Each run takes a second or two of wall time; run folders go to a temporary directory that
    the last cell removes. Seeds come from the scenario files, so every number below repeats.
    '''),
    ("code", r'''
    %matplotlib inline
    import tempfile
    from pathlib import Path

    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

    from svcsim import plots
    from svcsim.runs import run_scenario
    from svcsim.scenario.load import load_scenario

    # scenarios/ sits next to notebooks/ in the repository.
    ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "scenarios").is_dir())
    SCENARIOS = ROOT / "scenarios"
    workdir = tempfile.TemporaryDirectory(prefix="svcsim-notebook-02-")
    pd.set_option("display.width", 160)

    def run(loaded, label):
        """Run a loaded scenario into the temporary directory; return the loaded run."""
        # The scenario's own seed, so the run is the same every time.
        seed = loaded.scenario.seed if loaded.scenario.seed is not None else 1
        outcome = run_scenario(loaded, seed=seed, out_dir=Path(workdir.name) / label)
        print(f"{label}: {outcome.simulated_requests:,} requests "
              f"(simulated in {outcome.wall_s:.2f} s)")
        return outcome.run

    def windows_table(r):
        """The failure windows, rounded to milliseconds."""
        cols = ["node", "start_s", "end_s", "last_end_s", "failed", "total", "cause", "outcomes"]
        return r.windows[cols].round(3)
    '''),
    ("md", r'''
    ## 1. Without preStop

    The scenario's settings that matter here: the delays from the API server to each
    kube-proxy, kube-proxy's sync periods, and how the app reacts to SIGTERM.
    '''),
    ("code", r'''
    plain = load_scenario(SCENARIOS / "rolling-update.yaml")
    sc = plain.scenario
    delays, proxy = sc.cluster.delays, sc.cluster.proxy
    print("apiWatch:", delays.api_watch_s, "s   kubeProxyWatch:", delays.kube_proxy_watch_s)
    print("minSyncPeriod:", proxy.min_sync_period_s, "s   syncPeriod:", proxy.sync_period_s, "s")
    print("web app:", sc.apps["web"])
    print("timeline:", [f"{a.action} at {a.at_s:g} s" for a in sc.timeline])

    ru = run(plain, "rolling-update")
    pd.Series(ru.summary["requests"]["by_outcome"], name="requests")
    '''),
    ("md", r'''
    Hundreds of refused connections, and a few timeouts, in a rollout that "did everything
    right". The failure windows: one per node and replaced Pod. `start_s`/`end_s` are the send
    times of the first and last failed attempt, `last_end_s` is when the last failure was
    known (a timeout is known only after the 1 s connect timeout).
    '''),
    ("code", r'''
    windows_table(ru)
    '''),
    ("code", r'''
    plots.outcome_timeline(ru)
    '''),
    ("md", r'''
    Three rollout steps, three bursts of failures, and in every burst node-3's window is the
    longest. The strip under the timeline shows why: each node's syncs (ticks) lag the
    EndpointSlice updates, node-3's by a full second.

    ### Where each window's length comes from

    Take one step. The new Pod becomes Ready and, 50 ms later, the ReplicaSet controller
    deletes an old Pod. Both changes reach the EndpointSlice (after `apiWatch`, 50 ms) and then
    each kube-proxy (after `kubeProxyWatch`: 100 ms, node-3 1 s), **50 ms apart**. The first
    change starts a sync at once; the second one arrives while that sync runs, and kube-proxy
    will not start another sync sooner than `minSyncPeriod` (1 s) after the previous one
    *ended*. So the old Pod stays in the node's rules for about

    $$\text{apiWatch} + \text{kubeProxyWatch(node)} + \text{wait for minSyncPeriod}
      + \text{one sync} \approx 0.05 + 0.1 + 1.1 + 0.16 \approx 1.4\ \text{s}$$

    on node-1 and node-2, and one second more on node-3. The cell below does this arithmetic
    for every window from the run's own tables: the time the deleted Pod's terminating state
    reached the node, the first sync on that node starting after it, and that sync's end,
    which is when the node's rules stopped sending connections to the old Pod.
    '''),
    ("code", r'''
    def explain_windows(r, loaded):
        """For each window: when its node saw the deletion and which sync removed the Pod."""
        d = loaded.scenario.cluster.delays
        watch = d.kube_proxy_watch_s
        deleted = r.events.loc[r.events["kind"] == "pod-terminating", "t_s"].to_numpy()
        rows = []
        for w in r.windows.itertuples():
            t_del = deleted[deleted <= w.start_s + 1e-9].max()
            seen = t_del + d.api_watch_s + watch.get(w.node, watch["default"])
            node_syncs = r.syncs[(r.syncs["node"] == w.node) & (r.syncs["start_s"] >= seen - 1e-9)]
            fix = node_syncs.iloc[0]
            rows.append({
                "node": w.node,
                "Pod deleted": t_del,
                "node sees it": seen,
                "wait (minSyncPeriod)": fix["start_s"] - seen,
                "sync": fix["duration_s"],
                "rules fixed at": fix["end_s"],
                "last failed send": w.end_s,
                "failed": w.failed,
            })
        return pd.DataFrame(rows).round(3)

    explain_windows(ru, plain)
    '''),
    ("md", r'''
    "Rules fixed at" is the end of the sync that removed the old Pod, and the last failed
    request was sent just before it, on every node: the windows are exactly the nodes'
    programming delays. The timeouts on node-3 have a second cause stacked on the first: an old
    Pod's IP is released 1 s after it exits (`ipTeardown`), and node-3's rules still pointed at
    it after that, so its SYNs went into a black hole instead of being refused.

    ## 2. With a 5 s preStop sleep

    `rolling-update-prestop.yaml` is the same cluster, traffic and rollout, plus
    `lifecycle: {preStop: {sleep: {seconds: 5}}}` on the web container. Deletion still marks
    the Pod terminating at once, so the nodes take it out of their rules on the same schedule,
    but the app only gets SIGTERM after the sleep and keeps serving until then. The sleep is
    longer than the slowest node's programming latency (about 2.3 s on node-3), so by the time
    the Pod stops listening no node sends it anything.
    '''),
    ("code", r'''
    prestop = load_scenario(SCENARIOS / "rolling-update-prestop.yaml")
    rp = run(prestop, "rolling-update-prestop")
    print("failure windows:", len(rp.windows))
    pd.Series(rp.summary["requests"]["by_outcome"], name="requests")
    '''),
    ("code", r'''
    plots.outcome_timeline(rp)
    '''),
    ("md", r'''
    No failure window. The programming latency kube-proxy would report
    (`network_programming_duration_seconds`) is the same in both runs: the preStop hook does not
    make the nodes faster, it makes the Pod wait for them.
    '''),
    ("code", r'''
    pd.DataFrame({
        "no preStop": {n: v["max_s"] for n, v in ru.summary["programming_latency"].items()},
        "preStop 5 s": {n: v["max_s"] for n, v in rp.summary["programming_latency"].items()},
    }).rename_axis("max programming latency (s)").round(3)
    '''),
    ("md", r'''
    ## 3. How minSyncPeriod moves the windows

    `minSyncPeriod` (kube-proxy's `--iptables-min-sync-period`, default 1 s) rate-limits syncs so
    that a burst of changes costs one `iptables-restore` instead of many. The price is latency:
    a change that arrives just after a sync waits up to `minSyncPeriod` for the next one.
    `svcsim.sweep.sweep` runs a scenario for every value of a field (the same as
    `svcsim sweep FILE --set cluster.proxy.minSyncPeriod=0s,1s,5s`), on every core, each run
    into its own folder, and returns one row per run read from the runs' summaries. Here both
    scenarios run with 0 s, 1 s and 5 s, with the scenarios' own seed, so the runs above are
    among them.
    '''),
    ("code", r'''
    from svcsim.results import load
    from svcsim.sweep import sweep

    PERIODS = ["0s", "1s", "5s"]
    tables = []
    for name, loaded in (("no preStop", plain), ("preStop 5 s", prestop)):
        out = Path(workdir.name) / f"sweep-{loaded.scenario.metadata.name}"
        runs = sweep(loaded.path, sets={"cluster.proxy.minSyncPeriod": PERIODS},
                     seeds=[loaded.scenario.seed], out=out)
        tables.append(runs.assign(scenario=name, folder=[out / r for r in runs["run"]]))
    runs = pd.concat(tables, ignore_index=True)
    runs[["scenario", "cluster.proxy.minSyncPeriod", "seed", "requests_total",
          "failure_windows", "failed_in_windows", "programming_latency_p50_s",
          "programming_latency_p99_s"]].round(3)
    '''),
    ("md", r'''
    The table holds what every sweep compares; each run's folder holds the rest. Per node, from
    the run folders: the slowest programming latency and the failed requests of each client
    node.
    '''),
    ("code", r'''
    keys = zip(runs["scenario"], runs["cluster.proxy.minSyncPeriod"], strict=True)
    sweep_runs = {key: load(folder) for key, folder in zip(keys, runs["folder"], strict=True)}

    def sweep_row(key, r):
        """One row of the per-node table: latency and failures per node."""
        failed = r.windows.groupby("node")["failed"].sum() if len(r.windows) else pd.Series()
        row = {"scenario": key[0], "minSyncPeriod": key[1]}
        for node, lat in r.summary["programming_latency"].items():
            row[f"{node} max latency (s)"] = round(lat["max_s"], 2)
        for node in r.summary["programming_latency"]:
            row[f"{node} failed"] = int(failed.get(node, 0))
        return row

    sweep_table = pd.DataFrame([sweep_row(k, r) for k, r in sweep_runs.items()])
    sweep_table.set_index(["scenario", "minSyncPeriod"])
    '''),
    ("code", r'''
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    nodes = list(next(iter(sweep_runs.values())).summary["programming_latency"])
    width = 0.8 / len(nodes)
    for ax, name in zip(axes, ("no preStop", "preStop 5 s"), strict=True):
        rows = sweep_table[sweep_table["scenario"] == name]
        x = np.arange(len(rows))
        for i, node in enumerate(nodes):
            ax.bar(x + (i - (len(nodes) - 1) / 2) * width, rows[f"{node} failed"], width,
                   label=node)
        ax.set_xticks(x, list(rows["minSyncPeriod"]))
        ax.set_xlabel("minSyncPeriod")
        ax.set_title(name)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("failed requests (count)")
    axes[1].legend(title="client node", loc="upper left")
    fig.suptitle("Failed requests during the rollout, by minSyncPeriod")
    fig
    '''),
    ("md", r'''
    Without preStop, every increase of `minSyncPeriod` lengthens the windows: at 0 s a node
    fixes its rules one sync after it sees the change (node-1 and node-2 within about 0.4 s),
    at 5 s the deletion may wait almost five seconds behind the sync that the new Pod's
    readiness triggered just before. With preStop, nothing fails until the slowest node's
    programming latency exceeds the sleep: at 5 s node-1 and node-2 (about 4.5 s) still make it
    under the 5 s sleep, node-3 (1 s watch delay on top) does not, and only its clients fail.

    The rule of thumb this supports: **the preStop sleep must exceed the slowest node's
    programming latency**, which is roughly watch delay + `minSyncPeriod` + one sync, not just
    "a few seconds". The timeline of that last run shows the single remaining window. A Pod
    deleted at time $T$ gets SIGTERM at $T + 5$ s; node-3 saw the deletion at about
    $T + 1.05$ s but had synced just before, so its next sync could not start until 5 s after
    that one ended, a little later than $T + 5$ s. Connections node-3 sent to the Pod in
    between were refused.
    '''),
    ("code", r'''
    plots.outcome_timeline(sweep_runs["preStop 5 s", "5s"])
    '''),
    ("code", r'''
    windows_table(sweep_runs["preStop 5 s", "5s"])
    '''),
    ("code", r'''
    workdir.cleanup()  # remove every run folder this notebook wrote
    '''),
]
# fmt: on
