"""The SimPy world: API server, Pods, controllers, each node's kube-proxy and kernel, faults."""
