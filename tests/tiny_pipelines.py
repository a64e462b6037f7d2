"""Tiny random-initialised SD 1.5-style and SDXL-style diffusers pipelines, saved with ``save_pretrained``.

The tests load them through exactly the code a user's real model goes through
(:mod:`tgsample.models.diffusers`). Everything is built locally: the CLIP tokenizer gets a
byte-level vocabulary (256 byte symbols, each also with the end-of-word marker, plus the two
special tokens) and an empty merges list, so no file is downloaded.

Layout written by :func:`build_all` (each a diffusers pipeline directory unless noted)::

    sd15/        unet, text_encoder, tokenizer, vae, scheduler (PNDM, epsilon)
    sd15-v/      same with scheduler prediction_type = v_prediction
    sd15-te/     same UNet, other text-encoder weights
    lcm-sd15/    sd15 with an LCM UNet (time_cond_proj_dim) and an LCMScheduler
    sdxl/        unet (text_time), text_encoder(_2), tokenizer(_2), vae, scheduler (Euler)
    turbo/       sdxl with different UNet weights (a full-pipeline student)
    dmd2-unet.safetensors   a bare UNet state dict for the sdxl base (DMD2 / Lightning release style)
    lcm-sdxl-unet/          a UNet-only diffusers directory (LCM-SDXL release style)
    lora-sd15/ lora-sdxl/   random LoRA weights (pytorch_lora_weights.safetensors)
    bad-pred/    sd15 whose scheduler config says prediction_type = "flow"
"""

from __future__ import annotations

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


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=LATENT, block_out_channels=(8, 8),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         layers_per_block=1, norm_num_groups=4, sample_size=2 * SIZE)


def sd_unet(time_cond_proj_dim: int | None = None, seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=SIZE, in_channels=LATENT, out_channels=LATENT, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=SD_HIDDEN, attention_head_dim=2, norm_num_groups=4, time_cond_proj_dim=time_cond_proj_dim)


def sdxl_unet(seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=SIZE, in_channels=LATENT, out_channels=LATENT, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * SD_HIDDEN, attention_head_dim=2, norm_num_groups=4, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=6 * 4 + SD_HIDDEN)


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
    config = {k: v for k, v in SD_SCHEDULER.items() if k in cls.__init__.__code__.co_varnames}
    cls.from_config({**config, "prediction_type": prediction}).save_pretrained(path / "scheduler")
    (path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
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
    _vae().save_pretrained(path / "vae")
    EulerDiscreteScheduler.from_config({**SD_SCHEDULER, "interpolation_type": "linear"}).save_pretrained(path / "scheduler")
    (path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    return path


def random_lora(unet, path: Path, rank: int = 2, seed: int = 0) -> Path:
    """Random (non-zero) LoRA weights for ``unet`` saved as diffusers' ``pytorch_lora_weights.safetensors``."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():  # gaussian init leaves lora_B = 0: make the LoRA change the output
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    StableDiffusionPipeline.save_lora_weights(path, unet_lora_layers=get_peft_model_state_dict(unet))
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
    sdxl_unet(seed=6).save_pretrained(root / "lcm-sdxl-unet")
    out["lcm-sdxl-unet"] = root / "lcm-sdxl-unet"
    out["lora-sd15"] = random_lora(sd_unet(seed=1), root / "lora-sd15", seed=7)
    out["lora-sdxl"] = random_lora(sdxl_unet(seed=3), root / "lora-sdxl", seed=8)
    return out


if __name__ == "__main__":  # pragma: no cover - manual inspection
    import sys
    import time

    t = time.time()
    print(build_all(Path(sys.argv[1])), f"{time.time() - t:.1f}s")
