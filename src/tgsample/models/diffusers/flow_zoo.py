"""Registered flow-matching students and teachers (entry points `tgsample.students` / `tgsample.teachers`).

Students `flux-schnell` and `sd35-large-turbo`; teachers `flux-dev`, `sd35-large` and
`sd35-medium`. Every factory takes the model location and options as keywords:

```python
registry.create("students", "flux-schnell", path="/models/FLUX.1-schnell")
registry.create("teachers", "flux-dev", path="/models/FLUX.1-dev", student=student, offload="model")
```

`path` defaults to the published hub id, which works offline only when it is in the Hugging Face
cache (`allow_download=True` opts into downloading). Other keywords go to
[`load_flow_model`][tgsample.models.diffusers.flow_bundle.load_flow_model] (`dtype`, `device`, `offload`,
`weights`, `height` / `width`, `max_sequence_length`, `diffusers_parity`, ...). Each student's
`Model.recipes` are the ones it publishes ([`flow_recipes`][tgsample.models.diffusers.flow_recipes], entry points
`tgsample.recipes`); each
teacher's `Model.recipes[""]` is its baseline there.
"""

from __future__ import annotations

from typing import Any, Optional

from .flow_bundle import FlowModel, load_flow_model, make_flow_teacher
from .flow_recipes import TEACHERS as BASELINES

FLUX_SCHNELL = "black-forest-labs/FLUX.1-schnell"
"""The hub id of FLUX.1-schnell."""
FLUX_DEV = "black-forest-labs/FLUX.1-dev"
"""The hub id of FLUX.1-dev."""
SD35_LARGE_TURBO = "stabilityai/stable-diffusion-3.5-large-turbo"
"""The hub id of SD3.5 Large Turbo."""
SD35_LARGE = "stabilityai/stable-diffusion-3.5-large"
"""The hub id of SD3.5 Large."""
SD35_MEDIUM = "stabilityai/stable-diffusion-3.5-medium"
"""The hub id of SD3.5 Medium."""


def _student(name: str, kind: str, path: str, **fixed: Any) -> Any:
    def factory(path: str = path, **options: Any) -> FlowModel:
        from ...recipes import published

        return load_flow_model(name, path, kind=kind, recipes=published(name), **{**fixed, **options})

    factory.__name__ = name.replace("-", "_").replace(".", "")
    factory.loading = {"path": path, "kind": kind, **fixed}  # type: ignore[attr-defined]  # the published location
    factory.__doc__ = (f"Student {name!r} (recipes: tgsample.models.diffusers.flow_recipes). Keywords: see "
                       f"load_flow_model (defaults {fixed}).")
    return factory


flux_schnell = _student("flux-schnell", "flux", FLUX_SCHNELL, max_sequence_length=256)
"""The `flux-schnell` student (entry point `tgsample.students`)."""
sd35_large_turbo = _student("sd35-large-turbo", "sd3", SD35_LARGE_TURBO, max_sequence_length=256)
"""The `sd35-large-turbo` student (entry point `tgsample.students`)."""


def flux_dev(*, path: Optional[str] = None, student: Any = None, guidance_scale: float = 3.5,
             share_text_encoders: Optional[bool] = None, **options: Any) -> FlowModel:
    """Teacher `flux-dev`: FLUX.1-dev (guidance-distilled: the scale `guidance_scale` is embedded, one call
    per evaluation; `cond["guidance_scale"]` overrides it per sample). With `student=`, it shares the
    student's text encoders when they are the same (FLUX-schnell ships the same T5 and CLIP), at the
    student's `max_sequence_length`; alone it reads 512 T5 tokens, as its pipeline does."""
    if student is None:
        options.setdefault("max_sequence_length", 512)
    return make_flow_teacher("flux-dev", "flux", FLUX_DEV, path=path, student=student, guidance_scale=guidance_scale,
                             share_text_encoders=share_text_encoders, recipes={"": BASELINES["flux-dev"]}, **options)


def sd35_large(*, path: Optional[str] = None, student: Any = None, share_text_encoders: Optional[bool] = None,
               **options: Any) -> FlowModel:
    """Teacher `sd35-large`: SD3.5 Large (or any SD3-family pipeline with SD3's VAE). With `student=`: the
    same latent space is required, text encoders are shared when they are the same (SD3.5 Large Turbo ships
    the same three), and a pipeline without T5 (`t5=False`) gets its own `teacher_*` keys."""
    return make_flow_teacher("sd35-large", "sd3", SD35_LARGE, path=path, student=student,
                             share_text_encoders=share_text_encoders, recipes={"": BASELINES["sd35-large"]},
                             **options)


def sd35_medium(*, path: Optional[str] = None, student: Any = None, share_text_encoders: Optional[bool] = None,
                **options: Any) -> FlowModel:
    """Teacher `sd35-medium`: SD3.5 Medium (MMDiT-X, same VAE and text encoders as SD3.5 Large), e.g. a
    smaller teacher for `sd35-large-turbo`; as [`sd35_large`][tgsample.models.diffusers.flow_zoo.sd35_large]."""
    return make_flow_teacher("sd35-medium", "sd3", SD35_MEDIUM, path=path, student=student,
                             share_text_encoders=share_text_encoders, recipes={"": BASELINES["sd35-medium"]},
                             **options)


STUDENTS = {"flux-schnell": flux_schnell, "sd35-large-turbo": sd35_large_turbo}
"""The flow students by registry name."""
TEACHERS = {"flux-dev": flux_dev, "sd35-large": sd35_large, "sd35-medium": sd35_medium}
"""The flow teachers by registry name."""
