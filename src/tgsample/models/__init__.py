"""Students and teachers: the :class:`Model` bundle and the shipped / diffusers-backed models."""

from .base import Model

__all__ = ["Model"]
