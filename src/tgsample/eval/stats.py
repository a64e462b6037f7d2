"""Intervals and tests for paired comparisons (each formula once; NumPy / SciPy).

* [`mean_ci`][tgsample.eval.stats.mean_ci]: a mean and the half-width of its two-sided Student-t interval;
[`t_pvalue`][tgsample.eval.stats.t_pvalue] the
  matching one-sample t-test of "the mean is 0". Used for per-image score differences
  `d_i = s_B(i) - s_A(i)` of images that share id, prompt and seed.
* [`bootstrap_interval`][tgsample.eval.stats.bootstrap_interval]: the *basic* bootstrap interval
`(2 t - q_hi, 2 t - q_lo)` of a statistic
  `t` from its resampled values, and a two-sided bootstrap p-value. Used for set-level metrics (FID),
  resampling image ids with replacement, the same resample for every run (so the interval is paired).
  The basic interval corrects the resampling bias of FID to first order, which the percentile interval
  doubles (the calibration test measures both).
* [`wilson`][tgsample.eval.stats.wilson]: the Wilson score interval of a proportion (a per-prompt win rate).
* [`holm`][tgsample.eval.stats.holm]: Holm's step-down adjustment of a family of p-values (family-wise error rate).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["mean_ci", "t_pvalue", "bootstrap_interval", "wilson", "holm", "z_value"]


def z_value(level: float = 0.95) -> float:
    """The two-sided normal quantile of `level` (1.96 for 0.95)."""
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its two-sided t-interval (`nan` half-width for one value)."""
    v = np.asarray(values, dtype=np.float64)
    k = len(v)
    m = float(v.mean())
    if k < 2:
        return m, float("nan")
    from scipy.stats import t

    return m, float(t.ppf(0.5 + level / 2, k - 1)) * float(v.std(ddof=1)) / math.sqrt(k)


def t_pvalue(values: Sequence[float]) -> float:
    """Two-sided one-sample t-test p-value of "mean = 0" (1 when every value is 0, `nan` for one value)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float("nan")
    if not np.any(v != v[0]):
        return 1.0 if v[0] == 0 else 0.0
    from scipy.stats import ttest_1samp

    return float(ttest_1samp(v, 0.0).pvalue)


def bootstrap_interval(point: float, resampled: Sequence[float], level: float = 0.95,
                       method: str = "basic") -> tuple[float, float, float]:
    """`(lo, hi, p)`: the `method` (`"basic"` or `"percentile"`) bootstrap interval of a statistic whose
    value is `point` and whose resampled values are `resampled`, and the two-sided p-value of "it is 0",
    `min(1, 2 (min(#{t* <= 0}, #{t* >= 0}) + 1) / (B + 1))` (on the basic-bootstrap distribution
    `2 t - t*` for `"basic"`)."""
    r = np.asarray(resampled, dtype=np.float64)
    a = (1 - level) / 2
    q_lo, q_hi = np.quantile(r, [a, 1 - a])
    if method == "basic":
        lo, hi, dist = 2 * point - q_hi, 2 * point - q_lo, 2 * point - r
    elif method == "percentile":
        lo, hi, dist = q_lo, q_hi, r
    else:
        from ..errors import ConfigError

        raise ConfigError(f"bootstrap method {method!r} is not one of ['basic', 'percentile']")
    tail = min(int((dist <= 0).sum()), int((dist >= 0).sum()))
    return float(lo), float(hi), min(1.0, 2 * (tail + 1) / (len(r) + 1))


def wilson(successes: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion `successes / n` (`successes` may count ties as halves)."""
    if n <= 0:
        return float("nan"), float("nan")
    z = z_value(level)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order: `p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))` over the
    ascending order (`nan` entries are left out of the family and stay `nan`)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(len(p), np.nan)
    idx = [i for i in np.argsort(p, kind="stable") if not math.isnan(p[i])]
    m, running = len(idx), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()
