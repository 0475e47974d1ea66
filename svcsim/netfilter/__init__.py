"""The kernel side: iptables rules (model, text forms, interpreter), statistic match, conntrack.

Nothing here knows about Kubernetes: this layer is what a Linux node holds and how it evaluates
packets against it.
"""
