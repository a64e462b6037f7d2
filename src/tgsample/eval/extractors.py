"""Feature networks and per-image scorers: the networks an evaluation runs over every image.

An [`Extractor`][tgsample.eval.extractors.Extractor] is an `nn.Module` with a CPU `transform` (PIL image -> tensor, run
in the
DataLoader's worker processes) and a `forward(x, prompts)` returning named per-image outputs:
`"features"` (a vector per image, for FID / KID) and scores (one number per image: CLIP score,
PickScore, digit accuracy, ...). Every output is cached per image id (see
[`tgsample.eval.features`][tgsample.eval.features]).

Built-ins ([`EXTRACTORS`][tgsample.eval.extractors.EXTRACTORS], `name -> "module:factory"`; other modules add theirs
with one line,
`EXTRACTORS["mini"] = "pkg.module:factory"`):

============  =======================================================  ==================================
name          network                                                  outputs
============  =======================================================  ==================================
`digits`    the shipped digit classifier (8x8, `[-1, 1]`)            `features` (64-d), `acc`
`inception` FID's Inception-v3 (TorchScript, clean-fid's loader and      `features` (2048-d)
              "clean" resize)
`clip`      a CLIP model (transformers)                              `clip` (CLIP score), `features`
`pickscore` PickScore (a CLIP model and its processor)               `pickscore`, `features`
`imagereward` ImageReward (package `image-reward`)                  `imagereward`
`hpsv2`     HPS v2 (package `hpsv2`)                               `hpsv2`
============  =======================================================  ==================================

Anything else plugs in as `"module:attr"`: an [`Extractor`][tgsample.eval.extractors.Extractor], an `nn.Module` (its
output is
the `features`; its `transform` attribute, if any, preprocesses) or a function returning one.

Weights come from local paths only; nothing is downloaded at run time. A factory's `weights`
argument (`--weights NAME=PATH`) names the file or directory; without it the default location is
used (`$TGSAMPLE_WEIGHTS`, else `~/.cache/tgsample/weights`, or the Hugging Face cache for hub
ids). A missing file raises [`MissingWeightsError`][tgsample.eval.errors.MissingWeightsError] naming the path and
what to download.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .errors import MissingDependencyError, MissingWeightsError

__all__ = ["Extractor", "ModuleExtractor", "ImageTransform", "EXTRACTORS", "build_extractor", "weights_dir",
           "state_digest", "DigitsExtractor", "InceptionExtractor", "CLIPScorer", "ImageRewardScorer",
           "HPSv2Scorer"]

EXTRACTORS: dict[str, str] = {
    "digits": "tgsample.eval.extractors:digits",
    "inception": "tgsample.eval.extractors:inception",
    "clip": "tgsample.eval.extractors:clip",
    "pickscore": "tgsample.eval.extractors:pickscore",
    "imagereward": "tgsample.eval.extractors:imagereward",
    "hpsv2": "tgsample.eval.extractors:hpsv2",
}
"""name -> `"module:factory"`; each factory takes `weights=None` (a local path) and returns an Extractor."""


def weights_dir() -> Path:
    """Where weights are looked for by default: `$TGSAMPLE_WEIGHTS`, else `~/.cache/tgsample/weights`."""
    env = os.environ.get("TGSAMPLE_WEIGHTS")
    return Path(env).expanduser() if env else Path("~/.cache/tgsample/weights").expanduser()


def _local_file(name: str, given: Optional[Union[str, Path]], default: str, download: str) -> Path:
    """`given` (a file, or a directory holding `default`) or `weights_dir() / default`; it must exist."""
    path = Path(given).expanduser() if given is not None else weights_dir() / default
    if path.is_dir():
        path = path / default
    if not path.is_file():
        raise MissingWeightsError(
            f"{name}: weights file {str(path)!r} does not exist (nothing is downloaded at run time). Download "
            f"{download} once, put it at {str(path)!r}, or pass --weights {name}=PATH "
            f"(weights=PATH in Python; $TGSAMPLE_WEIGHTS sets the default folder)")
    return path


def _local_model(name: str, given: Optional[Union[str, Path]], default: str) -> Path:
    """A local directory or a hub id already in the Hugging Face cache (never downloaded)."""
    from ..models.diffusers.errors import ModelNotFoundError
    from ..models.diffusers.loading import resolve

    source = str(given) if given is not None else default
    try:
        return resolve(source, f"{name} model")
    except ModelNotFoundError as exc:
        raise MissingWeightsError(f"{name}: {exc}. Pass --weights {name}=<local directory> (a transformers "
                                  f"save_pretrained folder), or put {default!r} in the Hugging Face cache "
                                  f"(`hf download {default}` on a machine with network)") from None


def state_digest(module: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of a module's parameters and buffers (names, dtypes, shapes, values)."""
    h = hashlib.sha256()
    for key, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- transforms (CPU, in workers)


class ImageTransform:
    """PIL image -> float tensor `[C, H, W]`: convert to `mode`, resize to `size` (`(W, H)`, PIL
    `resample`) and scale 0..255 to `scale` (`(0, 1)`, `(-1, 1)` or `(0, 255)`). Picklable."""

    def __init__(self, mode: str = "RGB", size: Optional[Sequence[int]] = None, scale: Sequence[float] = (0.0, 1.0),
                 resample: str = "bicubic"):
        self.mode, self.size, self.scale, self.resample = mode, tuple(size) if size else None, tuple(scale), resample

    def __call__(self, img: Any) -> Tensor:
        import numpy as np
        from PIL import Image

        img = img.convert(self.mode)
        if self.size is not None and img.size != self.size:
            img = img.resize(self.size, resample=getattr(Image.Resampling, self.resample.upper()))
        a = torch.from_numpy(np.array(img, dtype=np.float32, copy=True))
        a = a[None] if a.ndim == 2 else a.permute(2, 0, 1)
        lo, hi = self.scale
        return a * ((hi - lo) / 255.0) + lo

    def __repr__(self) -> str:
        return f"ImageTransform(mode={self.mode!r}, size={self.size}, scale={self.scale}, resample={self.resample!r})"


class CleanResize:
    """clean-fid's "clean" preprocessing: RGB, PIL bicubic resize to 299 x 299 per channel in float (no
    quantisation), values 0..255, as `[3, 299, 299]`. Uses clean-fid's own resizer."""

    def __init__(self) -> None:
        self._fn: Any = None

    def __call__(self, img: Any) -> Tensor:
        import numpy as np

        if self._fn is None:
            from cleanfid.resize import build_resizer

            self._fn = build_resizer("clean")
        return torch.from_numpy(np.ascontiguousarray(self._fn(np.asarray(img.convert("RGB"))))).permute(2, 0, 1)

    def __getstate__(self) -> dict:
        return {"_fn": None}

    def __repr__(self) -> str:
        return "CleanResize(clean-fid 'clean', 299x299)"


class ProcessorTransform:
    """A Hugging Face image processor (or any callable returning a tensor) applied to one RGB image."""

    def __init__(self, processor: Any, kind: str = "hf"):
        self.processor, self.kind = processor, kind

    def __call__(self, img: Any) -> Tensor:
        img = img.convert("RGB")
        if self.kind == "hf":
            return self.processor(images=img, return_tensors="pt")["pixel_values"][0]
        return self.processor(img)

    def __repr__(self) -> str:
        return f"ProcessorTransform({type(self.processor).__name__}: {self.processor!r})".replace("\n", " ")[:2000]


# ----------------------------------------------------------------------------- the protocol


class Extractor(nn.Module):
    """Images (and prompts) -> named per-image outputs.

    Attributes:
        name: a short name (tables, cache folders).
        outputs: output name -> `True` / `False` (a score, higher / lower is better) or `None`
            (`"features"`: a vector per image, for FID / KID).
        needs_prompt: `forward` uses the prompts (scores of image-text agreement).
        transform: PIL image -> tensor, run on the CPU in the DataLoader's workers (picklable).
    """

    name: str = "extractor"
    outputs: dict[str, Optional[bool]] = {"features": None}
    needs_prompt: bool = False
    transform: Callable[[Any], Tensor] = ImageTransform()

    def forward(self, x: Tensor, prompts: Sequence[Any]) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def identity(self) -> dict:
        """What decides the outputs: class, weights digest, transform (the cache key hashes it)."""
        return {"name": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}",
                "weights": state_digest(self), "transform": repr(self.transform)}


class ModuleExtractor(Extractor):
    """Any `nn.Module` `[B, C, H, W] -> [B, d]` as the `features` of an Extractor.

    Args:
        module: the network (e.g. a small CNN standing in for Inception, or a shipped model's classifier).
        transform: its preprocessing (default: the module's `transform` attribute, else RGB in `[0, 1]`).
        name: the name in tables and cache folders (default: the module's class name).
    """

    def __init__(self, module: nn.Module, transform: Optional[Callable[[Any], Tensor]] = None,
                 name: Optional[str] = None):
        super().__init__()
        self.net = module.eval().requires_grad_(False)
        self.transform = transform or getattr(module, "transform", None) or ImageTransform()
        self.name = name or type(module).__name__

    def forward(self, x: Tensor, prompts: Sequence[Any]) -> dict[str, Tensor]:
        out = self.net(x)
        return {"features": out.flatten(1) if out.ndim > 2 else out}


# ----------------------------------------------------------------------------- built-ins


def _class_labels(prompts: Sequence[Any], device: Any) -> Tensor:
    """Digit class labels of `prompts` (ints, or strings of ints); `-1` where a prompt is not a digit."""
    out = []
    for p in prompts:
        try:
            v = int(p)
        except (TypeError, ValueError):
            v = -1
        out.append(v if 0 <= v <= 9 else -1)
    return torch.tensor(out, device=device)


class DigitsExtractor(Extractor):
    """The shipped digit classifier: 64-d penultimate `features` and `acc` (1 when the image is classified as
    the digit it was generated for, 0 when not, NaN for an image without a digit prompt)."""

    name = "digits"
    outputs = {"features": None, "acc": True}
    needs_prompt = True

    def __init__(self, weights: Optional[Union[str, Path]] = None):
        super().__init__()
        from ..models.digits.classifier import load_classifier
        from ..models.digits.data import SHAPE

        self.clf = load_classifier(weights)
        self.transform = ImageTransform(mode="L", size=SHAPE[1:][::-1], scale=(-1.0, 1.0))

    def forward(self, x: Tensor, prompts: Sequence[Any]) -> dict[str, Tensor]:
        f = self.clf.features(x)
        labels = _class_labels(prompts, x.device)
        acc = (self.clf.head(f).argmax(1) == labels).float()
        return {"features": f, "acc": torch.where(labels >= 0, acc, torch.full_like(acc, float("nan")))}


def digits(weights: Optional[Union[str, Path]] = None) -> DigitsExtractor:
    """The `digits` feature extractor: the shipped digit classifier's features (optional other weights)."""
    return DigitsExtractor(weights)


INCEPTION_FILE = "inception-2015-12-05.pt"
"""The file name of the Inception weights that clean-fid uses (TorchScript, from its cache)."""


class InceptionExtractor(Extractor):
    """FID's Inception-v3 (the TorchScript port of the TF 2015-12-05 graph), loaded by clean-fid's own
    `InceptionV3W` from a local file, with clean-fid's "clean" resize: 2048-d pool features."""

    name = "inception"
    outputs = {"features": None}

    def __init__(self, weights: Optional[Union[str, Path]] = None):
        super().__init__()
        try:
            from cleanfid.downloads_helper import inception_url
            from cleanfid.inception_torchscript import InceptionV3W
        except ImportError as exc:  # pragma: no cover - clean-fid comes with k-diffusion
            raise MissingDependencyError("inception needs clean-fid: pip install 'tgsample[eval]'") from exc
        path = _local_file("inception", weights, INCEPTION_FILE, f"the FID Inception weights ({inception_url})")
        if path.name != INCEPTION_FILE:
            raise MissingWeightsError(f"inception: clean-fid loads the file by its name; rename {str(path)!r} to "
                                      f"{INCEPTION_FILE!r} (in the same folder)")
        self.net = InceptionV3W(str(path.parent), download=False, resize_inside=False).eval().requires_grad_(False)
        self.transform = CleanResize()

    def forward(self, x: Tensor, prompts: Sequence[Any]) -> dict[str, Tensor]:
        return {"features": self.net(x)}


def inception(weights: Optional[Union[str, Path]] = None) -> InceptionExtractor:
    """The `inception` feature extractor: clean-fid's Inception-v3 pool features (FID / KID)."""
    return InceptionExtractor(weights)


def _pooled(out: Any) -> Tensor:
    """`get_image_features` / `get_text_features` output as a tensor (transformers 4 and 5)."""
    return out if isinstance(out, Tensor) else out.pooler_output


class CLIPScorer(Extractor):
    """CLIP score or PickScore of each image against its prompt, with a transformers `CLIPModel`.

    `kind="clip"`: `100 * max(cos(image, text), 0)` (the CLIP score of text-to-image papers and of
    torchmetrics). `kind="pickscore"`: `exp(logit_scale) * cos(image, text)` (PickScore's). The
    normalised image embeddings are the `features` (an FD in CLIP space).

    Args:
        model: a local `save_pretrained` directory, or a hub id already in the Hugging Face cache.
        processor: where the tokenizer and image processor are (default: `model`).
        kind: `"clip"` or `"pickscore"`.
    """

    needs_prompt = True

    def __init__(self, model: Union[str, Path], processor: Optional[Union[str, Path]] = None, kind: str = "clip",
                 name: Optional[str] = None):
        super().__init__()
        if kind not in ("clip", "pickscore"):
            raise ConfigError(f"kind={kind!r} is not one of ['clip', 'pickscore']")
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        self.kind, self.name = kind, name or kind
        self.outputs = {kind: True, "features": None}
        self.model = CLIPModel.from_pretrained(str(model), local_files_only=True).eval().requires_grad_(False)
        proc = str(processor if processor is not None else model)
        self.tokenizer = AutoTokenizer.from_pretrained(proc, local_files_only=True)
        self.transform = ProcessorTransform(CLIPImageProcessor.from_pretrained(proc, local_files_only=True))
        self.max_length = int(self.model.config.text_config.max_position_embeddings)

    def forward(self, x: Tensor, prompts: Sequence[Any]) -> dict[str, Tensor]:
        tokens = self.tokenizer([str(p) for p in prompts], padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt").to(x.device)
        img = nn.functional.normalize(_pooled(self.model.get_image_features(pixel_values=x)).float(), dim=-1)
        txt = nn.functional.normalize(_pooled(self.model.get_text_features(**tokens)).float(), dim=-1)
        cos = (img * txt).sum(-1)
        score = 100 * cos.clamp(min=0) if self.kind == "clip" else self.model.logit_scale.exp().float() * cos
        return {self.kind: score, "features": img}


def clip(weights: Optional[Union[str, Path]] = None) -> CLIPScorer:
    """CLIP score with `weights` (default: `openai/clip-vit-large-patch14` from the Hugging Face cache)."""
    return CLIPScorer(_local_model("clip", weights, "openai/clip-vit-large-patch14"), kind="clip")


def pickscore(weights: Optional[Union[str, Path]] = None, processor: Optional[Union[str, Path]] = None) -> CLIPScorer:
    """PickScore (default: `yuvalkirstain/PickScore_v1` with the `laion/CLIP-ViT-H-14-laion2B-s32B-b79K`
    processor, both from the Hugging Face cache); `weights` may be a directory holding both."""
    model = _local_model("pickscore", weights, "yuvalkirstain/PickScore_v1")
    if processor is None and not (Path(model) / "tokenizer_config.json").is_file():
        processor = _local_model("pickscore", None, "laion/CLIP-ViT-H-14-laion2B-s32B-b79K")
    return CLIPScorer(model, processor, kind="pickscore")


def _require(module: str, package: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"{what} needs the optional package {package!r}, which is not installed: "
                                     f"pip install {package} (then give its local weights with --weights)") from exc


class ImageRewardScorer(Extractor):
    """ImageReward (Xu et al. 2023) with the `image-reward` package, batched: BLIP's image encoder, its text
    encoder attending to the image, the reward MLP, and the package's normalisation (`(r - mean) / std`).

    Args:
        weights: a directory with `ImageReward.pt` and `med_config.json` (or the `.pt` file beside them).
    """

    name = "imagereward"
    outputs = {"imagereward": True}
    needs_prompt = True

    def __init__(self, weights: Optional[Union[str, Path]] = None):
        super().__init__()
        rm = _require("ImageReward", "image-reward", "imagereward")
        default = weights_dir() / "ImageReward"
        ckpt = _local_file("imagereward", weights if weights is not None else default, "ImageReward.pt",
                           "ImageReward.pt and med_config.json from the THUDM/ImageReward hub repository")
        _local_file("imagereward", ckpt.parent, "med_config.json", "med_config.json from THUDM/ImageReward")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the package would otherwise try the hub for med_config
        try:
            model = rm.load(str(ckpt), device="cpu", download_root=str(ckpt.parent))
        except Exception as exc:  # e.g. BLIP's bert-base-uncased tokenizer not in the local Hugging Face cache
            raise MissingWeightsError(f"imagereward: loading {str(ckpt)!r} failed ({type(exc).__name__}: {exc}); it needs "
                                      "ImageReward.pt and med_config.json in that folder and `bert-base-uncased` in the "
                                      "Hugging Face cache (`hf download bert-base-uncased`)") from exc
        self.model = model.eval().requires_grad_(False)
        self.transform = ProcessorTransform(self.model.preprocess, kind="callable")

    def forward(self, x: Tensor, prompts: Sequence[Any]) -> dict[str, Tensor]:
        m = self.model
        text = m.blip.tokenizer([str(p) for p in prompts], padding="max_length", truncation=True, max_length=35,
                                return_tensors="pt").to(x.device)
        image_embeds = m.blip.visual_encoder(x)
        atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=x.device)
        out = m.blip.text_encoder(text.input_ids, attention_mask=text.attention_mask, encoder_hidden_states=image_embeds,
                                  encoder_attention_mask=atts, return_dict=True)
        reward = m.mlp(out.last_hidden_state[:, 0, :].float())[:, 0]
        return {"imagereward": (reward - m.mean) / m.std}


def imagereward(weights: Optional[Union[str, Path]] = None) -> ImageRewardScorer:
    """The `imagereward` scorer (needs the `image-reward` package and its weights)."""
    return ImageRewardScorer(weights)


class HPSv2Scorer(Extractor):
    """HPS v2 / v2.1 (Wu et al. 2023) with the `hpsv2` package: its open_clip ViT-H-14 built without
    pretrained weights, the HPS checkpoint loaded on top, score = `image_features . text_features`.

    Args:
        weights: the checkpoint (`HPS_v2.1_compressed.pt` or `HPS_v2_compressed.pt`) or its folder.
    """

    name = "hpsv2"
    outputs = {"hpsv2": True}
    needs_prompt = True

    def __init__(self, weights: Optional[Union[str, Path]] = None):
        super().__init__()
        _require("hpsv2", "hpsv2", "hpsv2")
        from hpsv2.src.open_clip import create_model_and_transforms, get_tokenizer

        ckpt = _local_file("hpsv2", weights, "HPS_v2.1_compressed.pt",
                           "HPS_v2.1_compressed.pt from the xswu/HPSv2 hub repository")
        model, _, preprocess = create_model_and_transforms(
            "ViT-H-14", None, precision="fp32", device="cpu", jit=False, force_quick_gelu=False,
            force_custom_text=False, force_patch_dropout=False, force_image_size=None, pretrained_image=False,
            image_mean=None, image_std=None, light_augmentation=True, aug_cfg={}, output_dict=True,
            with_score_predictor=False, with_region_predictor=False)
        model.load_state_dict(torch.load(str(ckpt), map_location="cpu")["state_dict"])
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = get_tokenizer("ViT-H-14")
        self.transform = ProcessorTransform(preprocess, kind="callable")

    def forward(self, x: Tensor, prompts: Sequence[Any]) -> dict[str, Tensor]:
        out = self.model(x, self.tokenizer([str(p) for p in prompts]).to(x.device))
        return {"hpsv2": (out["image_features"] * out["text_features"]).sum(-1)}


def hpsv2(weights: Optional[Union[str, Path]] = None) -> HPSv2Scorer:
    """The `hpsv2` scorer (needs the `hpsv2` package and its weights)."""
    return HPSv2Scorer(weights)


# ----------------------------------------------------------------------------- building from a spec


def _takes_weights(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "weights" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def build_extractor(spec: Union[str, nn.Module, Callable], weights: Optional[Union[str, Path]] = None) -> Extractor:
    """An [`Extractor`][tgsample.eval.extractors.Extractor] from a name in
    [`EXTRACTORS`][tgsample.eval.extractors.EXTRACTORS], a `"module:attr"` path, an `nn.Module` or a
    factory. `weights` (a local path) is passed to factories that take it."""
    obj: Any = spec
    label: Optional[str] = None
    if isinstance(spec, str):
        target = EXTRACTORS.get(spec, spec)
        if ":" not in target:
            import difflib

            close = difflib.get_close_matches(spec, EXTRACTORS, n=2)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ConfigError(f"unknown feature network {spec!r}{hint} Built-in: {', '.join(EXTRACTORS)}; or give "
                              "'package.module:attr' (an Extractor, an nn.Module, or a function returning one)")
        module, attr = target.split(":", 1)
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"feature network {spec!r}: cannot load {target!r} ({type(exc).__name__}: {exc})") from exc
        label = spec if spec in EXTRACTORS else attr
    if not isinstance(obj, nn.Module) and callable(obj):
        obj = obj(weights=weights) if weights is not None and _takes_weights(obj) else obj()
    elif weights is not None:
        raise ConfigError(f"feature network {spec!r} is an instance: it takes no weights path")
    if isinstance(obj, Extractor):
        return obj
    if isinstance(obj, nn.Module):
        return ModuleExtractor(obj, name=label)
    raise ConfigError(f"feature network {spec!r} gave a {type(obj).__name__}, not an Extractor or an nn.Module")


def describe(extractor: Extractor) -> str:
    """One line: name and weights digest."""
    ident = extractor.identity()
    return f"{ident['name']} (weights {ident['weights']})"


def identity_key(extractor: Extractor, precision: str = "32-true") -> str:
    """`<name>-<hash>`: the cache folder of an extractor's outputs at a precision."""
    ident = {**extractor.identity(), "precision": str(precision), "outputs": sorted(extractor.outputs)}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in extractor.name)
    return f"{safe[:40]}-{digest}"
