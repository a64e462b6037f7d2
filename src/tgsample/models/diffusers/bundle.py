"""A diffusers SD 1.x / SDXL pipeline as a [`Model`][tgsample.models.base.Model]: load, encode, decode, link a teacher.

[`load_model`][tgsample.models.diffusers.bundle.load_model] reads a pipeline directory (or cached hub id), optionally
replaces its UNet
(a UNet folder, hub repo or single weights file) and/or adds a LoRA, and returns a
[`DiffusersModel`][tgsample.models.diffusers.bundle.DiffusersModel] whose denoiser is a
[`DiffusersDenoiser`][tgsample.models.diffusers.net.DiffusersDenoiser]
on the pipeline's own `abar` table and prediction type.

[`make_teacher`][tgsample.models.diffusers.bundle.make_teacher] builds a teacher for a student: the **zero-copy**
teacher of a LoRA student
(the student's UNet with adapters disabled during the teacher's call), or a separately loaded
pipeline that shares the student's prompt encoder when the text encoders are the same (so each
batch of prompts is encoded once) and otherwise reads its own `teacher_*` conditioning keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor

from ...denoisers import lcm_boundary
from ...errors import ConfigError, ShapeMismatchError
from ..base import Model
from . import loading as L
from .net import DiffusersDenoiser, UNetNet
from .text import PromptEncoder

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float64": torch.float64,
          "fp64": torch.float64, "double": torch.float64}
"""The dtype names that `dtype=` accepts, and the torch dtypes they mean."""
TEACHER_PREFIX = "teacher_"
"""The prefix of a teacher's own conditioning keys when it shares a batch with the student."""


def resolve_device(device: Union[None, str, torch.device]) -> torch.device:
    """`None` -> CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: Union[None, str, torch.dtype], device: torch.device) -> torch.dtype:
    """`None` -> float32 on CPU, float16 on GPU; names: float32/fp32, float16/fp16/half, bfloat16/bf16,
    float64/fp64/double."""
    if dtype is None:
        return torch.float32 if device.type == "cpu" else torch.float16
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).replace("torch.", "")]
    except KeyError:
        raise ConfigError(f"dtype={dtype!r} is not supported; allowed: {sorted(DTYPES)}") from None


@dataclass
class Parts:
    """What a loaded diffusers model is made of (kept for teachers, decoding and benchmarks)."""

    kind: str
    '''"sd15" or "sdxl"'''
    root: Path
    """the resolved pipeline directory"""
    unet: Any
    net: UNetNet
    encoder: PromptEncoder
    device: torch.device
    dtype: torch.dtype
    lora: Optional[str] = None
    """adapter name when a LoRA was added"""
    base_in_root: bool = False
    """the pipeline's own UNet is the base model (UNet replaced or LoRA added)"""
    vae: Any = None
    vae_options: dict = field(default_factory=dict)


@dataclass
class DiffusersModel(Model):
    """A [`Model`][tgsample.models.base.Model] backed by diffusers parts (`parts`)."""

    parts: Optional[Parts] = None

    def to(self, device: torch.device | str, dtype: Optional[torch.dtype] = None) -> "DiffusersModel":
        """Move the UNet (and cast it to `dtype`), the text encoders and the VAE; the abar table stays float."""
        p = self.parts
        p.unet.to(device=device, dtype=dtype)
        self.denoiser.to(device=device)
        for m in p.encoder.text_encoders:
            m.to(device)
        p.encoder.device = torch.device(device)
        if p.vae is not None:
            p.vae.to(device)
        p.device, p.dtype = torch.device(device), dtype or p.dtype
        p.net.device = p.device
        return self


def _vae_config(root: Path) -> dict:
    path = root / "vae" / "config.json"
    if not path.is_file():
        raise L.ModelNotFoundError(f"VAE config {str(path)!r} is missing; a diffusers pipeline directory needs vae/")
    return json.loads(path.read_text())


def _sample_shape(unet: Any, vae_config: dict, height: Optional[int], width: Optional[int]) -> tuple[int, int, int]:
    factor = 2 ** (len(vae_config.get("block_out_channels", (0, 0, 0, 0))) - 1)
    size = unet.config.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    for name, px in (("height", height), ("width", width)):
        if px is not None and (int(px) <= 0 or int(px) % factor):
            raise ConfigError(f"{name}={px!r} must be a positive multiple of the VAE factor {factor}")
    h = int(height) // factor if height is not None else h
    w = int(width) // factor if width is not None else w
    return (int(unet.config.in_channels), h, w)


def _load_encoder(kind: str, root: Path, device: torch.device, dtype: torch.dtype, image_size: tuple[int, int],
                  clip_skip: Optional[int], micro: dict) -> PromptEncoder:
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    enc_dtype = dtype if device.type != "cpu" else torch.float32
    encoders = [L.load_part(CLIPTextModel, root, "text_encoder", "text encoder", dtype=enc_dtype).to(device)]
    tokenizers = [L.load_part(CLIPTokenizer, root, "tokenizer", "tokenizer")]
    force_zeros = True
    if kind == "sdxl":
        encoders.append(L.load_part(CLIPTextModelWithProjection, root, "text_encoder_2", "text encoder 2",
                                    dtype=enc_dtype).to(device))
        tokenizers.append(L.load_part(CLIPTokenizer, root, "tokenizer_2", "tokenizer 2"))
        index = root / "model_index.json"
        if index.is_file():
            force_zeros = bool(json.loads(index.read_text()).get("force_zeros_for_empty_prompt", True))
    return PromptEncoder(kind, encoders, tokenizers, device=device, image_size=image_size, clip_skip=clip_skip,
                         force_zeros_for_empty_prompt=force_zeros, out_dtype=dtype, **micro)


def load_model(name: str, path: Union[str, Path], *, unet: Optional[str] = None,
               unet_weight_name: Optional[str] = None, lora: Optional[str] = None,
               lora_weight_name: Optional[str] = None, prediction: Optional[str] = None, lcm: bool = False,
               guidance_embedding_scale: Optional[float] = None, x0_clip: Optional[dict] = None,
               quantize: bool = False, height: Optional[int] = None, width: Optional[int] = None,
               dtype: Union[None, str, torch.dtype] = None, device: Union[None, str, torch.device] = None,
               offload: bool = False, compile: bool = False, allow_download: bool = False,
               variant: Optional[str] = None, clip_skip: Optional[int] = None, vae_tiling: bool = False,
               decode_batch_size: Optional[int] = None, encoder: Optional[PromptEncoder] = None,
               recipes: Optional[dict] = None, family: Optional[str] = None, diffusers_parity: bool = False,
               original_size: Optional[tuple[int, int]] = None, crops_coords_top_left: tuple[int, int] = (0, 0),
               target_size: Optional[tuple[int, int]] = None) -> DiffusersModel:
    """Load an SD 1.x / SDXL diffusers pipeline (directory or cached hub id) as a
    [`DiffusersModel`][tgsample.models.diffusers.bundle.DiffusersModel].

    Args:
        name: the registry name reported by the model.
        path: pipeline directory or hub id (the base pipeline when `unet` / `lora` are given).
        unet: replace the pipeline's UNet: a UNet folder, a hub repo (with an optional weights file
            name), or a single weights file loaded into the base UNet's config.
        unet_weight_name: the weights file name inside `unet`'s repo or folder.
        lora: add a LoRA (folder, file or hub id) as peft adapter `"student"`.
        lora_weight_name: the weights file name inside `lora`'s repo or folder.
        prediction: override the scheduler config's prediction type.
        lcm: apply LCM's boundary scalings (`timestep_scaling` from the scheduler config, default 10).
        guidance_embedding_scale: `w` used by a guidance-embedding UNet when no `guidance_scale` is passed.
        x0_clip: TDD-style x0 clipping ([`DiffusersDenoiser`][tgsample.models.diffusers.net.DiffusersDenoiser]).
        quantize: round `t(sigma)` to integer timesteps (as diffusers' schedulers call the UNet).
        height: image height in pixels (default: the UNet's native size).
        width: image width in pixels (default: the UNet's native size).
        dtype: default float32 on CPU, float16 on CUDA.
        device: default CUDA when available, else the CPU.
        offload: keep the UNet on the CPU between calls (teachers on small GPUs).
        compile: `torch.compile` the UNet.
        allow_download: let hub ids be downloaded (default: local cache only).
        clip_skip: CLIP layers to skip in prompt encoding.
        vae_tiling: tiled VAE decoding.
        decode_batch_size: decode in chunks of this many latents.
        encoder: reuse this prompt encoder instead of loading the pipeline's text encoders.
        recipes: the model's published sampling recipes (`Model.recipes`, `{variant: Recipe}`).
        family: the registered family (`"sd15"` / `"sdxl"`); a pipeline of the other family raises
            [`FamilyMismatchError`][tgsample.models.diffusers.errors.FamilyMismatchError] (default: accept either).
        diffusers_parity: sample exactly as this model's diffusers pipeline would with the scheduler matching
            the solver ([`tgsample.conventions`][tgsample.conventions]; docs: Diffusers models, "Exactly what diffusers
            does").
        original_size: SDXL micro-conditioning `(height, width)` of the "original" image (default: the image size).
        crops_coords_top_left: SDXL micro-conditioning crop offset `(top, left)` (default `(0, 0)`).
        target_size: SDXL micro-conditioning target `(height, width)` (default: the image size).
    """
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    root = L.resolve(path, "model", allow_download=allow_download, patterns=L.PIPELINE_PATTERNS)
    if not root.is_dir():
        if root.suffix in L.SINGLE_FILE_SUFFIXES:
            raise L.ModelNotFoundError(L.single_file_message(path))
        raise L.ModelNotFoundError(f"model {str(path)!r} is a file; give a diffusers pipeline directory")
    kind = L.check_family(root, family, f"model {name!r}")
    if kind in L.TRANSFORMERS:
        raise L.FamilyMismatchError(
            f"{str(path)!r} is a pipeline of the {L.FAMILY_NAMES[kind]}; load_model reads SD 1.x / SDXL UNet "
            f"pipelines: load it with load_flow_model or a flow model's factory (e.g. teacher "
            f"{L.FAMILY_TEACHERS[kind]!r})")
    config = L.scheduler_config(root)
    pred = L.prediction_type(config, f"model {str(path)!r}", prediction)
    abar = L.alphas_cumprod(config)
    net_unet = L.load_unet(root, unet=unet, unet_weight_name=unet_weight_name, allow_download=allow_download,
                           dtype=dtype, variant=variant)
    net_unet.eval().requires_grad_(False)
    adapter = None
    if lora is not None:
        adapter = L.load_lora(net_unet, lora, kind=kind, weight_name=lora_weight_name, allow_download=allow_download)
        if any(p.dtype != dtype for p in net_unet.parameters()):
            net_unet.to(dtype)
    net_unet.to("cpu" if offload else device)
    vae_config = _vae_config(root)
    shape = _sample_shape(net_unet, vae_config, height, width)
    factor = 2 ** (len(vae_config.get("block_out_channels", (0, 0, 0, 0))) - 1)
    if encoder is None:
        micro = {"original_size": original_size, "crops_coords_top_left": crops_coords_top_left,
                 "target_size": target_size}
        encoder = _load_encoder(kind, root, device, dtype, (shape[1] * factor, shape[2] * factor), clip_skip, micro)
    net = UNetNet(net_unet, default_guidance_scale=guidance_embedding_scale, offload=offload, device=device,
                  compile=compile)
    boundary = lcm_boundary(float(config.get("timestep_scaling", 10.0))) if lcm else None
    denoiser = DiffusersDenoiser(net, abar, pred, x0_clip=x0_clip, boundary=boundary, quantize=quantize,
                                 sample_shape=shape, diffusers_parity=diffusers_parity,
                                 timestep_spacing=config.get("timestep_spacing")).to(device if not offload else "cpu")
    denoiser.schedule.to(device)
    parts = Parts(kind, root, net_unet, net, encoder, device, dtype, lora=adapter,
                  base_in_root=unet is not None or lora is not None,
                  vae_options={"tiling": vae_tiling, "batch": decode_batch_size, "config": vae_config})
    model = DiffusersModel(name=name, denoiser=denoiser, sample_shape=shape, encode=encoder.encode,
                           recipes=dict(recipes or {}), parts=parts)
    model.decode = _decoder(parts)
    return model


def _decoder(parts: Parts) -> Callable[[Tensor], Tensor]:
    """`decode(x0) -> images [B, 3, H, W]` in [0, 1] with the pipeline's VAE (loaded on first use)."""

    @torch.no_grad()
    def decode(x: Tensor) -> Tensor:
        vae = _vae(parts)
        cfg = vae.config
        z = x / cfg.scaling_factor + (getattr(cfg, "shift_factor", None) or 0.0)
        p = next(vae.parameters())
        chunks = z.split(parts.vae_options.get("batch") or len(z))
        images = torch.cat([vae.decode(c.to(p.device, p.dtype), return_dict=False)[0].float() for c in chunks])
        return (images / 2 + 0.5).clamp(0, 1).to(x.device)

    return decode


def _vae(parts: Parts) -> Any:
    if parts.vae is None:
        from diffusers import AutoencoderKL

        cfg = parts.vae_options.get("config", {})
        dtype = torch.float32 if (cfg.get("force_upcast") and parts.dtype == torch.float16) else parts.dtype
        vae = L.load_part(AutoencoderKL, parts.root, "vae", "VAE", torch_dtype=dtype).to(parts.device)
        vae.eval().requires_grad_(False)
        if parts.vae_options.get("tiling"):
            vae.enable_tiling()
        parts.vae = vae
    return parts.vae


LATENT_SPACE = ("latent_channels", "scaling_factor", "shift_factor")
"""VAE config keys that fix the latent space"""


def vae_latent_space(config: dict) -> dict:
    """`{latent_channels, scaling_factor, shift_factor}` of a VAE config (a missing shift factor is 0)."""
    space = {k: config.get(k) for k in LATENT_SPACE}
    space["shift_factor"] = space["shift_factor"] or 0.0
    return space


def latent_space(model: Model) -> Optional[dict]:
    """The latent space ([`vae_latent_space`][tgsample.models.diffusers.bundle.vae_latent_space]) of a diffusers model's
    VAE (`None` for other models)."""
    parts = getattr(model, "parts", None)
    config = parts.vae_options.get("config") if parts is not None else None
    if config is None:
        return None
    return vae_latent_space(config)


def check_latent_space(student: Model, teacher: str, space: Optional[dict], where: str = "") -> None:
    """Raise unless teacher `teacher` (a name; `where` says where it is) with VAE latent space `space`
    samples the student's latent space. One check for every family, also before the teacher's weights are read.

    [`FamilyMismatchError`][tgsample.models.diffusers.errors.FamilyMismatchError] when both have VAEs that differ in
    latent
    channels, scaling or shift factor (SD 1.x's 0.18215 vs SDXL's 0.13025, FLUX's 0.3611 vs SD3's 1.5305: the
    same tensor means another image); [`ShapeMismatchError`][tgsample.errors.ShapeMismatchError] when a student without
    a VAE has another
    number of channels.
    """
    if space is None:
        return
    s_space = latent_space(student)
    if s_space is None:
        channels = tuple(student.sample_shape)[0]
        if channels != space["latent_channels"]:
            raise ShapeMismatchError(f"student {student.name!r} has {channels} latent channels but teacher {teacher!r}"
                                     f"{where} has {space['latent_channels']}; teacher guidance needs the same latent "
                                     "space")
        return
    if s_space != space:
        diff = {k: (s_space[k], space[k]) for k in LATENT_SPACE if s_space[k] != space[k]}
        raise L.FamilyMismatchError(
            f"student {student.name!r} and teacher {teacher!r}{where} have different latent spaces (VAE "
            f"{', '.join(f'{k} {a!r} vs {b!r}' for k, (a, b) in diff.items())}): teacher guidance mixes x0 estimates, "
            f"so a teacher must share the student's VAE latent space (a teacher of the student's family: SD 1.x, "
            f"SDXL, FLUX or SD3)")


def check_compatible(student: Model, teacher: Model) -> None:
    """Raise unless student and teacher sample the same latent space
    ([`check_latent_space`][tgsample.models.diffusers.bundle.check_latent_space]) and shape
    ([`ShapeMismatchError`][tgsample.errors.ShapeMismatchError])."""
    check_latent_space(student, teacher.name, latent_space(teacher))
    s, t = tuple(student.sample_shape), tuple(teacher.sample_shape)
    if s[0] != t[0]:
        raise ShapeMismatchError(f"student {student.name!r} has {s[0]} latent channels but teacher {teacher.name!r} "
                                 f"has {t[0]}; teacher guidance needs the same latent space")
    if s != t:
        raise ShapeMismatchError(
            f"student {student.name!r} samples latents of size {s[1:]} but teacher {teacher.name!r} {t[1:]}; "
            f"give the teacher height=/width= in pixels to run it at the student's size")


def link_teacher(student: Model, teacher: DiffusersModel) -> DiffusersModel:
    """Make `student.encode` serve `teacher` too.

    Same text encoders (same objects or equal weights): the teacher uses the student's
    [`PromptEncoder`][tgsample.models.diffusers.text.PromptEncoder] (one encoding per batch, one copy of the weights).
    Otherwise the teacher's
    net reads `teacher_<key>` and the student's `encode` is extended to add those keys.
    """
    check_compatible(student, teacher)
    s_parts = getattr(student, "parts", None)
    if s_parts is None:
        return teacher
    t_enc = teacher.parts.encoder
    if t_enc is s_parts.encoder or t_enc.same_as(s_parts.encoder):
        teacher.parts.encoder = s_parts.encoder
        teacher.encode = s_parts.encoder.encode
        return teacher
    teacher.parts.net.prefix = TEACHER_PREFIX
    student_encode = student.encode

    def encode(prompts: Any, negatives: Any = None) -> tuple[dict, dict]:
        cond, uncond = student_encode(prompts, negatives)
        t_cond, t_uncond = t_enc.encode(prompts, negatives)
        return ({**cond, **{TEACHER_PREFIX + k: v for k, v in t_cond.items()}},
                {**uncond, **{TEACHER_PREFIX + k: v for k, v in t_uncond.items()}})

    student.encode = encode
    return teacher


def zero_copy_teacher(student: DiffusersModel, name: str, *, recipes: Optional[dict] = None,
                      offload: bool = False, compile: bool = False, prediction: Optional[str] = None,
                      **ignored: Any) -> DiffusersModel:
    """The base model of a LoRA student without a second copy of the weights: the student's UNet,
    called with its adapters disabled (`disable_adapters()` / `enable_adapters()` around the call)."""
    p = student.parts
    if p.lora is None:
        raise ConfigError(f"student {student.name!r} has no LoRA adapter: a zero-copy teacher needs a LoRA student")
    if offload:
        raise ConfigError("offload=True cannot be used with a zero-copy teacher: it shares the student's UNet "
                          "(pass zero_copy=False to load a separate teacher that can be offloaded)")
    unknown = {k for k in ignored if k not in ("dtype", "device", "allow_download", "variant", "clip_skip", "quantize",
                                               "family", "diffusers_parity")}
    if unknown:
        raise ConfigError(f"options {sorted(unknown)} do not apply to a zero-copy teacher (it reuses the student's parts)")
    L.check_family(p.root, ignored.get("family"), f"teacher {name!r}")
    config = L.scheduler_config(p.root)
    net = UNetNet(p.unet, adapters_off=True, device=p.device, compile=compile)
    den = DiffusersDenoiser(net, L.alphas_cumprod(config), L.prediction_type(config, str(p.root), prediction),
                            quantize=bool(ignored.get("quantize", False)), sample_shape=student.sample_shape,
                            diffusers_parity=bool(ignored.get("diffusers_parity", False)),
                            timestep_spacing=config.get("timestep_spacing"))
    den.schedule.to(p.device)
    parts = Parts(p.kind, p.root, p.unet, net, p.encoder, p.device, p.dtype, vae=p.vae,
                  vae_options=p.vae_options)
    teacher = DiffusersModel(name=name, denoiser=den, sample_shape=student.sample_shape, encode=p.encoder.encode,
                             recipes=dict(recipes or {}), parts=parts)
    teacher.decode = student.decode
    return teacher


def make_teacher(name: str, default_path: str, *, path: Optional[str] = None, student: Optional[Model] = None,
                 zero_copy: bool = True, recipes: Optional[dict] = None, **options: Any) -> DiffusersModel:
    """A teacher, optionally for `student`.

    * LoRA student, `zero_copy` and `path` unset or the student's base:
    [`zero_copy_teacher`][tgsample.models.diffusers.bundle.zero_copy_teacher].
    * Otherwise the pipeline at `path` (default: the student's base pipeline when the student replaced
      its UNet or added a LoRA, else `default_path`), sharing the student's prompt encoder when
      the pipeline directory is the same, then [`link_teacher`][tgsample.models.diffusers.bundle.link_teacher].
    """
    s_parts = getattr(student, "parts", None)
    if s_parts is not None:
        same_root = path is None or _same_dir(path, s_parts.root)
        if zero_copy and s_parts.lora is not None and same_root:
            return zero_copy_teacher(student, name, recipes=recipes, **options)
        if path is None and s_parts.base_in_root:
            path = str(s_parts.root)
        if path is not None and _same_dir(path, s_parts.root):
            options.setdefault("encoder", s_parts.encoder)
    teacher = load_model(name, path or default_path, recipes=recipes, **options)
    if student is not None:
        link_teacher(student, teacher)
        if s_parts is not None and teacher.parts.root.resolve() == s_parts.root.resolve() and s_parts.vae is not None:
            teacher.parts.vae = s_parts.vae
    return teacher


def _same_dir(path: Union[str, Path], root: Path) -> bool:
    try:
        return L.resolve(path, "model").resolve() == root.resolve()
    except L.ModelNotFoundError:
        return False
