"""A SeedBank hands each node's attempts the very seeds its stream gives one by one."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.traffic.draws import SEED_BLOCK, SeedBank, SeedStream

NODES = 5


def _stream(node: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(1000 + node))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(0, NODES - 1), max_size=3 * SEED_BLOCK).map(np.array),
        min_size=1,
        max_size=6,
    )
)
def test_bank_gives_each_node_its_stream_in_order(chunks: list[np.ndarray]) -> None:
    opened: list[int] = []

    def open_stream(node: int) -> np.random.Generator:
        opened.append(node)
        return _stream(node)

    bank = SeedBank(NODES, open_stream)
    streams = [SeedStream(_stream(n)) for n in range(NODES)]
    first_use: list[int] = []
    for chunk in chunks:
        nodes = chunk.astype(np.int32)
        got = bank.take(nodes)
        expected = np.empty(len(nodes), dtype=np.uint64)
        for node in sorted(set(nodes.tolist())):  # seed by seed, node after node
            at = np.flatnonzero(nodes == node)
            expected[at] = streams[node].take(len(at))
            if node not in first_use:
                first_use.append(node)
        np.testing.assert_array_equal(got, expected)
    assert opened == first_use  # streams opened when first needed, in node order


def test_a_chunk_wider_than_a_row_widens_every_row() -> None:
    bank = SeedBank(2, _stream)
    a = bank.take(np.array([0, 1, 0], dtype=np.int32))
    b = bank.take(np.full(3 * SEED_BLOCK, 1, dtype=np.int32))
    c = bank.take(np.array([0], dtype=np.int32))
    whole0 = SeedStream(_stream(0)).take(3)
    whole1 = SeedStream(_stream(1)).take(1 + 3 * SEED_BLOCK)
    np.testing.assert_array_equal(a, [whole0[0], whole1[0], whole0[1]])
    np.testing.assert_array_equal(b, whole1[1:])
    np.testing.assert_array_equal(c, whole0[2:])
