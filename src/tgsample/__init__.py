"""tgsample: guided sampling of distilled diffusion models.

Teacher guidance (Distillation++), CFG and CFG++ for few-step students, on
guidance-aware solvers and k-diffusion's stock samplers, in sigma space.

`import tgsample` is cheap: the public names below are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # sampling
    "sample": "tgsample.sampling",
    "GuidedModel": "tgsample.solvers",
    # guidance
    "Guidance": "tgsample.guidance", "Estimate": "tgsample.guidance", "StepContext": "tgsample.guidance",
    "NoGuidance": "tgsample.guidance", "CFG": "tgsample.guidance", "CFGPP": "tgsample.guidance",
    "DistilledCFG": "tgsample.guidance", "RescaledCFG": "tgsample.guidance", "TeacherGuidance": "tgsample.guidance",
    "Interval": "tgsample.guidance",
    # models
    "Denoiser": "tgsample.denoisers", "CallableDenoiser": "tgsample.denoisers",
    "DiscreteVPDenoiser": "tgsample.denoisers", "FlowDenoiser": "tgsample.denoisers",
    "EDMDenoiser": "tgsample.denoisers", "Model": "tgsample.models",
    # recipes (torch-free)
    "Recipe": "tgsample.recipes",
    # randomness, schedules
    "NoiseStreams": "tgsample.noise", "validate_sigmas": "tgsample.schedules",
    # errors
    "TgsampleError": "tgsample.errors", "ConfigError": "tgsample.errors", "ScheduleError": "tgsample.errors",
    "UnknownNameError": "tgsample.errors", "UnsupportedGuidanceError": "tgsample.errors",
    "ShapeMismatchError": "tgsample.errors", "NonFiniteError": "tgsample.errors", "PluginError": "tgsample.errors",
}
_SUBMODULES = ("math", "noise", "denoisers", "guidance", "solvers", "schedules", "flow", "kdiffusion",
               "registry", "sampling", "conventions", "models", "errors", "recipes", "resolve", "eval")

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"tgsample.{name}")
    raise AttributeError(f"module 'tgsample' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
