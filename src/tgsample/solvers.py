"""Guidance-aware solvers in sigma space.

Each solver is one short function in the style of k-diffusion's `sampling.py`, declaring what it
provides to guidances ([`provides`][tgsample.solvers.provides]):
`solver(model, x, sigmas, *, callback=None, disable=None, **options) -> x`, where
`model(x, sigma, i, stage=0)` is a [`GuidedModel`][tgsample.solvers.GuidedModel] returning an
[`Estimate`][tgsample.guidance.base.Estimate] `(denoised, direction)`. The trajectory moves
toward `denoised` and carries the implied noise `d = (x - direction) / sigma`.
With `denoised == direction` every solver reduces to its k-diffusion namesake.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Optional

import torch
from torch import Tensor
from tqdm.auto import trange

from . import math as M
from .denoisers import has_table
from .errors import ConfigError, UnsupportedGuidanceError
from .guidance.base import Cond, Estimate, Guidance, StepContext
from .noise import NoiseStreams

__all__ = ["GuidedModel", "STEP_INDEX", "SPLIT_DIRECTION", "CAPABILITIES", "capabilities", "check_solver", "provides",
           "report", "requirements", "sample_dpmpp_2m", "sample_dpmpp_2s_ancestral", "sample_euler",
           "sample_euler_ancestral", "sample_lcm", "sample_tcd", "tcd_sigma_s"]

Callback = Optional[Callable[[dict], Any]]
"""k-diffusion's step callback: called with `{"x", "i", "sigma", "sigma_hat", "denoised"}`."""

STEP_INDEX = "step_index"
"""a solver capability: it passes the step index `i` (and so `ctx.sigma_next`, `ctx.sigmas`)."""
SPLIT_DIRECTION = "split_direction"
"""a solver capability: it moves along `direction` separately from `denoised`."""
CAPABILITIES = (STEP_INDEX, SPLIT_DIRECTION)
"""Every solver capability that [`provides`][tgsample.solvers.provides] accepts."""


class GuidedModel:
    """A denoiser bound to a guidance, its conditioning, the schedule and the noise streams: the solver
    side of the solver <-> guidance contract.

    `model(x, sigma, i, stage=0)` evaluates the guidance at step `i` (`None` if unknown) with
    `sigma` and `ctx.sigma_next` as `[B]` tensors in `x`'s dtype/device, and one per-run scratch
    dict ([`tgsample.guidance.StepContext.scratch`][tgsample.guidance.base.StepContext.scratch]): a new `GuidedModel` is
    a new run.
    """

    def __init__(self, denoiser: Any, guidance: Guidance, cond: Cond, uncond: Optional[Cond] = None,
                 sigmas: Optional[Tensor] = None, streams: Optional[NoiseStreams] = None):
        self.denoiser, self.guidance = denoiser, guidance
        self.cond, self.uncond = cond, uncond
        self.sigmas, self.streams = sigmas, streams
        self.state: dict = {}
        self._next: dict = {}  # (i, B, device, dtype) -> sigma_{i+1} as [B]: made once per step

    def __call__(self, x: Tensor, sigma: Tensor, i: Optional[int], stage: int = 0) -> Estimate:
        b = x.shape[0]
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(b)
        sigma_next = None
        if i is not None and self.sigmas is not None:
            key = (i, b, x.device, x.dtype)
            sigma_next = self._next.get(key)
            if sigma_next is None:
                sigma_next = self._next[key] = self.sigmas[i + 1].to(x.device, x.dtype).expand(b)
        ctx = StepContext(self.cond, self.uncond, i, sigma_next, self.sigmas, self.streams, stage, self.state)
        return self.guidance(self.denoiser, x, sigma, ctx)

    def fresh_noise(self, x: Tensor) -> Tensor:
        """Per-sample noise from the solver's own ("ancestral") stream."""
        if self.streams is None:
            raise ConfigError("this solver draws noise: sample with seeds=... (per-sample noise streams)")
        return self.streams.randn_like("ancestral", x)


def _steps(n: int, disable: Optional[bool]) -> Iterable[int]:
    """`range(n)`, with a progress bar unless `disable` (no tqdm object when it is off)."""
    return range(n) if disable else trange(n, disable=disable)


def levels(sigmas: Tensor) -> list[float]:
    """The schedule as Python floats, read once per run: the solvers branch on these (`sigma_{i+1} > 0`),
    never on a device tensor, so a step queues its work without waiting for the device."""
    return sigmas.tolist()


def report(callback: Callback, x: Tensor, i: int, sigma: Tensor, est: Estimate,
           sigma_hat: Optional[Tensor] = None) -> None:
    """Call `callback` (if any) with k-diffusion's step dict `{"x", "i", "sigma", "sigma_hat", "denoised"}`."""
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma if sigma_hat is None else sigma_hat,
                  "denoised": est.denoised})


def provides(*capabilities: str) -> Callable[[Callable], Callable]:
    """Declare what a solver function provides to guidances: [`STEP_INDEX`][tgsample.solvers.STEP_INDEX],
    [`SPLIT_DIRECTION`][tgsample.solvers.SPLIT_DIRECTION]:

    ```python
    @provides(STEP_INDEX, SPLIT_DIRECTION)
    def sample_mine(model, x, sigmas, *, callback=None, disable=None): ...
    ```

    A solver that declares nothing runs only guidances that need neither (none, CFG, ...).
    """
    unknown = sorted(set(capabilities) - set(CAPABILITIES))
    if unknown:
        raise ConfigError(f"unknown solver capabilities {unknown}; known: {', '.join(CAPABILITIES)}")

    def mark(fn: Callable) -> Callable:
        fn.provides = frozenset(capabilities)  # type: ignore[attr-defined]
        return fn

    return mark


def capabilities(solver: Callable) -> frozenset:
    """What `solver` declared with [`provides`][tgsample.solvers.provides] (through `functools.partial`); empty if
    nothing."""
    while isinstance(solver, functools.partial):
        solver = solver.func
    return frozenset(getattr(solver, "provides", ()))


def requirements(guidance: Any) -> frozenset:
    """What `guidance` needs from a solver (its `needs_step` / `splits_direction` flags)."""
    needs = set()
    if getattr(guidance, "needs_step", False):
        needs.add(STEP_INDEX)
    if getattr(guidance, "splits_direction", False):
        needs.add(SPLIT_DIRECTION)
    return frozenset(needs)


def _able(needs: Iterable[str]) -> list[str]:
    from . import registry

    out = []
    for name in registry.names("solvers"):
        try:
            if set(needs) <= capabilities(registry.get("solvers", name)):
                out.append(name)
        except Exception:  # a broken plugin solver is not a candidate
            continue
    return out


def check_solver(solver: Callable, guidance: Any, name: Optional[str] = None) -> None:
    """Refuse, before sampling, a solver that cannot honour what `guidance` needs: an
    [`UnsupportedGuidanceError`][tgsample.errors.UnsupportedGuidanceError] naming the registered solvers (plugins
    included) that can."""
    missing = requirements(guidance) - capabilities(solver)
    if missing:
        what = {STEP_INDEX: "the step index (sigma_next, the schedule)",
                SPLIT_DIRECTION: "a direction distinct from denoised"}
        label = name or getattr(solver, "__name__", repr(solver))
        raise UnsupportedGuidanceError(
            f"solver {label!r} cannot run {guidance!r}: it needs {' and '.join(what[m] for m in sorted(missing))}, "
            f"which {label!r} does not provide. Solvers that can: {', '.join(_able(requirements(guidance))) or '(none)'}")


@provides(STEP_INDEX, SPLIT_DIRECTION)
@torch.no_grad()
def sample_euler(model: GuidedModel, x: Tensor, sigmas: Tensor, *, callback: Callback = None,
                 disable: Optional[bool] = None) -> Tensor:
    r"""Euler (DDIM): $x_{i+1} = \text{denoised} + \sigma_{i+1} (x_i - \text{direction}) / \sigma_i$."""
    for i in _steps(len(sigmas) - 1, disable):
        est = model(x, sigmas[i], i)
        report(callback, x, i, sigmas[i], est)
        x = est.denoised + sigmas[i + 1] * M.implied_noise(x, est.direction, sigmas[i])
    return x


@provides(STEP_INDEX, SPLIT_DIRECTION)
@torch.no_grad()
def sample_euler_ancestral(model: GuidedModel, x: Tensor, sigmas: Tensor, *, eta: float = 1.0,
                           s_noise: float = 1.0, callback: Callback = None, disable: Optional[bool] = None) -> Tensor:
    r"""Euler ancestral: $x_{i+1} = \text{denoised} + \sigma_{\text{down}} d + \sigma_{\text{up}} z$
    ([`tgsample.math.ancestral_split`][tgsample.math.ancestral_split])."""
    s = levels(sigmas)
    downs, ups = M.ancestral_split(sigmas[:-1], sigmas[1:], eta)  # every step's split at once
    for i in _steps(len(sigmas) - 1, disable):
        est = model(x, sigmas[i], i)
        report(callback, x, i, sigmas[i], est)
        sigma_down, sigma_up = downs[i], ups[i]
        x_next = est.denoised + sigma_down * M.implied_noise(x, est.direction, sigmas[i])
        if s[i + 1] > 0:
            x_next = x_next + model.fresh_noise(x) * s_noise * sigma_up
        x = x_next
    return x


def _downs_are_zero(sigmas: Tensor, eta: float) -> list[bool]:
    """Per step, whether [`tgsample.math.ancestral_split`][tgsample.math.ancestral_split] gives `sigma_down = 0`: the
    split of the whole
    schedule at once, on a host copy in the schedule's dtype, read once (no device sync per step)."""
    s = sigmas.detach().cpu()
    down, _ = M.ancestral_split(s[:-1], s[1:], eta)
    return (down == 0).tolist()


def _exp_step(x: Tensor, sigma: Tensor, sigma_next: Tensor, est: Estimate, direction: Tensor) -> Tensor:
    """First-order exponential-integrator step with a split direction (DPM-Solver++ notation):
    `s x + (1 - s) direction + (denoised - est.direction)` with `s = sigma_next / sigma`."""
    h = sigma.log() - sigma_next.log()  # t = -log(sigma)
    return (sigma_next / sigma) * x - torch.expm1(-h) * direction + (est.denoised - est.direction)


@provides(STEP_INDEX, SPLIT_DIRECTION)
@torch.no_grad()
def sample_dpmpp_2m(model: GuidedModel, x: Tensor, sigmas: Tensor, *, callback: Callback = None,
                    disable: Optional[bool] = None) -> Tensor:
    r"""DPM-Solver++(2M) with a split direction (docs: Solvers and schedules).

    $$\text{dir}_d = \Big(1 + \frac{1}{2r}\Big)\, \text{direction} - \frac{1}{2r}\, \text{old\_direction}, \qquad
    x_{i+1} = s x + (1 - s)\, \text{dir}_d + (\text{denoised} - \text{direction}), \quad s = \sigma_{i+1} / \sigma_i.$$

    The correction term uses `denoised - direction` of the current step only (not ComfyUI's
    `denoised - old_uncond`), so CFG++ at `lam = 0` is exactly the unconditional trajectory.
    """
    old_direction = None
    s = levels(sigmas)
    for i in _steps(len(sigmas) - 1, disable):
        est = model(x, sigmas[i], i)
        report(callback, x, i, sigmas[i], est)
        direction = est.direction
        if old_direction is not None and s[i + 1] > 0:
            r = (sigmas[i - 1].log() - sigmas[i].log()) / (sigmas[i].log() - sigmas[i + 1].log())
            direction = (1 + 1 / (2 * r)) * est.direction - (1 / (2 * r)) * old_direction
        x = est.denoised if s[i + 1] == 0 else _exp_step(x, sigmas[i], sigmas[i + 1], est, direction)
        old_direction = est.direction
    return x


@provides(STEP_INDEX, SPLIT_DIRECTION)
@torch.no_grad()
def sample_dpmpp_2s_ancestral(model: GuidedModel, x: Tensor, sigmas: Tensor, *, eta: float = 1.0,
                              s_noise: float = 1.0, callback: Callback = None,
                              disable: Optional[bool] = None) -> Tensor:
    """DPM-Solver++(2S) ancestral with the guidance applied at both evaluations.

    Stage 1: `x_mid = denoised + sigma_mid (x - direction) / sigma` at `sigma_mid = sqrt(sigma sigma_down)`;
    stage 2: `x' = s x + (1 - s) direction_2 + (denoised_2 - direction_2)`, `s = sigma_down / sigma`;
    then `+ sigma_up z`. A step-aware guidance sees the same step `i` (and `sigma_{i+1}`) at both stages.
    """
    s, zero = levels(sigmas), _downs_are_zero(sigmas, eta)
    downs, ups = M.ancestral_split(sigmas[:-1], sigmas[1:], eta)  # every step's split at once
    for i in _steps(len(sigmas) - 1, disable):
        est = model(x, sigmas[i], i)
        report(callback, x, i, sigmas[i], est)
        sigma_down, sigma_up = downs[i], ups[i]
        if zero[i]:
            x_next = est.denoised
        else:
            sigma_mid = (sigmas[i] * sigma_down).sqrt()
            x_mid = est.denoised + sigma_mid * M.implied_noise(x, est.direction, sigmas[i])
            est2 = model(x_mid, sigma_mid, i, stage=1)
            x_next = _exp_step(x, sigmas[i], sigma_down, est2, est2.direction)
        if s[i + 1] > 0:
            x_next = x_next + model.fresh_noise(x) * s_noise * sigma_up
        x = x_next
    return x


@provides(STEP_INDEX, SPLIT_DIRECTION)
@torch.no_grad()
def sample_lcm(model: GuidedModel, x: Tensor, sigmas: Tensor, *, callback: Callback = None,
               disable: Optional[bool] = None) -> Tensor:
    r"""Consistency / LCM multistep sampling: $x_{i+1} = \text{denoised} + \sigma_{i+1} z$ (fresh noise)."""
    s = levels(sigmas)
    for i in _steps(len(sigmas) - 1, disable):
        est = model(x, sigmas[i], i)
        report(callback, x, i, sigmas[i], est)
        x = est.denoised
        if s[i + 1] > 0:
            x = x + sigmas[i + 1] * model.fresh_noise(x)
    return x


def tcd_sigma_s(denoiser: Any, sigma_next: Tensor, gamma: float) -> Tensor:
    """TCD's intermediate level `sigma_s` for a step ending at `sigma_next`.

    On a model's discrete table: `s = floor((1 - gamma) * round(t(sigma_next)))`, `sigma_s = sigma(s)`
    (diffusers' `TCDScheduler`). For a continuous model without a table, `t = sigma` (EDM's time):
    `sigma_s = (1 - gamma) * sigma_next`. `sigma_next = 0` gives 0.
    """
    if sigma_next == 0:
        return sigma_next
    if has_table(denoiser):
        t_next = denoiser.sigma_to_t(sigma_next.reshape(1)).round()
        s = torch.floor((1 - gamma) * t_next)
        return denoiser.t_to_sigma(s).reshape(()).to(sigma_next)
    return (1 - gamma) * sigma_next


TCD_FINALS = ("x0", "t0")
"""How TCD ends a run: the last x0 estimate, or a last step to timestep 0."""


@provides(STEP_INDEX, SPLIT_DIRECTION)
@torch.no_grad()
def sample_tcd(model: GuidedModel, x: Tensor, sigmas: Tensor, *, gamma: float = 0.3, final: str = "x0",
               callback: Callback = None, disable: Optional[bool] = None) -> Tensor:
    r"""TCD / TDD gamma-sampling: deterministic to `sigma_s`, then fresh noise to `sigma_{i+1}`.

    $x_{i+1} = \text{denoised} + \sigma_s d + \sqrt{\sigma_{i+1}^2 - \sigma_s^2}\, z$
    ([`tcd_sigma_s`][tgsample.solvers.tcd_sigma_s]).
    `gamma = 0` is Euler on table entries; `gamma = 1` is LCM where `sigma(t=0) = 0`.
    `final="x0"` ends on the x0 estimate; `final="t0"` ends as diffusers' `TCDScheduler` does, on the
    VP latent at the table's `t = 0` (sigma `s0 = sigma(0)`, 0.029 for SD):
    `(denoised + s0 d) / sqrt(1 + s0^2) = sqrt(abar_0) x0 + sqrt(1 - abar_0) eps`.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"TCD gamma={gamma!r} is outside the allowed range [0, 1]")
    if final not in TCD_FINALS:
        raise ConfigError(f"TCD final={final!r}; allowed: {list(TCD_FINALS)}")
    s = levels(sigmas)
    # sigma_s of every step, read to the host once: the noise branch is decided without a device sync
    sigma_s_all = torch.stack([torch.minimum(tcd_sigma_s(model.denoiser, sigmas[i + 1], gamma), sigmas[i + 1])
                               if s[i + 1] > 0 else sigmas[i + 1] for i in range(len(sigmas) - 1)])
    s_s = levels(sigma_s_all)
    for i in _steps(len(sigmas) - 1, disable):
        est = model(x, sigmas[i], i)
        report(callback, x, i, sigmas[i], est)
        d = M.implied_noise(x, est.direction, sigmas[i])
        if s[i + 1] == 0 and final == "t0":
            s0 = _table_sigma_0(model.denoiser).to(x)
            x = (est.denoised + s0 * d) * M.vp_scale(s0)
            continue
        sigma_s = sigma_s_all[i]
        x_next = est.denoised + sigma_s * d
        if s[i + 1] > s_s[i]:
            x_next = x_next + (sigmas[i + 1] ** 2 - sigma_s**2).sqrt() * model.fresh_noise(x)
        x = x_next
    return x


def _table_sigma_0(denoiser: Any) -> Tensor:
    if not has_table(denoiser):
        raise ConfigError("TCD final='t0' needs a discrete-time model with an abar table (sigma at t = 0)")
    return denoiser.t_to_sigma(torch.tensor(0.0)).reshape(())
