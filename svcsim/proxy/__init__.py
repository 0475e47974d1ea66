"""kube-proxy: endpoint categorisation, chain names, the per-mode rule compilers (pure)."""
