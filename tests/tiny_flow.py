"""Tiny random-initialised FLUX- and SD3-shaped diffusers pipelines, saved with ``save_pretrained``.

Shapes are the real ones, scaled down: 16-channel latents (8 x 8 for 16 x 16 images, the VAE halves the
side), FLUX's 2x2 packing (64 input channels) and rotary ids, SD3's patch size 2, the real VAE scaling /
shift factors and scheduler configs (FLUX.1-schnell: shift 1; FLUX.1-dev: dynamic shifting; SD3.5: shift 3).
Text encoders are tiny CLIPs and a tiny T5 (``T5EncoderModel(T5Config(...))``); the T5 tokenizer is a
Unigram model built from a local vocabulary (``T5Tokenizer(vocab=[(piece, score), ...])``, no sentencepiece
file, no download), the CLIP tokenizers come from :mod:`tiny_pipelines`.

Layout written by :func:`build_all` (each a diffusers pipeline directory)::

    flux-schnell/   FluxPipeline, transformer without guidance embedding, scheduler shift 1
    flux-dev/       same text encoders (equal weights), guidance-embedding transformer, dynamic shifting
    flux-dev-link/  flux-dev whose text encoder folders are symlinks to flux-schnell's (same files)
    sd35-turbo/     StableDiffusion3Pipeline (CLIP-L, CLIP-G, T5), scheduler shift 3
    sd35-large/     same text encoders, other transformer weights
    sd35-medium/    same text encoders, an MMDiT-X transformer (dual attention, qk norm)
    sd35-no-t5/     sd35-large without T5 (two text encoders)
"""

from __future__ import annotations

from pathlib import Path

import torch

from tiny_pipelines import _clip_config, _tokenizer

LATENT = 16
T5_DIM = 32
SEQ = 12  # T5 tokens per prompt in the tests (max_sequence_length)
FLUX_VAE = (0.3611, 0.1159)  # FLUX.1's VAE scaling / shift factors
SD3_VAE = (1.5305, 0.0609)  # SD3's
SCHNELL_SCHEDULER = dict(shift=1.0, use_dynamic_shifting=False, base_shift=0.5, max_shift=1.15,
                         base_image_seq_len=256, max_image_seq_len=4096)
DEV_SCHEDULER = dict(SCHNELL_SCHEDULER, shift=3.0, use_dynamic_shifting=True)
SD3_SCHEDULER = dict(shift=3.0)


def t5_tokenizer(path: Path):
    """A T5 (Unigram) tokenizer over the lowercase letters, built from a vocabulary list and saved."""
    from transformers import T5Tokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -3.0) for c in letters] + [("\u2581" + c, -2.5) for c in letters]
    T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=64).save_pretrained(path)
    return T5Tokenizer.from_pretrained(path)


def t5_encoder(vocab: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=vocab, d_model=T5_DIM, d_ff=2 * T5_DIM, d_kv=8, num_layers=2,
                                   num_heads=4, decoder_start_token_id=0))


def vae(scaling: float, shift: float):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=LATENT, block_out_channels=(8, 8),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         layers_per_block=1, norm_num_groups=4, sample_size=16, scaling_factor=scaling,
                         shift_factor=shift, use_quant_conv=False, use_post_quant_conv=False)


def flux_transformer(guidance_embeds: bool, seed: int):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    return FluxTransformer2DModel(patch_size=1, in_channels=4 * LATENT, num_layers=1, num_single_layers=1,
                                  attention_head_dim=8, num_attention_heads=2, joint_attention_dim=T5_DIM,
                                  pooled_projection_dim=32, guidance_embeds=guidance_embeds, axes_dims_rope=(2, 2, 4))


def sd3_transformer(seed: int, medium: bool = False):
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    extra = dict(dual_attention_layers=(0,), qk_norm="rms_norm") if medium else {}
    return SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=LATENT, num_layers=2, attention_head_dim=8,
                                 num_attention_heads=2, joint_attention_dim=T5_DIM, caption_projection_dim=16,
                                 pooled_projection_dim=32, out_channels=LATENT, pos_embed_max_size=16, **extra)


def save_flux(path: Path, transformer, scheduler: dict, text_seed: int = 0, scratch: Path = None) -> Path:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPTextModel

    scratch = scratch or path.parent / "_tok"
    tok_t5 = t5_tokenizer(scratch / "t5")
    torch.manual_seed(text_seed)
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**scheduler), vae=vae(*FLUX_VAE),
                        text_encoder=CLIPTextModel(_clip_config(32)), tokenizer=_tokenizer(scratch / "clip"),
                        text_encoder_2=t5_encoder(len(tok_t5)), tokenizer_2=tok_t5, transformer=transformer)
    pipe.save_pretrained(path)
    return path


def save_sd3(path: Path, transformer, text_seed: int = 0, t5: bool = True, scratch: Path = None) -> Path:
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    scratch = scratch or path.parent / "_tok"
    tok_t5 = t5_tokenizer(scratch / "t5")
    torch.manual_seed(text_seed)
    clip_l = CLIPTextModelWithProjection(_clip_config(16, 16))
    clip_g = CLIPTextModelWithProjection(_clip_config(16, 16))
    encoder_t5 = t5_encoder(len(tok_t5))
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**SD3_SCHEDULER),
                                    vae=vae(*SD3_VAE), text_encoder=clip_l, tokenizer=_tokenizer(scratch / "clip_l"),
                                    text_encoder_2=clip_g, tokenizer_2=_tokenizer(scratch / "clip_g"),
                                    text_encoder_3=encoder_t5 if t5 else None, tokenizer_3=tok_t5 if t5 else None)
    pipe.save_pretrained(path)
    return path


def build_all(root: Path, only: tuple[str, ...] = ()) -> dict[str, Path]:
    """Write every fixture (or those named in ``only``) under ``root``; returns name -> path."""
    import shutil

    root = Path(root)
    builders = {
        "flux-schnell": lambda p: save_flux(p, flux_transformer(False, seed=1), SCHNELL_SCHEDULER),
        "flux-dev": lambda p: save_flux(p, flux_transformer(True, seed=2), DEV_SCHEDULER),
        "sd35-turbo": lambda p: save_sd3(p, sd3_transformer(seed=3)),
        "sd35-large": lambda p: save_sd3(p, sd3_transformer(seed=4)),
        "sd35-medium": lambda p: save_sd3(p, sd3_transformer(seed=5, medium=True)),
        "sd35-no-t5": lambda p: save_sd3(p, sd3_transformer(seed=4), t5=False),
    }
    out = {name: build(root / name) for name, build in builders.items() if not only or name in only}
    if not only or "flux-dev-link" in only:
        schnell = out.get("flux-schnell") or builders["flux-schnell"](root / "flux-schnell")
        link = out["flux-dev-link"] = builders["flux-dev"](root / "flux-dev-link")
        for folder in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):  # the same files as schnell's
            shutil.rmtree(link / folder)
            (link / folder).symlink_to(schnell / folder, target_is_directory=True)
    return out


if __name__ == "__main__":  # pragma: no cover - manual inspection
    import sys
    import time

    t = time.time()
    print(build_all(Path(sys.argv[1])), f"{time.time() - t:.1f}s")


# --- parity runs: tgsample's adapters against diffusers' own pipelines, same injected latents ----------------

PROMPTS = ["a red cube", "a cat"]
SIZE = dict(height=16, width=16, max_sequence_length=SEQ)
#: name -> (registry kind, registry name, fixture, steps (None: the recipe's), tgsample guidance
#: ("default": the recipe's), the diffusers pipeline's call options)
CASES = {
    "flux-schnell recipe": ("students", "flux-schnell", "flux-schnell", None, "default", {"guidance_scale": 0.0}),
    "flux-dev, embedded 3.5": ("teachers", "flux-dev", "flux-dev", 6, "default", {"guidance_scale": 3.5}),
    "flux-dev, distilled_cfg 1.5": ("teachers", "flux-dev", "flux-dev", 6, {"name": "distilled_cfg", "scale": 1.5},
                                    {"guidance_scale": 1.5}),
    "flux-dev, true CFG 2": ("teachers", "flux-dev", "flux-dev", 4, {"name": "cfg", "scale": 2.0},
                             {"guidance_scale": 3.5, "true_cfg_scale": 2.0, "negative_prompt": ["", ""]}),
    "sd35-large-turbo recipe": ("students", "sd35-large-turbo", "sd35-turbo", None, "default", {"guidance_scale": 0.0}),
    "sd35-large, CFG 3.5": ("teachers", "sd35-large", "sd35-large", 5, "default", {"guidance_scale": 3.5}),
    "sd35-medium, CFG 4.5": ("teachers", "sd35-medium", "sd35-medium", 5, "default", {"guidance_scale": 4.5}),
}


def load(paths: dict, case: str, **options):
    """The tgsample model of ``case`` (through the registry, as a user's model is loaded)."""
    from tgsample import registry

    kind, name, fixture, *_ = CASES[case]
    return registry.create(kind, name, path=str(paths[fixture]), **{**SIZE, **options})


def ours(model, z, guidance="default", steps=None, **settings):
    """``model``'s own recipe (``Model.recipes[""]``: the flow schedule, Euler, its guidance; ``guidance`` /
    ``steps`` / ``settings`` override it) from the injected initial latents ``z`` (the pipeline's ``x_t`` at
    ``t = 1``): ``sample(latents=z)``; returns the final latents."""
    from tgsample import sample

    cond, uncond = model.encode(PROMPTS)
    if guidance != "default":
        settings["guidance"] = guidance
    return sample(model, cond, uncond=uncond, seeds=range(len(z)), latents=z, steps=steps, **settings)


def theirs(path: Path, z, steps: int, output_type: str = "latent", **call):
    """diffusers' own FluxPipeline / StableDiffusion3Pipeline on ``path`` from latents ``z`` (unpacked; ``None``:
    the pipeline draws them from ``call["generator"]``)."""
    import diffusers
    from diffusers import FluxPipeline

    flux = (Path(path) / "transformer" / "config.json").read_text().count("FluxTransformer2DModel") > 0
    pipe = (FluxPipeline if flux else diffusers.StableDiffusion3Pipeline).from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    if z is not None:
        b, c, h, w = z.shape
        call["latents"] = FluxPipeline._pack_latents(z, b, c, h, w) if flux else z
    out = pipe(PROMPTS, height=16, width=16, max_sequence_length=SEQ, num_inference_steps=steps,
               output_type=output_type, **call).images
    return FluxPipeline._unpack_latents(out, 16, 16, 2) if flux and output_type == "latent" else out


def parity(paths: dict, case: str, seed: int = 0, **options):
    """``(ours, theirs, model)``: final latents of both from the same initial latents (``options``: the model's)."""
    _, _, fixture, steps, guidance, call = CASES[case]
    model = load(paths, case, **options)
    z = torch.randn(len(PROMPTS), *model.sample_shape, generator=torch.Generator().manual_seed(seed))
    n = steps or model.recipes[""].steps
    return ours(model, z, guidance, steps=n), theirs(paths[fixture], z, n, **call), model
