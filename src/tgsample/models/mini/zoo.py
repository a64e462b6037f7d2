"""The miniature's registered students and teacher (entry points `tgsample.students` / `tgsample.teachers`).

They are built by the same factories as SD 1.5's ([`tgsample.models.diffusers.zoo`][tgsample.models.diffusers.zoo]), on
the
pipeline folder shipped in the package (offline):

```python
student = registry.create("students", "mini-lcm-lora")
teacher = registry.create("teachers", "mini", student=student)   # zero-copy: the same UNet, adapters off
```
"""

from __future__ import annotations

from typing import Any, Optional

from ..diffusers.bundle import DiffusersModel, make_teacher
from ..diffusers.loading import local_status
from ..diffusers.zoo import LORA_FILE, _student
from .components import MINI_DIR, STUDENTS_DIR
from .recipes import STUDENT_W, TEACHER

ROOT = str(MINI_DIR)
"""the shipped pipeline folder, as the diffusers zoo's factories take it"""

mini_lcm = _student("mini-lcm", ROOT, family="sd15", unet=str(STUDENTS_DIR / "lcm" / "unet"), lcm=True,
                    quantize=True, guidance_embedding_scale=STUDENT_W)
"""Student `mini-lcm`: the LCM UNet (`w` embedded, default `w` = 4) on the shipped pipeline."""
mini_lcm_lora = _student("mini-lcm-lora", ROOT, family="sd15", lora=str(STUDENTS_DIR / "lcm_lora"),
                         lora_weight_name=LORA_FILE, lcm=True, quantize=True)
"""Student `mini-lcm-lora`: LoRA adapters on the teacher's UNet (its teacher is zero-copy)."""
mini_lightning = _student("mini-lightning", ROOT, family="sd15", unet=str(STUDENTS_DIR / "lightning" / "unet"),
                          quantize=True)
"""Student `mini-lightning`: the trailing-schedule Euler UNet (SDXL-Lightning's form)."""


def mini(*, path: Optional[str] = None, student: Any = None, zero_copy: bool = True, **options: Any) -> DiffusersModel:
    """Teacher `mini`: the shipped miniature's UNet (for a LoRA student, zero-copy); as SD 1.5's `sd15`."""
    return make_teacher("mini", ROOT, path=path, student=student, zero_copy=zero_copy, recipes={"": TEACHER},
                        family="sd15", **options)


mini.weights = lambda: local_status(ROOT)  # type: ignore[attr-defined]  # tgsample list --check
