"""Cells of notebooks/03-proxy-crash-and-stale-rules.ipynb (see notebooks/build_notebooks.py)."""

# One cell per entry, as the notebook shows it: not for the formatter to rearrange.
# fmt: off
CELLS = [
    ("md", r'''
    # 03 · A crashed kube-proxy and a stale rule: failures that stay on one node

    kube-proxy does not forward packets. It writes rules into its node's kernel and the kernel
    does the rest, so when kube-proxy dies the Service keeps working *on that node* with the
    rules it last wrote, and nothing else in the cluster notices. The rules only go wrong once
    the cluster changes under them. This notebook replays two scenarios where that happens:

    * `scenarios/proxy-crash.yaml`: kube-proxy on node-3 crashes at 10 s, `web` is rolled out
      at 20 s (safely, with a 5 s preStop sleep), kube-proxy restarts at 130 s.
    * `scenarios/stale-rules.yaml`: a rule for an endpoint that does not exist is written by
      hand into node-1's `KUBE-SVC` chain for `web`, twice, and we watch what removes it.

    The questions, for both: who fails, when, why only there, and what ends it. Run folders go
    to a temporary directory that the last cell removes; seeds come from the scenario files.
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

    ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "scenarios").is_dir())
    SCENARIOS = ROOT / "scenarios"
    workdir = tempfile.TemporaryDirectory(prefix="svcsim-notebook-03-")
    pd.set_option("display.width", 160)

    def run(name):
        """Run scenarios/<name>.yaml into the temporary directory; return (scenario, run)."""
        loaded = load_scenario(SCENARIOS / f"{name}.yaml")
        seed = loaded.scenario.seed if loaded.scenario.seed is not None else 1
        outcome = run_scenario(loaded, seed=seed, out_dir=Path(workdir.name) / name)
        print(f"{name}: {outcome.simulated_requests:,} requests "
              f"(simulated in {outcome.wall_s:.2f} s), seed {seed}")
        return loaded, outcome.run

    def outcomes_by_node(r, service=None):
        """Requests by client node and outcome, with the failed percentage."""
        q = r.requests if service is None else r.requests[r.requests["service"] == service]
        table = q.groupby(["src_node", "outcome"], observed=True).size().unstack(fill_value=0)
        table["failed %"] = (100 * (1 - table.get("ok", 0) / table.sum(axis=1))).round(2)
        return table

    def windows_table(r):
        """The failure windows, rounded to milliseconds."""
        cols = ["service", "node", "start_s", "end_s", "last_end_s", "failed", "total", "causes"]
        return r.windows[cols].round(3)
    '''),
    ("md", r'''
    ## 1. kube-proxy crashes on node-3

    ### Who fails
    '''),
    ("code", r'''
    crash_scenario, crash = run("proxy-crash")
    print([f"{a.action} at {a.at_s:g} s" for a in crash_scenario.scenario.timeline])
    outcomes_by_node(crash)
    '''),
    ("md", r'''
    Every failed request was sent by a client on node-3. Clients on node-1 and node-2 sent the
    same traffic to the same Service through the same rollout and lost nothing. There is one
    failure window, on node-3:
    '''),
    ("code", r'''
    windows_table(crash)
    '''),
    ("code", r'''
    plots.outcome_timeline(crash)
    '''),
    ("md", r'''
    ### When

    Nothing fails during the first 18 s of the outage: node-3's last rules are still right
    (conntrack and DNAT are the kernel's; kube-proxy is not on the packet path). The rollout
    starts at 20 s and the old Pods leave one by one. Each gets SIGTERM after its 5 s preStop
    sleep, refuses connections from then on, exits a second later, and its IP disappears a
    second after that, from which point connections to it time out instead. node-3's rules
    still spread its connections evenly over the **three old Pods**, so its failure rate climbs
    in steps of one third, as the cell below shows per second.
    '''),
    ("code", r'''
    q = crash.requests
    node3 = q[q["src_node"] == "node-3"]
    bins = np.arange(0, crash.manifest["duration_s"] + 1, 1.0)
    sent, _ = np.histogram(node3["t_s"], bins)
    failed, _ = np.histogram(node3.loc[node3["outcome"] != "ok", "t_s"], bins)
    fraction = np.divide(failed, sent, out=np.zeros(len(sent)), where=sent > 0)

    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.step(bins[:-1], fraction, where="post", label="node-3 clients")
    for level in (1 / 3, 2 / 3, 1):
        ax.axhline(level, color="grey", linestyle=":", linewidth=1)
    for t, label in ((10, "crash"), (130, "restart")):
        ax.axvline(t, color="tab:red", linestyle="--", linewidth=1)
        ax.annotate(f"kube-proxy {label}", (t, 0.5), rotation=90, va="center", ha="right")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("failed fraction of requests\n(per 1 s bin)")
    ax.set_title("proxy-crash: node-3's clients fail in steps of 1/3 as the old Pods go")
    ax.set_ylim(-0.02, 1.05)
    fig
    '''),
    ("md", r'''
    Where node-3's connections went while kube-proxy was down: all to the old Pods' addresses
    (an empty `pod` means the address belonged to no Pod any more), while node-1 and node-2
    moved to the new Pods as soon as their syncs ran.
    '''),
    ("code", r'''
    during = q[(q["t_s"] > 40) & (q["t_s"] < 130)].copy()
    during["pod"] = during["pod"].astype(str).replace("", "(no Pod: IP gone)")
    during.groupby(["src_node", "pod", "outcome"], observed=True).size().unstack(fill_value=0)
    '''),
    ("md", r'''
    ### Why only node-3

    A ClusterIP is not an address anything listens on. A connection to `10.96.0.10:80` is
    DNATed to a Pod's address **on the node where the client runs**, by that node's
    `KUBE-SERVICES` → `KUBE-SVC-…` → `KUBE-SEP-…` rules, and from then on it is ordinary Pod to
    Pod traffic. So each node's clients see exactly the rules of their own node's kube-proxy:

    * node-1's and node-2's kube-proxies saw every EndpointSlice change and rewrote their
      rules; their clients followed the rollout, including to the new Pod *on node-3*, which
      served them fine: node-3's kernel delivers traffic to its Pods whether or not its
      kube-proxy runs.
    * node-3's rules froze at 10 s and still name the three old Pods.

    The table below checks the first point: requests from node-1 and node-2 that landed on
    Pods running on node-3.
    '''),
    ("code", r'''
    scheduled = crash.events[crash.events["kind"] == "pod-scheduled"]
    pod_node = dict(zip(scheduled["object"], scheduled["node"].astype(str), strict=True))
    landed = q[q["src_node"] != "node-3"].copy()
    landed["pod node"] = landed["pod"].astype(str).map(pod_node)
    landed = landed[landed["pod node"] == "node-3"]
    landed.groupby(["src_node", "pod", "outcome"], observed=True).size().unstack(fill_value=0)
    '''),
    ("md", r'''
    ### Rule staleness

    The staleness figure shows, per node, when its programmed rules lagged the API: orange from
    each EndpointSlice update until the node's sync that installed it, hatched red while
    kube-proxy was down. node-1 and node-2 catch up within a second or so of each update;
    node-3 is down from 10 s to 130 s and stale from the first update of the rollout until its
    full sync after the restart.
    '''),
    ("code", r'''
    plots.rule_staleness(crash)
    '''),
    ("md", r'''
    ### What ends it

    A restarted kube-proxy first waits for its informers to sync (`informerSync`, 2 s here),
    then runs one **full** sync that rewrites every rule. node-3's window ends with that sync:
    the last failed request was sent just before the rules were installed.
    '''),
    ("code", r'''
    delays = crash_scenario.scenario.cluster.delays
    restart = crash.events.loc[crash.events["kind"] == "proxy-restarted", "t_s"].iloc[0]
    first = crash.syncs[(crash.syncs["node"] == "node-3") & (crash.syncs["start_s"] >= restart)]
    first = first.iloc[0]
    last_failed = crash.windows.loc[crash.windows["node"] == "node-3", "end_s"].max()
    informer = delays.informer_sync_s.get("node-3", delays.informer_sync_s["default"])
    print(f"kube-proxy restarted at     {restart:8.3f} s")
    print(f"+ informerSync {informer:g} s      -> {restart + informer:8.3f} s")
    print(f"first sync (full={first['full']}) ran {first['start_s']:.3f} -> {first['end_s']:.3f} s"
          f" ({first['rules_written']} rules)")
    print(f"last failed request sent at {last_failed:8.3f} s")
    '''),
    ("md", r'''
    Restart + informer sync + one full sync: the window closes within one sync of the
    restart, as it should. The requests sent between the restart and the end of that sync are
    still labelled `proxy-down`: kube-proxy was running again, but the kernel still held the
    rules of the process that crashed until its first sync ended.

    ## 2. A stale rule written by hand

    `inject-stale-rule` writes into node-1's kernel what kube-proxy would have written for a
    fourth endpoint of `web`, `10.244.0.250:8080`, an address no Pod holds: a `KUBE-SEP` chain
    DNATing to it and a jump to it placed first in `web`'s `KUBE-SVC` chain with probability
    1/4. So a quarter of node-1's new connections to `web` go to an address nobody answers.
    kube-proxy does not look at the kernel's rules between syncs, so the rule stays until a
    sync happens to rewrite `web`'s chain.
    '''),
    ("code", r'''
    stale_scenario, stale = run("stale-rules")
    print([f"{a.action} at {a.at_s:g} s" for a in stale_scenario.scenario.timeline])
    outcomes_by_node(stale, "default/web:http")
    '''),
    ("code", r'''
    windows_table(stale).assign(**{"failed %": lambda w: (100 * w["failed"] / w["total"]).round(1)})
    '''),
    ("md", r'''
    Only node-1 fails, and only for `web`. The injected rule goes first in the chain with
    probability $1/(n+1)$ for a Service with $n$ endpoints, so it takes that share of node-1's
    new connections: a quarter in round 1 ($n = 3$), a fifth in round 2 (`web` has 4 Pods by
    then), give or take the binomial noise of a couple of thousand requests. The two windows
    end differently:
    '''),
    ("code", r'''
    plots.outcome_timeline(stale, "default/web:http")
    '''),
    ("code", r'''
    events = stale.events[stale.events["kind"].isin(["fault", "scale", "slice-updated"])]
    print(events[["t_s", "kind", "node", "detail"]].to_string(index=False))
    node1 = stale.syncs[(stale.syncs["node"] == "node-1") & (stale.syncs["start_s"] > 1)]
    node1.round(3)
    '''),
    ("md", r'''
    * **Round 1** (injected at 20 s): `web` is scaled from 3 to 4 at 50 s. node-1's next sync
      is a partial one that rewrites `web`'s chains (its `KUBE-SVC` chain is flushed and written
      again without the jump, and the orphaned `KUBE-SEP` chain is deleted). The black hole
      ends with that sync, about 0.3 s after the scale.
    * **Round 2** (injected at 80 s): at 110 s a *different* Service, `api`, is scaled. node-1's
      partial sync writes only `api`'s chains but still deletes every kube-proxy chain it no
      longer uses, including the injected `KUBE-SEP` chain, which `web`'s untouched `KUBE-SVC`
      chain still jumps to. `iptables-restore` refuses to delete a chain that is referenced, so
      the **whole** sync fails (`ok = False` above): the stale rule survives and node-1 also
      misses `api`'s change. A failed sync makes the next one full; it runs when the new `api`
      Pod turns Ready about 3 s later, rewrites everything, and ends the window. Requests
      black-holed while kube-proxy was failing are labelled `sync-blocked`.

    The staleness figure sees round 2 from the API's point of view: node-1 lagged `api`'s
    update from the failed sync until the full one. A hand-written rule is not a lag behind
    the API (no API object describes it), so the injections themselves appear only as fault
    events and in the failure windows above.
    '''),
    ("code", r'''
    plots.rule_staleness(stale)
    '''),
    ("md", r'''
    ## Summary

    * Rules are per node and the DNAT happens on the client's node, so a broken kube-proxy, or
      a broken rule, only hurts clients on that node; every other node's clients, and traffic
      *to* Pods on the broken node, are unaffected.
    * A crashed kube-proxy is harmless until the cluster changes: its rules keep pointing at
      the Pods that existed when it died. The damage grows with every Pod that goes away and
      ends one full sync after the restart (informer sync + one `iptables-restore`).
    * A stale rule stays until a sync rewrites that Service's chain. A change to another
      Service may not fix it, and can even make the sync fail, until a full sync runs.
    '''),
    ("code", r'''
    workdir.cleanup()  # remove every run folder this notebook wrote
    '''),
]
# fmt: on
