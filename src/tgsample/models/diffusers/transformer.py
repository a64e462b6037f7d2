"""Flow-matching transformers (SD3 / SD3.5 MMDiT, FLUX) as the velocity net of a
[`FlowDenoiser`][tgsample.denoisers.FlowDenoiser].

`net(x_t, t, **cond) -> v` with `v = eps - x0` on unpacked latents `[B, C, H, W]`; the denoiser
([`FlowTransformerDenoiser`][tgsample.models.diffusers.transformer.FlowTransformerDenoiser]) converts to sigma space
once: the net sees `x_t = x / (1 + sigma)`
at `t = sigma / (1 + sigma)` and `D = x_t - t v` ([`tgsample.math.flow_to_x0`][tgsample.math.flow_to_x0]).

* [`SD3Net`][tgsample.models.diffusers.transformer.SD3Net] -- `SD3Transformer2DModel(hidden_states=x_t, timestep=1000 t,
  encoder_hidden_states, pooled_projections)`.
* [`FluxNet`][tgsample.models.diffusers.transformer.FluxNet] -- `FluxTransformer2DModel`: latents packed into 2x2
patches (`[B, HW/4, 4C]`,
  diffusers' own `_pack_latents`), rotary position ids `img_ids` (row, column per patch) and
  `txt_ids` (zeros per T5 token), `timestep = t`, and for guidance-distilled models (FLUX-dev,
  `guidance_embeds`) the embedded guidance scale: `cond["guidance_scale"]` (`[B]`, put in by
  [`tgsample.guidance.DistilledCFG`][tgsample.guidance.cfg.DistilledCFG]), else the model's `default_guidance_scale`.

Keys are read as `prefix + key` first (`"teacher_"` for a teacher with its own text encoders, as
for the UNet adapters). [`Placement`][tgsample.models.diffusers.transformer.Placement] keeps the weights where the
memory option says between calls.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from ...denoisers import FlowDenoiser
from ...errors import ConfigError

OFFLOAD_MODES = ("model", "sequential")
"""How a flow transformer may be offloaded to the CPU: whole model, or layer by layer."""


class Placement:
    """Where a network's weights are between calls, and how they get to `device` for a call.

    * `None` -- on `device` all the time;
    * `"model"` -- on the CPU; the whole network moves to `device` for each call and back after it
      (diffusers' model offload, per call: a teacher is on the device only during its guided steps);
    * `"sequential"` -- accelerate's `cpu_offload` (what diffusers' `enable_sequential_cpu_offload`
      uses): the weights stay in CPU memory (the module's parameters are on the `meta` device) and each
      submodule's weights are copied to `device` only while that submodule runs (least memory, slowest).

    `moves` counts the `"model"` transfers (to the device and back), for tests and benchmarks.
    """

    def __init__(self, module: nn.Module, mode: Optional[str], device: torch.device):
        if mode not in (None, *OFFLOAD_MODES):
            raise ConfigError(f"offload={mode!r}; allowed: None, {', '.join(repr(m) for m in OFFLOAD_MODES)}")
        self.module, self.mode, self.device = module, mode, torch.device(device)
        self.moves = 0
        if mode == "sequential":
            from accelerate import cpu_offload

            cpu_offload(module, execution_device=self.device)
        else:
            module.to("cpu" if mode == "model" else self.device)

    @contextmanager
    def placed(self) -> Iterator[None]:
        """The network on `device` for the duration of one call."""
        if self.mode != "model":
            yield
            return
        self.module.to(self.device)
        self.moves += 1
        try:
            yield
        finally:
            self.module.to("cpu")
            self.moves += 1


class TransformerNet(nn.Module):
    """A diffusers flow transformer called as `net(x_t, t, **cond) -> v` (subclasses: the call itself).

    Args:
        transformer: the diffusers transformer.
        device: where it computes.
        dtype: its compute dtype (inputs are cast to it, outputs back to the caller's dtype).
        offload: `None`, `"model"` or `"sequential"` ([`Placement`][tgsample.models.diffusers.transformer.Placement]).
        prefix: read `prefix + key` before `key` from the conditioning.
        compile: wrap the transformer in `torch.compile`.
    """

    def __init__(self, transformer: nn.Module, *, device: torch.device | str, dtype: torch.dtype,
                 offload: Optional[str] = None, prefix: str = "", compile: bool = False):
        super().__init__()
        self.transformer = transformer
        self.device, self.dtype = torch.device(device), dtype
        self.placement = Placement(transformer, offload, self.device)
        self.prefix = prefix
        self._call = torch.compile(transformer) if compile else transformer
        self.calls = 0  # forward calls (tests and benchmarks)

    @property
    def config(self) -> Any:
        return self.transformer.config

    def _get(self, cond: Mapping[str, Any], key: str, required: bool = True) -> Any:
        value = cond.get(self.prefix + key) if self.prefix else None
        value = cond.get(key) if value is None else value
        if value is None and required:
            raise ConfigError(f"{type(self.transformer).__name__} needs cond[{key!r}] (encode prompts with the "
                              "model's encode())")
        return value.to(self.device, self.dtype) if torch.is_tensor(value) else value

    def velocity(self, x_t: Tensor, t: Tensor, cond: Mapping[str, Any]) -> Tensor:
        raise NotImplementedError

    def forward(self, x_t: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """`v = eps - x0` at `x_t` and time `t` (`[B]`, in the transformer's own units)."""
        t = torch.as_tensor(t, dtype=torch.float32).expand(x_t.shape[0]).to(self.device)
        with self.placement.placed():
            out = self.velocity(x_t.to(self.device, self.dtype), t, cond)
        self.calls += 1
        return out.to(x_t.device, x_t.dtype)


class SD3Net(TransformerNet):
    """`SD3Transformer2DModel` (SD3, SD3.5 Large / Large Turbo / Medium): `t` in `[0, 1000]`."""

    t_scale = 1000.0

    def velocity(self, x_t: Tensor, t: Tensor, cond: Mapping[str, Any]) -> Tensor:
        return self._call(hidden_states=x_t, timestep=t, encoder_hidden_states=self._get(cond, "encoder_hidden_states"),
                          pooled_projections=self._get(cond, "pooled_projections"), return_dict=False)[0]


class FluxNet(TransformerNet):
    """`FluxTransformer2DModel` (FLUX.1 schnell / dev): packed latents, rotary ids, `t` in `[0, 1]`,
    and the embedded guidance scale of guidance-distilled models.

    Args:
        default_guidance_scale: the embedded scale when `cond` has no `guidance_scale` (FLUX-dev: 3.5,
            its pipeline's default); ignored by models without a guidance embedding (FLUX-schnell).
    """

    t_scale = 1.0

    def __init__(self, transformer: nn.Module, *, default_guidance_scale: Optional[float] = None, **kwargs: Any):
        super().__init__(transformer, **kwargs)
        self.default_guidance_scale = default_guidance_scale

    @property
    def guidance_embeds(self) -> bool:
        """Whether the model embeds a guidance scale (guidance-distilled, FLUX-dev)."""
        return bool(getattr(self.config, "guidance_embeds", False))

    def guidance(self, cond: Mapping[str, Any], batch: int) -> Optional[Tensor]:
        """The `[B]` guidance scales for the embedding (`None` for a model without one)."""
        if not self.guidance_embeds:
            return None
        w = self._get(cond, "guidance_scale", required=False)
        if w is None:
            if self.default_guidance_scale is None:
                raise ConfigError("this FLUX transformer embeds a guidance scale (guidance-distilled, "
                                  "guidance_embeds): pass guidance=DistilledCFG(w), cond['guidance_scale'], or "
                                  "guidance_scale=... at load")
            w = float(self.default_guidance_scale)
        return torch.as_tensor(w, dtype=torch.float32).flatten().expand(batch).to(self.device)

    def velocity(self, x_t: Tensor, t: Tensor, cond: Mapping[str, Any]) -> Tensor:
        from diffusers import FluxPipeline

        b, c, h, w = x_t.shape
        ctx = self._get(cond, "encoder_hidden_states")
        packed = FluxPipeline._pack_latents(x_t, b, c, h, w)
        img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, self.device, self.dtype)
        txt_ids = torch.zeros(ctx.shape[1], 3, device=self.device, dtype=self.dtype)
        out = self._call(hidden_states=packed, timestep=t, guidance=self.guidance(cond, b),
                         pooled_projections=self._get(cond, "pooled_projections"), encoder_hidden_states=ctx,
                         txt_ids=txt_ids, img_ids=img_ids, return_dict=False)[0]
        return FluxPipeline._unpack_latents(out, h, w, 1)


class FlowTransformerDenoiser(FlowDenoiser):
    """A [`FlowDenoiser`][tgsample.denoisers.FlowDenoiser] over a
    [`TransformerNet`][tgsample.models.diffusers.transformer.TransformerNet], with the model's own schedule.

    Args:
        net: the transformer adapter (its `t_scale`: 1000 for SD3, 1 for FLUX).
        flow_schedule: the pipeline's [`tgsample.flow.FlowSchedule`][tgsample.flow.FlowSchedule] (shift, dynamic shift,
            spacing),
            read by the `flow` schedule.
        image_seq_len: image tokens at the model's sample size (`mu` of a dynamically shifted model).
        sample_shape: `(C, H, W)` of the latents.
        diffusers_parity: read by [`tgsample.sample`][tgsample.sampling.sample]
            ([`tgsample.conventions`][tgsample.conventions]); the flow pipelines'
            `FlowMatchEulerDiscreteScheduler` follows tgsample's own convention, so it changes nothing here.

    Samples are computed in float32 (`sample_dtype`) whatever the weights' dtype: the pure-noise level
    `2**53` of a flow schedule does not fit float16.
    """

    sample_dtype = torch.float32

    def __init__(self, net: TransformerNet, flow_schedule: Any, image_seq_len: int,
                 sample_shape: Optional[Sequence[int]] = None, diffusers_parity: bool = False):
        super().__init__(net, t_scale=net.t_scale, sample_shape=sample_shape)
        self.flow_schedule = flow_schedule
        self.image_seq_len = int(image_seq_len)
        self.diffusers_parity = bool(diffusers_parity)

    @property
    def sample_device(self) -> torch.device:
        """The device samples live on: the transformer's compute device (also when it is offloaded)."""
        return self.net.device
