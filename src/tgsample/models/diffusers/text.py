"""Prompt encoding with a pipeline's text encoder(s), through diffusers' own `encode_prompt`.

SD 1.x: one CLIP encoder, `cond = {"encoder_hidden_states": [B, L, D]}`.
SDXL: two encoders (penultimate hidden states concatenated), the second one's pooled projection
and the micro-conditioning time ids:

```python
cond = {"encoder_hidden_states": [B, L, D1 + D2], "text_embeds": [B, P],
        "time_ids": [B, 6]}   # (orig_h, orig_w, crop_top, crop_left, target_h, target_w), pixels
```

`uncond` has the same keys (negative prompts; SDXL's zero embeddings for an empty negative
when the pipeline's `force_zeros_for_empty_prompt`), so CFG batches cond and uncond in one call.

An encoder remembers its last batch: a student and a teacher that share a
[`PromptEncoder`][tgsample.models.diffusers.text.PromptEncoder]
(same text encoders) encode each batch of prompts once.
"""

from __future__ import annotations

import types
from typing import Any, Optional, Sequence

import torch
from torch import nn

from ...errors import ConfigError

Cond = dict
"""A conditioning dict of the UNet's keyword inputs."""


def _as_list(prompts: Any, what: str) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not all(isinstance(p, str) for p in prompts):
        raise ConfigError(f"{what} must be strings; got {[type(p).__name__ for p in prompts][:4]}")
    return prompts


def _size(name: str, value: Any) -> Optional[tuple[int, int]]:
    if value is None:
        return None
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or (name != "crops_coords_top_left" and min(pair) <= 0) or min(pair) < 0:
        raise ConfigError(f"{name}={value!r} must be a pair of {'non-negative' if name == 'crops_coords_top_left' else 'positive'} "
                          f"integers (height, width) / (top, left)")
    return pair


def clip_skip_compatible(encoder: nn.Module) -> nn.Module:
    """Let diffusers' SD 1.x `encode_prompt(clip_skip=...)` run on transformers >= 5.6.

    transformers 5.6 flattened `CLIPTextModel` (`embeddings`, `encoder`, `final_layer_norm` moved off
    `text_model`); diffusers 0.42 still applies `text_encoder.text_model.final_layer_norm` to the skipped
    layer's output and fails. This gives the flattened encoder a plain (non-module) `text_model` attribute
    holding its `final_layer_norm`, so diffusers' own clip-skip code runs unchanged. No-op on older
    transformers or wrapped encoders (`CLIPTextModelWithProjection`).
    """
    if "text_model" not in encoder.__dict__ and "text_model" not in encoder._modules and hasattr(encoder, "final_layer_norm"):
        encoder.__dict__["text_model"] = types.SimpleNamespace(final_layer_norm=encoder.final_layer_norm)
    return encoder


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """`a is b`, or the same architecture with exactly equal parameters."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k].to(sb[k].device), sb[k])
                                          for k in sa)


class PromptEncoder:
    """Text encoder(s) + tokenizer(s) of one pipeline; `encode(prompts, negatives) -> (cond, uncond)`.

    Args:
        kind: `"sd15"` (one encoder) or `"sdxl"` (two, plus pooled embeddings and time ids).
        text_encoders: one (SD) or two (SDXL) text encoders.
        tokenizers: their tokenizers, one per encoder.
        device: where the encoders run; outputs are moved to `out_device` / `out_dtype`.
        image_size: `(height, width)` in pixels for SDXL's time ids.
        clip_skip: skip the last `clip_skip` CLIP layers (diffusers' meaning).
        force_zeros_for_empty_prompt: SDXL: zero uncond embeddings when no negative prompt is given.
        original_size: SDXL micro-conditioning `(height, width)` (default: `image_size`).
        crops_coords_top_left: SDXL micro-conditioning `(top, left)` (default `(0, 0)`).
        target_size: SDXL micro-conditioning `(height, width)` (default: `image_size`).
    """

    def __init__(self, kind: str, text_encoders: Sequence[nn.Module], tokenizers: Sequence[Any], *,
                 device: torch.device | str = "cpu", image_size: tuple[int, int] = (1024, 1024),
                 clip_skip: Optional[int] = None, force_zeros_for_empty_prompt: bool = True,
                 out_dtype: torch.dtype = torch.float32, original_size: Optional[Sequence[int]] = None,
                 crops_coords_top_left: Sequence[int] = (0, 0), target_size: Optional[Sequence[int]] = None):
        if kind not in ("sd15", "sdxl"):
            raise ConfigError(f"prompt encoder kind={kind!r}; allowed: 'sd15', 'sdxl'")
        self.kind = kind
        self.text_encoders, self.tokenizers = list(text_encoders), list(tokenizers)
        self.device = torch.device(device)
        self.image_size = tuple(int(v) for v in image_size)
        self.clip_skip = clip_skip
        if clip_skip is not None and (not isinstance(clip_skip, int) or isinstance(clip_skip, bool) or clip_skip < 0):
            raise ConfigError(f"clip_skip={clip_skip!r} must be a non-negative integer (CLIP layers to skip)")
        self.original_size = _size("original_size", original_size)
        self.crops = _size("crops_coords_top_left", crops_coords_top_left)
        self.target_size = _size("target_size", target_size)
        self.force_zeros = force_zeros_for_empty_prompt
        self.out_dtype = out_dtype
        self.calls = 0  # number of (non-cached) encoder runs, for tests and benchmarks
        self._last: Optional[tuple[Any, tuple[Cond, Cond]]] = None
        self._pipe = self._pipeline()

    def _pipeline(self) -> Any:
        """A text-only diffusers pipeline object whose `encode_prompt` we call."""
        for m in self.text_encoders:
            m.eval().requires_grad_(False)
        if self.kind == "sd15":
            from diffusers import StableDiffusionPipeline

            clip_skip_compatible(self.text_encoders[0])
            return StableDiffusionPipeline(vae=None, text_encoder=self.text_encoders[0], tokenizer=self.tokenizers[0],
                                           unet=None, scheduler=None, safety_checker=None, feature_extractor=None,
                                           requires_safety_checker=False)
        from diffusers import StableDiffusionXLPipeline

        return StableDiffusionXLPipeline(vae=None, text_encoder=self.text_encoders[0],
                                         text_encoder_2=self.text_encoders[1], tokenizer=self.tokenizers[0],
                                         tokenizer_2=self.tokenizers[1], unet=None, scheduler=None,
                                         force_zeros_for_empty_prompt=self.force_zeros)

    def options(self) -> tuple:
        """What decides the embeddings besides the weights (compared by
        [`same_as`][tgsample.models.diffusers.text.PromptEncoder.same_as]): the kind, clip skip,
        SDXL's empty-prompt zeros and micro-conditioning."""
        return (self.kind, self.clip_skip, self.force_zeros, self.time_ids(1).tolist())

    def same_as(self, other: "PromptEncoder") -> bool:
        """True when `other` computes the same embeddings (same
        [`options`][tgsample.models.diffusers.text.PromptEncoder.options] and encoder weights)."""
        return (self is other) or (
            self.options() == other.options()
            and len(self.text_encoders) == len(other.text_encoders)
            and all(same_weights(a, b) for a, b in zip(self.text_encoders, other.text_encoders))
            and all(type(a) is type(b) and a.get_vocab() == b.get_vocab() for a, b in zip(self.tokenizers, other.tokenizers))
        )

    def time_ids(self, batch: int, image_size: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """SDXL micro-conditioning per sample, as diffusers' `add_time_ids`:
        `original_size + crops_coords_top_left + target_size`, the sizes defaulting to the image size."""
        size = tuple(image_size or self.image_size)
        ids = [*(self.original_size or size), *self.crops, *(self.target_size or size)]
        return torch.tensor([ids], dtype=self.out_dtype).repeat(batch, 1)

    @torch.no_grad()
    def encode(self, prompts: Any, negatives: Any = None) -> tuple[Cond, Cond]:
        """`(cond, uncond)` for a batch of prompts (and optional negative prompts, one per prompt)."""
        prompts = _as_list(prompts, "prompts")
        if not prompts:
            raise ConfigError("prompts is empty: give at least one prompt")
        if negatives is not None:
            negatives = _as_list(negatives, "negative prompts")
            if len(negatives) != len(prompts):
                raise ConfigError(f"{len(negatives)} negative prompts for {len(prompts)} prompts; give one per prompt")
        key = (tuple(prompts), None if negatives is None else tuple(negatives))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        result = self._encode(prompts, negatives)
        self._last = (key, result)
        self.calls += 1
        return result

    def _encode(self, prompts: list[str], negatives: Optional[list[str]]) -> tuple[Cond, Cond]:
        out = lambda t: t.to(self.out_dtype)  # noqa: E731
        if self.kind == "sd15":
            c, u = self._pipe.encode_prompt(prompts, self.device, 1, True, negatives, clip_skip=self.clip_skip)
            return {"encoder_hidden_states": out(c)}, {"encoder_hidden_states": out(u)}
        c, u, pc, pu = self._pipe.encode_prompt(prompts, device=self.device, num_images_per_prompt=1,
                                                do_classifier_free_guidance=True, negative_prompt=negatives,
                                                clip_skip=self.clip_skip)
        ids = self.time_ids(len(prompts))
        return ({"encoder_hidden_states": out(c), "text_embeds": out(pc), "time_ids": ids},
                {"encoder_hidden_states": out(u), "text_embeds": out(pu), "time_ids": ids.clone()})
