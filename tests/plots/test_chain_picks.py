"""``chain_picks`` labels what was drawn: the iptables chain or nftables' numgen."""

from __future__ import annotations

import numpy as np
import pytest

from svcsim.plots.chain import chain_picks


@pytest.mark.parametrize(
    ("nftables", "title", "xlabel"),
    [
        (False, "kube-proxy chain, N=3", "rule position in the KUBE-SVC chain"),
        (True, "kube-proxy nftables numgen, N=3", "numgen value in the vmap"),
    ],
)
def test_title_and_axis_name_the_mode(nftables: bool, title: str, xlabel: str) -> None:
    counts = np.array([10, 11, 9], dtype=np.int64)
    fig = chain_picks(counts, [1 / 3] * 3, naive=False, seed=1, nftables=nftables)
    (ax,) = fig.get_axes()
    assert ax.get_title().startswith(title)
    assert xlabel in ax.get_xlabel()
