"""Presets for the diffusers students (merged into :data:`tgsample.presets.PRESETS`).

``NAME`` is the student with its published settings; ``NAME++`` the same run with teacher
guidance (Distillation++) at the strength, teacher CFG and guided steps of the reference code
(docs/guidance.md), on the student's own schedule. Model locations come from the user:
``student_options`` / ``teacher_options`` are empty (or hold only sizes), so the factories'
published hub ids apply unless the user passes ``path=`` (and ``lora=`` / ``unet=``) there, e.g.::

    tgsample generate --model.preset lcm-lora-sd15++ \\
        --model.student_options '{"path": "/models/sd15", "lora": "/models/lcm-lora-sdv1-5"}'

The teacher gets ``student=`` from the generator, so a LoRA student's teacher is its zero-copy
base model and a replaced-UNet student's teacher defaults to its base pipeline.
"""

from __future__ import annotations

from typing import Any, Optional

from . import zoo

# name -> (student, steps override, teacher options); steps None = the student's default
_PRESETS: dict[str, tuple[str, Optional[int], dict]] = {
    "lcm-sd15": ("lcm-sd15", 8, {}),  # reference: LCM on 8 steps, teacher CFG 8, lam 0.01
    "lcm-sdxl": ("lcm-sdxl", None, {}),
    "lcm-lora-sd15": ("lcm-lora-sd15", None, {}),
    "lcm-lora-sdxl": ("lcm-lora-sdxl", None, {}),
    "dmd2-sdxl": ("dmd2-sdxl", None, {}),
    "lightning-sdxl": ("lightning-sdxl", None, {}),
    "lightning-lora-sdxl": ("lightning-lora-sdxl", None, {}),
    "turbo-sdxl": ("turbo-sdxl", None, {"height": 512, "width": 512}),  # SDXL teacher at Turbo's 512 px
    "tcd-sd15": ("tcd-sd15", None, {}),
    "tcd-sdxl": ("tcd-sdxl", None, {}),
    "tdd-sdxl": ("tdd-sdxl", None, {}),
}


def preset(student: str, steps: Optional[int], teacher_options: dict, guided: bool) -> dict[str, Any]:
    """One preset dict in :mod:`tgsample.presets`' format from the student's ``defaults``."""
    d = zoo.STUDENTS[student].defaults
    guidance = dict(d["teacher_guidance"]) if guided else d["guidance"]
    return {"student": student, "student_options": {}, "teacher": d["teacher"] if guided else None,
            "teacher_options": dict(teacher_options) if guided else {}, "guidance": guidance,
            "solver": d["solver"], "solver_options": dict(d["solver_options"]), "schedule": d["schedule"],
            "schedule_options": dict(d["schedule_options"]), "steps": steps or d["steps"], "sigmas": None}


PRESETS: dict[str, dict[str, Any]] = {}
for _name, (_student, _steps, _topts) in _PRESETS.items():
    PRESETS[_name] = preset(_student, _steps, _topts, guided=False)
    PRESETS[_name + "++"] = preset(_student, _steps, _topts, guided=True)
