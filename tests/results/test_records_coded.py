"""Tests for ``Recorder.add_requests_coded``: codes plus categories record like the strings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.results.records import Recorder
from tests.results.tables import batch

_CODED = ("client", "src_node", "endpoint", "pod")


def _coded(
    kwargs: dict[str, Any], strings: list[str]
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The same batch with the ``_CODED`` columns as codes into ``strings`` (plus extras)."""
    index = {s: i for i, s in enumerate(strings)}
    out = dict(kwargs)
    for name in _CODED:
        values = np.broadcast_to(np.asarray(kwargs[name], dtype=object), len(kwargs["t_s"]))
        out[name] = np.array([index[v] for v in values], dtype=np.int32)
    return {name: strings for name in _CODED}, out


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=4),
    extra=st.lists(st.sampled_from(["zz-unused", "aa-unused", "", "pod-b"]), max_size=3),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_coded_batches_give_the_frames_of_string_batches(
    sizes: list[int], extra: list[str], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    plain, coded = Recorder(), Recorder()
    for n in sizes:
        kwargs = batch(
            n,
            rng,
            endpoint=rng.choice(["10.0.0.1:80", ""], n),
            pod=rng.choice(["p-2", "p-1", ""], n),
        )
        plain.add_requests(**kwargs)
        # Unused and duplicate strings in the categories must not show up in the frames.
        strings = sorted(
            {
                *extra,
                "pod-a",
                "pod-b",
                "external@node-1",
                "node-1",
                "node-2",
                "10.0.0.1:80",
                "",
                "p-1",
                "p-2",
            },
            reverse=seed % 2 == 0,
        )
        categories, codes = _coded(kwargs, strings + extra)
        coded.add_requests_coded(categories, **codes)
    expected, got = plain.frames()["requests"], coded.frames()["requests"]
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert coded.request_count == plain.request_count == sum(sizes)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pod": np.array([0, 9], dtype=np.int32)}, "column pod: code out of range"),
        ({"pod": np.array([-1, 0], dtype=np.int32)}, "column pod: code out of range"),
        ({"pod": np.array([0.0, 1.0])}, "column pod: dtype float64 does not hold codes"),
        ({"t_s": np.array([1.0, np.nan])}, "t_s must not be NaN"),
    ],
)
def test_bad_coded_batches_are_rejected_whole(change: dict[str, Any], message: str) -> None:
    rng = np.random.default_rng(3)
    rec = Recorder()
    kwargs = batch(2, rng, pod=np.array([0, 1], dtype=np.int32))
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        rec.add_requests_coded({"pod": ["p-1", "p-2"]}, **kwargs)
    assert rec.request_count == 0
    assert rec.frames()["requests"].empty


@pytest.mark.parametrize("name", ["outcome", "t_s", "nope"])
def test_only_category_columns_take_codes(name: str) -> None:
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match="is not a category column"):
        Recorder().add_requests_coded({name: ["x"]}, **batch(2, rng))


def test_non_string_category_in_use_is_rejected() -> None:
    rng = np.random.default_rng(9)
    kwargs = batch(2, rng, pod=np.array([0, 0], dtype=np.int32))
    with pytest.raises(ValueError, match="column pod: 7 is not a string"):
        Recorder().add_requests_coded({"pod": [7, "p"]}, **kwargs)  # type: ignore[list-item]
