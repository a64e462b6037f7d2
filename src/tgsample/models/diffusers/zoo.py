"""Registered students and teachers (entry points ``tgsample.students`` / ``tgsample.teachers``).

Every factory takes the model location and options as keywords::

    registry.create("students", "lcm-sd15", path="/models/lcm-dreamshaper")
    registry.create("teachers", "sd15", path="/models/sd15", student=student)

``path`` defaults to the published hub id, which works offline only when it is already in the
Hugging Face cache (``allow_download=True`` opts into downloading). All other keywords go to
:func:`tgsample.models.diffusers.bundle.load_model` (``dtype``, ``device``, ``offload``, ``compile``,
``height`` / ``width``, ``unet``, ``lora``, ...).

``Model.defaults`` holds each student's published settings and the teacher-guidance settings of
the reference code (docs/guidance.md, "Teacher guidance"): ``schedule`` (+ ``schedule_options``), ``steps``,
``solver`` (+ ``solver_options``), ``guidance`` (the student's own guidance spec), ``teacher``,
``teacher_cfg``, ``lam``, ``guided_steps`` and ``teacher_guidance`` (the full spec for
:func:`tgsample.sampling.resolve_guidance`, without the teacher object).
"""

from __future__ import annotations

from typing import Any, Optional

from .bundle import DiffusersModel, load_model, make_teacher
from .loading import local_status

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"


def settings(*, schedule: str, steps: int, solver: str, teacher: str, lam: float, teacher_cfg: float = 7.5,
             guided_steps: int = 1, guidance: Optional[dict] = None, schedule_options: Optional[dict] = None,
             solver_options: Optional[dict] = None, renoise: str = "next", note: str = "") -> dict:
    """A student's ``defaults`` dict, including the teacher-guidance spec (Distillation++ update on the
    first ``guided_steps`` steps, renoised to ``sigma_{i+1}``)."""
    spec = {"name": "teacher", "lam": lam, "steps": guided_steps, "renoise": renoise, "teacher_cfg": teacher_cfg}
    if guidance is not None:
        spec["student"] = guidance
    return {"schedule": schedule, "schedule_options": dict(schedule_options or {}), "steps": steps,
            "solver": solver, "solver_options": dict(solver_options or {}), "guidance": guidance,
            "teacher": teacher, "teacher_cfg": teacher_cfg, "lam": lam, "guided_steps": guided_steps,
            "teacher_guidance": spec, "note": note}


LCM_DEFAULTS = settings(schedule="lcm", steps=4, solver="lcm", teacher="sd15", lam=0.01, teacher_cfg=8.0,
                        guidance={"name": "distilled_cfg", "scale": 8.0},
                        note="LCM (guided distillation, w embedded); reference: lam 0.01, teacher CFG 8")
LCM_SDXL_DEFAULTS = settings(schedule="lcm", steps=4, solver="lcm", teacher="sdxl", lam=0.01, teacher_cfg=8.0,
                             guidance={"name": "distilled_cfg", "scale": 8.0},
                             note="LCM-SDXL (w reaches the UNet only if it has a time_cond_proj_dim)")
LCM_LORA_DEFAULTS = settings(schedule="lcm", steps=4, solver="lcm", teacher="sd15", lam=0.02,
                             note="LCM-LoRA; reference lam 0.01-0.02")
DMD2_DEFAULTS = settings(schedule="trailing", steps=4, solver="lcm", teacher="sdxl", lam=0.01, guided_steps=2,
                         note="DMD2 4-step ([999, 749, 499, 249], fresh noise each step); reference lam 0.01 on 2 steps")
LIGHTNING_DEFAULTS = settings(schedule="trailing", steps=4, solver="euler", teacher="sdxl", lam=0.05,
                              note="SDXL-Lightning 4-step (Euler, trailing); reference lam 0.03-0.1")
TURBO_DEFAULTS = settings(schedule="trailing", steps=4, solver="euler_ancestral", teacher="sdxl", lam=0.05,
                          note="SDXL-Turbo 512px (Euler ancestral, trailing); reference lam 0.02-0.1")
TCD_DEFAULTS = settings(schedule="lcm", steps=4, solver="tcd", solver_options={"gamma": 0.3}, teacher="sd15",
                        lam=0.01, note="TCD gamma-sampling; lam not from the reference code (our choice)")
TDD_DEFAULTS = settings(schedule="tdd", steps=5, solver="tcd", solver_options={"gamma": 0.2}, teacher="sdxl",
                        lam=0.01, guidance={"name": "cfg", "scale": 1.7},
                        note="TDD: non-equidistant schedule, gamma 0.2, decoupled guidance = CFG 1.7 on the "
                             "student; optional x0_clip; lam not from the reference code (our choice)")


def _student(name: str, defaults: dict, path: str, **fixed: Any) -> Any:
    def factory(path: str = path, **options: Any) -> DiffusersModel:
        merged = {**fixed, **options}
        for key in ("unet", "lora"):  # a published file name belongs to the published repo only
            if key in options and f"{key}_weight_name" not in options:
                merged.pop(f"{key}_weight_name", None)
        return load_model(name, path, defaults=defaults, **merged)

    factory.__name__ = name.replace("-", "_")
    factory.defaults = defaults  # type: ignore[attr-defined]  # read by the presets
    factory.weights = lambda: local_status(path, **fixed)  # type: ignore[attr-defined]  # tgsample list --check
    factory.__doc__ = f"Student {name!r}: {defaults['note']}. Keywords: see load_model (defaults {fixed})."
    return factory


lcm_sd15 = _student("lcm-sd15", LCM_DEFAULTS, "SimianLuo/LCM_Dreamshaper_v7", lcm=True, quantize=True,
                    guidance_embedding_scale=8.0)
lcm_sdxl = _student("lcm-sdxl", LCM_SDXL_DEFAULTS, SDXL, unet="latent-consistency/lcm-sdxl",
                    lcm=True, quantize=True, guidance_embedding_scale=8.0)
lcm_lora_sd15 = _student("lcm-lora-sd15", LCM_LORA_DEFAULTS, SD15, lora="latent-consistency/lcm-lora-sdv1-5",
                         lcm=True, quantize=True)
lcm_lora_sdxl = _student("lcm-lora-sdxl", {**LCM_LORA_DEFAULTS, "teacher": "sdxl"}, SDXL,
                         lora="latent-consistency/lcm-lora-sdxl", lcm=True, quantize=True)
dmd2_sdxl = _student("dmd2-sdxl", DMD2_DEFAULTS, SDXL, unet="tianweiy/DMD2",
                     unet_weight_name="dmd2_sdxl_4step_unet_fp16.bin", lcm=True, quantize=True)
lightning_sdxl = _student("lightning-sdxl", LIGHTNING_DEFAULTS, SDXL, unet="ByteDance/SDXL-Lightning",
                          unet_weight_name="sdxl_lightning_4step_unet.safetensors", quantize=True)
lightning_lora_sdxl = _student("lightning-lora-sdxl", LIGHTNING_DEFAULTS, SDXL, lora="ByteDance/SDXL-Lightning",
                               lora_weight_name="sdxl_lightning_4step_lora.safetensors", quantize=True)
turbo_sdxl = _student("turbo-sdxl", TURBO_DEFAULTS, "stabilityai/sdxl-turbo", quantize=True)
tcd_sd15 = _student("tcd-sd15", TCD_DEFAULTS, SD15, lora="h1t/TCD-SD15-LoRA", quantize=True)
tcd_sdxl = _student("tcd-sdxl", {**TCD_DEFAULTS, "teacher": "sdxl"}, SDXL, lora="h1t/TCD-SDXL-LoRA", quantize=True)
tdd_sdxl = _student("tdd-sdxl", TDD_DEFAULTS, SDXL, lora="RedAIGC/TDD",
                    lora_weight_name="sdxl_tdd_lora_weights.safetensors", quantize=True)
tdd_sd15 = _student("tdd-sd15", {**TDD_DEFAULTS, "teacher": "sd15"}, SD15, lora="redaigc/tdd_SD15_LoRAs",
                    quantize=True)

TEACHER_DEFAULTS = {"schedule": "karras", "steps": 25, "solver": "dpmpp_2m", "guidance": {"name": "cfg", "scale": 7.5},
                    "note": "standalone teacher sampling (a baseline)"}


def sd15(*, path: Optional[str] = None, student: Any = None, zero_copy: bool = True, **options: Any) -> DiffusersModel:
    """Teacher ``sd15``: any SD 1.x-family pipeline (eps or v prediction).

    With ``student=``: a LoRA student's zero-copy teacher (unless ``zero_copy=False`` or another ``path``),
    else the pipeline at ``path`` (default: the student's base pipeline, or SD 1.5), sharing the student's
    prompt encoder when the text encoders are equal; latent shapes are checked.
    """
    return make_teacher("sd15", SD15, path=path, student=student, zero_copy=zero_copy, defaults=TEACHER_DEFAULTS,
                        **options)


def sdxl(*, path: Optional[str] = None, student: Any = None, zero_copy: bool = True, **options: Any) -> DiffusersModel:
    """Teacher ``sdxl``: an SDXL-family pipeline (two text encoders, pooled embeddings, time ids); as :func:`sd15`."""
    return make_teacher("sdxl", SDXL, path=path, student=student, zero_copy=zero_copy, defaults=TEACHER_DEFAULTS,
                        **options)


sd15.weights = lambda: local_status(SD15)  # type: ignore[attr-defined]
sdxl.weights = lambda: local_status(SDXL)  # type: ignore[attr-defined]

STUDENTS = {f.__name__.replace("_", "-"): f for f in (
    lcm_sd15, lcm_sdxl, lcm_lora_sd15, lcm_lora_sdxl, dmd2_sdxl, lightning_sdxl, lightning_lora_sdxl, turbo_sdxl,
    tcd_sd15, tcd_sdxl, tdd_sd15, tdd_sdxl)}
TEACHERS = {"sd15": sd15, "sdxl": sdxl}
