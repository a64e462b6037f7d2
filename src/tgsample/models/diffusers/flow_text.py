"""Prompt encoding for flow-matching pipelines (T5 + CLIP), through diffusers' own `encode_prompt`.

SD3 / SD3.5 (`StableDiffusion3Pipeline`): CLIP-L and CLIP-G (penultimate hidden states, concatenated,
zero-padded to T5's width) followed by T5's sequence; the pooled embeddings of both CLIPs:

```python
cond = {"encoder_hidden_states": [B, 77 + L, D], "pooled_projections": [B, P_L + P_G]}
```

A pipeline saved without T5 (`text_encoder_3 = None`) gets zeros in T5's place, as diffusers does.

FLUX (`FluxPipeline`): T5's sequence and CLIP-L's pooled output:

```python
cond = {"encoder_hidden_states": [B, L, D], "pooled_projections": [B, P]}
```

(FLUX's `txt_ids` are zeros of shape `[L, 3]`; the transformer adapter makes them.) `uncond`
encodes the negative prompts, or `""`, with the same keys, so CFG batches both in one call.
`L` is `max_sequence_length` (T5 tokens; 256 for SD3 and FLUX-schnell, 512 for FLUX-dev).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

from ...errors import ConfigError
from .text import Cond, PromptEncoder

FLOW_KINDS = ("sd3", "flux")
"""The flow prompt encoders: SD3's (two CLIPs and T5) and FLUX's (CLIP-L and T5)."""


class _TransformerConfig:
    """What diffusers' text-only SD3 pipeline reads from its transformer: `config.joint_attention_dim`
    (the width of the zeros that replace a missing T5)."""

    def __init__(self, config: Any):
        self.config = config


class FlowPromptEncoder(PromptEncoder):
    """Text encoders + tokenizers of an SD3 or FLUX pipeline; `encode(prompts, negatives) -> (cond, uncond)`.

    Args:
        kind: `"sd3"` (encoders `[CLIP-L, CLIP-G, T5 or None]`) or `"flux"` (`[CLIP-L, T5]`).
        text_encoders: the pipeline's text encoders in that order (`None` for a missing T5).
        tokenizers: their tokenizers, in the same order.
        device: where the encoders run.
        max_sequence_length: T5 tokens per prompt.
        out_dtype: the dtype of the embeddings handed to the transformer.
        transformer_config: the transformer's config (SD3 without T5 needs its `joint_attention_dim`).
    """

    def __init__(self, kind: str, text_encoders: Sequence[Optional[nn.Module]], tokenizers: Sequence[Any], *,
                 device: torch.device | str = "cpu", max_sequence_length: int = 256,
                 out_dtype: torch.dtype = torch.float32, transformer_config: Any = None):
        if kind not in FLOW_KINDS:
            raise ConfigError(f"flow prompt encoder kind={kind!r}; allowed: {list(FLOW_KINDS)}")
        if int(max_sequence_length) < 1:
            raise ConfigError(f"max_sequence_length={max_sequence_length!r} must be a positive number of T5 tokens")
        self.kind = kind
        self.slots, self.tokenizer_slots = list(text_encoders), list(tokenizers)
        self.text_encoders = [m for m in self.slots if m is not None]
        self.tokenizers = [t for t, m in zip(self.tokenizer_slots, self.slots) if m is not None]
        self.device = torch.device(device)
        self.max_sequence_length = int(max_sequence_length)
        self.out_dtype = out_dtype
        self.transformer_config = transformer_config
        self.calls = 0
        self._last = None
        self._pipe = self._pipeline()

    def _pipeline(self) -> Any:
        for m in self.text_encoders:
            m.eval().requires_grad_(False)
        if self.kind == "flux":
            from diffusers import FluxPipeline

            clip, t5 = self.slots
            tok, tok_t5 = self.tokenizer_slots
            return FluxPipeline(scheduler=None, vae=None, text_encoder=clip, tokenizer=tok, text_encoder_2=t5,
                                tokenizer_2=tok_t5, transformer=None)
        from diffusers import StableDiffusion3Pipeline

        clip_l, clip_g, t5 = self.slots
        tok_l, tok_g, tok_t5 = self.tokenizer_slots
        holder = _TransformerConfig(self.transformer_config) if self.transformer_config is not None else None
        if t5 is None and holder is None:
            raise ConfigError("an SD3 pipeline without T5 (text_encoder_3) needs the transformer's config "
                              "(joint_attention_dim) to pad its prompt embeddings")
        return StableDiffusion3Pipeline(transformer=holder, scheduler=None, vae=None, text_encoder=clip_l,
                                        tokenizer=tok_l, text_encoder_2=clip_g, tokenizer_2=tok_g,
                                        text_encoder_3=t5, tokenizer_3=tok_t5 if t5 is not None else None)

    def options(self) -> tuple:
        """What decides the embeddings besides the weights
        ([`PromptEncoder.same_as`][tgsample.models.diffusers.text.PromptEncoder.same_as]): the kind, the T5
        length and which text encoders are present."""
        return (self.kind, self.max_sequence_length, tuple(m is not None for m in self.slots))

    def _encode(self, prompts: list[str], negatives: Optional[list[str]]) -> tuple[Cond, Cond]:
        out = lambda t: t.to(self.out_dtype)  # noqa: E731
        n = self.max_sequence_length
        if self.kind == "sd3":
            c, u, pc, pu = self._pipe.encode_prompt(prompts, None, None, device=self.device, num_images_per_prompt=1,
                                                    do_classifier_free_guidance=True, negative_prompt=negatives,
                                                    max_sequence_length=n)
        else:
            c, pc, _ = self._pipe.encode_prompt(prompts, None, device=self.device, max_sequence_length=n)
            u, pu, _ = self._pipe.encode_prompt(negatives or [""] * len(prompts), None, device=self.device,
                                                max_sequence_length=n)
        return ({"encoder_hidden_states": out(c), "pooled_projections": out(pc)},
                {"encoder_hidden_states": out(u), "pooled_projections": out(pu)})
