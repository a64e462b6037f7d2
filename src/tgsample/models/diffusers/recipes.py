"""The diffusers students' published recipes (torch-free; entry points `tgsample.recipes`).

`""` is each student's published sampling (schedule, steps, solver, its own guidance); `"++"` the
same run with teacher guidance (Distillation++) on the student's own schedule, in the **form** the
official Distillation++ code used for that student (docs: Guidance, "x0 or noise space"): its
`random++` sampler (LCM, LCM-LoRA, DMD2) interpolates noise predictions (`space="eps"`), its
Lightning / Turbo samplers x0 estimates (`space="x0"`); at that code's `lam` and teacher CFG. Each
`++` note says which form and where the numbers come from; `python scripts/measure_teacher_strengths.py`
prints what each strength does per step (docs: Guidance, "What a strength means"). Model locations
are not part of a recipe: the factories' published hub ids apply unless `student_options` /
`teacher_options` give `path=` (and `lora=` / `unet=`).
"""

from __future__ import annotations

from typing import Any, Optional

from ...recipes import GUIDED, PLAIN, Recipe

__all__ = ["published", "TEACHER"]


def published(*, schedule: str, steps: Optional[int], solver: str, teacher: str, lam: float, space: str,
              source: str, teacher_cfg: float = 7.5, guided_steps: int = 1, guidance: Any = None,
              schedule_options: Optional[dict] = None, solver_options: Optional[dict] = None,
              teacher_options: Optional[dict] = None, note: str) -> dict[str, Recipe]:
    """`{"": plain, "++": teacher-guided}`: the teacher corrects the first `guided_steps` steps,
    renoised to `sigma_{i+1}`, interpolating in `space` (`x0` or `eps`); `source` says where
    the form and the numbers come from (it ends the `++` note)."""
    plain = Recipe(schedule=schedule, schedule_options=schedule_options or {}, steps=steps, solver=solver,
                   solver_options=solver_options or {}, guidance=guidance, note=note)
    guided = plain.guided(teacher=teacher, lam=lam, steps=guided_steps, renoise="next", teacher_cfg=teacher_cfg,
                          space=space)
    return {PLAIN: plain, GUIDED: guided.replace(
        teacher_options=teacher_options or {},
        note=f"{note}; teacher {teacher} (CFG {teacher_cfg:g}) at lam {lam:g} in {space} space on {guided_steps} "
             f"step(s): {source}")}


_LCM_CFG = {"name": "distilled_cfg", "scale": 8.0}
_TDD_NOTE = ("TDD: non-equidistant schedule [999, 875, 751, 499, 251], gamma 0.2, decoupled guidance = CFG 1.7 on "
             "the student; optional x0_clip")
_RANDOMPP = "the reference code's random++ form (noise predictions) and strength"
"""where the reference code ran each form (SDXL only: it has no teacher-guided SD 1.5 sampler)"""
_LIGHTNING = ("the reference code's euler_lightning++ form (x0 estimates) at a lam of its range 0.03-0.1, "
              "teacher CFG 7.5; it also stepped along the student's unconditional direction (CFG++ at lam 1)")
_NO_REFERENCE = ("not in the reference code: LCM-LoRA's noise-space form as the nearest analogue (a consistency-style "
                 "LoRA), at the low end of its lams (our choice)")

# one attribute per student: the entry points name them (``lcm-sd15 = "...recipes:LCM_SD15"``)
LCM_SD15 = published(schedule="lcm", steps=8, solver="lcm", teacher="sd15", lam=0.01, teacher_cfg=8.0, space="eps",
                     guidance=_LCM_CFG, note="LCM (guided distillation, w embedded), 8 steps as in the reference code",
                     source=f"{_RANDOMPP} for LCM-SDXL (random++_lcm, 8 steps, 1 guided step)")
"""`lcm-sd15`'s recipes: `""` its published sampling, `"++"` teacher-guided."""
LCM_SDXL = published(schedule="lcm", steps=4, solver="lcm", teacher="sdxl", lam=0.01, teacher_cfg=8.0, space="eps",
                     guidance=_LCM_CFG, note="LCM-SDXL (w reaches the UNet only if it has a time_cond_proj_dim)",
                     source=f"{_RANDOMPP} (random++_lcm; it ran 8 steps)")
"""`lcm-sdxl`'s recipes: `""` its published sampling, `"++"` teacher-guided."""
LCM_LORA_SD15 = published(schedule="lcm", steps=4, solver="lcm", teacher="sd15", lam=0.02, teacher_cfg=6.0,
                          space="eps", note="LCM-LoRA",
                          source=f"{_RANDOMPP} for LCM-LoRA SDXL (its MS-COCO runs: 3-8 steps, 1 guided step)")
"""`lcm-lora-sd15`'s recipes: `""` its published sampling, `"++"` teacher-guided."""
LCM_LORA_SDXL = published(schedule="lcm", steps=4, solver="lcm", teacher="sdxl", lam=0.02, teacher_cfg=6.0,
                          space="eps", note="LCM-LoRA SDXL",
                          source=f"{_RANDOMPP} (its MS-COCO runs: 3-8 steps, 1 guided step)")
"""`lcm-lora-sdxl`'s recipes: `""` its published sampling, `"++"` teacher-guided."""
DMD2_SDXL = published(schedule="trailing", steps=4, solver="lcm", teacher="sdxl", lam=0.01, guided_steps=2,
                      space="eps", note="DMD2 4-step ([999, 749, 499, 249], fresh noise each step)",
                      source=f"{_RANDOMPP} (the same 4 steps)")
"""`dmd2-sdxl`'s recipes: `""` its published sampling, `"++"` teacher-guided."""
LIGHTNING_SDXL = published(schedule="trailing", steps=4, solver="euler", teacher="sdxl", lam=0.05, space="x0",
                           note="SDXL-Lightning 4-step (Euler, trailing)", source=_LIGHTNING)
"""`lightning-sdxl`'s recipes: `""` its published sampling, `"++"` teacher-guided."""
LIGHTNING_LORA_SDXL = published(schedule="trailing", steps=4, solver="euler", teacher="sdxl", lam=0.05, space="x0",
                                note="SDXL-Lightning LoRA 4-step (Euler, trailing)", source=_LIGHTNING)
"""`lightning-lora-sdxl`'s recipes: `""` its published sampling, `"++"` teacher-guided."""
TURBO_SDXL = published(schedule="trailing", steps=4, solver="euler_ancestral", teacher="sdxl", lam=0.05, space="x0",
                       teacher_options={"height": 512, "width": 512},
                       note="SDXL-Turbo 512px (Euler ancestral, trailing); the SDXL teacher at Turbo's 512 px",
                       source="the reference code's euler_a++ form (x0 estimates) at a lam of its range 0.02-0.1, "
                              "teacher CFG 7.5; it also stepped along the unconditional direction")
"""`turbo-sdxl`'s recipes: `""` its published sampling, `"++"` teacher-guided."""
TCD_SD15 = published(schedule="lcm", steps=4, solver="tcd", solver_options={"gamma": 0.3}, teacher="sd15", lam=0.01,
                     space="eps", note="TCD gamma-sampling", source=_NO_REFERENCE)
"""`tcd-sd15`'s recipes: `""` its published sampling, `"++"` teacher-guided."""
TCD_SDXL = published(schedule="lcm", steps=4, solver="tcd", solver_options={"gamma": 0.3}, teacher="sdxl", lam=0.01,
                     space="eps", note="TCD-SDXL gamma-sampling", source=_NO_REFERENCE)
"""`tcd-sdxl`'s recipes: `""` its published sampling, `"++"` teacher-guided."""
TDD_SDXL = published(schedule="tdd", steps=None, solver="tcd", solver_options={"gamma": 0.2}, teacher="sdxl",
                     lam=0.01, space="eps", guidance={"name": "cfg", "scale": 1.7}, note=_TDD_NOTE, source=_NO_REFERENCE)
"""`tdd-sdxl`'s recipes: `""` its published sampling, `"++"` teacher-guided."""
TDD_SD15 = published(schedule="tdd", steps=None, solver="tcd", solver_options={"gamma": 0.2}, teacher="sd15",
                     lam=0.01, space="eps", guidance={"name": "cfg", "scale": 1.7},
                     note=_TDD_NOTE.replace("TDD:", "TDD (SD 1.5):"), source=_NO_REFERENCE)
"""`tdd-sd15`'s recipes: `""` its published sampling, `"++"` teacher-guided."""

TEACHER = Recipe(schedule="karras", steps=25, solver="dpmpp_2m", guidance={"name": "cfg", "scale": 7.5},
                 note="standalone teacher sampling (a baseline)")
"""how a diffusers teacher is sampled on its own (a baseline): 25 Karras steps, DPM++ 2M, CFG 7.5."""
