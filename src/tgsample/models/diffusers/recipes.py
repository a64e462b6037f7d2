"""The diffusers students' published recipes (torch-free; entry points ``tgsample.recipes``).

``""`` is each student's published sampling (schedule, steps, solver, its own guidance); ``"++"`` the
same run with teacher guidance (Distillation++) at the strength, teacher CFG and guided steps of the
reference code (docs: Guidance, "Teacher guidance"), on the student's own schedule. Model locations
are not part of a recipe: the factories' published hub ids apply unless ``student_options`` /
``teacher_options`` give ``path=`` (and ``lora=`` / ``unet=``).
"""

from __future__ import annotations

from typing import Any, Optional

from ...recipes import GUIDED, PLAIN, Recipe

__all__ = ["published", "TEACHER"]


def published(*, schedule: str, steps: Optional[int], solver: str, teacher: str, lam: float,
              teacher_cfg: float = 7.5, guided_steps: int = 1, guidance: Any = None,
              schedule_options: Optional[dict] = None, solver_options: Optional[dict] = None,
              teacher_options: Optional[dict] = None, note: str) -> dict[str, Recipe]:
    """``{"": plain, "++": teacher-guided}``: the teacher corrects the first ``guided_steps`` steps,
    renoised to ``sigma_{i+1}``."""
    plain = Recipe(schedule=schedule, schedule_options=schedule_options or {}, steps=steps, solver=solver,
                   solver_options=solver_options or {}, guidance=guidance, note=note)
    guided = plain.guided(teacher=teacher, lam=lam, steps=guided_steps, renoise="next", teacher_cfg=teacher_cfg)
    return {PLAIN: plain, GUIDED: guided.replace(
        teacher_options=teacher_options or {},
        note=f"{note}; teacher {teacher} (CFG {teacher_cfg:g}) at lam {lam:g} on {guided_steps} step(s)")}


_LCM_CFG = {"name": "distilled_cfg", "scale": 8.0}
_TDD_NOTE = ("TDD: non-equidistant schedule [999, 875, 751, 499, 251], gamma 0.2, decoupled guidance = CFG 1.7 on "
             "the student; optional x0_clip; lam not from the reference code (our choice)")

# one attribute per student: the entry points name them (``lcm-sd15 = "...recipes:LCM_SD15"``)
LCM_SD15 = published(schedule="lcm", steps=8, solver="lcm", teacher="sd15", lam=0.01, teacher_cfg=8.0,
                     guidance=_LCM_CFG, note="LCM (guided distillation, w embedded), 8 steps as in the reference code")
LCM_SDXL = published(schedule="lcm", steps=4, solver="lcm", teacher="sdxl", lam=0.01, teacher_cfg=8.0,
                     guidance=_LCM_CFG, note="LCM-SDXL (w reaches the UNet only if it has a time_cond_proj_dim)")
LCM_LORA_SD15 = published(schedule="lcm", steps=4, solver="lcm", teacher="sd15", lam=0.02,
                          note="LCM-LoRA; reference lam 0.01-0.02")
LCM_LORA_SDXL = published(schedule="lcm", steps=4, solver="lcm", teacher="sdxl", lam=0.02,
                          note="LCM-LoRA SDXL; reference lam 0.01-0.02")
DMD2_SDXL = published(schedule="trailing", steps=4, solver="lcm", teacher="sdxl", lam=0.01, guided_steps=2,
                      note="DMD2 4-step ([999, 749, 499, 249], fresh noise each step); reference lam 0.01 on 2 steps")
LIGHTNING_SDXL = published(schedule="trailing", steps=4, solver="euler", teacher="sdxl", lam=0.05,
                           note="SDXL-Lightning 4-step (Euler, trailing); reference lam 0.03-0.1")
LIGHTNING_LORA_SDXL = published(schedule="trailing", steps=4, solver="euler", teacher="sdxl", lam=0.05,
                                note="SDXL-Lightning LoRA 4-step (Euler, trailing); reference lam 0.03-0.1")
TURBO_SDXL = published(schedule="trailing", steps=4, solver="euler_ancestral", teacher="sdxl", lam=0.05,
                       teacher_options={"height": 512, "width": 512},
                       note="SDXL-Turbo 512px (Euler ancestral, trailing); reference lam 0.02-0.1; the SDXL teacher "
                            "at Turbo's 512 px")
TCD_SD15 = published(schedule="lcm", steps=4, solver="tcd", solver_options={"gamma": 0.3}, teacher="sd15", lam=0.01,
                     note="TCD gamma-sampling; lam not from the reference code (our choice)")
TCD_SDXL = published(schedule="lcm", steps=4, solver="tcd", solver_options={"gamma": 0.3}, teacher="sdxl", lam=0.01,
                     note="TCD-SDXL gamma-sampling; lam not from the reference code (our choice)")
TDD_SDXL = published(schedule="tdd", steps=None, solver="tcd", solver_options={"gamma": 0.2}, teacher="sdxl",
                     lam=0.01, guidance={"name": "cfg", "scale": 1.7}, note=_TDD_NOTE)
TDD_SD15 = published(schedule="tdd", steps=None, solver="tcd", solver_options={"gamma": 0.2}, teacher="sd15",
                     lam=0.01, guidance={"name": "cfg", "scale": 1.7}, note=_TDD_NOTE.replace("TDD:", "TDD (SD 1.5):"))

#: how a diffusers teacher is sampled on its own (a baseline): 25 Karras steps, DPM++ 2M, CFG 7.5.
TEACHER = Recipe(schedule="karras", steps=25, solver="dpmpp_2m", guidance={"name": "cfg", "scale": 7.5},
                 note="standalone teacher sampling (a baseline)")
