"""The miniature's components, in diffusers' / transformers' own classes, and where they are shipped.

`models/weights/mini` is a diffusers pipeline folder (`model_index.json`, `tokenizer/`,
`text_encoder/`, `vae/`, `unet/` (the teacher), `scheduler/`) as `save_pretrained` writes
it, float16 safetensors; the students beside it: `students/lcm/unet` (a UNet folder with a
`time_cond_proj_dim`), `students/lcm_lora/pytorch_lora_weights.safetensors` (a LoRA of the
teacher's UNet), `students/lightning/unet` (a UNet folder).

* tokenizer: a `CLIPTokenizer` whose BPE vocabulary is the caption words (one token each), built
  offline from `VOCABULARY`;
* text encoder: a 2-layer `CLIPTextModel` (width 32, 8 positions);
* VAE: an `AutoencoderKL` from 1x32x32 (the 28x28 digit padded) to a 4x8x8 latent;
* UNet: a `UNet2DConditionModel` with cross-attention on the text states, eps prediction;
* scheduler: SD 1.5's table (`scaled_linear`, betas 0.00085-0.012, 1,000 steps), so SD's
  timesteps such as `[999, 759, 499, 259]` apply.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from .data import VOCABULARY

MINI_DIR = Path(__file__).resolve().parent.parent / "weights" / "mini"
"""the shipped pipeline folder (`model_index.json`, `tokenizer/`, `text_encoder/`, `vae/`, `unet/`, `scheduler/`)"""
STUDENTS_DIR = MINI_DIR / "students"
"""the students' weights beside the pipeline: `lcm/unet`, `lcm_lora/`, `lightning/unet`"""
MAX_LENGTH = 8
"""the tokenizer's positions: BOS, up to 5 caption words, EOS, padding"""
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=MAX_LENGTH, projection_dim=32)
"""the `CLIPTextConfig` of the text encoder (2 layers, width 32)"""
VAE = dict(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 3,
           up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(16, 16, 16), layers_per_block=1,
           latent_channels=4, norm_num_groups=8, sample_size=32)
"""the `AutoencoderKL` configuration: 1x32x32 pixels to a 4x8x8 latent"""
UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=TEXT["hidden_size"],
            attention_head_dim=8, norm_num_groups=8)
"""the teacher's `UNet2DConditionModel` configuration: channels (32, 64), cross-attention at 4x4 and in the mid block"""
TIME_COND_PROJ_DIM = 64
"""the LCM student's guidance embedding width (SD's LCM: 256)"""
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 prediction_type="epsilon", timestep_spacing="leading", steps_offset=1, clip_sample=False,
                 set_alpha_to_one=False)
"""the `DDIMScheduler` configuration: SD 1.5's scaled-linear table, 1,000 steps, eps prediction"""
LORA = dict(r=8, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out",
                                                "conv1", "conv2"])
"""the LCM-LoRA student's `peft` `LoraConfig` (rank 8 on attention, projections and convolutions)"""
STUDENT_FOLDERS = {"mini-lcm": "lcm", "mini-lcm-lora": "lcm_lora", "mini-lightning": "lightning"}
"""each student's folder under `STUDENTS_DIR`"""


def write_tokenizer(folder: Path) -> Path:
    """A `CLIPTokenizer` (vocab.json + merges.txt) whose BPE turns each caption word into one token."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted({c for w in VOCABULARY for c in w})
    vocab: list[str] = ["<|startoftext|>", "<|endoftext|>"]
    vocab += chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    for word in VOCABULARY:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:  # merge left to right: every word ends as one token
            pair = f"{parts[0]} {parts[1]}"
            if pair not in merges:
                merges.append(pair)
            parts = [parts[0] + parts[1]] + parts[2:]
            if parts[0] not in vocab:
                vocab.append(parts[0])
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, indent=0))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=MAX_LENGTH,
                        pad_token="<|endoftext|>")
    for word in VOCABULARY:
        if len(tok(word, add_special_tokens=False).input_ids) != 1:
            raise RuntimeError(f"the miniature's tokenizer splits {word!r}; reorder the vocabulary")
    tok.save_pretrained(folder)
    return folder


def tokenizer(folder: Optional[Path] = None) -> Any:
    """The `CLIPTokenizer` in `folder` (default: the shipped one)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(folder or MINI_DIR / "tokenizer")


def text_encoder(tok: Any) -> Any:
    """A new (untrained) `CLIPTextModel` of `TEXT` for the tokenizer `tok`."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **TEXT))


def vae() -> Any:
    """A new (untrained) `AutoencoderKL` of `VAE`."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**VAE)


def unet(time_cond_proj_dim: Optional[int] = None) -> Any:
    """A new (untrained) `UNet2DConditionModel` of `UNET`; `time_cond_proj_dim` adds LCM's `w` embedding."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(time_cond_proj_dim=time_cond_proj_dim, **UNET)


def scheduler() -> Any:
    """The `DDIMScheduler` of `SCHEDULER`."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULER)


def encode_text(encoder: Any, tok: Any, captions: list[str]) -> Any:
    """The text states `[B, L, D]` (the last layer's, as SD's `encode_prompt` without clip skip)."""
    ids = tok(captions, padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="pt").input_ids
    return encoder(ids)[0]


def save_fp16(module: Any, folder: Path) -> Path:
    """`module.save_pretrained(folder)` as float16 safetensors (the module itself is left float32)."""
    import copy

    import torch

    copy.deepcopy(module).to(torch.float16).save_pretrained(folder, safe_serialization=True)
    return folder


def write_model_index(root: Path) -> Path:
    """`model_index.json` of a `StableDiffusionPipeline` folder (no safety checker)."""
    import diffusers

    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
             "feature_extractor": [None, None], "safety_checker": [None, None], "requires_safety_checker": False,
             "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    (root / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return root / "model_index.json"
