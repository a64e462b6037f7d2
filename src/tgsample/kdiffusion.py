"""Run tgsample guidances with k-diffusion's 13 stock samplers.

A stock sampler calls ``model(x, sigma, **extra_args) -> denoised``: it has no step
number, no ``sigma_{i+1}`` and one estimate per call (with ``s_churn > 0`` it even
evaluates at ``sigma_hat``, off the schedule). So it can run any guidance whose
``direction`` equals its ``denoised`` and which needs no step index (none, CFG, a
sigma interval of CFG, plugins that declare the same); a guidance that needs a split
direction or the step (CFG++, teacher guidance, step intervals) is refused with
:class:`~tgsample.errors.UnsupportedGuidanceError` -- never guessed from the call count.

``dpm_fast`` / ``dpm_adaptive`` integrate from ``sigmas[0]`` to the smallest positive sigma
(``dpm_fast`` in ``len(sigmas) - 2`` steps), then take one denoising step to 0.
Ancestral and SDE samplers draw their noise from the per-sample ``ancestral`` stream.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable, Optional

from torch import Tensor

from .errors import UnsupportedGuidanceError
from .solvers import GuidedModel

STOCK = ("euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive",
         "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde")


def k_sampling() -> Any:
    """``k_diffusion.sampling``, imported on first use (k-diffusion's import takes seconds and warns
    about ``pkg_resources`` through its ``clip`` dependency; the warning is silenced here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import k_diffusion.sampling

    return k_diffusion.sampling


def check_stock_compatible(guidance: Any, sampler: str) -> None:
    """Raise :class:`UnsupportedGuidanceError` if a stock sampler cannot honour ``guidance``."""
    needs = [what for what, flag in (("the step number / sigma_next", "needs_step"),
                                     ("a direction distinct from denoised", "splits_direction"))
             if getattr(guidance, flag, False)]
    if needs:
        raise UnsupportedGuidanceError(
            f"k-diffusion's sample_{sampler} cannot run {guidance!r}: it needs {' and '.join(needs)}, which a stock "
            f"sampler does not provide. Use one of tgsample's own solvers (euler, euler_ancestral, dpmpp_2m, "
            f"dpmpp_2s_ancestral, lcm, tcd) or a guidance without these needs (none, cfg, interval of cfg)."
        )


def as_kdiffusion_model(model: GuidedModel) -> Callable[..., Tensor]:
    """``model(x, sigma) -> denoised``, the k-diffusion calling convention (no step number)."""

    def denoiser(x: Tensor, sigma: Tensor, **_: Any) -> Tensor:
        return model(x, sigma, None).denoised

    return denoiser


def _stock(name: str) -> Callable[..., Tensor]:
    def solver(model: GuidedModel, x: Tensor, sigmas: Tensor, *, callback: Optional[Callable] = None,
               disable: Optional[bool] = None, **options: Any) -> Tensor:
        K = k_sampling()
        check_stock_compatible(model.guidance, name)
        fn = getattr(K, f"sample_{name}")
        kmodel = as_kdiffusion_model(model)
        if "noise_sampler" in inspect.signature(fn).parameters and "noise_sampler" not in options:
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
        return fn(kmodel, x, sigmas, callback=callback, disable=disable, **options)

    solver.__name__ = solver.__qualname__ = f"k_{name}"
    solver.__doc__ = (f"k-diffusion's ``sample_{name}`` run through tgsample's guidance (refuses guidances that "
                      f"need the step number or a split direction).")
    return solver


k_euler = _stock("euler")
k_euler_ancestral = _stock("euler_ancestral")
k_heun = _stock("heun")
k_dpm_2 = _stock("dpm_2")
k_dpm_2_ancestral = _stock("dpm_2_ancestral")
k_lms = _stock("lms")
k_dpm_fast = _stock("dpm_fast")
k_dpm_adaptive = _stock("dpm_adaptive")
k_dpmpp_2s_ancestral = _stock("dpmpp_2s_ancestral")
k_dpmpp_sde = _stock("dpmpp_sde")
k_dpmpp_2m = _stock("dpmpp_2m")
k_dpmpp_2m_sde = _stock("dpmpp_2m_sde")
k_dpmpp_3m_sde = _stock("dpmpp_3m_sde")
