"""Loading errors of diffusers-backed models (all :class:`tgsample.errors.TgsampleError` subclasses)."""

from __future__ import annotations

from ...errors import ConfigError, ShapeMismatchError


class ModelNotFoundError(ConfigError, FileNotFoundError):
    """A model directory, a component folder or a weights file does not exist."""


class OfflineModelError(ModelNotFoundError):
    """A hub id was given but the model is not in the local cache and downloading is off."""


class LoRAMismatchError(ShapeMismatchError):
    """A LoRA's modules or shapes do not fit the base UNet it is loaded into."""


class LatentSpaceMismatchError(ShapeMismatchError):
    """A teacher's VAE latent space (channels, scaling and shift factor) is not its student's."""


__all__ = ["ModelNotFoundError", "OfflineModelError", "LoRAMismatchError", "LatentSpaceMismatchError",
           "ShapeMismatchError", "ConfigError"]
