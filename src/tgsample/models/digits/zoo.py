"""The digit teacher and students as registered factories (`tgsample.students` / `tgsample.teachers`).

All three are EDM-preconditioned UNets ([`tgsample.denoisers.EDMDenoiser`][tgsample.denoisers.EDMDenoiser],
`sigma_data = 0.5`)
on scikit-learn's 8x8 handwritten digits, conditioned on `cond["class_labels"]` (`[B]` long,
0..9, 10 = the null class). The students also take `cond["guidance_scale"]` (`[B]`, the CFG
scale `w` they were distilled at; [`tgsample.guidance.DistilledCFG`][tgsample.guidance.cfg.DistilledCFG] routes it).

* `teacher()`: ~0.96 M parameters, trained by `scripts/train_teacher.py`;
* `student()`: the same architecture plus a `w` embedding, initialised from the teacher and
  consistency-distilled (LCM style) by `scripts/distill_students.py`;
* `compact_student()`: ~6x fewer parameters, trained from scratch by the same distillation, so
  that a real teacher--student gap remains for teacher guidance to act on.

Weights ship in `tgsample/models/weights/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

from ...denoisers import EDMDenoiser
from ...errors import ConfigError
from ..base import Model
from .data import NULL_CLASS, NUM_CLASSES, SHAPE, to_unit
from .unet import UNet, UNetConfig
from .weights import read, weights_path

SIGMA_DATA = 0.5
"""The data's standard deviation in EDM's preconditioning of the digit models."""
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
TEACHER_CONFIG = UNetConfig(channels=32, mult=(1, 2, 2), blocks=1, emb=64)
"""The digit teacher's UNet."""
COMPACT_CONFIG = UNetConfig(channels=16, mult=(1, 2), blocks=1, emb=32, guidance_embedding=True)
"""The compact student's UNet (with a guidance-scale embedding)."""

__all__ = ["teacher", "student", "compact_student", "build_denoiser", "load_denoiser", "encode_labels", "NULL_CLASS",
           "SHAPE", "TEACHER_CONFIG", "COMPACT_CONFIG", "student_schedule"]


def build_denoiser(config: UNetConfig) -> EDMDenoiser:
    """An untrained EDM denoiser `D = c_skip x + c_out F(c_in x, log(sigma)/4, cond)` around a UNet."""
    return EDMDenoiser(UNet(config), sigma_data=SIGMA_DATA, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
                       sample_shape=SHAPE)


def load_denoiser(path: Union[str, Path]) -> tuple[EDMDenoiser, dict]:
    """Build the denoiser a weights file describes and load it (eval mode, no grad); returns `(denoiser, info)`."""
    state, config, info = read(path)
    den = build_denoiser(UNetConfig.from_dict(config))
    den.net.load_state_dict(state)
    den.eval().requires_grad_(False)
    return den, info


def _label(v: Any) -> int:
    if isinstance(v, Tensor):
        v = v.item()
    if isinstance(v, str) and v.strip().isdigit():
        v = int(v.strip())
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < NUM_CLASSES:
        raise ConfigError(f"digit label {v!r} is not allowed: give an int 0-9 or a digit string '0'..'9'")
    return v


def encode_labels(labels: Sequence[Any], negatives: Optional[Sequence[Any]] = None) -> tuple[dict, dict]:
    """`(cond, uncond)` for a list of labels (ints 0-9 or digit strings).

    `cond = {"class_labels": LongTensor[B]}`; `uncond` holds the null class 10 (`negatives` may
    name other digits to guide away from instead).
    """
    if isinstance(labels, (str, int)):
        labels = [labels]
    ys = torch.tensor([_label(v) for v in labels], dtype=torch.long)
    if len(ys) == 0:
        raise ConfigError("labels is empty: give at least one digit 0-9")
    if negatives is None:
        neg = torch.full_like(ys, NULL_CLASS)
    else:
        if len(negatives) != len(ys):
            raise ConfigError(f"{len(negatives)} negatives for {len(ys)} labels; give one per label or None")
        neg = torch.tensor([NULL_CLASS if v is None else _label(v) for v in negatives], dtype=torch.long)
    return {"class_labels": ys}, {"class_labels": neg}


def _model(name: str, file: str, recipes: Any, path: Optional[Union[str, Path]]) -> Model:
    den, _ = load_denoiser(path if path is not None else weights_path(file))
    return Model(name=name, denoiser=den, sample_shape=SHAPE, encode=encode_labels, decode=to_unit,
                 recipes=dict(recipes))


def teacher(path: Optional[Union[str, Path]] = None) -> Model:
    """The digit teacher; its recipe ([`TEACHER`][tgsample.models.digits.recipes.TEACHER]): 32 Karras steps, Euler,
    CFG 1 (the conditional teacher, which scores best in FD)."""
    from .recipes import TEACHER

    return _model("digits", "digits_teacher", {"": TEACHER}, path)


def student_schedule(steps: int, model: Any = None, *, sigmas: Sequence[float]) -> Tensor:
    """The students' own few-step schedule: `sigmas` itself when `steps == len(sigmas) - 1`;
    otherwise `sigma_max` followed by `steps - 1` levels geometric between `sigmas[1]` and
    `sigmas[-2]`, then 0 (so N+1 and N+2 plain steps stay on the same range)."""
    from ...schedules import validate_sigmas

    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps={steps!r} must be a positive integer")
    base = [float(s) for s in sigmas]
    if steps == len(base) - 1:
        return validate_sigmas(base)
    if steps == 1:
        return validate_sigmas([base[0], 0.0])
    mid = torch.logspace(torch.log10(torch.tensor(base[1])), torch.log10(torch.tensor(base[-2])), steps - 1)
    return validate_sigmas([base[0], *mid.tolist(), 0.0])


def _student(name: str, file: str, path: Optional[Union[str, Path]]) -> Model:
    from ...recipes import published

    return _model(name, file, published(name), path)


def student(path: Optional[Union[str, Path]] = None) -> Model:
    """The full-size guided-distillation student (initialised from the teacher); recipes
    [`DIGITS`][tgsample.models.digits.recipes.DIGITS]."""
    return _student("digits", "digits_student", path)


def compact_student(path: Optional[Union[str, Path]] = None) -> Model:
    """The compact student (~6x fewer parameters, trained from scratch by distillation); recipes
    [`DIGITS_COMPACT`][tgsample.models.digits.recipes.DIGITS_COMPACT]."""
    return _student("digits-compact", "digits_compact", path)


def _embedded(file: str) -> Any:
    return lambda: "embedded" if weights_path(file).is_file() else f"missing: {weights_path(file)}"


teacher.weights = _embedded("digits_teacher")  # type: ignore[attr-defined]  # tgsample list --check
student.weights = _embedded("digits_student")  # type: ignore[attr-defined]
compact_student.weights = _embedded("digits_compact")  # type: ignore[attr-defined]
