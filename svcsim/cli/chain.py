"""``svcsim chain N``: kube-proxy's probability chain for N endpoints, exactly and by simulation.

Prints, rule by rule, what kube-proxy writes, what the kernel stores, what iptables-save shows,
and the exact share of new connections each endpoint receives; then draws picks the kernel's
way and tests them for uniformity. ``--naive`` shows the wrong chain (every rule 1/N).
``--mode nftables`` shows nftables mode's single ``numgen random mod N vmap`` rule instead:
which 32-bit draws pick each endpoint and its exact share ``count / 2^32``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, Literal

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from svcsim.cli.common import console as cli_console
from svcsim.cli.common import fail, interrupted

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    import numpy.typing as npt

    from svcsim.proxy.numgen_probability import NumgenChoice
    from svcsim.proxy.probability import ChainAnalysis

# numpy and svcsim.proxy.probability (which imports scipy) are imported inside the command,
# so that ``svcsim --help`` and the other commands start fast.

MAX_TABLE_ROWS: Final = 50
"""Longer tables show their first and last ``MAX_TABLE_ROWS // 2`` rows around a "..." row."""


def _shown_rows(n: int) -> list[int | None]:
    """Row indices to print, with ``None`` where rows are elided."""
    if n <= MAX_TABLE_ROWS:
        return list(range(n))
    half = MAX_TABLE_ROWS // 2
    return [*range(half), None, *range(n - half, n)]


def _rule_table(analysis: ChainAnalysis) -> Table:
    n = analysis.n
    title = (
        f"NAIVE chain for N={n}: every rule written as 1/N (not what kube-proxy does)"
        if analysis.naive
        else f"kube-proxy iptables chain for N={n} endpoint(s) (KUBE-SVC rules, in order)"
    )
    # Fits 80 columns up to N=1000: values never wrap, headers are broken into lines no wider
    # than their values, the box's one space between columns, rule and endpoint share one.
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=0, show_edge=False)
    for header in (
        "rule:\nendpoint",
        "written\nprobability",
        "stored\nthreshold\n(of 2^31)",
        "iptables-save\nprints",
        "exact\nP(endpoint)",
        "deviation\nfrom 1/N",
    ):
        table.add_column(header, justify="right", no_wrap=True)
    for k in _shown_rows(n):
        if k is None:
            table.add_row(*["..."] * 6)
            continue
        rule = analysis.rules[k]
        table.add_row(
            f"{k + 1}:ep{k}",
            rule.written if rule.written is not None else "-",
            str(rule.threshold) if rule.threshold is not None else "-",
            rule.saved if rule.saved is not None else "-",
            f"{rule.selection_probability:.17f}",
            f"{rule.deviation:+.3e}",
        )
    table.caption = (
        f"rule {n}: no statistic match, it takes every connection the rules above leave"
        if not analysis.naive
        else ""
    )
    return table


def _print_skew(console: Console, analysis: ChainAnalysis) -> None:
    """For the naive chain: how far the first and last endpoints are from their fair share."""
    n = analysis.n
    shares = analysis.selection_probabilities
    console.print(
        f"Naive skew: the first endpoint gets 1/N = {shares[0]:.6f}, the last gets "
        f"(1-1/N)^(N-1) = {shares[-1]:.6f}, {shares[-1] * n:.2f} times its fair share 1/N = "
        f"{1 / n:.6f}; max/min share = {max(shares) / min(shares):.2f}."
    )


def _numgen_table(choices: Sequence[NumgenChoice]) -> Table:
    n = len(choices)
    table = Table(
        title=f"nftables rule for N={n}: numgen random mod {n} vmap",
        box=box.SIMPLE_HEAD,
        padding=0,
        show_edge=False,
    )
    for header in (
        "vmap\nelement",
        "first draw\n(of 2^32)",
        "draws\nmapped here",
        "exact\nP(endpoint)",
        "deviation\nfrom 1/N",
    ):
        table.add_column(header, justify="right", no_wrap=True)
    for k in _shown_rows(n):
        if k is None:
            table.add_row(*["..."] * 5)
            continue
        choice = choices[k]
        table.add_row(
            f"{k} : ep{k}",
            str(choice.first_draw),
            f"{choice.count:,}",
            f"{float(choice.probability):.17f}",
            f"{choice.deviation:+.3e}",
        )
    table.caption = "endpoint k gets the draws r with (r * N) >> 32 == k"
    return table


def _pick_table(exact: Sequence[float], counts: npt.NDArray[np.int64], samples: int) -> Table:
    from svcsim.proxy.probability import binomial_confidence_intervals

    lower, upper = binomial_confidence_intervals(counts)
    table = Table(title="Monte Carlo picks per endpoint", box=box.SIMPLE_HEAD)
    for header in (
        "endpoint",
        "count",
        "observed\nshare",
        "95% CI\n(Clopper-Pearson)",
        "exact\nP(endpoint)",
    ):
        table.add_column(header, justify="right", no_wrap=True)
    for k in _shown_rows(len(exact)):
        if k is None:
            table.add_row(*["..."] * 5)
            continue
        table.add_row(
            f"ep{k}",
            f"{int(counts[k]):,}",
            f"{counts[k] / samples:.6f}",
            f"[{lower[k]:.6f}, {upper[k]:.6f}]",
            f"{exact[k]:.6f}",
        )
    return table


def _write_plot(
    path: Path,
    exact: Sequence[float],
    counts: npt.NDArray[np.int64],
    seed: int,
    *,
    naive: bool,
    nftables: bool,
) -> None:
    """Observed share per endpoint with 95% binomial intervals, against the fair share 1/N."""
    # Imported here: matplotlib and pandas would slow down every other command's start.
    from svcsim.plots import chain_picks, png_bytes

    figure = chain_picks(counts, exact, naive=naive, seed=seed, nftables=nftables)
    path.write_bytes(png_bytes(figure, dpi=120))


def chain(
    n: Annotated[
        int,
        typer.Argument(min=1, metavar="N", help="Number of endpoints behind the Service (N >= 1)."),
    ],
    samples: Annotated[
        int, typer.Option("--samples", min=1, help="Monte Carlo picks to draw.")
    ] = 1_000_000,
    seed: Annotated[
        int | None,
        typer.Option("--seed", min=0, help="Seed for the picks; drawn and printed if omitted."),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", dir_okay=False, help="Write a PNG of the observed shares."),
    ] = None,
    naive: Annotated[
        bool, typer.Option("--naive", help="Show the wrong chain: every rule 1/N.")
    ] = False,
    mode: Annotated[
        Literal["iptables", "nftables"],
        typer.Option(
            "--mode",
            help="kube-proxy's --proxy-mode: iptables (the statistic chain) or nftables "
            "(one numgen random mod N vmap rule).",
        ),
    ] = "iptables",
) -> None:
    """Show kube-proxy's endpoint choice for N endpoints: exact shares and a simulation."""
    if naive and mode == "nftables":
        fail(["--naive: nftables mode has no naive variant (one numgen rule, no chain)"])
    try:
        _chain(n, samples=samples, seed=seed, plot=plot, naive=naive, nftables=mode == "nftables")
    except KeyboardInterrupt:
        interrupted("nothing was written" if plot is None else f"{plot} may be incomplete")


def _chain(
    n: int, *, samples: int, seed: int | None, plot: Path | None, naive: bool, nftables: bool
) -> None:
    import numpy as np

    from svcsim.proxy.numgen_probability import analyse_numgen, simulate_numgen_picks
    from svcsim.proxy.probability import analyse_chain, simulate_picks, uniformity_test
    from svcsim.results.uniformity import uniformity_verdict

    console = cli_console()
    if nftables:
        choices = analyse_numgen(n)
        exact = [float(c.probability) for c in choices]
        max_deviation = max(abs(c.deviation) for c in choices)
        console.print(_numgen_table(choices))
    else:
        analysis = analyse_chain(n, naive=naive)
        exact = list(analysis.selection_probabilities)
        max_deviation = analysis.max_abs_deviation
        console.print(_rule_table(analysis))
    console.print(
        f"Max |deviation| from 1/N over the {n} endpoint(s): {max_deviation:.3e} "
        f"({max_deviation * n:.3e} of the fair share)."
    )
    if naive and n > 1:
        _print_skew(console, analysis)

    if seed is None:
        # A fresh 64-bit seed from OS entropy, printed so the run can be repeated exactly.
        seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    rng = np.random.default_rng(seed)
    if nftables:
        counts = simulate_numgen_picks(n, samples, rng)
        how = "drawing one 32-bit value and scaling it with reciprocal_scale"
    else:
        counts = simulate_picks(analysis.thresholds, samples, rng)
        how = "walking the rules and drawing one 31-bit value per statistic rule it reaches"
    chi2, p_value = uniformity_test(counts)

    console.print()
    console.print(
        f"Monte Carlo: {samples:,} picks, each {how}; seed {seed} (repeat with --seed {seed}).",
        soft_wrap=True,  # never break the seed away from its option
    )
    console.print(_pick_table(exact, counts, samples))
    verdict = uniformity_verdict(p_value)  # the words and level of svcsim run and report
    if n == 1:
        console.print("A single endpoint receives every pick: uniform by definition.")
    else:
        console.print(
            f"Chi-square vs equal shares: statistic {chi2:.4f} with {n - 1} degrees of freedom, "
            f"p-value {p_value:.4g} -> {verdict}."
        )
    if plot is not None:
        _write_plot(plot, exact, counts, seed, naive=naive, nftables=nftables)
        console.print(f"Plot written to {plot}")
