"""Tiny random-initialised SD 1.5-style and SDXL-style diffusers pipelines, saved with ``save_pretrained``.

The tests load them through exactly the code a user's real model goes through
(:mod:`tgsample.models.diffusers`). Everything is built locally: the CLIP tokenizer gets a
byte-level vocabulary (256 byte symbols, each also with the end-of-word marker, plus the two
special tokens) and an empty merges list, so no file is downloaded.

Layout written by :func:`build_all` (each a diffusers pipeline directory unless noted)::

    sd15/        unet, text_encoder, tokenizer, vae, scheduler (PNDM, epsilon, SD's scaled-linear betas)
    sd15-v/      same with scheduler prediction_type = v_prediction
    sd15-te/     same UNet, other text-encoder weights
    lcm-sd15/    sd15 with an LCM UNet (time_cond_proj_dim) and an LCMScheduler
    sdxl/        unet (text_time), text_encoder(_2), tokenizer(_2), vae (SDXL's scaling 0.13025), scheduler (Euler)
    turbo/       sdxl with different UNet weights (a full-pipeline student)
    dmd2-unet.safetensors   a bare UNet state dict for the sdxl base (DMD2 / Lightning release style)
    lcm-sdxl-unet/          a UNet-only diffusers directory (LCM-SDXL release style, w embedding)
    lora-sd15/ lora-sdxl/   random LoRA weights (pytorch_lora_weights.safetensors)
    lora-sd15-alpha/        a LoRA with r = 4, lora_alpha = 2 stored in the file's adapter metadata
    bad-pred/    sd15 whose scheduler config says prediction_type = "flow"
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch

LATENT = 4
SD_HIDDEN = 32
SIZE = 8  # latent side; the VAE halves the image side: images are 16 x 16


def _tokenizer(path: Path):
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "CLIPTokenizer", "model_max_length": 16}))
    return CLIPTokenizer.from_pretrained(path)  # checks that the files load as a real model's do


def _clip_config(hidden: int = SD_HIDDEN, projection: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=514, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=16, projection_dim=projection or hidden,
                          bos_token_id=512, eos_token_id=513, pad_token_id=513, hidden_act="gelu")


SD_SCALING, SDXL_SCALING = 0.18215, 0.13025  # the real VAEs' latent scaling factors (different latent spaces)


def _vae(scaling_factor: float = SD_SCALING):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=LATENT, block_out_channels=(8, 8),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         layers_per_block=1, norm_num_groups=4, sample_size=2 * SIZE, scaling_factor=scaling_factor)


def sd_unet(time_cond_proj_dim: int | None = None, seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=SIZE, in_channels=LATENT, out_channels=LATENT, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=SD_HIDDEN, attention_head_dim=2, norm_num_groups=4, time_cond_proj_dim=time_cond_proj_dim)


def sdxl_unet(seed: int = 0, time_cond_proj_dim: int | None = None):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=SIZE, in_channels=LATENT, out_channels=LATENT, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * SD_HIDDEN, attention_head_dim=2, norm_num_groups=4, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=6 * 4 + SD_HIDDEN, time_cond_proj_dim=time_cond_proj_dim)


SD_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                    steps_offset=1, set_alpha_to_one=False, skip_prk_steps=True, prediction_type="epsilon")


def _save_sd(path: Path, unet, prediction: str = "epsilon", scheduler: str = "PNDMScheduler", seed: int = 0) -> Path:
    import diffusers
    from transformers import CLIPTextModel

    torch.manual_seed(seed + 100)
    unet.save_pretrained(path / "unet")
    CLIPTextModel(_clip_config()).save_pretrained(path / "text_encoder")
    _tokenizer(path / "tokenizer")
    _vae().save_pretrained(path / "vae")
    cls = getattr(diffusers, scheduler)
    accepted = inspect.signature(cls.__init__).parameters  # follows register_to_config's wrapper
    config = {k: v for k, v in SD_SCHEDULER.items() if k in accepted}
    cls.from_config({**config, "prediction_type": prediction}).save_pretrained(path / "scheduler")
    if scheduler == "PNDMScheduler":  # SD 1.5's own scheduler_config.json has no timestep_spacing key
        file = path / "scheduler" / "scheduler_config.json"
        file.write_text(json.dumps({k: v for k, v in json.loads(file.read_text()).items() if k != "timestep_spacing"}))
    _model_index(path, "StableDiffusionPipeline", scheduler, requires_safety_checker=False,
                 safety_checker=[None, None], feature_extractor=[None, None], image_encoder=[None, None])
    return path


def _save_sdxl(path: Path, unet, seed: int = 0) -> Path:
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed + 200)
    unet.save_pretrained(path / "unet")
    CLIPTextModel(_clip_config()).save_pretrained(path / "text_encoder")
    CLIPTextModelWithProjection(_clip_config()).save_pretrained(path / "text_encoder_2")
    _tokenizer(path / "tokenizer")
    _tokenizer(path / "tokenizer_2")
    _vae(SDXL_SCALING).save_pretrained(path / "vae")
    EulerDiscreteScheduler.from_config({**SD_SCHEDULER, "interpolation_type": "linear", "timestep_spacing": "leading"}
                                       ).save_pretrained(path / "scheduler")  # SDXL base's own config
    _model_index(path, "StableDiffusionXLPipeline", "EulerDiscreteScheduler", force_zeros_for_empty_prompt=True,
                 text_encoder_2=["transformers", "CLIPTextModelWithProjection"], tokenizer_2=["transformers", "CLIPTokenizer"],
                 feature_extractor=[None, None], image_encoder=[None, None])
    return path


def _model_index(path: Path, pipeline: str, scheduler: str, **extra) -> None:
    """``model_index.json`` as ``save_pretrained`` writes it, so diffusers' own pipelines load the folder too."""
    import diffusers

    index = {"_class_name": pipeline, "_diffusers_version": diffusers.__version__,
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "scheduler": ["diffusers", scheduler], **extra}
    (path / "model_index.json").write_text(json.dumps(index))


def random_lora(unet, path: Path, rank: int = 2, seed: int = 0, alpha: float | None = None) -> Path:
    """Random (non-zero) LoRA weights for ``unet`` saved as diffusers' ``pytorch_lora_weights.safetensors``.

    With ``alpha`` the adapter has ``lora_alpha = alpha`` (scale ``alpha / rank``) and the file stores the
    adapter metadata (``lora_alpha``, ``r``, ...) as diffusers' training scripts write it; without, ``alpha = rank``
    and no metadata (scale 1, the older files).
    """
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():  # gaussian init leaves lora_B = 0: make the LoRA change the output
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    metadata = unet.peft_config["default"].to_dict() if alpha is not None else None
    StableDiffusionPipeline.save_lora_weights(path, unet_lora_layers=get_peft_model_state_dict(unet),
                                              unet_lora_adapter_metadata=metadata)
    return path


def build_all(root: Path) -> dict[str, Path]:
    """Write every fixture under ``root``; returns name -> path."""
    from safetensors.torch import save_file

    root = Path(root)
    out = {
        "sd15": _save_sd(root / "sd15", sd_unet(seed=1)),
        "sd15-v": _save_sd(root / "sd15-v", sd_unet(seed=1), prediction="v_prediction"),
        "lcm-sd15": _save_sd(root / "lcm-sd15", sd_unet(time_cond_proj_dim=8, seed=2), scheduler="LCMScheduler"),
        "bad-pred": _save_sd(root / "bad-pred", sd_unet(seed=1), prediction="flow"),
        "sd15-te": _save_sd(root / "sd15-te", sd_unet(seed=1), seed=9),  # other text-encoder weights
        "sdxl": _save_sdxl(root / "sdxl", sdxl_unet(seed=3)),
        "turbo": _save_sdxl(root / "turbo", sdxl_unet(seed=4)),
    }
    save_file(sdxl_unet(seed=5).state_dict(), root / "dmd2-unet.safetensors")
    out["dmd2-unet"] = root / "dmd2-unet.safetensors"
    sdxl_unet(seed=6, time_cond_proj_dim=8).save_pretrained(root / "lcm-sdxl-unet")
    out["lcm-sdxl-unet"] = root / "lcm-sdxl-unet"
    out["lora-sd15"] = random_lora(sd_unet(seed=1), root / "lora-sd15", seed=7)
    out["lora-sdxl"] = random_lora(sdxl_unet(seed=3), root / "lora-sdxl", seed=8)
    out["lora-sd15-alpha"] = random_lora(sd_unet(seed=1), root / "lora-sd15-alpha", rank=4, alpha=2, seed=10)
    return out


def hub_cache(cache: Path, repos: dict[str, dict[str, object]], revision: str = "0" * 40) -> Path:
    """A Hugging Face hub cache under ``cache`` (what ``HF_HUB_CACHE`` points at) holding ``repos``.

    ``repos`` maps a repo id to ``{path in the repo: source}``; a source is a file or directory to copy, or
    ``bytes`` to write. Each repo gets the cache's layout: ``models--owner--name/snapshots/<revision>/...``
    and ``refs/main`` naming the revision, as ``hf download`` leaves it.
    """
    import shutil

    for repo, files in repos.items():
        folder = Path(cache) / f"models--{repo.replace('/', '--')}"
        snapshot = folder / "snapshots" / revision
        for rel, source in files.items():
            target = snapshot / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, bytes):
                target.write_bytes(source)
            elif Path(source).is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            else:
                shutil.copyfile(source, target)
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / "main").write_text(revision)
    return Path(cache)


if __name__ == "__main__":  # pragma: no cover - manual inspection
    import sys
    import time

    t = time.time()
    print(build_all(Path(sys.argv[1])), f"{time.time() - t:.1f}s")
