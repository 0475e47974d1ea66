"""Cells of notebooks/01-probability-chain.ipynb (see notebooks/build_notebooks.py)."""

# One cell per entry, as the notebook shows it: not for the formatter to rearrange.
# fmt: off
CELLS = [
    ("md", r'''
    # 01 · Why kube-proxy's probability chain is uniform (and how uniform, exactly)

    A ClusterIP Service with $N$ ready endpoints becomes, in kube-proxy's iptables mode, one
    `KUBE-SVC-…` chain with one rule per endpoint. Rule $k$ (counting from 0) jumps to endpoint
    $k$'s `KUBE-SEP-…` chain with

    ```
    -m statistic --mode random --probability 1/(N-k)
    ```

    and the last rule has no `statistic` match at all: it always jumps. The probabilities are
    therefore $\tfrac1N, \tfrac1{N-1}, \dots, \tfrac12$, then "always". This notebook shows

    1. why that chain gives every endpoint exactly $1/N$ of the new connections,
    2. what the kernel really stores (a 31-bit threshold, not a probability) and the exact
       deviation from $1/N$ that follows, for every $N$ up to 1000,
    3. a Monte Carlo drawn the kernel's way, with a chi-square test,
    4. the *naive* chain (every rule $1/N$) for contrast.

    Everything here uses `svcsim.proxy.probability` (kube-proxy's side) and
    `svcsim.netfilter.statistic` (iptables' and the kernel's side); no cluster is simulated.
    '''),
    ("code", r'''
    %matplotlib inline
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure
    from scipy import optimize, stats

    from svcsim.netfilter.statistic import (
        THRESHOLD_SCALE,
        draw_u31,
        format_saved_probability,
        matches,
        threshold_from_probability,
    )
    from svcsim.plots import chain_picks
    from svcsim.proxy.probability import (
        analyse_chain,
        chain_probabilities,
        exact_selection_probabilities,
        naive_chain_probabilities,
        simulate_picks,
        thresholds_for,
        uniformity_test,
    )

    SEED = 20240601  # every random draw in this notebook comes from this seed
    '''),
    ("md", r'''
    ## 1. The derivation

    A new connection walks the chain from the top. At each `statistic` rule the kernel draws a
    **fresh** random number, independent of every earlier draw, so rule $k$ matches with
    probability $q_k = \frac{1}{N-k}$ *given that the connection reached it*. To reach rule $k$,
    the connection must have missed rules $0, \dots, k-1$:

    $$
    P(\text{reach } k) = \prod_{j=0}^{k-1}\Bigl(1-\frac{1}{N-j}\Bigr)
                       = \prod_{j=0}^{k-1}\frac{N-j-1}{N-j}
                       = \frac{N-1}{N}\cdot\frac{N-2}{N-1}\cdots\frac{N-k}{N-k+1}
                       = \frac{N-k}{N}.
    $$

    The product telescopes. Then

    $$
    P(\text{endpoint } k) = P(\text{reach } k)\cdot q_k = \frac{N-k}{N}\cdot\frac{1}{N-k}
                          = \frac1N \qquad (k < N-1),
    $$

    and the last endpoint gets everything that reaches it, $P(\text{reach } N-1) = \frac{1}{N}$.

    The intuition: when a connection reaches rule $k$, exactly $N-k$ endpoints are still in
    play, and rule $k$ picks "this one" with probability one over the number left. It is
    drawing names from a hat one at a time, and every name is equally likely to come out.

    What kube-proxy actually writes for $N = 5$ (`computeProbability` is Go's
    `fmt.Sprintf("%0.10f", 1.0/float64(n))`, pkg/proxy/iptables/proxier.go):
    '''),
    ("code", r'''
    for k, p in enumerate(chain_probabilities(5)):
        print(f"-A KUBE-SVC-EXAMPLE -m statistic --mode random --probability {p} -j KUBE-SEP-{k}")
    print("-A KUBE-SVC-EXAMPLE -j KUBE-SEP-4")
    '''),
    ("md", r'''
    ## 2. What the kernel stores: a 31-bit threshold

    The text is not what the kernel evaluates. Three steps turn it into a packet's fate:

    1. **kube-proxy rounds** $1/n$ to ten decimals: `0.3333333333`.
    2. **iptables quantises** it: `libxt_statistic.c` stores `lround(0x80000000 * p)`, an
       integer threshold $t \in [0, 2^{31}]$.
    3. **The kernel compares**: `xt_statistic.c` matches iff
       `(get_random_u32() & 0x7FFFFFFF) < t`, so the match probability is exactly $t / 2^{31}$.

    `iptables-save` prints the stored threshold back as `"%.11f"` of $t/2^{31}$, which is why
    a rule written with `0.3333333333` is saved as `0.33333333349`. The table below is the
    $N = 7$ chain: text written, threshold stored, text printed back, the **exact** share of
    new connections each endpoint gets (computed in integer arithmetic from the thresholds,
    then rounded once), and its deviation from $1/7$.
    '''),
    ("code", r'''
    chain7 = analyse_chain(7)
    table = pd.DataFrame(
        {
            "written": [r.written or "(no statistic match)" for r in chain7.rules],
            "threshold t": pd.array([r.threshold for r in chain7.rules], dtype="Int64"),
            "iptables-save": [r.saved or "" for r in chain7.rules],
            "P(endpoint)": [f"{r.selection_probability:.13f}" for r in chain7.rules],
            "P - 1/N": [f"{r.deviation:+.3e}" for r in chain7.rules],
        }
    )
    table.index.name = "rule k"
    table
    '''),
    ("md", r'''
    A quick check of the encoding by hand: $2^{31}/3 = 715\,827\,882.67$, and
    $2^{31}\times 0.3333333333 = 715\,827\,882.60$, which `lround` makes $715\,827\,883$. The
    kernel's rule 0 therefore matches with probability $715\,827\,883 / 2^{31}$, a little more
    than one third; `iptables-save` shows it:
    '''),
    ("code", r'''
    t = threshold_from_probability("0.3333333333")
    print("threshold:", t, " exact probability:", t / THRESHOLD_SCALE)
    print("iptables-save prints:", format_saved_probability(t))
    # The kernel's decision for a few draws: a match iff the 31-bit draw is below t.
    draws = draw_u31(np.random.default_rng(SEED), 6)
    for u in draws:
        print(f"draw {int(u):>10d}  match={matches(u, t)}")
    '''),
    ("md", r'''
    ### The exact deviation from $1/N$, for every $N$ up to 1000

    Each stored probability is off by at most about $2.3\times10^{-10}$ ($2^{-32}$ from
    `lround`, plus at most $5\times10^{-11}$ from the ten decimals), and the errors compound
    along the chain. `analyse_chain(n).max_abs_deviation` is the largest
    $|P(\text{endpoint}) - 1/N|$ over the chain's endpoints, computed exactly (the products are
    kept as integers with 31 bits per rule, so nothing here is floating-point noise). This
    cell takes a few seconds: the exact products for $N = 1000$ have 31 000 bits.
    '''),
    ("code", r'''
    ns = np.arange(1, 1001)
    max_dev = np.array([analyse_chain(int(n)).max_abs_deviation for n in ns])
    relative = max_dev * ns  # |N * P - 1|: the deviation as a fraction of the fair share

    fig = Figure(figsize=(9, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(ns, max_dev, ".", markersize=2)
    top.set_ylabel("max |P(endpoint) - 1/N|\n(probability)")
    top.set_title("kube-proxy's chain after iptables' 31-bit quantisation: "
                  "exact deviation from 1/N")
    top.axhline(2.0**-32, color="grey", linestyle=":", label="2^-32 (half a threshold step)")
    top.legend(loc="lower right")
    bottom.plot(ns, relative, ".", markersize=2, color="tab:orange")
    bottom.set_ylabel("max |N·P(endpoint) - 1|\n(fraction of the fair share)")
    bottom.set_xlabel("number of endpoints N")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    exact_ns = [int(n) for n, d in zip(ns, max_dev, strict=True) if d == 0]
    print(f"exactly uniform for N in {exact_ns}")
    print(f"largest deviation: {max_dev.max():.3e} at N = {ns[max_dev.argmax()]}")
    print(f"at N = 1000: {max_dev[-1]:.3e} absolute, {relative[-1]:.3e} of the fair share")
    fig
    '''),
    ("md", r'''
    The absolute deviation never exceeds about $3\times10^{-10}$: it stays near half a
    threshold step ($2^{-32}$), because each endpoint's share is dominated by its own rule's
    rounding.
    Relative to the fair share $1/N$ it grows roughly linearly with $N$ (a fixed absolute error
    on an ever smaller share), and is still only a few parts in ten million at $N = 1000$.
    Only $N = 1$ and $N = 2$ are exact: every longer chain contains a probability like $1/3$
    that no 31-bit threshold represents.

    **Could anyone ever notice?** A chi-square test on $M$ new connections has noncentrality
    $\lambda = M \cdot N\sum_k (P_k - 1/N)^2$. The cell below finds the $\lambda$ at which a
    test at significance 0.001 rejects uniformity half of the time, and the $M$ that needs.
    '''),
    ("code", r'''
    def picks_to_notice(n: int, alpha: float = 1e-3, power: float = 0.5) -> float:
        """New connections a chi-square test needs to reject uniformity with this power."""
        deviations = np.array([r.deviation for r in analyse_chain(n).rules])
        per_pick = n * float(np.sum(deviations**2))
        critical = stats.chi2.ppf(1 - alpha, n - 1)
        lam = optimize.brentq(lambda x: stats.ncx2.sf(critical, n - 1, x) - power, 1e-6, 1e4)
        return lam / per_pick

    rows = []
    for n in (3, 10, 100, 1000):
        m = picks_to_notice(n)
        rows.append({"N": n, "new connections needed": f"{m:.1e}",
                     "years at 1 million connections/s": f"{m / 1e6 / 3.15e7:.1e}"})
    pd.DataFrame(rows).set_index("N")
    '''),
    ("md", r'''
    The quantisation is real, but no load test will ever see it: the chain is uniform for
    every practical purpose.

    ## 3. A Monte Carlo drawn the kernel's way

    `simulate_picks` walks the chain as the kernel does: at each rule a connection reaches, it
    draws one fresh value with `draw_u31` (`get_random_u32() & 0x7FFFFFFF`) and compares it
    with that rule's stored threshold; the first match wins, and a connection that matches no
    `statistic` rule lands on the last endpoint. Two million picks on the $N = 5$ chain, then
    Pearson's chi-square test against equal shares:
    '''),
    ("code", r'''
    N, PICKS = 5, 2_000_000
    kp_thresholds = thresholds_for(chain_probabilities(N))
    kp_exact = [float(p) for p in exact_selection_probabilities(kp_thresholds)]
    kp_counts = simulate_picks(kp_thresholds, PICKS, np.random.default_rng(SEED))
    kp_stat, kp_p = uniformity_test(kp_counts)
    print("thresholds:", kp_thresholds)
    print("picks per endpoint:", kp_counts.tolist())
    print(f"chi-square = {kp_stat:.2f} on {N - 1} degrees of freedom, p = {kp_p:.3f}")
    chain_picks(kp_counts, kp_exact, naive=False, seed=SEED)
    '''),
    ("md", r'''
    Every endpoint's 95 % Clopper–Pearson interval covers $1/N$, and the p-value is
    unremarkable: two million picks are more than ten orders of magnitude short of seeing the
    quantisation. (`exact_selection_probabilities` gives each share as an exact `Fraction`;
    the crosses are those, rounded to floats.)

    ## 4. The naive chain, for contrast

    A natural mistake is to write $1/N$ on *every* rule ("each endpoint gets one in $N$").
    Then rule $k$ is reached with probability $(1-\frac1N)^k$ and endpoint $k$ gets
    $\frac1N(1-\frac1N)^k$, a geometric decay, while the last endpoint collects the remainder
    $(1-\frac1N)^{N-1}$, which tends to $1/e \approx 37\,\%$ for large $N$. The same Monte Carlo
    and the same test:
    '''),
    ("code", r'''
    naive_thresholds = thresholds_for(naive_chain_probabilities(N))
    naive_exact = [float(p) for p in exact_selection_probabilities(naive_thresholds)]
    naive_counts = simulate_picks(naive_thresholds, PICKS, np.random.default_rng(SEED))
    naive_stat, naive_p = uniformity_test(naive_counts)
    print(f"chi-square = {naive_stat:.0f} on {N - 1} degrees of freedom, p = {naive_p:.3g}")
    pd.DataFrame(
        {
            "kube-proxy exact": kp_exact,
            "kube-proxy observed": kp_counts / PICKS,
            "naive exact": naive_exact,
            "naive observed": naive_counts / PICKS,
        }
    ).rename_axis("endpoint k").round(5)
    '''),
    ("code", r'''
    chain_picks(naive_counts, naive_exact, naive=True, seed=SEED)
    '''),
    ("md", r'''
    The naive chain fails the test beyond any doubt (the p-value underflows to zero). For a
    larger Service the shape is stark: with $N = 100$ the first endpoint gets 1 %, the 99th
    about 0.37 %, and the last one more than a third of all new connections.
    '''),
    ("code", r'''
    big = analyse_chain(100, naive=True)
    shares = np.array(big.selection_probabilities)
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    ax = fig.add_subplot()
    ax.semilogy(np.arange(100), shares, "o", markersize=3, label="naive chain (every rule 1/N)")
    ax.semilogy(np.arange(100), analyse_chain(100).selection_probabilities, "-",
                label="kube-proxy's chain")
    ax.set_xlabel("endpoint index (rule position in the KUBE-SVC chain)")
    ax.set_ylabel("share of new connections\n(log scale)")
    ax.set_title("N = 100: exact share per endpoint")
    ax.legend(loc="upper center")
    ax.grid(alpha=0.3, which="both")
    print(f"last endpoint's share: {shares[-1]:.4f}  (1/e = {np.exp(-1):.4f})")
    fig
    '''),
    ("md", r'''
    ## Summary

    * The conditional chain $\frac1N, \frac1{N-1}, \dots, \frac12, 1$ is uniform because the
      probability of reaching rule $k$ telescopes to $\frac{N-k}{N}$.
    * The kernel evaluates 31-bit thresholds, not probabilities; with kube-proxy's ten
      decimals the shares deviate from $1/N$ by at most about $3\times10^{-10}$ for
      $N \le 1000$, far below anything measurable.
    * A kernel-style Monte Carlo passes the chi-square test; the naive chain fails it
      spectacularly and piles about 37 % of a large Service's connections on its last endpoint.

    The next notebooks leave the arithmetic behind and simulate a cluster: what happens to
    these rules while Pods come and go (02), when a node's kube-proxy stops updating them
    (03), and when conntrack remembers a decision the rules have since changed (04).
    '''),
]
# fmt: on
