"""FID and KID on cached features, with clean-fid's implementations; a batched FD for the bootstrap.

* [`fid`][tgsample.eval.metrics.fid]: `cleanfid.fid.frechet_distance` on `(mu, sigma)` (`np.mean`, `np.cov` as clean-fid
  computes them), `FD = ||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})`.
* [`kid`][tgsample.eval.metrics.kid]: `cleanfid.fid.kernel_distance` (the unbiased MMD^2 with the cubic polynomial
kernel
  `k(x, y) = (x . y / d + 1)^3`, averaged over random subsets), one subset per call under a seeded
  NumPy state, so the subsets are reproducible and their spread is reported; the mean equals clean-fid's
  own `num_subsets` call with that seed.
* [`FrechetBootstrap`][tgsample.eval.metrics.FrechetBootstrap]: the same FD for many resamples at once, in torch
(float64, on any device):
  `sqrt(S_ref)` is computed once, each resample costs one weighted covariance and one symmetric
  eigendecomposition, `tr (S S_ref)^{1/2} = sum sqrt(eig(S_ref^{1/2} S S_ref^{1/2}))`. Tested equal to
  clean-fid's value; used only for the resampled intervals (clean-fid's `scipy.linalg.sqrtm` takes
  seconds per 2048-d call).
* [`knn_precision_recall`][tgsample.eval.metrics.knn_precision_recall]: k-NN precision and recall
  (Kynkaanniemi et al. 2019) with `prdc`'s implementation (extras `train`): precision is the fraction of
  samples inside some real image's k-NN ball, recall the fraction of real images inside some sample's.
* [`memorisation_rate`][tgsample.eval.metrics.memorisation_rate]: the fraction of samples that copy a
  training image, by the nearest-neighbour ratio test `d_1 / d_2 < 1/3` (Yoon et al. 2023).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

__all__ = ["gaussian_stats", "fid", "kid", "FrechetBootstrap", "resample_counts", "knn_precision_recall",
           "memorisation_rate"]


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(mu, sigma)` of features `[n, d]` (float64; `sigma` is the unbiased covariance, as in clean-fid)."""
    f = np.asarray(features, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def fid(stats_1: tuple[np.ndarray, np.ndarray], stats_2: tuple[np.ndarray, np.ndarray]) -> float:
    """Frechet distance of two `(mu, sigma)` pairs (clean-fid's `frechet_distance`)."""
    from cleanfid.fid import frechet_distance

    import warnings

    (m1, s1), (m2, s2) = stats_1, stats_2
    with contextlib.redirect_stdout(None), warnings.catch_warnings():  # it prints when it regularises a product,
        warnings.filterwarnings("ignore", message=".*`disp` argument is deprecated")  # and SciPy warns about its call
        return float(frechet_distance(np.atleast_1d(m1), np.atleast_2d(s1), np.atleast_1d(m2), np.atleast_2d(s2)))


@contextlib.contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    """NumPy's global RNG seeded for the block, then restored (clean-fid's KID draws from it)."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def kid(features: np.ndarray, reference: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float, np.ndarray]:
    """`(mean, std, values)` of KID over `subsets` random subsets of `min(n, n_ref, subset_size)` images
    (clean-fid's `kernel_distance`, one subset per call, seeded)."""
    from cleanfid.fid import kernel_distance

    f, r = np.asarray(features, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    with _numpy_seed(seed):
        values = np.array([kernel_distance(f, r, num_subsets=1, max_subset_size=subset_size) for _ in range(subsets)])
    return float(values.mean()), float(values.std(ddof=1)) if subsets > 1 else float("nan"), values


def resample_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """Bootstrap resamples of `n` items as counts `[resamples, n]` (each row sums to `n`); seeded."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    return np.stack([np.bincount(row, minlength=n) for row in idx])


def _sqrt_psd(s: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(s)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


class FrechetBootstrap:
    """FD against fixed reference statistics for many weighted resamples of one feature set.

    Args:
        mu: the reference features' mean.
        sigma: the reference features' covariance.
        device: where to compute (a GPU makes 2048-d resamples cheap).
        memory: bytes a chunk of resamples may use (its weighted features `[chunk, n, d]`).
    """

    def __init__(self, mu: np.ndarray, sigma: np.ndarray, device: Optional[torch.device] = None,
                 memory: float = 2e9):
        self.device = device or torch.device("cpu")
        self.mu = torch.as_tensor(np.atleast_1d(mu), dtype=torch.float64, device=self.device)
        self.sigma = torch.as_tensor(np.atleast_2d(sigma), dtype=torch.float64, device=self.device)
        self.root = _sqrt_psd(self.sigma)
        self.trace = torch.trace(self.sigma)
        self.memory = memory

    def distances(self, features: np.ndarray, counts: Optional[np.ndarray] = None) -> np.ndarray:
        """FD of each resample (rows of `counts` `[B, n]`; `None`: the sample itself) -> `[B]`."""
        f = torch.as_tensor(np.asarray(features), dtype=torch.float64, device=self.device)
        n, d = f.shape
        c = torch.ones(1, n, dtype=torch.float64) if counts is None else torch.as_tensor(counts, dtype=torch.float64)
        chunk = max(1, int(self.memory // max(1, n * d * 8)))
        out = []
        for i in range(0, len(c), chunk):
            w = c[i:i + chunk].to(self.device)  # [b, n], rows sum to n
            mean = w @ f / n  # [b, d]
            second = (w[:, :, None] * f).transpose(1, 2) @ f / n  # [b, d, d]; the [b, n, d] product fits `memory`
            cov = (second - mean[:, :, None] * mean[:, None, :]) * (n / (n - 1))
            inner = self.root @ cov @ self.root
            cross = torch.linalg.eigvalsh((inner + inner.transpose(1, 2)) / 2).clamp(min=0).sqrt().sum(-1)
            fd = (mean - self.mu).square().sum(-1) + cov.diagonal(dim1=1, dim2=2).sum(-1) + self.trace - 2 * cross
            out.append(fd.cpu())
        return torch.cat(out).numpy()


def paired_fid_resamples(features: Sequence[np.ndarray], mu: np.ndarray, sigma: np.ndarray, *, resamples: int,
                         seed: int, device: Optional[torch.device] = None) -> np.ndarray:
    """FD of each feature set (same rows = same images) on the same bootstrap resamples -> `[sets, resamples]`."""
    n = len(features[0])
    counts = resample_counts(n, resamples, seed)
    boot = FrechetBootstrap(mu, sigma, device)
    return np.stack([boot.distances(f, counts) for f in features])


def paired_fid(features: Sequence[np.ndarray], mu: np.ndarray, sigma: np.ndarray, *, resamples: int = 1000,
               seed: int = 0, level: float = 0.95, method: str = "basic",
               device: Optional[torch.device] = None) -> dict:
    """FID of each feature set (row `i` of every set = the same image) and of each set minus set 0, paired.

    Returns `{"fid": [value per set], "se": [bootstrap standard error per set],
    "delta": [(delta, lo, hi, p) for sets 1, 2, ...]}`: point values from clean-fid; intervals and p from the same
    `resamples` bootstrap resamples of the rows for every set
    ([`tgsample.eval.stats.bootstrap_interval`][tgsample.eval.stats.bootstrap_interval]).
    """
    from .stats import bootstrap_interval

    point = [fid(gaussian_stats(f), (mu, sigma)) for f in features]
    boot = paired_fid_resamples(features, mu, sigma, resamples=resamples, seed=seed, device=device)
    delta = [(point[s] - point[0], *bootstrap_interval(point[s] - point[0], boot[s] - boot[0], level, method))
             for s in range(1, len(features))]
    return {"fid": point, "se": [float(np.std(b, ddof=1)) for b in boot], "delta": delta}


def paired_kid(features: Sequence[np.ndarray], reference: np.ndarray, *, folds: int = 10, subsets: int = 100,
               subset_size: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """KID of each feature set, and of each set minus set 0 over `folds` disjoint folds of the rows.

    Returns `{"kid": [(mean, std) per set], "delta": [(mean over folds, lo, hi, p) for sets 1, 2, ...]}`. Fold `k`
    of every set holds the same images and uses the same random subsets (one seed per fold), so the per-fold
    differences are paired; KID is unbiased at any subset size, so their mean estimates the full-set difference;
    the interval is the t-interval over folds ([`tgsample.eval.stats.mean_ci`][tgsample.eval.stats.mean_ci]). Empty
    `delta` when there are
    fewer than two rows per fold.
    """
    from .stats import mean_ci, t_pvalue

    per_set = [kid(f, reference, subsets=subsets, subset_size=subset_size, seed=seed)[:2] for f in features]
    n = len(features[0])
    delta = []
    if n >= 2 * folds and len(features) > 1:
        parts = np.array_split(np.random.default_rng(seed).permutation(n), folds)
        per_fold = max(1, subsets // folds)
        fold = [np.array([kid(f[idx], reference, subsets=per_fold, subset_size=subset_size, seed=seed + 1 + k)[0]
                          for k, idx in enumerate(parts)]) for f in features]
        for s in range(1, len(features)):
            d = fold[s] - fold[0]
            m, h = mean_ci(d, level)
            delta.append((m, m - h, m + h, t_pvalue(d)))
    return {"kid": per_set, "delta": delta}


def knn_precision_recall(features: np.ndarray, reference: np.ndarray, *, k: int = 3) -> dict[str, float]:
    """`{"precision", "recall"}` of sample features `[n, d]` against real features `[m, d]`.

    A point's k-NN ball has the radius of its `k`-th nearest neighbour in its own set; precision is the
    fraction of samples inside the union of the real points' balls (fidelity), recall the fraction of real
    points inside the union of the samples' balls (diversity). `prdc.compute_prdc` computes both.
    """
    import contextlib
    import io

    from prdc import compute_prdc

    f, r = np.asarray(features, dtype=np.float32), np.asarray(reference, dtype=np.float32)
    if min(len(f), len(r)) <= k:
        from ..errors import ConfigError

        raise ConfigError(f"k-NN precision / recall with k={k} needs more than k samples and real images; "
                          f"got {len(f)} and {len(r)}")
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        out = compute_prdc(real_features=r, fake_features=f, nearest_k=k)
    return {"precision": float(out["precision"]), "recall": float(out["recall"])}


def memorisation_rate(samples: torch.Tensor, train: torch.Tensor, *, ratio: float = 1 / 3) -> float:
    """Fraction of `samples` `[n, ...]` whose nearest training image (`train` `[m, ...]`, L2 on the flattened
    pixels) is less than `ratio` times as far as the second nearest: `d_1 / d_2 < ratio`.

    A copy of one training image is far closer to it than to any other; a novel sample sits about as
    far from its nearest few. Run it on real held-out images for the rate of the data itself.
    """
    if len(train) < 2:
        from ..errors import ConfigError

        raise ConfigError(f"the memorisation test needs at least 2 training images, got {len(train)}")
    x = samples.reshape(len(samples), -1).double()
    t = train.reshape(len(train), -1).double().to(x.device)
    d = torch.cat([torch.cdist(x[i:i + 1000], t).topk(2, largest=False).values for i in range(0, len(x), 1000)])
    return float((d[:, 0] < ratio * d[:, 1]).double().mean()) if len(x) else float("nan")
