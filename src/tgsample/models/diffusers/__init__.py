"""Diffusers-backed students and teachers (SD 1.x and SDXL families); see ``docs/models.md``.

* :mod:`.zoo` -- the registered factories (``lcm-sd15``, ``lcm-lora-sd15``, ``dmd2-sdxl``,
  ``lightning-sdxl``, ``turbo-sdxl``, ``tcd-*``, ``tdd-*`` students; ``sd15`` / ``sdxl`` teachers);
* :mod:`.bundle` -- :func:`load_model`, the zero-copy teacher, teacher/student linking;
* :mod:`.net` -- the UNet as a sigma-space denoiser (SDXL added conditions, LCM's ``timestep_cond``);
* :mod:`.text` -- prompt encoding (once per batch, shared);
* :mod:`.loading` -- local directories and cached hub ids, LoRA loading, typed errors (:mod:`.errors`).

Importing this package does not import diffusers or transformers; loading a model does.
"""

from .bundle import DiffusersModel, check_compatible, link_teacher, load_model, make_teacher, zero_copy_teacher
from .errors import LoRAMismatchError, ModelNotFoundError, OfflineModelError

__all__ = ["DiffusersModel", "LoRAMismatchError", "ModelNotFoundError", "OfflineModelError", "check_compatible",
           "link_teacher", "load_model", "make_teacher", "zero_copy_teacher"]
