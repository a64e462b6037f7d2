"""The LightningModule of ``tgsample generate``: one ``predict_step`` = :func:`tgsample.sample` on a batch.

Models are built in :meth:`GenerationModule.configure_model`, once per process, after the process
group is up and inside the Trainer's device / precision context; nothing is pickled (``ddp_spawn``
pickles the module before they exist). A second ``predict`` reuses them.

Reproducibility: sample ``i`` draws its noise from its own seed's streams, so the noise never
depends on the batch. The network's batched arithmetic does: on CPU a conv/matmul over 8 samples
differs from the same sample alone in the last bits (measured on the digit UNet: up to 7e-7).
``batch_invariant=True`` (the default) therefore runs the sampler one record at a time inside each
batch, which makes an image bit-identical for any batch size and any number of processes, at the
cost of batching's speed-up (small on CPU; on GPUs set it to ``False`` for throughput).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import time
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from .. import presets, registry
from ..errors import ConfigError, ShapeMismatchError, TgsampleError
from ..sampling import resolve_guidance, resolve_sigmas, sample
from .data import Record
from .identity import config_hash, fingerprint, without_locations

__all__ = ["GenerationModule", "config_hash", "to_uint8"]


def to_uint8(images: Tensor) -> Tensor:
    """Images ``[B, C, H, W]`` in ``[0, 1]`` -> ``uint8 [B, H, W, C]`` on the CPU (``round(255 x)``)."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def _with_teacher(spec: Any, teacher: Any) -> Any:
    """``spec`` with the built teacher's denoiser put into every ``{"name": "teacher"}`` mapping."""
    if isinstance(spec, Mapping):
        out = {k: _with_teacher(v, teacher) for k, v in spec.items()}
        if out.get("name") == "teacher" and not hasattr(out.get("teacher"), "forward"):
            if teacher is None:
                raise ConfigError("guidance 'teacher' needs a teacher model: set teacher=<teachers registry name> "
                                  f"(available: {', '.join(registry.names('teachers'))})")
            out["teacher"] = teacher.denoiser
        return out
    return spec


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _to(cond: Optional[Mapping[str, Any]], device: torch.device) -> Optional[dict]:
    if cond is None:
        return None
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in cond.items()}


class GenerationModule(LightningModule):
    """Sampling settings (a preset plus explicit overrides) and the models they name.

    Args:
        preset: a name in :data:`tgsample.presets.PRESETS`; the other arguments override its keys.
        student: students registry name.
        student_options: keyword options of the student factory.
        teacher: teachers registry name (needed by teacher guidance).
        teacher_options: keyword options of the teacher factory (it also gets ``student=`` if it takes one).
        guidance: a registry name or ``{"name": ..., **options}`` (teacher guidance gets the built teacher).
        solver: solvers registry name.
        solver_options: the solver's keyword options (``eta``, ``gamma``, ...).
        schedule: schedules registry name.
        schedule_options: the schedule's keyword options.
        steps: number of steps of ``schedule``.
        sigmas: an explicit schedule instead (decreasing, ending at 0).
        batch_invariant: sample records one at a time: an image never depends on its batch.
    """

    def __init__(self, preset: Optional[str] = None, student: Optional[str] = None,
                 student_options: Optional[dict] = None, teacher: Optional[str] = None,
                 teacher_options: Optional[dict] = None, guidance: Union[None, str, dict] = None,
                 solver: Optional[str] = None, solver_options: Optional[dict] = None,
                 schedule: Optional[str] = None, schedule_options: Optional[dict] = None,
                 steps: Optional[int] = None, sigmas: Optional[list[float]] = None, batch_invariant: bool = True):
        super().__init__()
        self.settings = presets.resolve(
            preset, student=student, student_options=student_options, teacher=teacher,
            teacher_options=teacher_options, guidance=guidance, solver=solver, solver_options=solver_options,
            schedule=schedule, schedule_options=schedule_options, steps=steps, sigmas=sigmas)
        if not self.settings["student"]:
            raise ConfigError(f"no student: set preset=... (--model.preset; one of {', '.join(sorted(presets.PRESETS))}) "
                              f"or student=... (--model.student; one of {', '.join(registry.names('students'))})")
        self._check_names()
        self.preset = preset
        self.batch_invariant = bool(batch_invariant)
        self._models: Optional[tuple[Any, Any]] = None  # (student Model, teacher Model or None); not submodules
        self._plans: dict[str, tuple] = {}

    def _check_names(self) -> None:
        """Unknown registry names fail now (listing what is available), not after the models are built."""
        s = self.settings
        for kind, key in (("students", "student"), ("teachers", "teacher"), ("solvers", "solver"),
                          ("schedules", "schedule")):
            if s[key] is not None:
                registry.get(kind, s[key])
        for spec in _guidance_names(s["guidance"]):
            registry.get("guidance", spec)

    # --- configuration -------------------------------------------------------------------

    def generation_config(self, precision: Any = None) -> dict:
        """What decides the pixels: the settings without weight locations, once the models are built a
        fingerprint of their weights (``weights``), ``batch_invariant`` and the Trainer's precision
        (:mod:`tgsample.lightning.identity`)."""
        config = {"settings": without_locations(self.settings), "batch_invariant": self.batch_invariant,
                  "precision": str(precision if precision is not None else self._precision())}
        if self._models is not None:
            config["weights"] = fingerprint(*self._models)
        return config

    def _precision(self) -> str:
        trainer = self._trainer
        return str(trainer.precision) if trainer is not None else "32-true"

    def record_settings(self, record: Record) -> dict:
        """The settings of one record: the run's, with the record's overrides."""
        return {**self.settings, **record.overrides} if record.overrides else self.settings

    # --- models ------------------------------------------------------------------------

    def configure_model(self) -> None:
        """Build the student (and teacher) once; later calls (a second ``predict``) keep them."""
        if self._models is not None:
            return
        s = self.settings
        student = registry.create("students", s["student"], **(s["student_options"] or {}))
        teacher = None
        if s["teacher"] is not None:
            options = dict(s["teacher_options"] or {})
            if _accepts(registry.get("teachers", s["teacher"]), "student"):
                options.setdefault("student", student)  # zero-copy teacher (e.g. a LoRA student's base model)
            teacher = registry.create("teachers", s["teacher"], **options)
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

    def _plan(self, settings: Mapping[str, Any]) -> tuple:
        """``(sigmas, solver, guidance, solver_options)`` for ``settings``, built once per distinct settings."""
        key = json.dumps(settings, sort_keys=True, default=str)
        plan = self._plans.get(key)
        if plan is None:
            model = self.student
            defaults = model.defaults or {}
            sigmas, schedule, steps = settings["sigmas"], settings["schedule"], settings["steps"]
            if sigmas is not None and (schedule is not None or steps is not None):
                raise ConfigError(f"give either sigmas={sigmas} or schedule/steps (schedule={schedule!r}, "
                                  f"steps={steps!r}), not both")
            if sigmas is None and schedule is None and steps is None and defaults.get("sigmas") is not None:
                sigmas = defaults["sigmas"]  # the student's own explicit schedule
            sig = resolve_sigmas(model, sigmas, schedule, steps, **(settings["schedule_options"] or {}))
            spec = settings["guidance"] if settings["guidance"] is not None else defaults.get("guidance")
            guidance = resolve_guidance(_with_teacher(spec, self.teacher))
            solver = settings["solver"] or defaults.get("solver", "euler")
            plan = (sig, solver, guidance, dict(settings["solver_options"] or {}))
            self._plans[key] = plan
        return plan

    def check(self, records: Sequence[Record]) -> None:
        """Validate every distinct setting of ``records`` without sampling, before anything is written.

        For each: build its plan (:meth:`_plan`: schedule, solver, guidance), check the solver's options
        by name, then run the plan once with every network replaced by zeros (no network is called), so
        that what a solver or guidance checks while sampling (renoising on the last step, a stock sampler
        with step-aware guidance, an option out of range) fails now. Also checks that the teacher's sample
        shape is the student's. Raises a :class:`~tgsample.errors.TgsampleError` naming the first record
        with the bad setting. Needs the models (:meth:`configure_model`).
        """
        student, teacher = self.student, self.teacher
        if teacher is not None and tuple(teacher.sample_shape) != tuple(student.sample_shape):
            raise ShapeMismatchError(f"teacher {teacher.name!r} makes samples of shape {tuple(teacher.sample_shape)} "
                                     f"but student {student.name!r} {tuple(student.sample_shape)}; teacher "
                                     "guidance needs the same sample shape")
        seen: set[str] = set()
        for record in records:
            settings = self.record_settings(record)
            key = json.dumps(settings, sort_keys=True, default=str)
            if key in seen:
                continue
            seen.add(key)
            where = f"record {record.id!r}" + (f" (overrides {record.overrides})" if record.overrides else "")
            try:
                sigmas, solver, guidance, options = self._plan(settings)
                if isinstance(solver, str):
                    registry.create("solvers", solver, **options)  # unknown option names, with hints
                with _zero_networks(student, teacher):
                    sample(student, {}, uncond={}, seeds=[0], sigmas=sigmas, solver=solver, guidance=guidance,
                           **options)
            except TgsampleError as exc:
                raise type(exc)(f"{where}: {exc}") from None
            except Exception as exc:  # a setting that cannot run (a plugin's own check, a bad option value)
                raise ConfigError(f"{where}: these settings cannot run: {type(exc).__name__}: {exc}") from None

    # --- generation --------------------------------------------------------------------

    def generate(self, records: Sequence[Record]) -> dict[str, Any]:
        """Sample ``records`` (all with the same settings) -> ``{"x": samples, "images": uint8 [B,H,W,C]}``."""
        model = self.student
        sigmas, solver, guidance, options = self._plan(self.record_settings(records[0]))
        prompts = [r.prompt for r in records]
        negatives = [r.negative for r in records]
        cond, uncond = model.encode(prompts, None if all(n is None for n in negatives) else negatives)
        x = sample(model, _to(cond, self.device), uncond=_to(uncond, self.device), seeds=[r.seed for r in records],
                   sigmas=sigmas, solver=solver, guidance=guidance, **options)
        return {"x": x, "images": to_uint8(model.decode(x))}

    def _groups(self, batch: Sequence[Record]) -> list[list[Record]]:
        if self.batch_invariant:
            return [[r] for r in batch]
        groups: dict[str, list[Record]] = {}
        for r in batch:
            groups.setdefault(json.dumps(r.overrides, sort_keys=True, default=str), []).append(r)
        return list(groups.values())

    def predict_step(self, batch: Sequence[Record], batch_idx: int = 0, dataloader_idx: int = 0) -> dict[str, Any]:
        """``{"records", "images" (uint8, CPU), "x" (CPU), "seconds"}`` for a batch of records (may be empty)."""
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
    """Within the block, the models' denoisers return zeros (their ``forward`` is shadowed on the instance)."""
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


def _guidance_names(spec: Any) -> list[str]:
    """Every guidance registry name inside a spec (for early checking)."""
    if spec is None:
        return []
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, Mapping):
        out = [spec["name"]] if isinstance(spec.get("name"), str) else []
        for key in ("student", "inner", "outside"):
            out += _guidance_names(spec.get(key))
        return out
    return []


