"""Effect size of the reference code's noise-space teacher update vs tgsample's x0 update (issue 12).

The Distillation++ reference code's ``random++`` sampler (LCM-LoRA, DMD2) interpolates *noise
predictions* instead of x0 estimates. Written in sigma space (the reference code itself is not in
this repository; this is the form docs/guidance.md and DESIGN.md describe):

* tgsample (x0 form):    ``D_new = (1 - lam) D_s + lam D_T``
* noise form:            ``eps_new = (1 - lam) eps_s + lam eps_T``, ``D_new = x - sigma eps_new``, with the
  student's ``eps_s = (x - D_s) / sigma`` at ``x, sigma`` and the teacher's ``eps_T = (x_r - D_T) / sigma_r``
  at its renoised input ``x_r = D_s + sigma_r n``; so ``D_new - D_s = lam sigma (eps_s - eps_T)``.

On the tiny saved pipelines of ``tests/tiny_pipelines.py`` (random weights: the numbers measure the size of
each update on the same model, not image quality) and on the shipped, trained digits student and teacher,
at each student's published ``lam`` / guided steps, this prints the mean |D_new - D_s| of the first guided
step (with the noise form's injected-noise part ``lam sigma (eps_s - n)``), the mean |x - x_plain| of the
final samples for both forms, and the x0-form ``lam`` whose final effect equals the noise form's (bisection;
"> 1" where even ``lam = 1`` falls short). "self" runs the student as its own teacher::

    python scripts/measure_teacher_strengths.py          # CPU, ~1 min
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tgsample import math as M  # noqa: E402
from tgsample import registry, sample  # noqa: E402
from tgsample.guidance import CFG, Estimate, TeacherGuidance, build  # noqa: E402

from tiny_pipelines import build_all  # noqa: E402

PROMPTS = ["a red cube", "a cat", "a lake at dawn", "an old man"] * 4  # short: the tiny tokenizer is per byte
SEEDS = list(range(len(PROMPTS)))


class Measured:
    """Teacher guidance (a built :class:`TeacherGuidance` ``tg``) in the x0 or the noise form, recording
    mean |D_new - D_s| of each guided evaluation and, for the noise form, of its injected-noise part."""

    needs_step = True
    splits_direction = True

    def __init__(self, tg: TeacherGuidance, form: str):
        self.tg, self.form = tg, form
        self.shifts: list[float] = []
        self.noise_parts: list[float] = []

    def check(self, sigmas):
        self.tg.check(sigmas)

    def __call__(self, model, x, sigma, ctx):
        tg = self.tg
        est = tg.own(model, x, sigma, ctx)
        index = ctx.require_step("teacher guidance")
        if index not in tg.guided_steps:
            return est
        lam = tg.lam_at(index, sigma)
        sigma_r = tg.renoise_sigma(sigma, ctx)
        n = tg.renoise_noise(x, sigma, est, ctx)
        x_r = M.renoise(est.denoised, sigma_r, n)
        d_t = CFG(tg.teacher_cfg)(tg.teacher, x_r, sigma_r, ctx).denoised
        if self.form == "x0":
            d_new = M.interpolate(est.denoised, d_t, lam)
        else:  # D_new - D_s = lam sigma (eps_s - n) + lam (sigma / sigma_r) (D_T - D_s): injected noise + amplified teacher
            eps_s = M.implied_noise(x, est.denoised, sigma)
            d_new = M.eps_to_x0(x, M.lerp(eps_s, M.implied_noise(x_r, d_t, sigma_r), lam), sigma)
            self.noise_parts.append((lam * M.append_dims(sigma, x.ndim) * (eps_s - n)).abs().mean().item())
        self.shifts.append((d_new - est.denoised).abs().mean().item())
        return Estimate(d_new, est.direction)


def families(tiny):
    sd, xl = str(tiny["sd15"]), str(tiny["sdxl"])
    return {  # name -> (student options, teacher options)
        "lcm-sd15": (dict(path=str(tiny["lcm-sd15"])), dict(path=sd)),
        "lcm-lora-sd15": (dict(path=sd, lora=str(tiny["lora-sd15"])), {}),
        "dmd2-sdxl": (dict(path=xl, unet=str(tiny["dmd2-unet"])), {}),
        "lightning-sdxl": (dict(path=xl, unet=str(tiny["dmd2-unet"])), {}),
        "digits": ({}, {}),  # the shipped, trained digits student and teacher (pixel space, sigma_max 80)
    }


def conditioning(student):
    labels = [i % 10 for i in SEEDS]
    return student.encode(PROMPTS if hasattr(student, "parts") else labels, None)


def run(student, teacher, form=None, lam=None):
    """The student's plain recipe (``form=None``) or its ``++`` recipe with the guidance in ``form``."""
    cond, uncond = conditioning(student)
    if form is None:
        return sample(student, cond, uncond=uncond, seeds=SEEDS), None
    spec = dict(student.recipes["++"].guidance)
    if lam is not None:
        spec["lam"] = lam
    measured = Measured(build(spec, teacher=lambda name: teacher), form)
    return sample(student, cond, uncond=uncond, seeds=SEEDS, recipe="++", guidance=measured), measured


def matching_lam(student, teacher, plain, target, hi=1.0):
    """The x0-form lam whose mean final |x - x_plain| equals ``target`` (bisection; effect grows with lam)."""
    lo = 0.0
    effect = lambda lam: (run(student, teacher, "x0", lam)[0] - plain).abs().mean().item()  # noqa: E731
    if effect(hi) < target:
        return float("inf")
    for _ in range(14):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if effect(mid) < target else (lo, mid)
    return (lo + hi) / 2


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_all(Path(tmp))
        print(f"{len(SEEDS)} samples per run; mean |.| over elements. 'self': the student as its own teacher")
        print("| student | lam (guided steps) | teacher | first-step shift: x0 / noise form (its injected-noise part) "
              "| final effect x0 / noise form | x0 lam with the noise form's final effect |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, (s_opts, t_opts) in families(tiny).items():
            student = registry.create("students", name, **s_opts)
            guided = student.recipes["++"]
            link = {} if name == "digits" else {"student": student}
            real = registry.create("teachers", guided.teacher, **link, **{**guided.teacher_options, **t_opts})
            spec = guided.guidance
            plain, _ = run(student, real)
            for label, teacher, lam in (("real", real, None), ("self", student, None), ("real", real, 0.01)):
                if lam is not None and (name != "digits" or lam == spec["lam"]):
                    continue  # digits: also at the SD students' lam 0.01
                x0, x0_rec = run(student, teacher, "x0", lam)
                noise, noise_rec = run(student, teacher, "noise", lam)
                e_x0, e_noise = ((x - plain).abs().mean().item() for x in (x0, noise))
                match = matching_lam(student, teacher, plain, e_noise)
                print(f"| {name} | {lam or spec['lam']} ({spec['guided_steps']}) | {label} | {x0_rec.shifts[0]:.3g} / "
                      f"{noise_rec.shifts[0]:.3g} ({noise_rec.noise_parts[0]:.3g}) | {e_x0:.3g} / {e_noise:.3g} "
                      f"| {'> 1' if match == float('inf') else f'{match:.3g}'} |", flush=True)

if __name__ == "__main__":
    main()
