"""Diffusers-backed students and teachers (SD 1.x, SDXL, FLUX and SD3 families); see ``docs/models.md`` and
``docs/flow.md``.

* :mod:`.zoo` -- the registered factories (``lcm-sd15``, ``lcm-lora-sd15``, ``dmd2-sdxl``,
  ``lightning-sdxl``, ``turbo-sdxl``, ``tcd-*``, ``tdd-*`` students; ``sd15`` / ``sdxl`` teachers);
* :mod:`.recipes` -- the students' published sampling recipes (torch-free);
* :mod:`.bundle` -- :func:`load_model`, the zero-copy teacher, teacher/student linking;
* :mod:`.net` -- the UNet as a sigma-space denoiser (SDXL added conditions, LCM's ``timestep_cond``);
* :mod:`.text` -- prompt encoding (once per batch, shared);
* :mod:`.loading` -- local directories and cached hub ids, LoRA loading, typed errors (:mod:`.errors`);
* flow-matching models: :mod:`.flow_zoo` (``flux-schnell``, ``sd35-large-turbo`` students; ``flux-dev``,
  ``sd35-large``, ``sd35-medium`` teachers), :mod:`.flow_recipes`, :mod:`.flow_bundle`
  (:func:`load_flow_model`), :mod:`.transformer` (the transformers as sigma-space denoisers),
  :mod:`.flow_text` (T5 + CLIP prompt encoding).

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
