"""Diffusers-backed students and teachers (SD 1.x, SDXL, FLUX and SD3 families); see `docs/models.md` and
`docs/flow.md`.

* [`zoo`][tgsample.models.diffusers.zoo] -- the registered factories (`lcm-sd15`, `lcm-lora-sd15`, `dmd2-sdxl`,
  `lightning-sdxl`, `turbo-sdxl`, `tcd-*`, `tdd-*` students; `sd15` / `sdxl` teachers);
* [`recipes`][tgsample.models.diffusers.recipes] -- the students' published sampling recipes (torch-free);
* [`bundle`][tgsample.models.diffusers.bundle] -- [`load_model`][tgsample.models.diffusers.bundle.load_model], the
zero-copy teacher, teacher/student linking;
* [`net`][tgsample.models.diffusers.net] -- the UNet as a sigma-space denoiser (SDXL added conditions, LCM's
`timestep_cond`);
* [`text`][tgsample.models.diffusers.text] -- prompt encoding (once per batch, shared);
* [`loading`][tgsample.models.diffusers.loading] -- local directories and cached hub ids, LoRA loading, typed errors
([`errors`][tgsample.models.diffusers.errors]);
* flow-matching models: [`flow_zoo`][tgsample.models.diffusers.flow_zoo] (`flux-schnell`, `sd35-large-turbo` students;
`flux-dev`,
  `sd35-large`, `sd35-medium` teachers), [`flow_recipes`][tgsample.models.diffusers.flow_recipes],
  [`flow_bundle`][tgsample.models.diffusers.flow_bundle]
  ([`load_flow_model`][tgsample.models.diffusers.flow_bundle.load_flow_model]),
  [`transformer`][tgsample.models.diffusers.transformer] (the transformers as sigma-space denoisers),
  [`flow_text`][tgsample.models.diffusers.flow_text] (T5 + CLIP prompt encoding).

Importing this package imports nothing (the names below load on first use); loading a model
imports diffusers and transformers.
"""

from __future__ import annotations

from ..._lazy import lazy_exports

_EXPORTS = {
    "DiffusersModel": "bundle", "check_compatible": "bundle", "link_teacher": "bundle", "load_model": "bundle",
    "make_teacher": "bundle", "zero_copy_teacher": "bundle",
    "FamilyMismatchError": "errors", "LoRAMismatchError": "errors", "ModelNotFoundError": "errors",
    "OfflineModelError": "errors",
    "FlowModel": "flow_bundle", "load_flow_model": "flow_bundle", "make_flow_teacher": "flow_bundle",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
