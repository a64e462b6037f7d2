"""Sampling conventions: tgsample's own, and diffusers' where a user wants its output exactly.

tgsample's default is one consistent convention for every model and solver: the start is drawn
from the exact noisy marginal of unit-variance data, `x = init_noise_scale(sigma_max) z`
(`sqrt(1 + sigma_max^2) z` for VP models), every solver ends on the x0 estimate at sigma 0, and
the network sees `t(sigma)` (rounded only for models trained on integer timesteps, `quantize`).

Diffusers' schedulers each pick their own. A model loaded with `diffusers_parity=True` makes
[`tgsample.sample`][tgsample.sampling.sample] follow the diffusers scheduler that corresponds to the solver
(`DIFFUSERS`):

============================  =================================  =============================================
solver                        diffusers scheduler                where it differs from tgsample's default
============================  =================================  =============================================
`euler`                     `EulerDiscreteScheduler`         start `sigma_max z` with "trailing" or
                                                                 "linspace" timestep spacing
`euler_ancestral`           `EulerAncestralDiscreteScheduler`  the same
`dpmpp_2m`                  `DPMSolverMultistepScheduler`    the UNet gets `round(t(sigma))`
`lcm`                       `LCMScheduler`                   none
`tcd`                       `TCDScheduler`                   the last step returns the VP latent at the
                                                                 table's `t = 0`: `sqrt(abar_0) x0 +
                                                                 sqrt(1 - abar_0) eps` (`final="t0"`)
============================  =================================  =============================================

The spacing is the schedule's (`trailing`), else the model's scheduler config
`timestep_spacing` (Euler's own default, `linspace`, where the config has none, as SD 1.5's).
Other solvers run tgsample's convention.

Flow-matching pipelines (FLUX, SD3) have their own scheduler, `FlowMatchEulerDiscreteScheduler`
([`FLOW_DIFFUSERS`][tgsample.conventions.FLOW_DIFFUSERS]), and it already *is* tgsample's convention for a
[`FlowDenoiser`][tgsample.denoisers.FlowDenoiser]: the pipeline's latents are `x_t = z` whatever the first
`t` (`x = (1 + sigma_0) z`, the flow denoiser's `init_noise_scale`), its Euler step is the
sigma-space Euler step, and it ends on the x0 estimate at `t = 0`. The switch is accepted there and
changes nothing; in particular Euler's `sigma_max z` start above does not apply to flow models.

Pair with `sample(..., generator=...)` (diffusers' seeding) or `latents=` to reproduce a diffusers
baseline image for image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Union

from torch import Tensor

SIGMA_MAX_START = ("linspace", "trailing")
"""Euler's init_noise_sigma is sigma_max with these spacings"""
SCHEDULE_SPACING = {"trailing": "trailing"}
"""tgsample schedules that fix diffusers' timestep spacing"""
DEFAULT_SPACING = "linspace"
"""EulerDiscreteScheduler's default timestep_spacing"""


@dataclass(frozen=True)
class SchedulerConvention:
    """How one diffusers scheduler departs from tgsample's convention.

    Attributes:
        scheduler: the diffusers scheduler class a solver corresponds to.
        sigma_max_start: timestep spacings with which the start is `sigma_max z` (else the VP start).
        round_timesteps: the network is called at `round(t(sigma))`.
        solver_options: options the solver needs to follow the scheduler (`{"final": "t0"}` for TCD).
    """

    scheduler: str
    sigma_max_start: tuple[str, ...] = ()
    round_timesteps: bool = False
    solver_options: Mapping[str, Any] = field(default_factory=dict)


DIFFUSERS: dict[str, SchedulerConvention] = {
    "euler": SchedulerConvention("EulerDiscreteScheduler", sigma_max_start=SIGMA_MAX_START),
    "euler_ancestral": SchedulerConvention("EulerAncestralDiscreteScheduler", sigma_max_start=SIGMA_MAX_START),
    "dpmpp_2m": SchedulerConvention("DPMSolverMultistepScheduler", round_timesteps=True),
    "lcm": SchedulerConvention("LCMScheduler"),
    "tcd": SchedulerConvention("TCDScheduler", solver_options={"final": "t0"}),
}
"""diffusers' scheduler convention for each tgsample solver, by solver name (`diffusers_parity=True`)."""


FLOW_DIFFUSERS: dict[str, SchedulerConvention] = {
    "euler": SchedulerConvention("FlowMatchEulerDiscreteScheduler"),
}
"""the diffusers schedulers of flow-matching pipelines: no departure from tgsample's convention"""


def schedulers(denoiser: Any) -> Mapping[str, SchedulerConvention]:
    """The diffusers schedulers that `denoiser`'s pipelines use, by solver:
    [`FLOW_DIFFUSERS`][tgsample.conventions.FLOW_DIFFUSERS] for a
    [`FlowDenoiser`][tgsample.denoisers.FlowDenoiser], else `DIFFUSERS`."""
    from .denoisers import FlowDenoiser

    return FLOW_DIFFUSERS if isinstance(denoiser, FlowDenoiser) else DIFFUSERS


@dataclass(frozen=True)
class RunConvention:
    """What [`tgsample.sample`][tgsample.sampling.sample] uses for one run: the denoiser, the start's scale and extra
    solver options."""

    denoiser: Any
    init_scale: Callable[[Tensor], Tensor]
    solver_options: Mapping[str, Any]


def default_init_scale(denoiser: Any) -> Callable[[Tensor], Tensor]:
    """tgsample's start: the denoiser's `init_noise_scale` (`sigma` for a model that has none)."""
    fn = getattr(denoiser, "init_noise_scale", None)
    return fn if fn is not None else (lambda sigma: sigma)


def run_convention(denoiser: Any, solver: Union[None, str, Callable[..., Tensor]],
                   schedule: Any = None) -> RunConvention:
    """The [`RunConvention`][tgsample.conventions.RunConvention] of `denoiser` with `solver` (its registry name) on
    `schedule` (a schedule's
    registry name, or anything else): tgsample's convention, or diffusers' when `denoiser.diffusers_parity` is set."""
    convention = schedulers(denoiser).get(solver) if isinstance(solver, str) else None
    if not getattr(denoiser, "diffusers_parity", False) or convention is None:
        return RunConvention(denoiser, default_init_scale(denoiser), {})
    init = default_init_scale(denoiser)
    spacing = SCHEDULE_SPACING.get(schedule) if isinstance(schedule, str) else None
    spacing = spacing or getattr(denoiser, "timestep_spacing", None) or DEFAULT_SPACING
    if spacing in convention.sigma_max_start:
        init = _sigma_max_start
    if convention.round_timesteps and hasattr(denoiser, "quantized"):
        denoiser = denoiser.quantized()
    return RunConvention(denoiser, init, dict(convention.solver_options))


def _sigma_max_start(sigma: Tensor) -> Tensor:
    """Diffusers' Euler start with "trailing" / "linspace" spacing: `init_noise_sigma = sigma_max`."""
    return sigma
