"""The miniature's published recipes (torch-free; entry points `tgsample.recipes`).

`""` is each student's own sampling; `"++"` the same run with teacher `mini` correcting the first
step (renoised to `sigma_1`), in the form the reference code used for the real family (LCM / LCM-LoRA:
noise space; Lightning: x0 space). The step counts and the strengths `lam` come from
`python scripts/tune_mini.py`, by the rule of the bench plan's `tune` section, on seeds 1,000,000+
(disjoint from the benchmark's and the tests'; docs/results.md).
"""

from __future__ import annotations

from ..diffusers.recipes import published
from ...recipes import Recipe

STUDENT_W = 4.0
"""the CFG scale distilled into the LCM-LoRA and trailing students; the LCM student's default w"""
_TUNED = "steps and lam from scripts/tune_mini.py (docs/results.md)"

MINI_LCM = published(schedule="lcm", steps=3, solver="lcm", teacher="mini", lam=0.05, teacher_cfg=STUDENT_W,
                     space="eps", guidance={"name": "distilled_cfg", "scale": STUDENT_W},
                     note="mini LCM (w embedded, distilled on w in [2, 6]), 3 steps [999, 679, 339]",
                     source=f"LCM's noise-space form; {_TUNED}")
"""`mini-lcm`'s recipes `""` and `"++"`"""
MINI_LCM_LORA = published(schedule="lcm", steps=3, solver="lcm", teacher="mini", lam=0.05, teacher_cfg=STUDENT_W,
                          space="eps", note="mini LCM-LoRA (w = 4 distilled in), 3 steps [999, 679, 339]",
                          source=f"LCM-LoRA's noise-space form, the zero-copy teacher; {_TUNED}")
"""`mini-lcm-lora`'s recipes `""` and `"++"`"""
MINI_LIGHTNING = published(schedule="trailing", steps=4, solver="euler", teacher="mini", lam=1.0,
                           teacher_cfg=STUDENT_W, space="x0",
                           note="mini Lightning-style 4-step Euler on the trailing schedule [999, 749, 499, 249]",
                           source=f"euler_lightning++'s x0-space form; {_TUNED}")
"""`mini-lightning`'s recipes `""` and `"++"`"""

TEACHER = Recipe(schedule="karras", steps=25, solver="dpmpp_2m", guidance={"name": "cfg", "scale": STUDENT_W},
                 note="standalone mini teacher sampling (a baseline), CFG at the students' w")
"""how the teacher is sampled on its own (a baseline): 25 Karras steps, DPM++ 2M, CFG at the students' w"""
