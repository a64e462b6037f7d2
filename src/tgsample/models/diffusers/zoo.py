"""Registered students and teachers (entry points `tgsample.students` / `tgsample.teachers`).

Every factory takes the model location and options as keywords:

```python
registry.create("students", "lcm-sd15", path="/models/lcm-dreamshaper")
registry.create("teachers", "sd15", path="/models/sd15", student=student)
```

`path` defaults to the published hub id, which works offline only when it is already in the
Hugging Face cache (`allow_download=True` opts into downloading). All other keywords go to
[`tgsample.models.diffusers.bundle.load_model`][tgsample.models.diffusers.bundle.load_model] (`dtype`, `device`,
`offload`, `compile`,
`height` / `width`, `unet`, `lora`, ...).

Each student's `Model.recipes` are the ones it publishes ([`recipes`][tgsample.models.diffusers.recipes], entry points
`tgsample.recipes`): its own sampling settings (`""`) and the teacher-guided run of the reference
code (`"++"`, docs/guidance.md, "Teacher guidance").
"""

from __future__ import annotations

from typing import Any, Optional

from .bundle import DiffusersModel, load_model, make_teacher
from .loading import local_status
from .recipes import TEACHER

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
"""The hub id of Stable Diffusion 1.5."""
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
"""The hub id of SDXL 1.0 base."""
LORA_FILE = "pytorch_lora_weights.safetensors"
"""diffusers' LoRA file name (LCM-LoRA, TCD releases)"""


def _student(name: str, path: str, **fixed: Any) -> Any:
    def factory(path: str = path, **options: Any) -> DiffusersModel:
        from ...recipes import published

        merged = {**fixed, **options}
        for key in ("unet", "lora"):  # a published file name belongs to the published repo only
            if key in options and f"{key}_weight_name" not in options:
                merged.pop(f"{key}_weight_name", None)
        return load_model(name, path, recipes=published(name), **merged)

    factory.__name__ = name.replace("-", "_")
    factory.loading = {"path": path, **fixed}  # type: ignore[attr-defined]  # the published location and files
    factory.weights = lambda: local_status(**factory.loading)  # type: ignore[attr-defined]  # tgsample list --check
    factory.__doc__ = (f"Student {name!r} (recipes: tgsample.models.diffusers.recipes). Keywords: see load_model "
                       f"(defaults {fixed}).")
    return factory


lcm_sd15 = _student("lcm-sd15", "SimianLuo/LCM_Dreamshaper_v7", family="sd15", lcm=True, quantize=True,
                    guidance_embedding_scale=8.0)
"""The `lcm-sd15` student: LCM Dreamshaper v7, `w` embedded."""
lcm_sdxl = _student("lcm-sdxl", SDXL, family="sdxl", unet="latent-consistency/lcm-sdxl",
                    lcm=True, quantize=True, guidance_embedding_scale=8.0)  # a UNet folder repo: no file name
"""The `lcm-sdxl` student: SDXL with the LCM UNet."""
lcm_lora_sd15 = _student("lcm-lora-sd15", SD15, family="sd15", lora="latent-consistency/lcm-lora-sdv1-5",
                         lora_weight_name=LORA_FILE, lcm=True, quantize=True)
"""The `lcm-lora-sd15` student: SD 1.5 with the LCM-LoRA."""
lcm_lora_sdxl = _student("lcm-lora-sdxl", SDXL, family="sdxl", lora="latent-consistency/lcm-lora-sdxl",
                         lora_weight_name=LORA_FILE, lcm=True, quantize=True)
"""The `lcm-lora-sdxl` student: SDXL with the LCM-LoRA."""
dmd2_sdxl = _student("dmd2-sdxl", SDXL, family="sdxl", unet="tianweiy/DMD2",
                     unet_weight_name="dmd2_sdxl_4step_unet_fp16.bin", lcm=True, quantize=True)
"""The `dmd2-sdxl` student: SDXL with DMD2's 4-step UNet."""
lightning_sdxl = _student("lightning-sdxl", SDXL, family="sdxl", unet="ByteDance/SDXL-Lightning",
                          unet_weight_name="sdxl_lightning_4step_unet.safetensors", quantize=True)
"""The `lightning-sdxl` student: SDXL with SDXL-Lightning's 4-step UNet."""
lightning_lora_sdxl = _student("lightning-lora-sdxl", SDXL, family="sdxl", lora="ByteDance/SDXL-Lightning",
                               lora_weight_name="sdxl_lightning_4step_lora.safetensors", quantize=True)
"""The `lightning-lora-sdxl` student: SDXL with SDXL-Lightning's 4-step LoRA."""
turbo_sdxl = _student("turbo-sdxl", "stabilityai/sdxl-turbo", family="sdxl", quantize=True)
"""The `turbo-sdxl` student: SDXL-Turbo."""
tcd_sd15 = _student("tcd-sd15", SD15, family="sd15", lora="h1t/TCD-SD15-LoRA", lora_weight_name=LORA_FILE,
                    quantize=True)
"""The `tcd-sd15` student: SD 1.5 with the TCD LoRA."""
tcd_sdxl = _student("tcd-sdxl", SDXL, family="sdxl", lora="h1t/TCD-SDXL-LoRA", lora_weight_name=LORA_FILE,
                    quantize=True)
"""The `tcd-sdxl` student: SDXL with the TCD LoRA."""
tdd_sdxl = _student("tdd-sdxl", SDXL, family="sdxl", lora="RedAIGC/TDD",
                    lora_weight_name="sdxl_tdd_lora_weights.safetensors", quantize=True)
"""The `tdd-sdxl` student: SDXL with the TDD LoRA."""
# The file name inside this repo could not be confirmed without network: no name, so the cached snapshot's
# single weights file is used (several raise AmbiguousWeightsError listing them; pass lora_weight_name=).
tdd_sd15 = _student("tdd-sd15", SD15, family="sd15", lora="redaigc/tdd_SD15_LoRAs", quantize=True)
"""The `tdd-sd15` student: SD 1.5 with the TDD LoRA."""


def sd15(*, path: Optional[str] = None, student: Any = None, zero_copy: bool = True, **options: Any) -> DiffusersModel:
    """Teacher `sd15`: any SD 1.x-family pipeline (eps or v prediction).

    With `student=`: a LoRA student's zero-copy teacher (unless `zero_copy=False` or another `path`),
    else the pipeline at `path` (default: the student's base pipeline, or SD 1.5), sharing the student's
    prompt encoder when the text encoders are equal; latent shapes are checked.
    """
    return make_teacher("sd15", SD15, path=path, student=student, zero_copy=zero_copy, recipes={"": TEACHER},
                        family="sd15", **options)


def sdxl(*, path: Optional[str] = None, student: Any = None, zero_copy: bool = True, **options: Any) -> DiffusersModel:
    """Teacher `sdxl`: an SDXL-family pipeline (two text encoders, pooled embeddings, time ids); as
    [`sd15`][tgsample.models.diffusers.zoo.sd15]."""
    return make_teacher("sdxl", SDXL, path=path, student=student, zero_copy=zero_copy, recipes={"": TEACHER},
                        family="sdxl", **options)


sd15.weights = lambda: local_status(SD15)  # type: ignore[attr-defined]  # tgsample list --check
sdxl.weights = lambda: local_status(SDXL)  # type: ignore[attr-defined]
