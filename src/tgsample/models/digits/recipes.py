"""The digit students' published recipes (torch-free; entry points `tgsample.recipes`).

Both students run their own 4-step schedule `[80, 1, 0.5, 0.2, 0]` with the consistency (LCM)
solver and the guidance scale `w` folded into the network (`distilled_cfg`); `++` adds teacher
guidance on the first step, renoised to the next level, with the teacher's CFG at the student's
`w`. The values were chosen on seeds 1,000,000+ (disjoint from the benchmark's; FD of 500-1000
samples per setting, `scripts/distill_students.py`) and are stored with the weights too
(`info` metadata of `models/weights/digits_*.safetensors`); `tests/test_recipes.py` checks
that both say the same.
"""

from __future__ import annotations

from ...recipes import GUIDED, PLAIN, Recipe

__all__ = ["SIGMAS", "TEACHER", "DIGITS", "DIGITS_COMPACT", "student_recipes"]

SIGMAS = (80.0, 1.0, 0.5, 0.2, 0.0)
"""the students' own few-step schedule (the step after the guided first step stays at a small sigma)."""
TEACHER_NAME = "digits"
"""The registry name of the digit students' teacher."""

TEACHER = Recipe(schedule="karras", steps=32, solver="euler", guidance={"name": "cfg", "scale": 1.0},
                 note="the digit teacher alone: 32 Karras steps, Euler, CFG 1 (conditional)")
"""how the digit teacher is sampled on its own (the benchmark's ceiling): 32 Karras steps, Euler,
the conditional teacher (CFG 1 scores best in FD)."""


def student_recipes(w: float, lam: float, teacher_cfg: float, who: str) -> dict[str, Recipe]:
    """`{"": plain, "++": teacher-guided}` of a digit student distilled at guidance scale `w`."""
    plain = Recipe(sigmas=SIGMAS, solver="lcm", guidance={"name": "distilled_cfg", "scale": w},
                   note=f"{who}: own 4-step schedule, LCM solver, distilled CFG w={w:g}")
    guided = plain.guided(teacher=TEACHER_NAME, lam=lam, steps=1, renoise="next", teacher_cfg=teacher_cfg)
    return {PLAIN: plain,
            GUIDED: guided.replace(note=f"{plain.note}; teacher guidance lam={lam:g} on the first step, "
                                        f"renoise next, teacher CFG {teacher_cfg:g}")}


DIGITS = student_recipes(w=1.5, lam=0.3, teacher_cfg=1.5, who="digits")
"""`digits`: the full-size student (initialised from the teacher), w = 1.5, lam = 0.3."""
DIGITS_COMPACT = student_recipes(w=3.0, lam=0.5, teacher_cfg=3.0, who="digits-compact")
"""`digits-compact`: the compact student (~6x fewer parameters), w = 3, lam = 0.5."""
