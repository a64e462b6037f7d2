"""A diffusers FLUX / SD3 pipeline as a [`Model`][tgsample.models.base.Model], and a flow teacher beside a student.

[`load_flow_model`][tgsample.models.diffusers.flow_bundle.load_flow_model] reads a pipeline directory (or a cached hub
id) whose transformer is a
`FluxTransformer2DModel` or an `SD3Transformer2DModel` and returns a
[`FlowModel`][tgsample.models.diffusers.flow_bundle.FlowModel]: its
denoiser is a [`FlowTransformerDenoiser`][tgsample.models.diffusers.transformer.FlowTransformerDenoiser] carrying the
pipeline's own schedule ([`tgsample.flow.FlowSchedule`][tgsample.flow.FlowSchedule], read by the `flow` schedule), its
`encode` the pipeline's text encoders ([`FlowPromptEncoder`][tgsample.models.diffusers.flow_text.FlowPromptEncoder]),
its `decode` the pipeline's VAE.

[`make_flow_teacher`][tgsample.models.diffusers.flow_bundle.make_flow_teacher] loads a teacher for a student: refused
before any weights are read when the
two VAEs' latent spaces differ ([`FamilyMismatchError`][tgsample.models.diffusers.errors.FamilyMismatchError], the one
check
of [`check_latent_space`][tgsample.models.diffusers.bundle.check_latent_space]: FLUX and SD3 latents both have 16
channels
but are not the same space); sharing the student's text encoders when they are the same files
or the same weights (one copy, each batch of prompts encoded once), else reading its own `teacher_*`
keys -- also when it has another number of text encoders than the student (an SD3 pipeline without T5).

Memory options (docs: Flow models, "Memory"): `offload="model"` / `"sequential"`
([`Placement`][tgsample.models.diffusers.transformer.Placement]), `dtype="bfloat16"`, `weights="fp8"`
(diffusers' layerwise casting: float8 storage, `dtype` compute), and a teacher that shares the
student's text encoders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ...errors import ConfigError
from ...flow import FlowSchedule
from ..base import Model
from . import loading as L
from .bundle import (DiffusersModel, Parts, _decoder, _vae_config, check_latent_space, link_teacher, resolve_device,
                     resolve_dtype, vae_latent_space)
from .flow_text import FlowPromptEncoder
from .transformer import OFFLOAD_MODES, FluxNet, FlowTransformerDenoiser, SD3Net

FAMILIES = {
    "flux": ("linspace", FluxNet, 128),
    "sd3": ("scheduler", SD3Net, None),  # None: the transformer's sample_size
}
"""family -> (how its pipeline spaces the base times, the net, the pipeline's default latent size); the
transformer class that marks each family is
[`tgsample.models.diffusers.loading.TRANSFORMERS`][tgsample.models.diffusers.loading.TRANSFORMERS]"""
ENCODERS = {
    "flux": (("text_encoder", "tokenizer", "CLIPTextModel"), ("text_encoder_2", "tokenizer_2", "T5EncoderModel")),
    "sd3": (("text_encoder", "tokenizer", "CLIPTextModelWithProjection"),
            ("text_encoder_2", "tokenizer_2", "CLIPTextModelWithProjection"),
            ("text_encoder_3", "tokenizer_3", "T5EncoderModel")),
}
"""the text encoders of each family, in `FlowPromptEncoder` order: (folder, tokenizer folder, model class)"""
FLOW_PATTERNS = ("model_index.json", "transformer/*", "vae/*", "scheduler/*", "text_encoder/*", "text_encoder_2/*",
                 "text_encoder_3/*", "tokenizer/*", "tokenizer_2/*", "tokenizer_3/*")
"""The files of a flow pipeline's hub repository that loading needs."""
WEIGHTS = ("fp8",)
"""The alternative weight formats of a flow transformer (`weights=`)."""


def family(root: Path, expected: Optional[str], who: str) -> str:
    """`"flux"` or `"sd3"`: the family of the pipeline at `root`
    ([`check_family`][tgsample.models.diffusers.loading.check_family],
    [`FamilyMismatchError`][tgsample.models.diffusers.errors.FamilyMismatchError] if not `expected`
    or not a flow pipeline at all)."""
    if not (root / "transformer" / "config.json").is_file() and not (root / "unet").is_dir():
        raise L.ModelNotFoundError(f"transformer config {str(root / 'transformer' / 'config.json')!r} is missing; a "
                                   "FLUX / SD3 pipeline directory needs transformer/ (as save_pretrained writes it)")
    found = L.check_family(root, expected, who)
    if found not in FAMILIES:
        raise L.FamilyMismatchError(f"{who}: {str(root)!r} is a pipeline of the {L.FAMILY_NAMES[found]}, not a "
                                    f"flow-matching one (FLUX / SD3); load it with load_model or teacher "
                                    f"{L.FAMILY_TEACHERS[found]!r}")
    return found


@dataclass
class FlowParts(Parts):
    """[`Parts`][tgsample.models.diffusers.bundle.Parts] of a flow pipeline (`unet` holds the transformer); `offload` is
    the memory mode."""

    offload: Optional[str] = None

    @property
    def transformer(self) -> Any:
        return self.unet


@dataclass
class FlowModel(DiffusersModel):
    """A [`Model`][tgsample.models.base.Model] backed by a FLUX / SD3 pipeline (`parts` is a
    [`FlowParts`][tgsample.models.diffusers.flow_bundle.FlowParts])."""

    def to(self, device: torch.device | str, dtype: Optional[torch.dtype] = None) -> "FlowModel":
        """Move the transformer (cast to `dtype`), the text encoders and the VAE to `device`."""
        p = self.parts
        if p.offload is not None:
            raise ConfigError(f"model {self.name!r} was loaded with offload={p.offload!r}, which places its weights "
                              "itself; load it again with the device= you want")
        device = torch.device(device)
        p.unet.to(device=device, dtype=dtype)
        p.net.device, p.net.placement.device = device, device
        p.net.dtype = dtype or p.net.dtype
        for m in p.encoder.text_encoders:
            m.to(device)
        p.encoder.device = device
        if p.vae is not None:
            p.vae.to(device)
        p.device, p.dtype = device, dtype or p.dtype
        return self


def same_files(a: Path, b: Path) -> bool:
    """True when folders `a` and `b` hold the same files by content address, without reading them: the same
    file, or Hugging Face cache blobs of the same hash (blob names are content hashes)."""
    if not (a.is_dir() and b.is_dir()):
        return False
    names_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    names_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    if names_a != names_b or not names_a:
        return False
    for rel in names_a:
        ra, rb = (a / rel).resolve(), (b / rel).resolve()
        if ra != rb and not (ra.parent.name == rb.parent.name == "blobs" and ra.name == rb.name):
            return False
    return True


def _load_encoder(kind: str, root: Path, device: torch.device, dtype: torch.dtype, max_sequence_length: int,
                  transformer_config: Any, t5: bool) -> FlowPromptEncoder:
    import transformers

    enc_dtype = dtype if device.type != "cpu" else torch.float32
    encoders, tokenizers = [], []
    for folder, tok_folder, cls in ENCODERS[kind]:
        is_t5 = cls == "T5EncoderModel"
        if is_t5 and kind == "sd3" and (not t5 or not (root / folder).is_dir()):
            encoders.append(None)  # SD3 without T5: zeros in its place, as diffusers does
            tokenizers.append(None)
            continue
        model = L.load_part(getattr(transformers, cls), root, folder, f"text encoder {folder}", dtype=enc_dtype)
        encoders.append(model.to(device))
        tok_cls = transformers.T5TokenizerFast if is_t5 else transformers.CLIPTokenizer
        tokenizers.append(L.load_part(tok_cls, root, tok_folder, f"tokenizer {tok_folder}"))
    return FlowPromptEncoder(kind, encoders, tokenizers, device=device, max_sequence_length=max_sequence_length,
                             out_dtype=dtype, transformer_config=transformer_config)


def _sample_shape(kind: str, transformer: Any, vae_config: dict, height: Optional[int],
                  width: Optional[int]) -> tuple[tuple[int, int, int], int, int]:
    """`((C, h, w), VAE factor, image tokens)` at `height` x `width` pixels (default: the pipeline's size)."""
    factor = 2 ** (len(vae_config.get("block_out_channels", (0, 0, 0, 0))) - 1)
    patch = 2 if kind == "flux" else int(transformer.config.patch_size)  # FLUX packs 2x2, SD3 patchifies
    channels = int(vae_config.get("latent_channels", 16))
    expected = channels * 4 if kind == "flux" else channels
    if int(transformer.config.in_channels) != expected:
        raise ConfigError(f"the transformer takes {transformer.config.in_channels} input channels but the VAE makes "
                          f"{channels}-channel latents ({'packed 2x2: ' if kind == 'flux' else ''}{expected} expected)")
    size = FAMILIES[kind][2] or int(transformer.config.sample_size)
    for name, px in (("height", height), ("width", width)):
        if px is not None and (int(px) <= 0 or int(px) % (factor * patch)):
            raise ConfigError(f"{name}={px!r} must be a positive multiple of {factor * patch} (VAE factor {factor} "
                              f"x {'FLUX packing' if kind == 'flux' else 'patch size'} {patch})")
    h = int(height) // factor if height is not None else size
    w = int(width) // factor if width is not None else size
    return (channels, h, w), factor, (h // patch) * (w // patch)


def load_flow_model(name: str, path: Union[str, Path], *, kind: Optional[str] = None,
                    height: Optional[int] = None, width: Optional[int] = None,
                    dtype: Union[None, str, torch.dtype] = None, device: Union[None, str, torch.device] = None,
                    offload: Optional[str] = None, weights: Optional[str] = None, compile: bool = False,
                    allow_download: bool = False, variant: Optional[str] = None, max_sequence_length: int = 256,
                    guidance_scale: Optional[float] = None, t5: bool = True,
                    encoder: Optional[FlowPromptEncoder] = None, vae_tiling: bool = False,
                    decode_batch_size: Optional[int] = None, recipes: Optional[dict] = None,
                    diffusers_parity: bool = False) -> FlowModel:
    """Load a FLUX or SD3 / SD3.5 diffusers pipeline (directory or cached hub id) as a
    [`FlowModel`][tgsample.models.diffusers.flow_bundle.FlowModel].

    Args:
        name: the registry name reported by the model.
        path: pipeline directory or hub id.
        kind: the family the caller expects (`"flux"` / `"sd3"`); another one is a
            [`FamilyMismatchError`][tgsample.models.diffusers.errors.FamilyMismatchError].
        height: image height in pixels (default: the pipeline's, 1024 for FLUX and SD3.5).
        width: image width in pixels.
        dtype: the weights' dtype (default: float32 on CPU, bfloat16 on CUDA). Samples stay float32.
        device: default CUDA when available, else the CPU.
        offload: `None`, `"model"` or `"sequential"` (the transformer on `device` only during its calls).
        weights: `"fp8"`: float8 (e4m3) storage of the transformer's weights, computed in `dtype`
            (diffusers' `enable_layerwise_casting`).
        compile: `torch.compile` the transformer.
        allow_download: let hub ids be downloaded (default: local cache only).
        variant: the weights variant (`"fp16"`) to load.
        max_sequence_length: T5 tokens per prompt (256 for SD3 and FLUX-schnell, 512 for FLUX-dev).
        guidance_scale: FLUX-dev's embedded guidance scale when no `guidance_scale` is in the conditioning.
        t5: SD3 only: `False` drops T5 (its embeddings become zeros, as diffusers does without it).
        encoder: reuse this prompt encoder instead of loading the pipeline's text encoders.
        vae_tiling: tiled VAE decoding.
        decode_batch_size: decode in chunks of this many latents.
        recipes: the model's published sampling recipes (`Model.recipes`, `{variant: Recipe}`).
        diffusers_parity: sample as the model's diffusers pipeline does ([`tgsample.conventions`][tgsample.conventions]:
            for a flow
            model that is tgsample's own convention, so the switch changes nothing; accepted for uniformity).
    """
    device = resolve_device(device)
    dtype = resolve_dtype(dtype if dtype is not None or device.type == "cpu" else "bfloat16", device)
    if offload is not None and offload not in OFFLOAD_MODES:
        raise ConfigError(f"offload={offload!r}; allowed: None, {', '.join(repr(m) for m in OFFLOAD_MODES)}")
    if weights is not None and weights not in WEIGHTS:
        raise ConfigError(f"weights={weights!r}; allowed: None (the dtype's own), {', '.join(map(repr, WEIGHTS))}")
    root = L.resolve(path, "model", allow_download=allow_download, patterns=FLOW_PATTERNS)
    if not root.is_dir():
        raise L.ModelNotFoundError(f"model {str(path)!r} is a file; give a diffusers pipeline directory")
    found = family(root, kind, f"model {name!r}")
    spacing, net_cls, _ = FAMILIES[found]
    schedule = FlowSchedule.from_config(L.scheduler_config(root), spacing)
    import diffusers

    transformer = L.load_part(getattr(diffusers, L.TRANSFORMERS[found]), root, "transformer", "transformer",
                              torch_dtype=dtype, variant=variant)
    transformer.eval().requires_grad_(False)
    if weights == "fp8":
        transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    vae_config = _vae_config(root)
    shape, _, tokens = _sample_shape(found, transformer, vae_config, height, width)
    if encoder is None:
        encoder = _load_encoder(found, root, device, dtype, max_sequence_length, transformer.config, t5)
    elif getattr(encoder, "kind", None) != found:
        raise ConfigError(f"encoder= is a {getattr(encoder, 'kind', type(encoder).__name__)!r} prompt encoder; "
                          f"a {found} model needs a {found} one")
    net_options = {"default_guidance_scale": guidance_scale} if net_cls is FluxNet else {}
    net = net_cls(transformer, device=device, dtype=dtype, offload=offload, compile=compile, **net_options)
    denoiser = FlowTransformerDenoiser(net, schedule, tokens, sample_shape=shape, diffusers_parity=diffusers_parity)
    parts = FlowParts(found, root, transformer, net, encoder, device, dtype, offload=offload,
                      vae_options={"tiling": vae_tiling, "batch": decode_batch_size, "config": vae_config})
    model = FlowModel(name=name, denoiser=denoiser, sample_shape=shape, encode=encoder.encode,
                      recipes=dict(recipes or {}), parts=parts)
    model.decode = _decoder(parts)
    return model


def make_flow_teacher(name: str, kind: str, default_path: str, *, path: Optional[str] = None,
                      student: Optional[Model] = None, share_text_encoders: Optional[bool] = None,
                      recipes: Optional[dict] = None, **options: Any) -> FlowModel:
    """A flow teacher, optionally for `student`.

    With `student=`: the teacher's latent space is checked against the student's first, before any of
    its weights are read ([`check_latent_space`][tgsample.models.diffusers.bundle.check_latent_space]); its image size
    and T5
    length default to the student's; it shares the student's prompt encoder without loading its own when
    `share_text_encoders=True`, or (`None`, the default) when its text-encoder files are the student's (the
    same directory, or the same Hugging Face cache blobs) -- in both cases only with the student's encoder
    settings (T5 length, SD3's `t5`). Otherwise it loads its own and
    [`link_teacher`][tgsample.models.diffusers.bundle.link_teacher] keeps one copy if the weights and settings are equal
    (`False` skips the file comparison), else gives the teacher `teacher_*` keys.
    """
    path = path or default_path
    if student is None:
        return load_flow_model(name, path, kind=kind, recipes=recipes, **options)
    s_parts = getattr(student, "parts", None)
    root = L.resolve(path, "teacher", allow_download=bool(options.get("allow_download")), patterns=FLOW_PATTERNS)
    check_latent_space(student, name, vae_latent_space(_vae_config(root)), f" at {str(root)!r}")
    if s_parts is not None and "config" in s_parts.vae_options and "height" not in options and "width" not in options:
        factor = 2 ** (len(s_parts.vae_options["config"].get("block_out_channels", (0, 0, 0, 0))) - 1)
        options["height"], options["width"] = (int(v) * factor for v in tuple(student.sample_shape)[1:])
    s_enc = getattr(s_parts, "encoder", None)
    if isinstance(s_enc, FlowPromptEncoder):
        options.setdefault("max_sequence_length", s_enc.max_sequence_length)
    if isinstance(s_enc, FlowPromptEncoder) and s_enc.kind == kind and share_text_encoders is not False:
        own = {"max_sequence_length": options["max_sequence_length"]}
        theirs = {"max_sequence_length": s_enc.max_sequence_length}
        if kind == "sd3":
            own["t5"], theirs["t5"] = bool(options.get("t5", True)), s_enc.slots[-1] is not None
        if own != theirs:
            if share_text_encoders:
                raise ConfigError(f"share_text_encoders=True, but teacher {name!r} asks for other encoder settings "
                                  f"({own}) than student {student.name!r} has ({theirs}); drop one of them")
        elif share_text_encoders or root.resolve() == s_parts.root.resolve() or all(
                same_files(s_parts.root / f, root / f) for enc in ENCODERS[kind] for f in enc[:2]
                if (s_parts.root / f).is_dir() or (root / f).is_dir()):
            options.setdefault("encoder", s_enc)
    teacher = load_flow_model(name, path, kind=kind, recipes=recipes, **options)
    link_teacher(student, teacher)  # sizes; one encoder if the weights are equal, else teacher_* keys
    if s_parts is not None and teacher.parts.root.resolve() == s_parts.root.resolve() and s_parts.vae is not None:
        teacher.parts.vae = s_parts.vae
    return teacher

