"""Cells of notebooks/07-incident.ipynb (see notebooks/build_notebooks.py)."""

# One cell per entry, as the notebook shows it: not for the formatter to rearrange.
# fmt: off
CELLS = [
    ("md", r'''
    # 07 · The incident: a stale node, found, localised and explained

    The source article opens with an outage: from inside some Pods, `ServiceIP:Port` could not
    be reached, for hours, and nobody could say why, because nobody could see what the node
    was doing with the packet. Here is that outage in svcsim, and the three tools an on-call
    engineer would reach for, in the order they would:

    1. **explain** one failed request: the article's troubleshooting path, with the cluster
       as it was at that instant, ending in one sentence;
    2. **diff** the node against what kube-proxy should have written: which Services and
       endpoints are wrong there;
    3. **trace** one packet through the node's actual rules: which rule sends it where.

    The incident is `scenarios/proxy-crash.yaml`: kube-proxy on node-3 dies at 10 s and `web`
    is rolled out at 20 s. Every tool reads only the run folder, and any instant of the run
    can be inspected: svcsim re-simulates the control plane to it (`svcsim.instant`). The same
    commands exist on the command line: `svcsim explain RUN`, `svcsim diff RUN --node N --at T`,
    `svcsim trace RUN --node N --at T --src ... --dst ...`; `svcsim diff` and `svcsim trace` also
    read a real node's `iptables-save` (see `docs/real-nodes.md`).
    '''),
    ("code", r'''
    %matplotlib inline
    import tempfile
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from svcsim import plots
    from svcsim.explain import explain, pick_request
    from svcsim.instant import node_diff, run_at
    from svcsim.netfilter.interpreter import draws_from, trace
    from svcsim.netfilter.packet import Packet
    from svcsim.results import load
    from svcsim.runs import run_scenario
    from svcsim.scenario.load import load_scenario

    ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "scenarios").is_dir())
    workdir = tempfile.TemporaryDirectory(prefix="svcsim-notebook-07-")
    pd.set_option("display.width", 160)

    loaded = load_scenario(ROOT / "scenarios" / "proxy-crash.yaml")
    outcome = run_scenario(loaded, seed=loaded.scenario.seed, out_dir=Path(workdir.name) / "run")
    RUN = outcome.path
    run = load(RUN)
    print(f"{outcome.simulated_requests:,} requests; failed by client node:")
    failed = run.requests[run.requests["outcome"] != "ok"]
    failed.groupby("src_node", observed=True).size()
    '''),
    ("md", r'''
    Every failed request came from node-3, from shortly after the rollout began until well
    after it ended, while the other nodes lost nothing:
    '''),
    ("code", r'''
    plots.outcome_timeline(run)
    '''),
    ("md", r'''
    ## 1. Explain the first failed request

    The article's path, in order: does the Service exist, does it have ready endpoints, what
    did the client node's kube-proxy last program and when, where do that node's rules send
    the connection, what was the destination doing.
    '''),
    ("code", r'''
    row = pick_request(run, request=None, first_failure=True, service=None)
    found = explain(RUN, row)
    for i, step in enumerate(found.steps, start=1):
        print(f"{i}. {step.title}")
        for line in step.lines:
            print(f"   {line}")
    print("Cause:", found.cause)
    '''),
    ("md", r'''
    ## 2. Diff the node: what it holds against what it should hold

    At 40 s the rollout is over. Compare each node's rules then with what kube-proxy would
    write for the cluster as it was then: node-3 still sends to the three old Pods and never to
    the new ones; every other node agrees.
    '''),
    ("code", r'''
    state = run_at(RUN, 40.0)
    for node in sorted(state.world.kernels):
        diff = node_diff(state, node)
        print(f"{node}: {'agrees' if diff.agrees else 'DIFFERS'}")
        for service in diff.services:
            for finding in service.findings:
                if finding.differs and "from a local Pod" in finding.message:
                    print(f"   {service.service}: {finding.message}")
    '''),
    ("md", r'''
    Over the whole run, how far behind the API each node's rules were: node-3's fall behind at
    the rollout and only catch up at kube-proxy's restart.
    '''),
    ("code", r'''
    plots.rule_staleness(run)
    '''),
    ("md", r'''
    ## 3. Trace one packet through node-3's rules at that instant

    A new connection from a Pod on node-3 to `web`'s cluster IP, walked through node-3's
    actual rules at 40 s, rule by rule: it is DNATed to an address that no Pod holds any more.
    '''),
    ("code", r'''
    kernel = state.world.kernels["node-3"]
    web = state.world.api.get("Service", "default/web")
    client = next(p for p in state.world.api.list("Pod")
                  if p.node_name == "node-3" and p.meta.label("app") == "frontend")
    packet = Packet(src=client.pod_ip, dst=web.cluster_ip, protocol="tcp", dport=80, origin="pod")
    walk = trace(kernel.ruleset, packet, kernel.network, draw=draws_from(np.random.default_rng(1)))
    print(walk.format(verbose=False))
    owner = state.world.network.lookup(walk.dnat[0]) if walk.dnat else None
    print("who holds", walk.dnat, "now:", owner.pod if owner else "nobody")
    '''),
    ("md", r'''
    What ends it is what explain said: node-3's kube-proxy restarts at 130 s and its first
    (full) sync rewrites every rule. Until then nothing in the cluster notices; the only place
    the fault is visible is node-3's own rules, which is why being able to read them, and to
    compare them with what they should be, is what localises it.
    '''),
    ("md", r'''
    And where the requests went over the run: from the rollout to kube-proxy's restart, about a
    third of them (node-3's) still went to the three old Pods, though those were gone.
    '''),
    ("code", r'''
    plots.endpoint_shares(run, "default/web:http")
    '''),
    ("code", r'''
    workdir.cleanup()
    '''),
]
