"""Finding and loading the parts of a diffusers pipeline, with typed errors.

A model is named by a **local directory** (a diffusers pipeline folder as `save_pretrained`
writes it, or a single weights file where a UNet or LoRA is expected) or a **Hugging Face hub
id** (`owner/name`). Hub ids are resolved in the local cache only (`local_files_only`):
nothing is downloaded at run time unless the user opts in with `allow_download=True`. A hub
id that is not cached raises [`OfflineModelError`][tgsample.models.diffusers.errors.OfflineModelError], naming the id
and the fixes.

The `abar` table comes from diffusers' own scheduler class named in the pipeline's
`scheduler/scheduler_config.json` (its `alphas_cumprod`); the beta schedules are not
reimplemented here.
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch

from ...denoisers import check_prediction
from ...errors import ConfigError
from .errors import (AmbiguousWeightsError, CorruptWeightsError, FamilyMismatchError, LoRAMismatchError,
                     ModelNotFoundError, OfflineModelError)

PathLike = Union[str, Path]
"""A path given as a string or a `Path`."""
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
PIPELINE_PATTERNS = ("model_index.json", "unet/*", "text_encoder/*", "text_encoder_2/*", "tokenizer/*",
                     "tokenizer_2/*", "vae/*", "scheduler/*")
"""The files of an SD / SDXL pipeline's hub repository that loading needs."""
WEIGHT_SUFFIXES = (".safetensors", ".bin")
"""in order of preference"""
WEIGHT_PATTERNS = tuple(f"*{s}" for s in WEIGHT_SUFFIXES)
"""File patterns of the weight files, in order of preference."""
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
"""the file diffusers' save_lora_weights writes"""
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
"""The suffixes of a single-file checkpoint (`from_single_file`)."""
FAMILY_NAMES = {"sd15": "SD 1.x / 2.x family (one text encoder)", "sdxl": "SDXL family (two text encoders)",
                "flux": "FLUX family (FluxTransformer2DModel)", "sd3": "SD3 family (SD3Transformer2DModel)"}
"""The model families, as error messages name them."""
TRANSFORMERS = {"flux": "FluxTransformer2DModel", "sd3": "SD3Transformer2DModel"}
"""flow-matching families -> the transformer class in `transformer/config.json` that marks them"""
FAMILY_TEACHERS = {"sd15": "sd15", "sdxl": "sdxl", "flux": "flux-dev", "sd3": "sd35-large"}
"""a registered teacher each"""


def is_hub_id(source: PathLike) -> bool:
    """`owner/name` with no local file or directory of that name."""
    return isinstance(source, str) and bool(_HUB_ID.match(source)) and not Path(source).exists()


def _offline(source: str, what: str, err: Exception) -> OfflineModelError:
    return OfflineModelError(
        f"{what} {source!r} is not a local path, so it was read as a Hugging Face hub id, but it is not in the "
        f"local cache and downloading is off (no network at run time). Fix: pass path=<a local diffusers "
        f"directory>, or download it once (`hf download {source}`, or allow_download=True). ({type(err).__name__}: {err})"
    )


def resolve(source: PathLike, what: str = "model", *, allow_download: bool = False,
            filename: Optional[str] = None, patterns: Optional[tuple[str, ...]] = None) -> Path:
    """A local path for `source`: an existing path as is, or a hub id from the local cache.

    With `filename` a single file of the hub repo is fetched; otherwise a snapshot (restricted
    to `patterns`). Raises [`ModelNotFoundError`][tgsample.models.diffusers.errors.ModelNotFoundError] /
    [`OfflineModelError`][tgsample.models.diffusers.errors.OfflineModelError].
    """
    if source is None or source == "":
        raise ModelNotFoundError(f"no {what} given: pass path=<local directory or hub id>")
    path = Path(source).expanduser()
    if path.exists():
        if filename is not None and path.is_dir():
            path = path / filename
            if not path.exists():
                raise ModelNotFoundError(f"{what}: weights file {filename!r} not found in directory {str(source)!r}")
        return path
    if not is_hub_id(str(source)):
        raise ModelNotFoundError(f"{what} {str(source)!r} does not exist: no such file or directory "
                                 f"(and it is not a hub id of the form owner/name)")
    import huggingface_hub as hub

    try:
        if filename is not None:
            return Path(hub.hf_hub_download(str(source), filename, local_files_only=not allow_download))
        return Path(hub.snapshot_download(str(source), local_files_only=not allow_download,
                                          allow_patterns=list(patterns) if patterns else None))
    except Exception as err:  # LocalEntryNotFoundError, OfflineModeIsEnabled, HTTP errors
        if not allow_download:
            raise _offline(str(source), what, err) from err
        raise ModelNotFoundError(f"{what} {str(source)!r}: download failed ({type(err).__name__}: {err})") from err


def local_status(path: PathLike, *, unet: Optional[PathLike] = None, unet_weight_name: Optional[str] = None,
                 lora: Optional[PathLike] = None, lora_weight_name: Optional[str] = None, **_: Any) -> str:
    """`"local"` when the pipeline at `path` (and its `unet` / `lora`) can be loaded without the
    network (a local path, or a hub id in the Hugging Face cache), else `"missing: <what>"`
    (what `tgsample list --check` shows; like timm's `list_models(pretrained=True)`)."""
    needs = [(path, "model", None, PIPELINE_PATTERNS), (unet, "UNet", unet_weight_name, None),
             (lora, "LoRA", lora_weight_name, None)]
    for source, what, filename, patterns in needs:
        if source is None:
            continue
        try:
            resolve(source, what, filename=filename, patterns=patterns)
        except (ModelNotFoundError, OfflineModelError):
            return f"missing: {source}" + (f" ({filename})" if filename else "")
    return "local"


def family(root: Path) -> str:
    """The family of the pipeline at `root`: `"flux"` / `"sd3"` from the class of its transformer
    (`transformer/config.json`, [`TRANSFORMERS`][tgsample.models.diffusers.loading.TRANSFORMERS]); for a UNet pipeline
    `"sdxl"` when it has a second
    text encoder, else `"sd15"` (SD 1.x / 2.x layout)."""
    config = root / "transformer" / "config.json"
    if config.is_file():
        name = json.loads(config.read_text()).get("_class_name")
        for kind, cls in TRANSFORMERS.items():
            if name == cls:
                return kind
        raise ConfigError(f"{str(root)!r} has a transformer of class {name!r}; tgsample's flow adapters read "
                          f"{', '.join(TRANSFORMERS.values())}")
    return "sdxl" if (root / "text_encoder_2").is_dir() else "sd15"


def check_family(root: Path, expected: Optional[str], who: str) -> str:
    """The family of the pipeline at `root` ([`family`][tgsample.models.diffusers.loading.family]);
    [`FamilyMismatchError`][tgsample.models.diffusers.errors.FamilyMismatchError] if `expected` is
    given and differs."""
    found = family(root)
    if expected is not None and found != expected:
        raise FamilyMismatchError(
            f"{who} is registered for the {FAMILY_NAMES.get(expected, expected)}, but {str(root)!r} is a pipeline of "
            f"the {FAMILY_NAMES.get(found, found)}: its latent space and conditioning differ. Give a pipeline of "
            f"the {expected} family, or use a model registered for {found} (e.g. teacher {FAMILY_TEACHERS[found]!r})")
    return found


def single_file_message(file: PathLike) -> str:
    """How to turn a single-file checkpoint into the diffusers directory tgsample loads."""
    return (f"{str(file)!r} is a single-file checkpoint; tgsample loads diffusers pipeline directories. Convert it "
            f"once with diffusers: `python -c \"from diffusers import StableDiffusionPipeline as P; "
            f"P.from_single_file({str(file)!r}).save_pretrained('DIR')\"` (StableDiffusionXLPipeline for SDXL; "
            f"offline, add config='<a local diffusers pipeline of the same family>' to from_single_file), then pass "
            f"path='DIR'. A fine-tuned UNet alone in diffusers' key layout can be given as unet=<file> instead")


def weights_file(folder: Path, what: str, weight_name: Optional[str] = None, preferred: Optional[str] = None) -> Path:
    """The weights file in `folder` (a local directory or a hub snapshot).

    `weight_name` if given; else `preferred` if present; else the only `.safetensors` file (else the only
    `.bin`). Several candidates raise [`AmbiguousWeightsError`][tgsample.models.diffusers.errors.AmbiguousWeightsError]
    listing them (name one with `*_weight_name=`);
    none raises [`ModelNotFoundError`][tgsample.models.diffusers.errors.ModelNotFoundError].
    """
    if weight_name is not None:
        path = folder / weight_name
        if not path.is_file():
            present = sorted(p.name for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
            raise ModelNotFoundError(f"{what}: weights file {weight_name!r} not found in {str(folder)!r} "
                                     f"(weights files there: {present or 'none'})")
        return path
    if preferred is not None and (folder / preferred).is_file():
        return folder / preferred
    for suffix in WEIGHT_SUFFIXES:
        found = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(suffix))
        if len(found) == 1:
            return found[0]
        if found:
            raise AmbiguousWeightsError(
                f"{what}: {str(folder)!r} holds {len(found)} {suffix} files and none was named; pass the one "
                f"to load as {what.split()[0].lower()}_weight_name=..., one of {[p.name for p in found]}")
    raise ModelNotFoundError(f"{what}: no .safetensors or .bin weights file in {str(folder)!r}")


def locate_weights(source: PathLike, what: str, *, weight_name: Optional[str] = None, allow_download: bool = False,
                   preferred: Optional[str] = None) -> Path:
    """A local weights file for `source`: a file as is; in a folder or a cached hub repo, `weight_name`
    (fetched alone from the hub) or the safe guess of
    [`weights_file`][tgsample.models.diffusers.loading.weights_file]."""
    path = Path(str(source)).expanduser()
    if path.is_file():
        if weight_name is not None and path.name != weight_name:
            raise ConfigError(f"{what} {str(source)!r} is a file; weight_name={weight_name!r} names another one")
        return path
    if not path.is_dir() and weight_name is not None:
        return resolve(source, what, allow_download=allow_download, filename=weight_name)
    folder = resolve(source, what, allow_download=allow_download, patterns=WEIGHT_PATTERNS)
    return weights_file(folder, what, weight_name, preferred)


@contextlib.contextmanager
def _no_loading_bar(cls: Any) -> Iterator[None]:
    """transformers (5.x) draws a "Loading weights" bar per model it loads; off while `cls` (one of
    its classes) loads, so that a run shows only its own progress bar."""
    if not getattr(cls, "__module__", "").startswith("transformers"):
        yield
        return
    from transformers.utils import logging as tlog

    was = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            tlog.enable_progress_bar()


def load_part(cls: Any, root: Path, subfolder: Optional[str], what: str, **kwargs: Any) -> Any:
    """`cls.from_pretrained(root / subfolder)` from local files, with a typed error if it is missing."""
    folder = root / subfolder if subfolder else root
    if not folder.is_dir():
        raise ModelNotFoundError(f"{what}: folder {str(folder)!r} is missing; a diffusers pipeline directory "
                                 f"needs {subfolder or 'this'}/ (as save_pretrained writes it)")
    try:
        with _no_loading_bar(cls):
            return cls.from_pretrained(folder, local_files_only=True, **kwargs)
    except (OSError, ValueError) as err:
        if "Unable to load weights" in str(err):  # diffusers' message for an unreadable weights file
            raise CorruptWeightsError(f"{what}: the weights in {str(folder)!r} cannot be read (a truncated or "
                                      f"corrupt file? download it again): {err}") from err
        raise ModelNotFoundError(f"{what}: could not load {cls.__name__} from {str(folder)!r}: {err}") from err


def scheduler_config(root: Path) -> dict:
    """The pipeline's `scheduler/scheduler_config.json` as a dict."""
    from diffusers import DDPMScheduler

    folder = root / "scheduler"
    if not (folder / "scheduler_config.json").is_file():
        raise ModelNotFoundError(f"scheduler config {str(folder / 'scheduler_config.json')!r} is missing; "
                                 f"it holds the model's abar table and prediction type")
    return dict(DDPMScheduler.load_config(folder))


def alphas_cumprod(config: dict) -> torch.Tensor:
    """`abar` of the scheduler named in `config` (diffusers computes it from the config's betas)."""
    import diffusers

    cls = getattr(diffusers, str(config.get("_class_name", "")), None)
    if cls is None or not hasattr(cls, "from_config"):
        cls = diffusers.DDPMScheduler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = cls.from_config(config)
    abar = getattr(scheduler, "alphas_cumprod", None)
    if abar is None:
        raise ConfigError(f"scheduler {cls.__name__} has no alphas_cumprod: not a discrete VP (SD-family) model")
    return torch.as_tensor(abar, dtype=torch.float64)


def prediction_type(config: dict, where: str, override: Optional[str] = None) -> str:
    """The prediction type (`epsilon` / `v_prediction` / `sample`), checked."""
    value = override or config.get("prediction_type", "epsilon")
    try:
        return check_prediction(value)
    except ConfigError:
        raise ConfigError(f"{where}: unknown prediction type {value!r} in the scheduler config; supported: "
                          f"'epsilon', 'v_prediction', 'sample' (pass prediction=... to override)") from None


def load_unet(root: Path, *, unet: Optional[PathLike] = None, unet_weight_name: Optional[str] = None,
              allow_download: bool = False, dtype: torch.dtype = torch.float32, variant: Optional[str] = None) -> Any:
    """The pipeline's UNet, or a replacement: a diffusers UNet folder / hub repo, or one weights file
    (`.safetensors` / `.bin`, DMD2 and SDXL-Lightning style) loaded into the base UNet's config."""
    from diffusers import UNet2DConditionModel

    if unet is None:
        return load_part(UNet2DConditionModel, root, "unet", "UNet", torch_dtype=dtype, variant=variant)
    src = resolve(unet, "UNet", allow_download=allow_download, filename=unet_weight_name,
                  patterns=("*.json", *WEIGHT_PATTERNS, "unet/*"))
    if src.is_dir():
        folder = src / "unet" if (src / "unet" / "config.json").is_file() else src
        if (folder / "config.json").is_file():
            return load_part(UNet2DConditionModel, folder, None, f"UNet {str(unet)!r}", torch_dtype=dtype,
                             variant=variant)
        src = weights_file(src, f"UNet {str(unet)!r}")  # a repo of bare weights files (DMD2, SDXL-Lightning)
    return unet_from_file(root, src, dtype)


def unet_from_file(root: Path, file: Path, dtype: torch.dtype) -> Any:
    """A UNet with the base pipeline's config and the weights of `file` (strict: every key must fit)."""
    from diffusers import UNet2DConditionModel
    from diffusers.models.model_loading_utils import load_state_dict

    if not (root / "unet" / "config.json").is_file():
        raise ModelNotFoundError(f"UNet weights file {str(file)!r} needs the base pipeline's unet/config.json, "
                                 f"missing in {str(root)!r}")
    model = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(root / "unet"))
    try:
        state = load_state_dict(str(file))
    except Exception as err:  # OSError from diffusers, SafetensorError, UnpicklingError
        raise CorruptWeightsError(f"UNet weights {str(file)!r} cannot be read (a truncated or corrupt file? "
                                  f"download it again): {err}") from err
    if any(k.startswith("model.diffusion_model.") for k in state):
        raise ConfigError(single_file_message(file))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConfigError(f"UNet weights {str(file)!r} do not fit the base UNet of {str(root)!r}: {err}") from err
    return model if dtype == torch.float32 else model.to(dtype)


def _lora_modules(state: dict) -> set[str]:
    names = set()
    for key in state:
        if key.startswith("unet.") and ".lora" in key:
            names.add(key[len("unet."):].split(".lora")[0])
    return names


def load_lora(unet: Any, lora: PathLike, *, kind: str, weight_name: Optional[str] = None,
              allow_download: bool = False, adapter_name: str = "student") -> str:
    """Add the LoRA `lora` (directory, weights file or hub id) to `unet` as adapter `adapter_name`
    with diffusers' LoRA loader (kohya / diffusers formats; peft underneath).

    The file is found locally first ([`locate_weights`][tgsample.models.diffusers.loading.locate_weights]:
    `weight_name`, else diffusers'
    `pytorch_lora_weights.safetensors`, else the only weights file), so a cached hub repo loads offline.
    As diffusers' `load_lora_weights` does, the adapter metadata stored in the file (`lora_alpha`,
    `r`, ...) configures the adapter, so its strength is `lora_alpha / r`.

    Raises [`LoRAMismatchError`][tgsample.models.diffusers.errors.LoRAMismatchError] if a LoRA module is absent from the
    UNet or has another shape,
    [`CorruptWeightsError`][tgsample.models.diffusers.errors.CorruptWeightsError] if the file cannot be read.
    """
    from diffusers.loaders import StableDiffusionLoraLoaderMixin, StableDiffusionXLLoraLoaderMixin

    mixin = StableDiffusionXLLoraLoaderMixin if kind == "sdxl" else StableDiffusionLoraLoaderMixin
    file = locate_weights(lora, "LoRA", weight_name=weight_name, allow_download=allow_download,
                          preferred=LORA_WEIGHT_NAME)
    try:
        state, alphas, metadata = mixin.lora_state_dict(str(file.parent), weight_name=file.name,
                                                        local_files_only=True, return_lora_metadata=True)
    except Exception as err:
        raise CorruptWeightsError(f"LoRA {str(lora)!r}: could not read its weights {str(file)!r} (a truncated "
                                  f"or corrupt file? download it again): {err}") from err
    if any(k.startswith("text_encoder") for k in state):
        warnings.warn(f"LoRA {str(lora)!r} has text-encoder weights; they are ignored (the UNet part is loaded)")
        state = {k: v for k, v in state.items() if not k.startswith("text_encoder")}
    modules = _lora_modules(state)
    if not modules:
        raise LoRAMismatchError(f"LoRA {str(lora)!r} has no UNet weights (keys 'unet.*.lora*'); nothing to load")
    present = dict(unet.named_modules())
    missing = sorted(m for m in modules if m not in present)
    if missing:
        raise LoRAMismatchError(f"LoRA {str(lora)!r} does not fit its base UNet: {len(missing)} of its {len(modules)} "
                                f"modules are not in the UNet, e.g. {missing[:3]} (a LoRA for another model family?)")
    try:
        mixin.load_lora_into_unet(state, alphas, unet=unet, adapter_name=adapter_name, metadata=metadata)
    except (RuntimeError, ValueError, KeyError) as err:
        raise LoRAMismatchError(f"LoRA {str(lora)!r} does not fit its base UNet (shapes differ): "
                                f"{str(err).strip().splitlines()[-1]}") from err
    return adapter_name
