"""The statistics of ``tgsample eval``: FID / KID against their libraries, and calibration of the paired intervals.

Calibration: on synthetic data whose truth is known in closed form (or, for KID, conditional on the reference
through the kernel's explicit feature map), each interval is drawn many times (seeded, deterministic) and must
cover the truth at about its nominal rate. A broken interval (wrong quantile, unpaired resampling, a missing
factor) fails these tests.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from tgsample.eval.metrics import FrechetBootstrap, fid, gaussian_stats, kid, paired_fid, paired_kid
from tgsample.eval.stats import bootstrap_interval, holm, mean_ci, t_pvalue, wilson


def gaussian_fd(m1, s1, m2, s2) -> float:
    """FD of two Gaussians in closed form (diagonal covariances): ||m1 - m2||^2 + sum (sqrt(s1) - sqrt(s2))^2."""
    return float(np.sum((np.asarray(m1) - m2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2))


def test_fid_is_clean_fids_and_the_bootstrap_path_agrees():
    from cleanfid.fid import frechet_distance

    rng = np.random.default_rng(0)
    a, r = rng.normal(size=(400, 6)), rng.normal(size=(900, 6)) * 1.3 + 0.2
    sa, sr = gaussian_stats(a), gaussian_stats(r)
    assert fid(sa, sr) == pytest.approx(float(frechet_distance(*sa, *sr)), rel=1e-12)
    assert np.allclose(sa[1], np.cov(a, rowvar=False)) and np.allclose(sa[0], a.mean(0))
    boot = FrechetBootstrap(*sr)
    assert boot.distances(a)[0] == pytest.approx(fid(sa, sr), rel=1e-9)
    # a resample given as counts equals the explicitly duplicated sample
    counts = np.bincount(rng.integers(0, 400, 400), minlength=400)
    dup = np.repeat(a, counts, axis=0)
    assert boot.distances(a, counts[None])[0] == pytest.approx(fid(gaussian_stats(dup), sr), rel=1e-9)
    assert fid(sa, sa) == pytest.approx(0.0, abs=1e-9)


def test_kid_is_clean_fids_with_the_same_seed():
    from cleanfid.fid import kernel_distance

    rng = np.random.default_rng(1)
    a, r = rng.normal(size=(300, 5)), rng.normal(size=(500, 5)) + 0.3
    mean, std, values = kid(a, r, subsets=20, subset_size=100, seed=7)
    np.random.seed(7)
    assert mean == pytest.approx(kernel_distance(a, r, num_subsets=20, max_subset_size=100), rel=1e-12)
    assert len(values) == 20 and std == pytest.approx(values.std(ddof=1))
    state = np.random.get_state()[1].copy()
    kid(a, r, subsets=3, subset_size=50, seed=0)
    assert np.array_equal(np.random.get_state()[1], state), "kid must leave NumPy's global RNG as it found it"


def test_holm_and_wilson_against_known_values():
    # Holm (1979)-style example: sorted p 0.01, 0.02, 0.03, 0.04, m = 4 -> 0.04, 0.06, 0.06, 0.06
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = holm([0.01, float("nan"), 0.02])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    from scipy.stats import binomtest

    for k, n in ((0, 10), (3, 10), (10, 10), (17, 40)):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_bootstrap_interval_and_pvalue():
    r = np.linspace(-1, 3, 1001)  # resampled values of a statistic whose point value is 1
    lo, hi, p = bootstrap_interval(1.0, r, 0.95, "percentile")
    assert (lo, hi) == pytest.approx(np.quantile(r, [0.025, 0.975]))
    blo, bhi, _ = bootstrap_interval(1.0, r, 0.95, "basic")
    assert (blo, bhi) == pytest.approx((2 - hi, 2 - lo))
    assert p == pytest.approx(2 * (251 + 1) / 1002)
    assert bootstrap_interval(5.0, r + 4, 0.95, "percentile")[2] == pytest.approx(2 / 1002)


def _coverage(intervals, truth) -> float:
    return float(np.mean([lo <= t <= hi for (lo, hi), t in zip(intervals, truth)]))


def test_paired_mean_interval_covers_the_true_difference():
    rng = np.random.default_rng(2)
    hits, widths = [], []
    for _ in range(400):
        a = rng.normal(size=40)
        b = a + 0.3 + 0.5 * rng.normal(size=40)  # paired: the same images, a shifted score; truth 0.3
        m, h = mean_ci(b - a)
        hits.append(m - h <= 0.3 <= m + h)
        widths.append(h)
    assert 0.92 <= np.mean(hits) <= 0.98, np.mean(hits)
    # pairing matters: the unpaired interval would be ~2.4x wider here
    assert np.mean(widths) < 0.25
    assert t_pvalue([0.0, 0.0]) == 1.0 and t_pvalue(rng.normal(size=30) + 3) < 1e-6


def test_paired_fid_interval_covers_the_true_difference():
    """A_i = mu_A + s_A z_i and B_i = mu_B + s_B z_i share z_i (same seeds); the reference is N(0, I) exactly."""
    rng = np.random.default_rng(3)
    mu_a, s_a, mu_b, s_b = np.array([0.3, 0.1]), np.array([1.2, 0.8]), np.array([0.5, 0.0]), np.array([1.4, 0.9])
    truth = gaussian_fd(mu_b, s_b ** 2, 0, 1) - gaussian_fd(mu_a, s_a ** 2, 0, 1)
    basic, percentile = [], []
    for draw in range(200):
        z = rng.normal(size=(300, 2))
        a, b = mu_a + s_a * z, mu_b + s_b * z
        got = paired_fid([a, b], np.zeros(2), np.eye(2), resamples=200, seed=draw)
        basic.append(got["delta"][0][1:3])
        r = paired_fid([a, b], np.zeros(2), np.eye(2), resamples=200, seed=draw, method="percentile")
        percentile.append(r["delta"][0][1:3])
        assert got["delta"][0][0] == pytest.approx(got["fid"][1] - got["fid"][0])
    cov_basic, cov_pct = _coverage(basic, [truth] * 200), _coverage(percentile, [truth] * 200)
    assert 0.90 <= cov_basic <= 0.99, cov_basic
    assert cov_pct >= 0.85, cov_pct


def _poly3_map(x: np.ndarray) -> np.ndarray:
    """Explicit feature map of clean-fid's kernel (x . y / d + 1)^3: phi(x) . phi(y) = k(x, y)."""
    n, d = x.shape
    cols = [np.ones(n)]
    for k in (1, 2, 3):
        for alpha in itertools.combinations_with_replacement(range(d), k):
            counts = np.bincount(alpha, minlength=d)
            coef = math.comb(3, k) * math.factorial(k) / np.prod([math.factorial(c) for c in counts]) / d ** k
            cols.append(math.sqrt(coef) * np.prod([x[:, j] ** c for j, c in enumerate(counts)], axis=0))
    return np.stack(cols, 1)


def test_poly3_map_is_the_kernel():
    x, y = np.random.default_rng(4).normal(size=(2, 5, 3))
    assert np.allclose(_poly3_map(x) @ _poly3_map(y).T, (x @ y.T / 3 + 1) ** 3)


def test_paired_kid_interval_covers_the_true_difference():
    """Truth, given the reference set R: E_B[MMD_u^2(B, R)] - E_A[...] =
    |E phi_B|^2 - |E phi_A|^2 - 2 (E phi_B - E phi_A) . mean_R phi (the within-R term cancels)."""
    rng = np.random.default_rng(5)
    mu_a, s_a, mu_b, s_b = np.array([0.3, 0.0]), np.array([1.0, 1.0]), np.array([0.6, 0.0]), np.array([1.2, 0.9])
    z = rng.normal(size=(1_000_000, 2))
    e_a, e_b = _poly3_map(mu_a + s_a * z).mean(0), _poly3_map(mu_b + s_b * z).mean(0)  # E phi (Monte Carlo)
    hits = []
    for draw in range(200):
        ref = rng.normal(size=(400, 2))
        truth = e_b @ e_b - e_a @ e_a - 2 * (e_b - e_a) @ _poly3_map(ref).mean(0)
        z = rng.normal(size=(400, 2))
        got = paired_kid([mu_a + s_a * z, mu_b + s_b * z], ref, folds=10, subsets=20, subset_size=40, seed=draw)
        m, lo, hi, p = got["delta"][0]
        hits.append(lo <= truth <= hi)
    assert 0.90 <= np.mean(hits) <= 0.99, np.mean(hits)


def test_bootstrap_runs_on_torch_devices_with_the_same_answer():
    rng = np.random.default_rng(6)
    a, r = rng.normal(size=(200, 4)), rng.normal(size=(300, 4))
    counts = np.bincount(rng.integers(0, 200, 200), minlength=200)[None]
    cpu = FrechetBootstrap(*gaussian_stats(r), torch.device("cpu"), memory=1e3).distances(a, np.repeat(counts, 3, 0))
    assert np.allclose(cpu, cpu[0])  # chunked one resample at a time: same value
