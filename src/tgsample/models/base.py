"""What a registered student or teacher is: a denoiser plus how to condition it and view its samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor

from ..denoisers import Denoiser

if TYPE_CHECKING:
    from ..recipes import Recipe

Encode = Callable[[Sequence[Any], Optional[Sequence[Any]]], "tuple[dict, Optional[dict]]"]
"""A model's conditioning encoder: `(prompts, negatives) -> (cond, uncond)`."""


def _identity_decode(x: Tensor) -> Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


@dataclass
class Model:
    """A student or teacher as the registry returns it.

    Attributes:
        name: registry name.
        denoiser: `D(x, sigma, **cond)` in sigma space.
        sample_shape: per-sample shape of `x` (latent shape for latent models).
        encode: `(prompts_or_labels, negatives_or_None) -> (cond, uncond)`; batch-first dicts.
        decode: samples `x` -> images `[B, C, H, W]` in `[0, 1]` (identity for pixel models).
        recipes: the model's published sampling recipes, `{variant: Recipe}` (`""` plain, `"++"` with
            teacher guidance); for a registered student, the ones it publishes through the
            `tgsample.recipes` entry points. [`tgsample.sample`][tgsample.sampling.sample] starts from `recipes[""]`.
    """

    name: str
    denoiser: Denoiser
    sample_shape: tuple[int, ...]
    encode: Encode
    decode: Callable[[Tensor], Tensor] = _identity_decode
    recipes: Mapping[str, "Recipe"] = field(default_factory=dict)

    def to(self, device: torch.device | str, dtype: Optional[torch.dtype] = None) -> "Model":
        """Move the denoiser to `device` (and `dtype`) in place; returns `self`."""
        self.denoiser.to(device=device, dtype=dtype)
        return self
