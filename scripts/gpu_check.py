#!/usr/bin/env python
"""GPU check of the diffusers students and teachers (issue 5), on random-initialised networks.

Builds SD 1.5-size and SDXL-size pipelines with random weights (real architectures: SD 1.5 UNet
860M, SDXL UNet 2.6B, CLIP text encoders of the real sizes, the real VAE layout; a small local
tokenizer), saves them with ``save_pretrained`` and loads them through tgsample's registry
factories -- the code a real model goes through. For each student family it then prints:

* ``bare ms``: one bare UNet forward at the sampling batch (``B``) and at ``2B`` (CFG batch);
* ``step ms``: sampling time per step without and with teacher guidance (the published
  settings of the student, teacher guidance on its guided steps), and the extra cost of the
  guided steps in units of bare forwards;
* ``peak GiB``: ``torch.cuda.max_memory_allocated`` of a LoRA student with its zero-copy teacher
  versus with a separately loaded teacher.

Random weights make the images meaningless; the numbers measure time and memory only.

Usage::

    python scripts/gpu_check.py                         # both sizes, fp16, batch 2, on CUDA
    python scripts/gpu_check.py --size sd15 --batch 4 --out gpu_check.json
    python scripts/gpu_check.py --size tiny --device cpu --dtype float32   # smoke test, CPU, ~1 min

Record the card and the printed tables in docs/models.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tiny_pipelines import _tokenizer, build_all, random_lora  # noqa: E402

from tgsample import registry, sample  # noqa: E402

SD_SCHED = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                prediction_type="epsilon")


# --- random pipelines of the real sizes -------------------------------------------------------


def _clip(hidden: int, layers: int, heads: int, projection: bool = False) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, max_position_embeddings=77, projection_dim=hidden,
                         bos_token_id=512, eos_token_id=513, pad_token_id=513, hidden_act="gelu")
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


def _vae(sample_size: int, scaling: float, force_upcast: bool) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                         sample_size=sample_size, scaling_factor=scaling, force_upcast=force_upcast)


def sd15_unet(time_cond_proj_dim: int | None = None) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                time_cond_proj_dim=time_cond_proj_dim)


def sdxl_unet(sample_size: int = 128) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size, layers_per_block=2, block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(5, 10, 20),
        transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)


def _tok(path: Path) -> None:
    _tokenizer(path)
    cfg = json.loads((path / "tokenizer_config.json").read_text())
    (path / "tokenizer_config.json").write_text(json.dumps({**cfg, "model_max_length": 77}))


def save_sd15(path: Path, unet: Any, scheduler: str = "PNDMScheduler") -> Path:
    import diffusers

    torch.manual_seed(0)
    unet.half().save_pretrained(path / "unet")
    _clip(768, 12, 12).half().save_pretrained(path / "text_encoder")
    _tok(path / "tokenizer")
    _vae(512, 0.18215, False).half().save_pretrained(path / "vae")
    getattr(diffusers, scheduler).from_config(SD_SCHED).save_pretrained(path / "scheduler")
    (path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return path


def save_sdxl(path: Path, unet: Any) -> Path:
    from diffusers import EulerDiscreteScheduler

    torch.manual_seed(0)
    unet.half().save_pretrained(path / "unet")
    _clip(768, 12, 12).half().save_pretrained(path / "text_encoder")
    _clip(1280, 32, 20, projection=True).half().save_pretrained(path / "text_encoder_2")
    _tok(path / "tokenizer")
    _tok(path / "tokenizer_2")
    _vae(1024, 0.13025, True).half().save_pretrained(path / "vae")
    EulerDiscreteScheduler.from_config(SD_SCHED).save_pretrained(path / "scheduler")
    (path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    return path


def build_real(root: Path, sizes: list[str]) -> dict[str, Path]:
    """Random pipelines of the real sizes (fp16 on disk)."""
    from safetensors.torch import save_file

    out: dict[str, Path] = {}
    if "sd15" in sizes:
        out["sd15"] = save_sd15(root / "sd15", sd15_unet())
        out["lcm-sd15"] = save_sd15(root / "lcm-sd15", sd15_unet(time_cond_proj_dim=256), "LCMScheduler")
        out["lora-sd15"] = random_lora(sd15_unet(), root / "lora-sd15", rank=64)
    if "sdxl" in sizes:
        out["sdxl"] = save_sdxl(root / "sdxl", sdxl_unet())
        out["turbo"] = save_sdxl(root / "turbo", sdxl_unet(sample_size=64))
        save_file({k: v.half() for k, v in sdxl_unet().state_dict().items()}, root / "dmd2-unet.safetensors")
        out["dmd2-unet"] = root / "dmd2-unet.safetensors"
        out["lora-sdxl"] = random_lora(sdxl_unet(), root / "lora-sdxl", rank=64)
    return out


# --- measurements ------------------------------------------------------------------------------


def families(p: dict[str, Path], sizes: list[str]) -> list[tuple[str, dict, str, dict]]:
    """(student, student options, teacher, teacher options) per family present."""
    out = []
    if "sd15" in sizes or "tiny" in sizes:
        sd = str(p["sd15"])
        out += [("lcm-sd15", {"path": str(p["lcm-sd15"])}, "sd15", {"path": sd}),
                ("lcm-lora-sd15", {"path": sd, "lora": str(p["lora-sd15"])}, "sd15", {}),
                ("tcd-sd15", {"path": sd, "lora": str(p["lora-sd15"])}, "sd15", {})]
    if "sdxl" in sizes or "tiny" in sizes:
        xl = str(p["sdxl"])
        out += [("dmd2-sdxl", {"path": xl, "unet": str(p["dmd2-unet"])}, "sdxl", {}),
                ("lightning-sdxl", {"path": xl, "unet": str(p["dmd2-unet"])}, "sdxl", {}),
                ("lightning-lora-sdxl", {"path": xl, "lora": str(p["lora-sdxl"])}, "sdxl", {}),
                ("turbo-sdxl", {"path": str(p["turbo"])}, "sdxl",
                 {"path": xl, **({} if "tiny" in sizes else {"height": 512, "width": 512})}),
                ("tdd-sdxl", {"path": xl, "lora": str(p["lora-sdxl"])}, "sdxl", {})]
    return out


def timed(fn: Callable[[], Any], device: torch.device, repeat: int = 3) -> float:
    """Median wall time of ``fn`` in seconds (after one warm-up), synchronised on CUDA."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def bare_forward(model: Any, cond: dict, batch: int, device: torch.device) -> float:
    x = torch.randn(batch, *model.sample_shape, device=device, dtype=model.parts.dtype)
    c = {k: (torch.cat([v] * (batch // v.shape[0])) if torch.is_tensor(v) else v) for k, v in cond.items()}
    sigma = torch.full((batch,), 5.0, device=device)
    if getattr(model.parts.unet.config, "time_cond_proj_dim", None):
        c["guidance_scale"] = torch.full((batch,), 8.0)
    with torch.no_grad():
        return timed(lambda: model.denoiser(x, sigma, **c), device)


def run_family(name: str, s_opts: dict, t_name: str, t_opts: dict, batch: int, common: dict) -> dict:
    device = torch.device(common["device"])
    s = registry.create("students", name, **s_opts, **common)
    t = registry.create("teachers", t_name, student=s, **t_opts, **common)
    from tgsample.resolve import resolve

    prompts = [f"prompt {i}" for i in range(batch)]
    cond, uncond = s.encode(prompts)
    plain_run, guided_run = resolve(s), resolve(s, "++", teacher=t)  # the student's published recipes
    steps, n_guided = len(plain_run.sigmas) - 1, len(guided_run.guidance.guided_steps)
    kw = dict(seeds=list(range(batch)))
    plain = timed(lambda: sample(s, cond, uncond=uncond, run=plain_run, **kw), device) / steps
    guided = timed(lambda: sample(s, cond, uncond=uncond, run=guided_run, **kw), device) / steps
    one, two = bare_forward(s, cond, batch, device), bare_forward(s, cond, 2 * batch, device)
    extra = (guided - plain) * steps / max(n_guided, 1)
    row = {"student": name, "teacher": t_name, "zero_copy": t.parts.unet is s.parts.unet, "steps": steps,
           "guided_steps": n_guided, "bare_ms_B": 1e3 * one, "bare_ms_2B": 1e3 * two,
           "step_ms_plain": 1e3 * plain, "step_ms_guided": 1e3 * guided,
           "extra_per_guided_step_in_bare_2B": extra / two}
    x = sample(s, cond, uncond=uncond, run=guided_run, **kw)
    row["image_shape"] = list(s.decode(x).shape)
    del s, t
    return row


def peak_memory(p: dict[str, Path], kind: str, batch: int, common: dict, zero_copy: bool) -> float:
    """Peak GiB of a LoRA student + teacher sampling one guided batch (CUDA only)."""
    device = torch.device(common["device"])
    if device.type != "cuda":
        return float("nan")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    name = "lcm-lora-sd15" if kind == "sd15" else "lightning-lora-sdxl"
    s = registry.create("students", name, path=str(p[kind]), lora=str(p[f"lora-{kind}"]), **common)
    t = registry.create("teachers", kind, student=s, zero_copy=zero_copy, path=str(p[kind]), **common)
    cond, uncond = s.encode([f"p{i}" for i in range(batch)])
    sample(s, cond, uncond=uncond, seeds=list(range(batch)), recipe="++", teacher=t)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30
    del s, t
    torch.cuda.empty_cache()
    return peak


def table(rows: list[dict]) -> str:
    head = ("| student | teacher | zero-copy | steps (guided) | bare ms B / 2B | step ms plain | step ms guided "
            "| extra per guided step (bare 2B units) |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['student']} | {r['teacher']} | {r['zero_copy']} | {r['steps']} ({r['guided_steps']}) "
                     f"| {r['bare_ms_B']:.1f} / {r['bare_ms_2B']:.1f} | {r['step_ms_plain']:.1f} "
                     f"| {r['step_ms_guided']:.1f} | {r['extra_per_guided_step_in_bare_2B']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=["sd15", "sdxl", "both", "tiny"], default="both")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="float16 (GPU default), bfloat16 or float32 (CPU default)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the UNets")
    ap.add_argument("--workdir", default=None, help="where the random pipelines are written (default: a temp dir)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    sizes = ["sd15", "sdxl"] if args.size == "both" else [args.size]
    common = {"device": args.device, "compile": args.compile, **({"dtype": args.dtype} if args.dtype else {})}
    result: dict[str, Any] = {"device": args.device, "torch": torch.__version__, "batch": args.batch,
                              "dtype": args.dtype or ("float16" if args.device != "cpu" else "float32")}
    if torch.cuda.is_available() and args.device.startswith("cuda"):
        result["card"] = torch.cuda.get_device_name()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        t0 = time.perf_counter()
        paths = build_all(Path(tmp)) if sizes == ["tiny"] else build_real(Path(tmp), sizes)
        result["build_s"] = time.perf_counter() - t0
        rows = [run_family(*f, batch=args.batch, common=common) for f in families(paths, sizes)]
        result["families"] = rows
        result["peak_gib"] = {k: {"zero_copy": peak_memory(paths, k, args.batch, common, True),
                                  "separate": peak_memory(paths, k, args.batch, common, False)}
                              for k in (sizes if sizes != ["tiny"] else ["sd15", "sdxl"])}
    print(f"device: {result.get('card', args.device)}  dtype: {result['dtype']}  batch: {args.batch}  "
          f"torch {torch.__version__}")
    print(table(rows))
    for k, v in result["peak_gib"].items():
        print(f"peak memory {k} LoRA student + teacher: zero-copy {v['zero_copy']:.2f} GiB, "
              f"separate {v['separate']:.2f} GiB")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
