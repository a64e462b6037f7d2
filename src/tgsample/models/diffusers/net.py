"""The diffusers UNet as the `net(x_vp, t, **cond)` of a [`DiscreteVPDenoiser`][tgsample.denoisers.DiscreteVPDenoiser].

[`UNetNet`][tgsample.models.diffusers.net.UNetNet] reads its inputs from the conditioning dict:

* `encoder_hidden_states` -- text embeddings (every SD-family UNet);
* `text_embeds`, `time_ids` -- SDXL's `added_cond_kwargs`;
* `guidance_scale` (`[B]`) -- for guided-distillation students whose UNet has a
  `time_cond_proj_dim` (LCM): passed as `timestep_cond = get_guidance_scale_embedding(w - 1)`
  (arXiv 2210.03142; diffusers' embedding). [`tgsample.guidance.DistilledCFG`][tgsample.guidance.cfg.DistilledCFG] puts
  it in.

A teacher whose text encoders differ from its student's reads `teacher_<key>` first (see
[`tgsample.models.diffusers.bundle.link_teacher`][tgsample.models.diffusers.bundle.link_teacher]). A zero-copy teacher
runs the student's UNet
with its LoRA adapters disabled for the duration of the call.

[`DiffusersDenoiser`][tgsample.models.diffusers.net.DiffusersDenoiser] adds TDD's optional x0 clipping on early
(high-sigma) steps.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Optional

import torch
from torch import Tensor, nn

from ...denoisers import DiscreteVPDenoiser
from ...errors import ConfigError

CLIP_MODES = ("clamp", "dynamic")
"""How an x0 estimate is clipped: a fixed range, or dynamic thresholding."""


def guidance_embedding(w: Tensor, dim: int) -> Tensor:
    """LCM's `timestep_cond`: diffusers' `get_guidance_scale_embedding(w - 1, dim)`, computed where `w`
    lives (no copy to the host): `[sin(1000 (w - 1) f_k), cos(1000 (w - 1) f_k)]` with
    `f_k = exp(-k log(10000) / (dim/2 - 1))`, zero-padded to an odd `dim`; float32, the same operations as
    diffusers' (bit-identical on the CPU)."""
    w = (w.detach().float() - 1) * 1000.0
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=w.device)
                      * -(torch.log(torch.tensor(10000.0)) / (half - 1)).to(w.device))
    emb = w[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    return torch.nn.functional.pad(emb, (0, 1)) if dim % 2 else emb


class AdapterSwitch:
    """A UNet's LoRA layers, listed once, and a switch over them.

    `set(False)` / `set(True)` flip each layer's disabled flag (the flag peft's `enable_adapters(enabled)`
    sets and its layers' forward reads), so a toggle costs a loop over the listed layers: no
    `named_modules()` walk, no version check, no `requires_grad` change (diffusers' `disable_adapters` /
    `enable_adapters` do all three on every call, and the latter marks every LoRA tensor trainable).
    """

    def __init__(self, unet: nn.Module):
        from peft.tuners.tuners_utils import BaseTunerLayer

        self.layers = [m for m in unet.modules() if isinstance(m, BaseTunerLayer)]
        if not self.layers:
            raise ConfigError("this UNet has no LoRA layers: a zero-copy teacher needs a LoRA student")
        self.states = [vars(m) for m in self.layers]

    def set(self, enabled: bool) -> None:
        """Enable or disable every listed layer's adapters."""
        off = not enabled
        for state in self.states:
            state["_disable_adapters"] = off  # the instance dict: nn.Module.__setattr__'s checks cost ~3 us each


class UNetNet(nn.Module):
    """`UNet2DConditionModel` called as `net(x_vp, t, **cond) -> prediction`.

    Args:
        unet: the diffusers UNet (its own dtype / device).
        default_guidance_scale: `w` for a guidance-embedding UNet when `cond` has no `guidance_scale`.
        prefix: keys `prefix + name` are read before `name` (`"teacher_"` for a teacher with its own encoders).
        adapters_off: run with the UNet's LoRA adapters disabled (the zero-copy teacher of a LoRA student).
        offload: keep the UNet on the CPU and move it to `device` only for the call.
        device: the compute device (used with `offload`).
        compile: wrap the UNet in `torch.compile`.
    """

    def __init__(self, unet: nn.Module, *, default_guidance_scale: Optional[float] = None, prefix: str = "",
                 adapters_off: bool = False, offload: bool = False, device: torch.device | str | None = None,
                 compile: bool = False):
        super().__init__()
        self.unet = unet
        self.default_guidance_scale = default_guidance_scale
        self.prefix = prefix
        self.adapters_off = adapters_off
        self.offload = offload
        self.device = torch.device(device) if device is not None else None
        self._call = torch.compile(unet) if compile else unet
        self._switch: Optional[AdapterSwitch] = None  # the LoRA layers, listed at the first call
        self.calls = 0  # forward calls (tests and benchmarks)

    @property
    def adapters(self) -> AdapterSwitch:
        """The switch over the UNet's LoRA layers ([`AdapterSwitch`][tgsample.models.diffusers.net.AdapterSwitch]), made
        once."""
        if self._switch is None:
            self._switch = AdapterSwitch(self.unet)
        return self._switch

    @property
    def config(self) -> Any:
        return self.unet.config

    def _get(self, cond: Mapping[str, Any], key: str) -> Any:
        value = cond.get(self.prefix + key) if self.prefix else None
        return cond.get(key) if value is None else value

    @contextmanager
    def _placed(self) -> Iterator[None]:
        if self.offload and self.device is not None:
            self.unet.to(self.device)
        if self.adapters_off:
            self.adapters.set(False)
        try:
            yield
        finally:
            if self.adapters_off:
                self.adapters.set(True)
            if self.offload:
                self.unet.to("cpu")

    def _inputs(self, x: Tensor, cond: Mapping[str, Any], device: torch.device, dtype: torch.dtype) -> dict:
        cast = lambda v: v.to(device, dtype) if torch.is_tensor(v) else v  # noqa: E731
        ctx = self._get(cond, "encoder_hidden_states")
        if ctx is None:
            raise ConfigError("the UNet needs cond['encoder_hidden_states'] (encode prompts with the model's encode())")
        kwargs: dict[str, Any] = {"encoder_hidden_states": cast(ctx)}
        if getattr(self.config, "addition_embed_type", None) == "text_time":
            text_embeds, time_ids = self._get(cond, "text_embeds"), self._get(cond, "time_ids")
            if text_embeds is None or time_ids is None:
                raise ConfigError("an SDXL UNet needs cond['text_embeds'] and cond['time_ids'] (SDXL's pooled "
                                  "embeddings and micro-conditioning); encode prompts with an SDXL model's encode()")
            kwargs["added_cond_kwargs"] = {"text_embeds": cast(text_embeds), "time_ids": cast(time_ids)}
        dim = getattr(self.config, "time_cond_proj_dim", None)
        if dim:
            w = cond.get("guidance_scale")
            if w is None:
                if self.default_guidance_scale is None:
                    raise ConfigError("this UNet embeds the guidance scale (time_cond_proj_dim): pass "
                                      "guidance=DistilledCFG(w) or cond['guidance_scale']")
                w = torch.full((x.shape[0],), float(self.default_guidance_scale), device=x.device)
            w = torch.as_tensor(w, dtype=torch.float32, device=x.device).flatten().expand(x.shape[0])
            kwargs["timestep_cond"] = cast(guidance_embedding(w, dim))
        return kwargs

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        with self._placed():
            p = next(self.unet.parameters())
            kwargs = self._inputs(x, cond, p.device, p.dtype)
            out = self._call(x.to(p.device, p.dtype), t.to(p.device, torch.float32).expand(x.shape[0]),
                             return_dict=False, **kwargs)[0]
        self.calls += 1
        return out.to(x.device, x.dtype)


def clip_x0(x0: Tensor, mode: str = "clamp", value: float = 1.0, percentile: float = 0.995) -> Tensor:
    """x0 clipping. `clamp`: `clamp(x0, -value, value)`. `dynamic` (Imagen's dynamic thresholding):
    per sample `s = clamp(quantile(|x0|, percentile), 1, value)`, `x0 <- clamp(x0, -s, s) / s`."""
    if mode == "clamp":
        return x0.clamp(-value, value)
    s = torch.quantile(x0.detach().abs().flatten(1).float(), percentile, dim=1).clamp(min=1.0, max=value)
    s = s.to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    return x0.clamp(-s, s) / s


class DiffusersDenoiser(DiscreteVPDenoiser):
    """A [`DiscreteVPDenoiser`][tgsample.denoisers.DiscreteVPDenoiser] over a
    [`UNetNet`][tgsample.models.diffusers.net.UNetNet], with optional x0 clipping (TDD).

    Args:
        x0_clip: `None` (off) or `{"mode": "clamp" | "dynamic", "value": v, "percentile": p,
            "sigma_min": s}`: the x0 estimate is clipped where `sigma >= sigma_min` (the early,
            high-noise steps; default: every step). In latent units (SD latents are roughly in [-4, 4]).
        diffusers_parity: sample as the model's diffusers pipeline does (read by
            [`tgsample.sample`][tgsample.sampling.sample]
            through [`tgsample.conventions`][tgsample.conventions]).
        timestep_spacing: the scheduler config's `timestep_spacing` (diffusers' Euler start depends on it).
    """

    def __init__(self, net: UNetNet, alphas_cumprod: Tensor, prediction: str = "epsilon", *,
                 x0_clip: Optional[Mapping[str, Any]] = None, diffusers_parity: bool = False,
                 timestep_spacing: Optional[str] = None, **kwargs: Any):
        super().__init__(net, alphas_cumprod, prediction, **kwargs)
        self.x0_clip = _check_clip(x0_clip)
        self.diffusers_parity = bool(diffusers_parity)
        self.timestep_spacing = timestep_spacing

    def forward(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        x0 = super().forward(x, sigma, **cond)
        if self.x0_clip is None:
            return x0
        opts = dict(self.x0_clip)
        sigma_min = float(opts.pop("sigma_min", 0.0))
        clipped = clip_x0(x0, **opts)
        active = torch.as_tensor(sigma, device=x.device).expand(x.shape[0]) >= sigma_min
        return torch.where(active.reshape(-1, *([1] * (x.ndim - 1))), clipped, x0)


def _check_clip(spec: Optional[Mapping[str, Any]]) -> Optional[dict]:
    if spec is None or spec is False:
        return None
    spec = dict(spec)
    unknown = set(spec) - {"mode", "value", "percentile", "sigma_min"}
    if unknown:
        raise ConfigError(f"x0_clip has unknown keys {sorted(unknown)}; allowed: mode, value, percentile, sigma_min")
    if spec.setdefault("mode", "clamp") not in CLIP_MODES:
        raise ConfigError(f"x0_clip mode={spec['mode']!r}; allowed: {list(CLIP_MODES)}")
    if float(spec.setdefault("value", 1.0)) <= 0:
        raise ConfigError(f"x0_clip value={spec['value']!r} must be > 0")
    if not 0 < float(spec.setdefault("percentile", 0.995)) <= 1:
        raise ConfigError(f"x0_clip percentile={spec['percentile']!r} must be in (0, 1]")
    return spec
