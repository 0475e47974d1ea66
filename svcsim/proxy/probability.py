"""kube-proxy's chain of ``-m statistic`` probabilities, and how uniform it really is.

For a Service with N endpoints, kube-proxy (iptables mode) writes one rule per endpoint into the
KUBE-SVC/KUBE-SVL chain. Rule ``i`` (0-based) carries ``--probability computeProbability(N - i)``
for ``i < N - 1``; the last rule has no statistic match and always jumps
(kubernetes ``pkg/proxy/iptables/proxier.go`` @531be812, ``writeServiceToEndpointRules``).
``computeProbability(n)`` is ``fmt.Sprintf("%0.10f", 1.0/float64(n))``.

The conditional chain 1/N, 1/(N-1), ..., 1/2 would be exactly uniform with real numbers. Two
roundings make it *nearly* uniform: kube-proxy's ten decimals, then iptables' quantisation to a
31-bit threshold (:mod:`svcsim.netfilter.statistic`). This module computes the exact selection
probabilities from the stored thresholds (integer arithmetic, no floating-point error), simulates
picks the way the kernel makes them, and tests the counts for uniformity.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# numpy (like scipy) is imported by the functions that simulate and test: kube-proxy's
# compiler imports this module only for compute_probability.

from svcsim.netfilter.statistic import (
    RANDOM_BITS,
    THRESHOLD_SCALE,
    draw_u31,
    format_saved_probability,
    matches,
    threshold_from_probability,
)

DEFAULT_CHUNK_DRAWS: Final = 1 << 22
"""Random values drawn per numpy call in :func:`simulate_picks` (16 MiB of ``uint32``)."""


def _check_n(n: int) -> int:
    if n < 1:
        raise ValueError(f"endpoint count {n!r} must be >= 1")
    return n


def compute_probability(n: int) -> str:
    """Return the ``--probability`` text kube-proxy writes for "one in ``n``": ``"%0.10f"`` of 1/n.

    Go's ``fmt.Sprintf("%0.10f", x)`` formats ``%f`` with an explicit precision by exact
    multiprecision decimal conversion (strconv ``bigFtoa``) rounded half to even (strconv
    ``decimal.go`` ``shouldRoundUp``); Python's ``%`` formatting also rounds the exact binary value
    half to even, so the two agree (the tests check every ``n`` up to 100001, e.g.
    ``100001 -> "0.0000099999"``, as in kubernetes ``TestComputeProbability``).
    """
    return "%0.10f" % (1.0 / _check_n(n))


def chain_probabilities(n: int) -> list[str]:
    """Return the ``n - 1`` probability strings of an ``n``-endpoint chain, in rule order.

    Rule ``i`` gets ``compute_probability(n - i)``: 1/n, 1/(n-1), ..., 1/2. The last endpoint's
    rule has no statistic match, so ``n = 1`` gives an empty list.
    """
    return [compute_probability(n - i) for i in range(_check_n(n) - 1)]


def naive_chain_probabilities(n: int) -> list[str]:
    """Return the *wrong* chain: every one of the ``n - 1`` rules written with ``1/n``.

    Endpoint ``k < n - 1`` then gets ``(1/n)(1 - 1/n)^k`` and the last one the remaining
    ``(1 - 1/n)^(n - 1)`` (about 37% for large ``n``): a demonstration of why kube-proxy
    conditions each probability on the rules before it.
    """
    return [compute_probability(n)] * (_check_n(n) - 1)


def thresholds_for(probabilities: Sequence[str]) -> list[int]:
    """Return the 31-bit thresholds iptables stores for each probability string."""
    return [threshold_from_probability(p) for p in probabilities]


def _check_thresholds(thresholds: Sequence[int]) -> None:
    for t in thresholds:
        if not 0 <= t <= THRESHOLD_SCALE:
            raise ValueError(f"threshold {t!r} is outside [0, 2^31]")


def _exact_terms(thresholds: Sequence[int]) -> Iterator[tuple[int, int, int]]:
    """Yield ``(numerator, shift, trailing_zeros)`` with P(endpoint k) = numerator / 2^shift.

    P(k) = t_k * prod_{j<k}(2^31 - t_j) / 2^(31(k+1)); the last endpoint takes what reaches it,
    prod_j(2^31 - t_j) / 2^(31(n-1)). Everything stays in integers, so nothing is rounded here.
    ``trailing_zeros`` (of a non-zero numerator) is tracked alongside because it is cheap here
    and expensive to recover from a number with tens of thousands of bits.
    """
    _check_thresholds(thresholds)
    reach = 1  # prod_{j<k}(2^31 - t_j): how many draw sequences still reach rule k
    reach_tz = 0
    for k, t in enumerate(thresholds):
        yield reach * t, RANDOM_BITS * (k + 1), reach_tz + _trailing_zeros(t)
        reach *= THRESHOLD_SCALE - t
        reach_tz += _trailing_zeros(THRESHOLD_SCALE - t)
    yield reach, RANDOM_BITS * len(thresholds), reach_tz


def _trailing_zeros(value: int) -> int:
    return (value & -value).bit_length() - 1 if value else 0


def _dyadic_to_float(numerator: int, shift: int, trailing_zeros: int) -> float:
    """``numerator / 2^shift`` correctly rounded, reading only the top 64 bits of ``numerator``.

    The bits below the top 64 are folded into a sticky bit (they are non-zero iff there are
    fewer trailing zeros than bits dropped), so the single rounding in ``float()`` is exact
    round-to-nearest-even. Results that would be subnormal take the slow exact path.
    """
    if numerator == 0:
        return 0.0
    excess = numerator.bit_length() - 64
    if excess <= 0 or excess - shift + 64 < -1000:
        return numerator / (1 << shift)
    top = numerator >> excess
    if trailing_zeros < excess:
        top |= 1
    return math.ldexp(float(top), excess - shift)


def exact_selection_probabilities(thresholds: Sequence[int]) -> list[Fraction]:
    """Exact P(endpoint k) for a chain whose statistic rules store ``thresholds``.

    ``len(thresholds) + 1`` values (the last endpoint's rule always matches); they sum to 1.
    """
    return [Fraction(num, 1 << shift) for num, shift, _ in _exact_terms(thresholds)]


def selection_probabilities(thresholds: Sequence[int]) -> list[float]:
    """P(endpoint k) = q_k * prod_{j<k}(1 - q_j), q = threshold / 2^31, as correctly rounded floats.

    ``len(thresholds) + 1`` values: the last endpoint's rule has no statistic match and takes
    the remainder. Computed exactly in integers and rounded once, so differences from 1/N of
    order 1e-10 are real, not rounding noise. Cost grows with the square of the chain length
    (the exact products have 31 bits per rule); N = 1000 takes a few milliseconds.
    """
    return [_dyadic_to_float(*term) for term in _exact_terms(thresholds)]


def _deviations_from_uniform(thresholds: Sequence[int]) -> list[float]:
    """Exact ``P(endpoint k) - 1/n`` for each endpoint, rounded once to float."""
    n = len(thresholds) + 1
    return [(num * n - (1 << shift)) / (n << shift) for num, shift, _ in _exact_terms(thresholds)]


@dataclass(frozen=True, slots=True)
class ChainRule:
    """One rule of a KUBE-SVC chain and the share of new connections its endpoint receives.

    ``written``, ``threshold`` and ``saved`` are ``None`` for the last rule, which has no
    statistic match.
    """

    index: int
    """0-based position in the chain, which is also the endpoint's position."""
    written: str | None
    """The ``--probability`` text kube-proxy writes (iptables-restore input)."""
    threshold: int | None
    """The 31-bit threshold the kernel stores: ``lround(2^31 * written)``."""
    saved: str | None
    """What ``iptables-save`` prints back for the stored threshold."""
    selection_probability: float
    """Exact probability that a new connection goes to this endpoint."""
    deviation: float
    """``selection_probability - 1/n``, computed exactly, then rounded."""


@dataclass(frozen=True, slots=True)
class ChainAnalysis:
    """The full story of one ``n``-endpoint chain: text, thresholds, exact shares.

    ``naive`` marks the deliberately wrong chain (every rule ``1/n``).
    """

    n: int
    naive: bool
    rules: tuple[ChainRule, ...]
    max_abs_deviation: float
    """Largest ``|P(endpoint) - 1/n|`` over all endpoints."""

    @property
    def thresholds(self) -> tuple[int, ...]:
        """Stored thresholds of the ``n - 1`` statistic rules, in chain order."""
        return tuple(r.threshold for r in self.rules if r.threshold is not None)

    @property
    def selection_probabilities(self) -> tuple[float, ...]:
        """Exact per-endpoint shares, in chain order."""
        return tuple(r.selection_probability for r in self.rules)


def analyse_chain(n: int, naive: bool = False) -> ChainAnalysis:
    """Build the :class:`ChainAnalysis` of kube-proxy's chain (or the naive one) for ``n``."""
    written = naive_chain_probabilities(n) if naive else chain_probabilities(n)
    thresholds = thresholds_for(written)
    shares = selection_probabilities(thresholds)
    deviations = _deviations_from_uniform(thresholds)
    rules = tuple(
        ChainRule(
            index=k,
            written=written[k] if k < n - 1 else None,
            threshold=thresholds[k] if k < n - 1 else None,
            saved=format_saved_probability(thresholds[k]) if k < n - 1 else None,
            selection_probability=shares[k],
            deviation=deviations[k],
        )
        for k in range(n)
    )
    return ChainAnalysis(
        n=n,
        naive=naive,
        rules=rules,
        max_abs_deviation=max(abs(d) for d in deviations),
    )


def simulate_picks(
    thresholds: Sequence[int],
    samples: int,
    rng: np.random.Generator,
    chunk_draws: int = DEFAULT_CHUNK_DRAWS,
) -> npt.NDArray[np.int64]:
    """Count which endpoint each of ``samples`` new connections is sent to, the kernel's way.

    Each pick walks the chain: at every statistic rule it reaches, one fresh 31-bit value is
    drawn and compared with that rule's threshold; the first match wins, and a pick that matches
    none lands on the last endpoint (whose rule has no statistic match). Picks are independent,
    so the walk is done rule by rule for all still-unmatched picks at once: rule ``k`` draws
    exactly one value per pick that reached it, in chunks of at most ``chunk_draws`` values, so
    memory stays bounded (tens of MiB) for any ``samples`` and chain length.

    Returns ``len(thresholds) + 1`` counts summing to ``samples``.
    """
    if samples < 0:
        raise ValueError(f"negative samples {samples!r}")
    if chunk_draws < 1:
        raise ValueError(f"chunk_draws {chunk_draws!r} must be >= 1")
    import numpy as np

    counts = np.zeros(len(thresholds) + 1, dtype=np.int64)
    reaching = samples
    for k, threshold in enumerate(thresholds):
        if reaching == 0:
            break
        matched = 0
        undrawn = reaching
        while undrawn > 0:
            size = min(undrawn, chunk_draws)
            matched += int(np.count_nonzero(matches(draw_u31(rng, size), threshold)))
            undrawn -= size
        counts[k] = matched
        reaching -= matched
    counts[-1] = reaching
    return counts


def uniformity_test(counts: Sequence[int] | npt.NDArray[np.integer]) -> tuple[float, float]:
    """Pearson chi-square test of ``counts`` against equal shares: ``(statistic, p_value)``.

    ``scipy.stats.chisquare`` with ``len(counts) - 1`` degrees of freedom. A single endpoint
    cannot be non-uniform: ``(0.0, 1.0)``.
    """
    import numpy as np

    observed = np.asarray(counts, dtype=np.float64)
    if observed.ndim != 1 or observed.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D sequence, got shape {observed.shape}")
    if observed.sum() <= 0:
        raise ValueError("counts sum to zero")
    if observed.size == 1:
        return 0.0, 1.0
    from scipy import stats  # here: kube-proxy's compiler imports this module, not scipy

    result = stats.chisquare(observed)
    return float(result.statistic), float(result.pvalue)


def binomial_confidence_intervals(
    counts: Sequence[int] | npt.NDArray[np.integer], level: float = 0.95
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Clopper-Pearson (exact binomial) intervals for each endpoint's share of the picks.

    Returns ``(lower, upper)`` arrays of shares in [0, 1], one entry per endpoint.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level {level!r} is outside (0, 1)")
    import numpy as np
    from scipy import stats  # here: kube-proxy's compiler imports this module, not scipy

    k = np.asarray(counts, dtype=np.float64)
    total = k.sum()
    alpha = 1.0 - level
    with np.errstate(invalid="ignore"):
        lower = stats.beta.ppf(alpha / 2, k, total - k + 1)
        upper = stats.beta.ppf(1 - alpha / 2, k + 1, total - k)
    lower = np.where(k == 0, 0.0, lower)
    upper = np.where(k == total, 1.0, upper)
    return np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
