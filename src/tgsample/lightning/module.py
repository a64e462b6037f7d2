"""The LightningModule of `tgsample generate`: one `predict_step` = [`tgsample.sample`][tgsample.sampling.sample] on a
batch.

Models are built in [`GenerationModule.configure_model`][tgsample.lightning.module.GenerationModule.configure_model],
once per process, after the process
group is up and inside the Trainer's device / precision context; nothing is pickled (`ddp_spawn`
pickles the module before they exist). A second `predict` reuses them.

Reproducibility: sample `i` draws its noise from its own seed's streams, so the noise never
depends on the batch, and records are sampled in batches (the default, `batch_invariant=False`):
one text-encoder pass, one network call per step and one teacher call for the whole batch. The
network's batched arithmetic is not bit-exact across batch sizes (on CPU a conv/matmul over 8
samples differs from the same sample alone in the last bits, up to ~1e-6 on the digit UNets; on
GPUs, without deterministic kernels, not even across runs), so an image may differ in the last bit
of a pixel between batch sizes. `batch_invariant=True` is the explicit opt-in to bit-identity for
any batch size and process count: it samples each record alone, which costs batching's whole
speed-up (one text-encoder pass, one network call per step and one teacher call per *record*; on a
GPU, where a batch of 8 costs little more than one sample, most of the device).
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from .. import presets, registry
from ..errors import ConfigError, ShapeMismatchError, TgsampleError
from ..recipes import FIELDS, Recipe, published, settle
from ..resolve import Run, build_teacher, resolve, validate
from ..sampling import sample
from .data import Record
from .identity import config_hash, fingerprint, without_locations

__all__ = ["GenerationModule", "config_hash", "to_uint8"]

MODEL_KEYS = ("preset", "student", "student_options")
"""the settings that name the models (the rest are the recipe's fields)."""


def to_uint8(images: Tensor) -> Tensor:
    """Images `[B, C, H, W]` in `[0, 1]` -> `uint8 [B, H, W, C]` on the CPU (`round(255 x)`)."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def _to(cond: Optional[Mapping[str, Any]], device: torch.device) -> Optional[dict]:
    if cond is None:
        return None
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in cond.items()}


def _key(overrides: Mapping[str, Any]) -> str:
    return json.dumps(overrides, sort_keys=True, default=str)


class GenerationModule(LightningModule):
    """Sampling settings (a preset or a student's recipe, plus explicit overrides) and the models they name.

    The settings are resolved with the one precedence rule of [`tgsample.recipes.settle`][tgsample.recipes.settle]:
    explicit arguments > the recipe (the preset's, else the student's plain one) > library defaults.

    Args:
        preset: a preset name (`tgsample list presets`): student `NAME` with recipe `SUFFIX`
            (`digits-compact++`); the other arguments override the recipe's fields.
        student: students registry name (default: the preset's).
        student_options: keyword options of the student factory.
        teacher: teachers registry name (what teacher guidance uses).
        teacher_options: keyword options of the teacher factory (it also gets `student=` if it takes one).
        guidance: a guidance spec: a registry name or `{"name": ..., **options}`, nestable.
        solver: solvers registry name.
        solver_options: the solver's keyword options (`eta`, `gamma`, ...).
        schedule: schedules registry name.
        schedule_options: the schedule's keyword options.
        steps: number of steps of `schedule`.
        sigmas: an explicit schedule instead (decreasing, ending at 0).
        batch_invariant: opt-in: unbatched, bit-exact.
    """

    def __init__(self, preset: Optional[str] = None, student: Optional[str] = None,
                 student_options: Optional[dict] = None, teacher: Optional[str] = None,
                 teacher_options: Optional[dict] = None, guidance: Union[None, str, dict] = None,
                 solver: Optional[str] = None, solver_options: Optional[dict] = None,
                 schedule: Optional[str] = None, schedule_options: Optional[dict] = None,
                 steps: Optional[int] = None, sigmas: Optional[list[float]] = None, batch_invariant: bool = False):
        super().__init__()
        explicit = dict(teacher=teacher, teacher_options=teacher_options, guidance=guidance, solver=solver,
                        solver_options=solver_options, schedule=schedule, schedule_options=schedule_options,
                        steps=steps, sigmas=sigmas)
        recipe: Optional[Recipe] = None
        if preset is not None:
            chosen = presets.get(preset)
            if student is not None and student != chosen.student:
                raise ConfigError(f"preset {preset!r} runs student {chosen.student!r}, but student={student!r} was "
                                  "given; drop one of them")
            student, recipe = chosen.student, chosen.recipe
        if not student:
            raise ConfigError(f"no student: set preset=... (--model.preset; one of {', '.join(presets.names())}) "
                              f"or student=... (--model.student; one of {', '.join(registry.names('students'))})")
        if recipe is None and student in registry.names("recipes"):
            recipe = published(student).get("")
        self.preset = preset
        self.recipe = recipe
        settled = Recipe(**settle(recipe, **explicit)).as_dict()  # plain data: what run.json records
        settled.pop("note")
        self.settings = {"preset": preset, "student": student, "student_options": dict(student_options or {}),
                         **settled}
        self.batch_invariant = bool(batch_invariant)
        self._models: Optional[tuple[Any, Any]] = None  # (student Model, teacher Model or None); not submodules
        self._runs: dict[str, Run] = {}
        self.check()

    # --- configuration -------------------------------------------------------------------

    def recipe_settings(self, overrides: Optional[Mapping[str, Any]] = None) -> dict:
        """The run's recipe fields, with a record's `overrides` applied by the same precedence rule."""
        base = {k: self.settings[k] for k in FIELDS if k in self.settings}
        if not overrides:
            return base
        return {k: v for k, v in settle(Recipe(**base), **overrides).items() if k in base}

    def check(self, overrides: Optional[Mapping[str, Any]] = None) -> dict:
        """Refuse bad settings before any model is built or file written (no weights needed): unknown names,
        options a component does not take, a bad guidance spec or parameter, teacher guidance without a
        teacher, guided steps the schedule does not have, a solver that cannot run the guidance. Give a
        record's `overrides` to check those too. Returns the settled recipe fields; raises a
        [`TgsampleError`][tgsample.errors.TgsampleError] naming the bad value."""
        registry.check_create("students", self.settings["student"], self.settings["student_options"])
        return validate(None, Recipe(**self.recipe_settings(overrides)))

    def check_records(self, records: Sequence[Record]) -> None:
        """Validate every distinct setting of `records` once the models are built, before anything is
        written, without sampling: for each, [`check`][tgsample.lightning.module.GenerationModule.check] (names,
        options, guidance spec), then its run
        ([`run_for`][tgsample.lightning.module.GenerationModule.run_for]: sigmas, solver, guidance checked against
        both), then the run once with every
        network replaced by zeros (no network is called), so that what a solver or guidance checks only
        while sampling (an option value out of range, a plugin's own check) fails now too. Also checks that
        each teacher's sample shape is the student's. Raises a [`TgsampleError`][tgsample.errors.TgsampleError]
        naming the first record with the bad setting."""
        student = self.student
        seen: set[str] = set()
        for record in records:
            key = _key(record.overrides)
            if key in seen:
                continue
            seen.add(key)
            where = f"record {record.id!r}" + (f" (overrides {record.overrides})" if record.overrides else "")
            try:
                self.check(record.overrides)
                run = self.run_for(record.overrides)
                for teacher in {id(t): t for t in (self.teacher, run.teacher) if t is not None}.values():
                    shape = getattr(teacher, "sample_shape", None)
                    if shape is not None and tuple(shape) != tuple(student.sample_shape):
                        raise ShapeMismatchError(
                            f"teacher {getattr(teacher, 'name', '?')!r} makes samples of shape {tuple(shape)} but "
                            f"student {student.name!r} {tuple(student.sample_shape)}; teacher guidance needs the "
                            "same sample shape")
                with _zero_networks(student, self.teacher, run.teacher):
                    sample(student, {}, uncond={}, seeds=[0], run=run)
            except TgsampleError as exc:
                raise type(exc)(f"{where}: {exc}") from None
            except Exception as exc:  # a setting that cannot run (a plugin's own check, a bad option value)
                raise ConfigError(f"{where}: these settings cannot run: {type(exc).__name__}: {exc}") from None

    def generation_config(self, precision: Any = None) -> dict:
        """What decides the pixels: the settings without weight locations, once the models are built a
        fingerprint of their weights (`weights`), `batch_invariant` and the Trainer's precision
        ([`tgsample.lightning.identity`][tgsample.lightning.identity])."""
        config = {"settings": without_locations(self.settings), "batch_invariant": self.batch_invariant,
                  "precision": str(precision if precision is not None else self._precision())}
        if self._models is not None:
            config["weights"] = fingerprint(*self._models)
        return config

    def _precision(self) -> str:
        trainer = self._trainer
        return str(trainer.precision) if trainer is not None else "32-true"

    def run_for(self, overrides: Optional[Mapping[str, Any]] = None) -> Run:
        """The resolved run (sigmas, solver, guidance, teacher) of the settings with `overrides`, built once."""
        key = _key(overrides or {})
        run = self._runs.get(key)
        if run is None:
            recipe = Recipe(**self.recipe_settings(overrides))
            same_teacher = recipe.teacher is not None and recipe.teacher == self.settings["teacher"]
            # the run's teacher was built once in configure_model; a teacher named in a spec is built here
            run = resolve(self.student, recipe, teacher=self.teacher if same_teacher else None)
            self._runs[key] = run
        return run

    def record_settings(self, record: Record) -> dict:
        """What a manifest entry records for `record`: the models and the resolved run (sigmas, solver,
        guidance with all its parameters, teacher) -- [`tgsample.resolve.Run.as_dict`][tgsample.resolve.Run.as_dict]."""
        return {"preset": self.preset, "student": self.settings["student"],
                "student_options": self.settings["student_options"], **self.run_for(record.overrides).as_dict()}

    # --- models ------------------------------------------------------------------------

    def configure_model(self) -> None:
        """Build the student (and the run's teacher, with `student=`) once; later calls keep them."""
        if self._models is not None:
            return
        s = self.settings
        student = registry.create("students", s["student"], **s["student_options"])
        teacher = build_teacher(s["teacher"], student, s["teacher_options"]) if s["teacher"] is not None else None
        for m in (student, teacher):
            if m is not None:
                m.denoiser.eval().requires_grad_(False)
        # registered as submodules so the Trainer moves them (device, precision); the bundles stay plain
        self.student_denoiser = student.denoiser
        if teacher is not None and teacher.denoiser is not student.denoiser:
            self.teacher_denoiser = teacher.denoiser
        self._models = (student, teacher)

    @property
    def student(self) -> Any:
        if self._models is None:
            raise ConfigError("the models are not built yet: call configure_model() (the Trainer does)")
        return self._models[0]

    @property
    def teacher(self) -> Any:
        return None if self._models is None else self._models[1]

    # --- generation --------------------------------------------------------------------

    def generate(self, records: Sequence[Record]) -> dict[str, Any]:
        """Sample `records` (all with the same settings) -> `{"x": samples, "images": uint8 [B,H,W,C]}`."""
        model = self.student
        run = self.run_for(records[0].overrides)
        prompts = [r.prompt for r in records]
        negatives = [r.negative for r in records]
        cond, uncond = model.encode(prompts, None if all(n is None for n in negatives) else negatives)
        x = sample(model, _to(cond, self.device), uncond=_to(uncond, self.device), seeds=[r.seed for r in records],
                   run=run)
        return {"x": x, "images": to_uint8(model.decode(x))}

    def _groups(self, batch: Sequence[Record]) -> list[list[Record]]:
        if self.batch_invariant:
            return [[r] for r in batch]
        groups: dict[str, list[Record]] = {}
        for r in batch:
            groups.setdefault(_key(r.overrides), []).append(r)
        return list(groups.values())

    def predict_step(self, batch: Sequence[Record], batch_idx: int = 0, dataloader_idx: int = 0) -> dict[str, Any]:
        """`{"records", "images" (uint8, CPU), "x" (CPU), "seconds"}` for a batch of records (may be empty)."""
        start = time.perf_counter()
        done: dict[str, tuple[Tensor, Tensor]] = {}
        for group in self._groups(batch):
            out = self.generate(group)
            for i, r in enumerate(group):
                done[r.id] = (out["images"][i], out["x"][i].detach().float().cpu())
        order = list(batch)
        return {
            "records": order,
            "images": [done[r.id][0] for r in order],
            "x": [done[r.id][1] for r in order],
            "seconds": time.perf_counter() - start,
        }


def _zeros(x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    return torch.zeros_like(x)


@contextlib.contextmanager
def _zero_networks(*models: Any) -> Iterator[None]:
    """Within the block, the models' denoisers return zeros (their `forward` is shadowed on the instance)."""
    patched = []
    for m in models:
        d = getattr(m, "denoiser", None)
        if isinstance(d, torch.nn.Module) and "forward" not in vars(d):
            d.forward = _zeros
            patched.append(d)
    try:
        yield
    finally:
        for d in patched:
            del d.forward
