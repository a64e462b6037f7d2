"""Guidances: what a solver's model evaluation returns (see :mod:`tgsample.guidance.base`)."""

from .base import Estimate, Guidance, StepContext, denoise, denoise_pair
from .cfg import CFG, CFGPP, DistilledCFG, NoGuidance
from .interval import Interval
from .teacher import NOISE_MODES, RENOISE_SCHEDULES, TeacherGuidance

__all__ = [
    "CFG", "CFGPP", "DistilledCFG", "Estimate", "Guidance", "Interval", "NOISE_MODES", "NoGuidance",
    "RENOISE_SCHEDULES", "StepContext", "TeacherGuidance", "denoise", "denoise_pair",
]
