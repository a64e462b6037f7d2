"""The flow-matching students' published recipes and the flow teachers' baselines (torch-free; entry points
`tgsample.recipes`).

As [`recipes`][tgsample.models.diffusers.recipes] does for the SD-family students, and with its
[`published`][tgsample.models.diffusers.recipes.published]: `""` is each
student's published sampling -- its diffusers pipeline's settings on the model card --, `"++"` the same run
with teacher guidance on its first step, renoised to `sigma_1`, in x0 space (the paper's update rule: the
reference code has no flow-matching sampler whose form could be followed).

Where the numbers come from:

* FLUX.1-schnell: 4 steps, `guidance_scale=0` (no CFG, no guidance embedding), `max_sequence_length=256`;
  its scheduler has no shift, so the schedule is `t = 1, 0.75, 0.5, 0.25` (sigma `inf, 3, 1, 1/3`).
* SD3.5 Large Turbo: 4 steps, `guidance_scale=0`; shift 3 from its scheduler config.
* Teachers on their own (baselines): FLUX.1-dev 50 steps with the embedded guidance 3.5; SD3.5 Large
  28 steps, CFG 3.5; SD3.5 Medium 40 steps, CFG 4.5 (their model cards).
* Teacher guidance: no published form or strength exists for flow models (Distillation++ covers SD-family
  students only). `lam`, the guided steps and the x0 form below are tgsample's choice, not tuned on real
  weights; the teacher's
  CFG is its own model card's (FLUX-dev: the embedded 3.5 as the teacher's `guidance_scale` option, no true
  CFG). See docs: Flow models, "Which steps to guide".
"""

from __future__ import annotations

from ...recipes import Recipe
from .recipes import published

__all__ = ["FLUX_SCHNELL", "SD35_LARGE_TURBO", "TEACHERS"]

# one attribute per student: the entry points name them (``flux-schnell = "...flow_recipes:FLUX_SCHNELL"``)
_NO_REFERENCE = ("not in the reference code (it has no flow-matching sampler): the paper's x0 update, lam our "
                 "choice, not tuned on real weights")
FLUX_SCHNELL = published(schedule="flow", steps=4, solver="euler", teacher="flux-dev", lam=0.05, teacher_cfg=1.0,
                         space="x0", teacher_options={"guidance_scale": 3.5},
                         note="FLUX.1-schnell: 4 Euler steps, no guidance (model card)",
                         source=f"teacher FLUX.1-dev with its embedded guidance 3.5 (its model card), no true CFG; "
                                f"{_NO_REFERENCE}")
"""`flux-schnell`'s recipes: 4 Euler steps, and teacher guidance by FLUX.1-dev."""
SD35_LARGE_TURBO = published(schedule="flow", steps=4, solver="euler", teacher="sd35-large", lam=0.05,
                             teacher_cfg=3.5, space="x0",
                             note="SD3.5 Large Turbo: 4 Euler steps, shift 3, no CFG (model card)",
                             source=f"teacher SD3.5 Large at its model card's CFG 3.5; {_NO_REFERENCE}")
"""`sd35-large-turbo`'s recipes: 4 Euler steps, and teacher guidance by SD3.5 Large."""

TEACHERS: dict[str, Recipe] = {
    "flux-dev": Recipe(schedule="flow", steps=50, solver="euler",
                       note="FLUX.1-dev on its own: 50 Euler steps, embedded guidance 3.5 (model card)"),
    "sd35-large": Recipe(schedule="flow", steps=28, solver="euler", guidance={"name": "cfg", "scale": 3.5},
                         note="SD3.5 Large on its own: 28 Euler steps, CFG 3.5 (model card)"),
    "sd35-medium": Recipe(schedule="flow", steps=40, solver="euler", guidance={"name": "cfg", "scale": 4.5},
                          note="SD3.5 Medium on its own: 40 Euler steps, CFG 4.5 (model card)"),
}
"""teacher -> how it is sampled on its own (a baseline; its `Model.recipes[""]`)"""
