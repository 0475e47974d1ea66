"""Tables made by splicing equal tables built afresh: chains, lookups, names and jump counts."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svcsim.netfilter import model, table_splice
from svcsim.netfilter.model import Chain, Table
from svcsim.netfilter.text import parse_rule

NAMES = [f"KUBE-SEP-{i}" for i in range(8)]


def _chain(name: str, targets: tuple[str, ...]) -> Chain:
    return Chain(name, tuple(parse_rule(f"-j {t}") for t in targets))


CHAINS = st.builds(
    _chain, st.sampled_from(NAMES), st.lists(st.sampled_from(NAMES), max_size=3).map(tuple)
)
OPS = st.lists(
    st.tuples(
        st.sampled_from(["replace", "delete", "append", "splice"]), CHAINS, st.integers(0, 8)
    ),
    max_size=12,
)


def _same(got: Table, chains: list[Chain]) -> None:
    """``got`` behaves exactly as ``Table("nat", chains)`` does."""
    want = Table("nat", tuple(chains))
    pieces = got.chunks()  # before == joins them: the pieces as spliced
    assert all(pieces) and tuple(c for piece in pieces for c in piece) == want.chains
    assert got.chain_count() == len(chains)
    assert got == want
    assert got.names() == want.names()
    for name in [*NAMES, "KUBE-OTHER"]:
        assert got.chain(name) is want.chain(name) or got.chain(name) == want.chain(name)
        assert (name in got) == (name in want)
        assert got.jump_count(name) == want.jump_count(name)
        assert got.position(name) == want.position(name)
    assert dict(got.by_name) == dict(want.by_name)


@pytest.mark.parametrize("chunk", [2, 1024])
@pytest.mark.parametrize("fold_at", [1, 4096])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_spliced_tables_equal_fresh_ones(
    ops: list[tuple[str, Chain, int]], fold_at: int, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_splice, "FOLD_AT", fold_at)  # fold at once, or keep changes apart
    # Pieces of two chains: splices cross, join and cut pieces.
    monkeypatch.setattr(model, "CHUNK", chunk)
    chains = [_chain(NAMES[0], (NAMES[1],)), _chain(NAMES[1], ())]
    table = Table("nat", tuple(chains))
    table.jump_count("")  # counted: derived tables carry the counts on
    table.position("")  # mapped: derived tables carry the places on while they hold
    for op, chain, at in ops:
        present = {c.name for c in chains}
        if op == "replace" and chain.name in present:
            table = table_splice.rewrite_chains(table, {chain.name: chain}, (), ())
            chains = [chain if c.name == chain.name else c for c in chains]
        elif op == "delete" and chain.name in present:
            table = table_splice.rewrite_chains(table, {}, (chain.name,), ())
            chains = [c for c in chains if c.name != chain.name]
        elif op == "append" and chain.name not in present:
            table = table_splice.rewrite_chains(table, {}, (), (chain,))
            chains.append(chain)
        elif op == "splice" and chains:
            start = min(at, len(chains) - 1)
            gone = chains[start].name
            if chain.name == gone or chain.name not in present:
                table = table_splice.splice_range(table, start, start + 1, [chain])
                chains[start] = chain
        _same(table, chains)


def test_many_replacements_take_the_mapping_path() -> None:
    chains = [_chain(n, ()) for n in NAMES]
    table = Table("nat", tuple(chains))
    replaced = {n: _chain(n, (NAMES[0],)) for n in NAMES}
    assert len(replaced) + 12 > table_splice.FEW  # with deletions below: past the few
    many_deleted = NAMES[:4]
    got = table_splice.rewrite_chains(
        table, replaced, many_deleted, [_chain(f"NEW-{i}", ()) for i in range(12)]
    )
    want = [replaced[n] for n in NAMES[4:]] + [_chain(f"NEW-{i}", ()) for i in range(12)]
    _same(got, want)


def test_places_carry_over_to_a_restore_that_keeps_them() -> None:
    table = Table("nat", tuple(_chain(n, ()) for n in NAMES[:4]))
    assert table.position(NAMES[2]) == 2 and table.position("KUBE-OTHER") is None
    kept = table_splice.rewrite_chains(
        table, {NAMES[1]: _chain(NAMES[1], (NAMES[0],))}, (), (_chain("NEW", ()),)
    )
    shared, added, gone = kept.position_parts() or ({}, {}, ())
    assert shared is table.position_parts()[0] and added == {"NEW": 4}  # type: ignore[index]
    assert gone == ()
    assert [kept.position(n) for n in [*NAMES[:4], "NEW"]] == [0, 1, 2, 3, 4]
    shifted = table_splice.rewrite_chains(kept, {}, (NAMES[2], "NEW"), (_chain(NAMES[2], ()),))
    # Deleted places are noted, not remapped: a later chain's index is its place less them.
    assert shifted.position_parts() == (shared, {"NEW": None, NAMES[2]: 5}, (2, 4))
    assert [shifted.position(n) for n in [*NAMES[:4], "NEW"]] == [0, 1, 3, 2, None]
    again = table_splice.rewrite_chains(shifted, {}, (NAMES[0],), (_chain("LAST", ()),))
    assert [again.position(n) for n in [*NAMES[1:4], "LAST"]] == [0, 2, 1, 3]
    assert again.position(NAMES[0]) is None


def test_a_deletion_or_addition_leaves_the_names_to_be_derived_and_the_view_reads_them() -> None:
    table = Table("nat", tuple(_chain(n, ()) for n in NAMES[:4]))
    table.names()
    kept = table_splice.rewrite_chains(table, {NAMES[1]: _chain(NAMES[1], (NAMES[0],))}, (), ())
    assert kept.known_names() is table.names()  # carried over, not copied
    deleted = table_splice.rewrite_chains(kept, {}, (NAMES[2],), ())
    assert deleted.known_names() is None  # not copied at the restore
    appended = table_splice.rewrite_chains(kept, {}, (), (_chain("NEW", ()),))
    assert appended.known_names() is None and appended.names() == (*NAMES[:4], "NEW")
    view = deleted.names_view()
    assert deleted.names_view() is view  # one view per table
    assert deleted.known_names() is None  # made without deriving the names
    assert NAMES[0] in view and NAMES[2] not in view and len(view) == 3
    assert view == (NAMES[0], NAMES[1], NAMES[3]) and view[1] == NAMES[1]
    assert list(view) == [NAMES[0], NAMES[1], NAMES[3]] and view[1:] == (NAMES[1], NAMES[3])
    assert view != kept.names_view() and view != [NAMES[0]]
    assert deleted.known_names() == (NAMES[0], NAMES[1], NAMES[3])  # derived when read
