"""Diffusers-backed students and teachers (SD 1.x and SDXL families); see ``docs/models.md``.

* :mod:`.zoo` -- the registered factories (``lcm-sd15``, ``lcm-lora-sd15``, ``dmd2-sdxl``,
  ``lightning-sdxl``, ``turbo-sdxl``, ``tcd-*``, ``tdd-*`` students; ``sd15`` / ``sdxl`` teachers);
* :mod:`.recipes` -- the students' published sampling recipes (torch-free);
* :mod:`.bundle` -- :func:`load_model`, the zero-copy teacher, teacher/student linking;
* :mod:`.net` -- the UNet as a sigma-space denoiser (SDXL added conditions, LCM's ``timestep_cond``);
* :mod:`.text` -- prompt encoding (once per batch, shared);
* :mod:`.loading` -- local directories and cached hub ids, LoRA loading, typed errors (:mod:`.errors`).

Importing this package imports nothing (the names below load on first use); loading a model
imports diffusers and transformers.
"""

from __future__ import annotations

from ..._lazy import lazy_exports

_EXPORTS = {
    "DiffusersModel": "bundle", "check_compatible": "bundle", "link_teacher": "bundle", "load_model": "bundle",
    "make_teacher": "bundle", "zero_copy_teacher": "bundle",
    "LoRAMismatchError": "errors", "ModelNotFoundError": "errors", "OfflineModelError": "errors",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
