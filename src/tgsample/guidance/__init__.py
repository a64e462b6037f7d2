"""Guidances: what a solver's model evaluation returns (see [`tgsample.guidance.base`][tgsample.guidance.base]), and
guidance specs ([`tgsample.guidance.spec`][tgsample.guidance.spec]: YAML / dicts to objects and back)."""

from .base import Estimate, Guidance, StepContext, denoise, denoise_pair, is_guidance, require_uncond
from .cfg import CFG, CFGPP, CFGPP_MAX_LAM, DistilledCFG, NoGuidance, RescaledCFG, check_finite, check_unit
from .interval import Interval
from .spec import build, model_part, part, to_spec
from .teacher import INTERPOLATION_SPACES, NOISE_MODES, RENOISE_SCHEDULES, TeacherGuidance

__all__ = [
    "CFG", "CFGPP", "CFGPP_MAX_LAM", "DistilledCFG", "Estimate", "Guidance", "INTERPOLATION_SPACES", "Interval",
    "NOISE_MODES", "NoGuidance", "RENOISE_SCHEDULES", "RescaledCFG", "StepContext", "TeacherGuidance", "build",
    "check_finite", "check_unit", "denoise", "denoise_pair", "is_guidance", "model_part", "part", "require_uncond",
    "to_spec",
]
