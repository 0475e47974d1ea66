"""A small scenario whose nodes form cohorts, with every kind of node fault (test_cohorts.py)."""

from __future__ import annotations

FAULTS = """\
  - {at: 3s, action: crash-proxy, node: node-2}
  - {at: 4s, action: fail-node, node: node-1}
  - {at: 5s, action: block-sync, node: node-5, for: 3s}
  - {at: 6s, action: partition-node, node: node-6, for: 4s}
  - {at: 7s, action: inject-stale-rule, node: node-7, service: web:http,
     endpoint: 10.244.0.250:8080}
  - {at: 8s, action: taint-node, node: node-8}
  - {at: 9s, action: restart-proxy, node: node-2}
  - {at: 10s, action: delete-pod, selector: {app: web}}
  - {at: 12s, action: rollout, deployment: web}
  - {at: 14s, action: recover-node, node: node-1}
  - {at: 16s, action: crash-proxy, node: node-4}
  - {at: 17.01s, action: restart-proxy, node: node-4}
  - {at: 19s, action: delete-pod, selector: {app: web}}
"""
"""Members leave their cohort (crash, restart, fail-node, a leader's crash); nodes that block,
partition, stale rules name run alone; a taint keeps its node in the cohort."""

NONE = "  - {at: 10s, action: delete-pod, selector: {app: web}}\n"


def scenario_yaml(timeline: str, *, nodes: int = 10, extra_service: str = "") -> str:
    """10 alike nodes, a Deployment of 3 Pods behind a Service, light traffic, 22 s."""
    return f"""\
apiVersion: svcsim/v1
kind: Scenario
metadata: {{name: cohorts}}
seed: 3
duration: 22s
cluster:
  nodes: {nodes}
  proxy: {{minSyncPeriod: 1s, syncPeriod: 30s}}
  delays: {{apiWatch: 50ms, kubeProxyWatch: 100ms, informerSync: 1s, podStartup: 1s}}
manifests:
  - inline: |
      apiVersion: v1
      kind: Service
      metadata: {{name: web}}
      spec:
        selector: {{app: web}}
        clusterIP: 10.96.0.10
        ports: [{{name: http, port: 80, targetPort: 8080, protocol: TCP}}]
{extra_service}      ---
      apiVersion: apps/v1
      kind: Deployment
      metadata: {{name: web}}
      spec:
        replicas: 3
        selector: {{matchLabels: {{app: web}}}}
        template:
          metadata: {{labels: {{app: web}}}}
          spec:
            containers:
              - name: web
                image: example/web:1
                ports: [{{name: http, containerPort: 8080}}]
      ---
      apiVersion: apps/v1
      kind: Deployment
      metadata: {{name: client}}
      spec:
        replicas: 4
        selector: {{matchLabels: {{app: client}}}}
        template:
          metadata: {{labels: {{app: client}}}}
          spec:
            containers: [{{name: client, image: example/client:1}}]
workloads:
  - name: client-to-web
    from: {{pods: {{app: client}}}}
    to: web:http
    rate: 50
    connection: {{model: per-request}}
    connectTimeout: 1s
timeline:
{timeline}"""


def extra_service(spec: str) -> str:
    """A second Service of web's Pods with ``spec`` lines added (indented as in the YAML)."""
    return f"""\
      ---
      apiVersion: v1
      kind: Service
      metadata: {{name: web-2}}
      spec:
        selector: {{app: web}}
        ports: [{{name: http, port: 80, targetPort: 8080, protocol: TCP}}]
{spec}"""


NODE_DEPENDENT = {
    "internal-local": "        internalTrafficPolicy: Local\n",
    "external-local": "        type: NodePort\n        externalTrafficPolicy: Local\n",
    "prefer-same-node": "        trafficDistribution: PreferSameNode\n",
    "source-ranges": (
        "        type: LoadBalancer\n        loadBalancerSourceRanges: [192.0.2.0/24]\n"
    ),
}
"""Second Services whose rules depend on the node: no cohorts in a scenario with one."""
