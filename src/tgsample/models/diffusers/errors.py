"""Loading errors of diffusers-backed models (all [`tgsample.errors.TgsampleError`][tgsample.errors.TgsampleError]
subclasses)."""

from __future__ import annotations

from ...errors import ConfigError, ShapeMismatchError


class ModelNotFoundError(ConfigError, FileNotFoundError):
    """A model directory, a component folder or a weights file does not exist."""


class OfflineModelError(ModelNotFoundError):
    """A hub id was given but the model is not in the local cache and downloading is off."""


class AmbiguousWeightsError(ModelNotFoundError):
    """A folder or hub snapshot holds several weights files and none was named (`*_weight_name=`)."""


class CorruptWeightsError(ConfigError):
    """A weights file exists but cannot be read (a truncated download, not a safetensors / torch file)."""


class LoRAMismatchError(ShapeMismatchError):
    """A LoRA's modules or shapes do not fit the base UNet it is loaded into."""


class FamilyMismatchError(ShapeMismatchError):
    """A pipeline is of another model family (SD 1.x, SDXL, FLUX, SD3) than the one asked for, or a teacher's
    VAE latent space (channels, scaling and shift factor) is not its student's."""


__all__ = ["AmbiguousWeightsError", "CorruptWeightsError", "FamilyMismatchError", "LoRAMismatchError",
           "ModelNotFoundError", "OfflineModelError", "ShapeMismatchError", "ConfigError"]
