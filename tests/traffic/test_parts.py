"""The traffic layer's building blocks: draws, arrivals, occupancy, specs, service times."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from svcsim.traffic.arrivals import ArrivalStream
from svcsim.traffic.draws import (
    SeedDraws,
    SeedStream,
    service_uniforms,
    statistic_draw,
    statistic_draws,
)
from svcsim.traffic.occupancy import OccupancyBook
from svcsim.traffic.spec import (
    AddressTarget,
    ExponentialTime,
    ExternalSource,
    FixedTime,
    KeepAlive,
    LognormalTime,
    PodSource,
    Retries,
    ServiceTarget,
    Udp,
    WorkloadSpec,
)

# --- draws -------------------------------------------------------------------------------------


@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=20), st.integers(1, 12))
def test_draw_matrix_rows_are_each_attempts_draw_sequence(seeds: list[int], k: int) -> None:
    matrix = statistic_draws(np.array(seeds, dtype=np.uint64), k)
    assert matrix.shape == (len(seeds), k)
    for row, seed in zip(matrix, seeds, strict=True):
        source = SeedDraws(seed)
        assert [int(v) for v in row] == [source() for _ in range(k)]
        assert [int(v) for v in row] == [statistic_draw(seed, j) for j in range(k)]
    assert int(matrix.max()) < 2**31


def test_draws_are_uniform_31_bit_values() -> None:
    seeds = SeedStream(np.random.default_rng(3)).take(20_000)
    draws = statistic_draws(seeds, 3).ravel() / 2.0**31
    assert stats.kstest(draws, "uniform").pvalue > 0.001
    # Successive draws of one attempt are not correlated.
    matrix = statistic_draws(seeds, 2) / 2.0**31
    assert abs(np.corrcoef(matrix[:, 0], matrix[:, 1])[0, 1]) < 0.03
    u = service_uniforms(seeds)
    assert u.min() > 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 0.001


def test_seed_stream_does_not_depend_on_how_it_is_taken() -> None:
    whole = SeedStream(np.random.default_rng(5)).take(12)
    stream = SeedStream(np.random.default_rng(5))
    parts = np.concatenate([stream.take(n) for n in (3, 0, 1, 8)])
    assert np.array_equal(whole, parts)


# --- arrivals ----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 10.0), max_size=12))
def test_arrivals_do_not_depend_on_the_windows(cuts: list[float]) -> None:
    schedule = ((0.0, 50.0), (3.3, 0.0), (4.0, 200.0))
    whole, u_whole = ArrivalStream(schedule, np.random.default_rng(1)).take(0.0, 10.0)
    stream = ArrivalStream(schedule, np.random.default_rng(1))
    bounds = [0.0, *sorted(cuts), 10.0]
    taken = [stream.take(a, b) for a, b in itertools.pairwise(bounds)]
    assert np.array_equal(whole, np.concatenate([t for t, _ in taken]))
    assert np.array_equal(u_whole, np.concatenate([u for _, u in taken]))
    assert np.all(np.diff(whole) >= 0)
    assert not np.any((whole >= 3.3) & (whole < 4.0))  # rate 0 in between


def test_arrival_counts_are_poisson() -> None:
    counts = []
    for seed in range(200):
        times, _ = ArrivalStream(((0.0, 40.0),), np.random.default_rng(seed)).take(0.0, 2.5)
        counts.append(len(times))
    # Mean 100: the sample mean is within 4 standard errors, the variance about the mean.
    assert abs(np.mean(counts) - 100) < 4 * math.sqrt(100 / 200)
    assert 70 < np.var(counts) < 135


# --- occupancy ---------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 3.0),
            st.lists(st.floats(0.0, 200.0), max_size=6),
            st.booleans(),
            st.booleans(),
        ),
        max_size=25,
    )
)
def test_occupancy_counts_exactly(steps: list[tuple[float, list[float], bool, bool]]) -> None:
    book = OccupancyBook(3, bin_s=0.5)
    held: list[float] = []
    now = 0.0
    for dt, lifetimes, bulk, reset in steps:
        now += dt
        expiries = [now + life for life in lifetimes]
        if bulk:
            book.add(np.ones(len(expiries), dtype=np.intp), np.array(expiries))
        else:
            for e in expiries:
                book.add_one(1, e)
        book.add(np.array([2], dtype=np.intp), np.array([now + 1.0]))  # another node's
        held += expiries
        if reset and any(e > now for e in held):
            old = min(e for e in held if e > now)
            held[held.index(old)] = now + 10.0
            book.shorten(1, old, now + 10.0)
        live = sum(1 for e in held if e > now)
        assert book.bound(1) >= live
        assert book.live(1, now) == live
        assert book.live(0, now) == 0
        assert book.live_all(now).tolist() == [0, live, book.live(2, now)]


def test_occupancy_clear_forgets_one_node() -> None:
    book = OccupancyBook(2, bin_s=0.5)
    book.add(np.array([0, 1, 1], dtype=np.intp), np.array([5.0, 5.0, 7.0]))
    book.add_one(1, 6.0)
    assert book.live_all(1.0).tolist() == [1, 3]
    book.clear(1)
    assert book.live_all(2.0).tolist() == [1, 0]
    assert book.bound(1) == 0


def test_occupancy_refuses_to_go_back() -> None:
    book = OccupancyBook(1, bin_s=0.5)
    book.live_all(10.0)
    with pytest.raises(ValueError, match="back in time"):
        book.live(0, 2.0)


# --- specs and service times -------------------------------------------------------------------


def _spec(**changes: object) -> WorkloadSpec:
    values: dict[str, object] = {
        "name": "w", "source": PodSource({"app": "c"}), "target": ServiceTarget("default/web"),
        "rate": ((0.0, 10.0),),
    }  # fmt: skip
    values.update(changes)
    return WorkloadSpec(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"name": ""},
        {"rate": ((0.0, -1.0),)},
        {"rate": ((1.0, 5.0), (1.0, 6.0))},
        {"rate": ((0.0, math.inf),)},
        {"connect_timeout_s": 0.0},
        {"request_timeout_s": -1.0},
        {"target": AddressTarget("10.96.0.1", 53, "udp")},  # udp address, tcp model
        {"target": AddressTarget("10.96.0.1", 80), "connection": Udp()},
    ],
)
def test_bad_workloads_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _spec(**changes)


@pytest.mark.parametrize(
    "build",
    [
        lambda: ServiceTarget("web"),
        lambda: AddressTarget("10.0.0.1", 0),
        lambda: KeepAlive(0),
        lambda: Retries(-1),
        lambda: Retries(1, -0.1),
        lambda: PodSource({}),
        lambda: ExponentialTime(0.0),
        lambda: LognormalTime(1.0, 0.0),
        lambda: FixedTime(-1.0),
    ],
)
def test_bad_parts_are_refused(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


def test_workload_properties() -> None:
    spec = _spec(rate=((1.0, 5.0), (4.0, 0.0)), connection=Udp(fixed_source_port=True))
    assert [spec.rate_at(t) for t in (0.0, 1.0, 3.9, 4.0)] == [0.0, 5.0, 5.0, 0.0]
    assert spec.protocol == "udp" and spec.per_flow
    assert spec.failure_wait_s("connect") == spec.request_timeout_s  # UDP has no connect
    tcp = _spec(connection=KeepAlive(3))
    assert tcp.per_flow and tcp.failure_wait_s("connect") == tcp.connect_timeout_s
    assert not _spec().per_flow
    assert Retries(3, 0.5).delay_s(2) == 2.0
    assert ExternalSource("node-1").ip == "203.0.113.10"


@pytest.mark.parametrize(
    ("time", "mean", "median"),
    [
        (ExponentialTime(0.02), 0.02, 0.02 * math.log(2)),
        (FixedTime(0.05), 0.05, 0.05),
        (LognormalTime(0.01, 0.5), 0.01 * math.exp(0.125), 0.01),
    ],
)
def test_service_time_quantiles(time: object, mean: float, median: float) -> None:
    u = (np.arange(200_000) + 0.5) / 200_000
    samples = time.quantile(u)  # type: ignore[attr-defined]
    assert samples.mean() == pytest.approx(mean, rel=0.01)
    assert np.median(samples) == pytest.approx(median, rel=0.001)
    assert np.all(np.diff(samples) >= 0)  # a quantile function is monotone
