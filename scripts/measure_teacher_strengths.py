"""What a teacher-guidance strength means, in x0 and in noise space (issue 12; docs: Guidance, "What a strength means").

``TeacherGuidance`` interpolates x0 estimates by default, ``D_new = (1 - lam) D_s + lam D_T``. With
``space="eps"`` it interpolates the noise predictions, as the official Distillation++ code's ``random++``
sampler (LCM, LCM-LoRA, DMD2) does: ``eps_new = (1 - lam) eps_s + lam eps_T``. With the renoised teacher
input ``x_r = D_s + sigma_r n`` that is, exactly,

    D_new - D_s = lam (sigma_i / sigma_r) (D_T - D_s)  +  lam sigma_i (eps_s - n)

a teacher pull ``sigma_i / sigma_r`` times the x0 form's, plus renoise noise (zero when ``n`` is the
student's own noise, ``noise_mode="deterministic"``). So the same ``lam`` means different things in the
two spaces and on different schedules. This script prints two tables:

1. **The diffusers students' ``++`` recipes** on their own schedules, computed on SD's ``abar`` table
   (diffusers' scaled-linear betas, SD 1.5's and SDXL's alike; no weights needed): per guided step
   ``sigma_i -> sigma_r``, the teacher pull in x0 terms (``lam`` in x0 space, ``lam sigma_i / sigma_r`` in
   eps space), the same for the reference code's lam and arithmetic (it renoises to the timestep
   ``t - 1000 // steps`` on a table it shifts by one for LCM / LCM-LoRA), and the standard deviation of the
   renoise noise eps space adds relative to the next level ``sigma_{i+1}`` (``lam sigma_i sqrt(2) / sigma_{i+1}``,
   for a fresh ``n`` independent of a unit-variance ``eps_s``).
2. **The shipped, trained digits students with their teacher** (8x8 digits; sigma 80 -> 1 on the first
   step), at the SD recipes' lams 0.01 / 0.02 and at each student's own: the mean first-step change
   ``|D_new - D_s|`` in both spaces (for eps: its teacher and noise parts), the mean change of the final
   samples ``|x - x_plain|``, and the x0 lam whose final change equals the eps form's (bisection; "> 1"
   where even lam = 1 falls short).

Run (CPU, about a minute)::

    python scripts/measure_teacher_strengths.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Optional

import torch

from tgsample import registry, sample
from tgsample.noise import NoiseStreams

SCRIPT = Path(__file__).resolve()
#: The official code's settings (github.com/geonyeong-park/distillation_pp_lightning @ 17eba42, SDXL only; the
#: SD 1.5 students take their SDXL counterpart's). ``random++`` students (noise space): lam, teacher CFG (its
#: ``--cfg_guidance``), guided steps (``--guide_step``) of the runs in run_mscoco.sh / run_onestep.sh, and by how
#: much it shifts its ``abar`` table (it prepends 1.0 for LCM / LCM-LoRA, so its index t reads abar[t - 1]).
REFERENCE_RANDOM_PP = {
    "lcm-sd15": dict(lam=0.01, teacher_cfg=8.0, guided_steps=1, shift=1),  # random++_lcm, NFE 8, guide_step 1
    "lcm-sdxl": dict(lam=0.01, teacher_cfg=8.0, guided_steps=1, shift=1),
    "lcm-lora-sd15": dict(lam=0.02, teacher_cfg=6.0, guided_steps=1, shift=1),  # random++ lcmlora, cfg 6, NFE 3/5/8
    "lcm-lora-sdxl": dict(lam=0.02, teacher_cfg=6.0, guided_steps=1, shift=1),
    "dmd2-sdxl": dict(lam=0.01, teacher_cfg=7.5, guided_steps=2, shift=0),  # random++ dmd, cfg 7.5, guide_step 2
}
#: x0-space students (euler_lightning++ / euler_a++, teacher CFG hard-coded 7.5): the range of lams its runs use
REFERENCE_X0 = {"lightning-sdxl": (0.03, 0.1), "lightning-lora-sdxl": (0.03, 0.1), "turbo-sdxl": (0.02, 0.1)}
#: the SD recipes' lams, measured on the digits models too
SD_LAMS = (0.01, 0.02)


# --- 1. the diffusers recipes on SD's table -------------------------------------------------------------


def sd_table() -> torch.Tensor:
    """SD's ``abar`` table as diffusers computes it from the scheduler config SD 1.5 and SDXL ship."""
    import inspect

    from diffusers import DDPMScheduler

    sys.path.insert(0, str(SCRIPT.parents[1] / "tests"))
    from tiny_pipelines import SD_SCHEDULER  # the shipped pipelines' scheduler settings

    accepted = inspect.signature(DDPMScheduler.__init__).parameters
    return DDPMScheduler(**{k: v for k, v in SD_SCHEDULER.items() if k in accepted}).alphas_cumprod.double()


def _sigma(abar: float) -> float:
    return math.sqrt((1 - abar) / abar)


def recipe_rows(table: torch.Tensor) -> list[dict]:
    """One row per guided step of every SD-family diffusers student's ``++`` recipe, on SD's table (the flow
    students' schedules are not on it: docs/flow.md, "Which steps to guide")."""
    from tgsample.denoisers import DiscreteVPDenoiser
    from tgsample.resolve import resolve

    model = DiscreteVPDenoiser(lambda *a, **k: None, table.float())
    rows = []
    for entry in sorted(registry.entries("recipes"), key=lambda e: e.name):
        if not entry.value.startswith("tgsample.models.diffusers.recipes:"):
            continue
        recipe = registry.get("recipes", entry.name)["++"]
        spec = recipe.guidance
        sigmas = resolve(model, recipe.replace(guidance=None, teacher=None, teacher_options={})).sigmas.double()
        steps = len(sigmas) - 1
        timesteps = model.sigma_to_t(sigmas[:-1].float()).round().long().tolist()
        guided = spec["guided_steps"]
        guided = list(range(guided)) if isinstance(guided, int) else list(guided)
        lam, space = spec["lam"], spec.get("space", "x0")
        for i in guided:
            s_i, s_r = float(sigmas[i]), float(sigmas[i + 1])  # renoise "next"
            row = dict(student=entry.name, space=space, lam=lam, teacher_cfg=spec["teacher_cfg"], step=i,
                       sigma=s_i, sigma_r=s_r, pull=lam * (s_i / s_r if space == "eps" else 1.0),
                       noise=lam * s_i * math.sqrt(2) / s_r if space == "eps" else 0.0, reference=None)
            ref = REFERENCE_RANDOM_PP.get(entry.name)
            if ref is not None:  # the reference's random++ arithmetic at its lam, on this schedule
                t, t_r, k = timesteps[i], timesteps[i] - 1000 // steps, ref["shift"]
                row["reference"] = ref["lam"] * _sigma(float(table[t - k])) / _sigma(float(table[t_r - k]))
            elif entry.name in REFERENCE_X0:
                row["reference"] = lam  # its Lightning / Turbo samplers interpolate x0 estimates, as tgsample's
            rows.append(row)
    return rows


def recipe_table(rows: list[dict]) -> str:
    out = ["| student | `++` form | guided step: sigma_i -> sigma_r | teacher pull per step (x0 terms) | "
           "the same, reference code's lam and arithmetic | renoise noise std / sigma_{i+1} |",
           "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ref = "—" if r["reference"] is None else f"{r['reference']:.3g}"
        noise = "0" if r["space"] == "x0" else f"{r['noise']:.3g}"
        out.append(f"| `{r['student']}` | {r['space']}, lam {r['lam']:g}, teacher CFG {r['teacher_cfg']:g} | "
                   f"{r['step']}: {r['sigma']:.3g} -> {r['sigma_r']:.3g} | {r['pull']:.3g} | {ref} | {noise} |")
    return "\n".join(out)


# --- 2. the trained digits models -------------------------------------------------------------------------


def digits_inputs(student: Any, n: int = 100) -> tuple[dict, dict, list[int]]:
    """``n`` samples, label ``i mod 10``, seed ``i``."""
    seeds = list(range(n))
    cond, uncond = student.encode([i % 10 for i in seeds], None)
    return cond, uncond, seeds


def run(student: Any, teacher: Any, cond: dict, uncond: dict, seeds: list[int],
        guidance: Optional[dict] = None) -> dict:
    """The student's ``++`` recipe with its teacher-guidance spec changed by ``guidance`` (``None``: the plain
    recipe): ``{"x": the start, "denoised": step 0's estimate, "final": the samples}``."""
    steps: list[dict] = []
    if guidance is None:
        final = sample(student, cond, uncond=uncond, seeds=seeds, recipe="", callback=steps.append)
    else:
        spec = {**student.recipes["++"].guidance, **guidance}
        final = sample(student, cond, uncond=uncond, seeds=seeds, recipe="++", guidance=spec, teacher=teacher,
                       callback=steps.append)
    return {"x": steps[0]["x"], "sigma": float(steps[0]["sigma"].flatten()[0]), "denoised": steps[0]["denoised"],
            "final": final}


def effect(student: Any, teacher: Any, lam: float, space: str, cond: dict, uncond: dict, seeds: list[int],
           plain: Optional[dict] = None) -> dict:
    """Mean first-step change ``|D_new - D_s|``, its renoise-noise part ``lam sigma_0 (eps_s - n)`` (eps space,
    fresh noise), and the mean final change ``|x - x_plain|`` of the ``++`` recipe at ``lam`` in ``space``."""
    plain = plain or run(student, teacher, cond, uncond, seeds)
    guided = run(student, teacher, cond, uncond, seeds, {"lam": lam, "space": space})
    change = guided["denoised"] - plain["denoised"]
    noise = torch.zeros_like(change)
    if space == "eps":
        eps_s = (plain["x"] - plain["denoised"]) / plain["sigma"]
        noise = lam * plain["sigma"] * (eps_s - NoiseStreams(seeds).randn_like("renoise", plain["x"]))
    return {"first": change.abs().mean().item(), "noise": noise.abs().mean().item(),
            "pull": (change - noise).abs().mean().item(), "final": (guided["final"] - plain["final"]).abs().mean().item()}


def matching_x0_lam(student: Any, teacher: Any, target: float, cond: dict, uncond: dict, seeds: list[int],
                    plain: dict) -> float:
    """The x0-space lam whose mean final change equals ``target`` (bisection; ``inf`` if lam = 1 falls short)."""
    final = lambda lam: effect(student, teacher, lam, "x0", cond, uncond, seeds, plain)["final"]  # noqa: E731
    lo, hi = 0.0, 1.0
    if final(hi) < target:
        return math.inf
    for _ in range(14):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if final(mid) < target else (lo, mid)
    return (lo + hi) / 2


def digits_rows(n: int = 100) -> list[dict]:
    teacher = registry.create("teachers", "digits")
    rows = []
    for name in ("digits", "digits-compact"):
        student = registry.create("students", name)
        cond, uncond, seeds = digits_inputs(student, n)
        plain = run(student, teacher, cond, uncond, seeds)
        own = student.recipes["++"].guidance["lam"]
        for lam in (*SD_LAMS, own):
            x0 = effect(student, teacher, lam, "x0", cond, uncond, seeds, plain)
            eps = effect(student, teacher, lam, "eps", cond, uncond, seeds, plain)
            rows.append(dict(student=name, lam=lam, own=lam == own, x0=x0, eps=eps,
                             match=matching_x0_lam(student, teacher, eps["final"], cond, uncond, seeds, plain)))
    return rows


def digits_table(rows: list[dict]) -> str:
    out = ["| student | lam | first step x0 / eps (eps: teacher pull + renoise noise) | final change x0 / eps "
           "| x0 lam with the eps final change |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        x0, eps = r["x0"], r["eps"]
        match = "> 1" if math.isinf(r["match"]) else f"{r['match']:.3g}"
        out.append(f"| `{r['student']}` | {r['lam']:g}{' (its own)' if r['own'] else ''} | {x0['first']:.3g} / "
                   f"{eps['first']:.3g} ({eps['pull']:.3g} + {eps['noise']:.3g}) | {x0['final']:.3g} / "
                   f"{eps['final']:.3g} | {match} |")
    return "\n".join(out)


def main() -> None:
    torch.set_num_threads(1)
    print("1. The diffusers students' ++ recipes on SD's abar table (renoise next; eps: pull = lam sigma_i / sigma_r)\n")
    print(recipe_table(recipe_rows(sd_table())), flush=True)
    print("\n2. The trained digits students and teacher (100 samples, label i mod 10, seed i; mean |.| per element)\n")
    print(digits_table(digits_rows()))


if __name__ == "__main__":
    main()
