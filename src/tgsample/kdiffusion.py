"""Run tgsample guidances with k-diffusion's 13 stock samplers.

A stock sampler calls `model(x, sigma, **extra_args) -> denoised`: it has no step
number, no `sigma_{i+1}` and one estimate per call (with `s_churn > 0` it even
evaluates at `sigma_hat`, off the schedule). So it can run any guidance whose
`direction` equals its `denoised` and which needs no step index (none, CFG, a
sigma interval of CFG, plugins that declare the same); a guidance that needs a split
direction or the step (CFG++, teacher guidance, step intervals) is refused with
[`UnsupportedGuidanceError`][tgsample.errors.UnsupportedGuidanceError] before sampling starts -- never guessed from the
call count. These solvers declare that they provide neither capability
([`tgsample.solvers.provides`][tgsample.solvers.provides]), which is what the check reads.

`dpm_fast` / `dpm_adaptive` integrate from `sigmas[0]` to the smallest positive sigma
(`dpm_fast` in `len(sigmas) - 2` steps), then take one denoising step to 0.
Ancestral samplers draw their noise from the per-sample `ancestral` stream. The SDE samplers
(`dpmpp_sde`, `dpmpp_2m_sde`, `dpmpp_3m_sde`) get k-diffusion's own default, a
`BrownianTreeNoiseSampler` with one tree per sample, seeded from that sample's `ancestral`
stream: DPM++ SDE asks for noise over two overlapping intervals per step, which only a Brownian
tree correlates correctly (independent draws shrink the output variance).
"""

from __future__ import annotations

import inspect
import warnings
from typing import TYPE_CHECKING, Any, Callable, Optional

from torch import Tensor

from .errors import ConfigError

if TYPE_CHECKING:
    from .solvers import GuidedModel

STOCK = ("euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive",
         "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde")
"""The k-diffusion samplers that tgsample registers, as `k_<name>` (`sample_<name>` in `k_diffusion.sampling`)."""
BROWNIAN = ("dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde")
"""k-diffusion's default noise there is a Brownian tree"""


def k_sampling() -> Any:
    """`k_diffusion.sampling`, imported on first use (k-diffusion's import takes seconds and warns
    about `pkg_resources` through its `clip` dependency; the warning is silenced here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import k_diffusion.sampling

    return k_diffusion.sampling


def as_kdiffusion_model(model: "GuidedModel") -> Callable[..., Tensor]:
    """`model(x, sigma) -> denoised`, the k-diffusion calling convention (no step number)."""

    def denoiser(x: Tensor, sigma: Tensor, **_: Any) -> Tensor:
        return model(x, sigma, None).denoised

    return denoiser


def brownian_noise_sampler(model: "GuidedModel", x: Tensor, sigmas: Tensor) -> Any:
    """k-diffusion's `BrownianTreeNoiseSampler` over the schedule's positive range, one tree per sample,
    seeded from each sample's `ancestral` stream (so a sample's noise depends only on its seed)."""
    if model.streams is None:
        raise ConfigError("an SDE sampler draws noise: sample with seeds=... (per-sample noise streams)")
    positive = sigmas[sigmas > 0]
    return k_sampling().BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(),
                                                 seed=model.streams.integers("ancestral"))


def _stock(name: str) -> Callable[..., Tensor]:
    def solver(model: "GuidedModel", x: Tensor, sigmas: Tensor, *, callback: Optional[Callable] = None,
               disable: Optional[bool] = None, **options: Any) -> Tensor:
        K = k_sampling()
        fn = getattr(K, f"sample_{name}")
        kmodel = as_kdiffusion_model(model)
        if name in BROWNIAN and "noise_sampler" not in options:
            options["noise_sampler"] = brownian_noise_sampler(model, x, sigmas)
        elif "noise_sampler" in inspect.signature(fn).parameters and "noise_sampler" not in options:
            options["noise_sampler"] = lambda sigma, sigma_next: model.fresh_noise(x)
        if name in ("dpm_fast", "dpm_adaptive"):
            sigma_min, sigma_max = float(sigmas[sigmas > 0].min()), float(sigmas[0])
            # These integrate to the smallest positive sigma; one final denoising step reaches 0.
            if name == "dpm_fast":
                x = fn(kmodel, x, sigma_min, sigma_max, len(sigmas) - 2 or 1, callback=callback, disable=disable,
                       **options)
            else:
                x = fn(kmodel, x, sigma_min, sigma_max, callback=callback, disable=disable, **options)
            return kmodel(x, sigmas[sigmas > 0][-1])
        with warnings.catch_warnings():  # torchsde warns when a query lands a rounding error outside the tree
            warnings.filterwarnings("ignore", message="Should have t", module="torchsde")
            return fn(kmodel, x, sigmas, callback=callback, disable=disable, **options)

    solver.provides = frozenset()  # type: ignore[attr-defined]  # neither the step index nor a split direction
    solver.__name__ = solver.__qualname__ = f"k_{name}"
    solver.__doc__ = (f"k-diffusion's ``sample_{name}`` run through tgsample's guidance (guidances that need the "
                      f"step number or a split direction are refused before sampling).")
    return solver


k_euler = _stock("euler")
"""k-diffusion's `sample_euler` through tgsample's guidance.

Euler (Karras et al. 2022, Alg. 2): `x' = x + (sigma_next - sigma_hat) d`, `d = (x - D) / sigma_hat`;
`sigma_hat = sigma (1 + gamma)` with `s_churn > 0` (churn noise from the global generator)."""

k_euler_ancestral = _stock("euler_ancestral")
"""k-diffusion's `sample_euler_ancestral` through tgsample's guidance.

Euler ancestral: `x' = D + sigma_down d + sigma_up z` (`eta`, `s_noise`); `z` from the per-sample
`ancestral` stream."""

k_heun = _stock("heun")
"""k-diffusion's `sample_heun` through tgsample's guidance.

Heun (Karras et al. 2022, Alg. 2): an Euler step to `sigma_next`, corrected with the average of `d` at
`sigma` and `sigma_next`; two model calls per step (one on the last)."""

k_dpm_2 = _stock("dpm_2")
"""k-diffusion's `sample_dpm_2` through tgsample's guidance.

DPM-Solver-2 style midpoint step at `sigma_mid = exp((log sigma + log sigma_next) / 2)`; two model calls
per step (one on the last)."""

k_dpm_2_ancestral = _stock("dpm_2_ancestral")
"""k-diffusion's `sample_dpm_2_ancestral` through tgsample's guidance.

DPM-Solver-2 midpoint step to `sigma_down`, then `+ sigma_up z` (`ancestral` stream)."""

k_lms = _stock("lms")
"""k-diffusion's `sample_lms` through tgsample's guidance.

Linear multistep: `x' = x + sum_j c_j d_{i-j}` over the last `order` (default 4) derivatives
`d = (x - D) / sigma`, coefficients integrated over sigma."""

k_dpm_fast = _stock("dpm_fast")
"""k-diffusion's `sample_dpm_fast` through tgsample's guidance.

DPM-Solver-Fast (arXiv 2206.00927), fixed step size in `log sigma` from `sigmas[0]` to the smallest
positive sigma in `len(sigmas) - 2` steps, then one denoising step to 0."""

k_dpm_adaptive = _stock("dpm_adaptive")
"""k-diffusion's `sample_dpm_adaptive` through tgsample's guidance.

DPM-Solver-12/23 with adaptive step size (`rtol`, `atol`, `order`) from `sigmas[0]` to the smallest
positive sigma, then one denoising step to 0. The schedule fixes only the end points."""

k_dpmpp_2s_ancestral = _stock("dpmpp_2s_ancestral")
"""k-diffusion's `sample_dpmpp_2s_ancestral` through tgsample's guidance.

DPM-Solver++(2S) ancestral: stage at `sigma_mid = sqrt(sigma sigma_down)`, step to `sigma_down`, then
`+ sigma_up z` (`ancestral` stream); CFG only (tgsample's `dpmpp_2s_ancestral` runs split directions)."""

k_dpmpp_sde = _stock("dpmpp_sde")
"""k-diffusion's `sample_dpmpp_sde` through tgsample's guidance.

DPM-Solver++ (stochastic): two stages per step (`r = 0.5`), `eta`-scaled noise over the overlapping
intervals `sigma -> sigma_mid` and `sigma -> sigma_next` from k-diffusion's Brownian tree (one per sample,
seeded from its `ancestral` stream)."""

k_dpmpp_2m = _stock("dpmpp_2m")
"""k-diffusion's `sample_dpmpp_2m` through tgsample's guidance.

DPM-Solver++(2M): `x' = (sigma_next / sigma) x - expm1(-h) D_d` with `h = log(sigma / sigma_next)` and
`D_d = (1 + 1/(2r)) D - 1/(2r) D_old`."""

k_dpmpp_2m_sde = _stock("dpmpp_2m_sde")
"""k-diffusion's `sample_dpmpp_2m_sde` through tgsample's guidance.

DPM-Solver++(2M) SDE (`eta`, `solver_type` midpoint or heun); noise from k-diffusion's Brownian tree
(one per sample, seeded from its `ancestral` stream)."""

k_dpmpp_3m_sde = _stock("dpmpp_3m_sde")
"""k-diffusion's `sample_dpmpp_3m_sde` through tgsample's guidance.

DPM-Solver++(3M) SDE (`eta`); noise from k-diffusion's Brownian tree (one per sample, seeded from its
`ancestral` stream)."""
