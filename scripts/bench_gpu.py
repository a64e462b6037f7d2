#!/usr/bin/env python
"""tgsample against the diffusers pipeline of the same family, on the same UNet, batch and dtype.

For each family (``lcm-sd15``: LCM, w embedded; ``dmd2-sdxl``: DMD2, 4 steps) and each dtype, mode
(eager / ``torch.compile``) and batch size it times, in one process:

* ``tgsample 4``: the student's 4-step run (``tgsample.sample`` with ``run=``, prompts encoded inside);
* ``tgsample 4+1``: the same with teacher guidance on step 0 (one teacher call, the teacher's CFG batch);
* ``tgsample 5``: 5 plain student steps -- the paper's cost claim is that 4 + 1 guided steps cost about
  what 5 plain steps do (1.987 s vs 1.996 s);
* ``diffusers 4``: the family's diffusers pipeline (same UNet object, ``output_type="latent"``, same prompts).

It prints images/s and ms per step (wall time / steps; the VAE is not run on either side), min / median of
``--repeats`` interleaved runs, synchronised on CUDA; then ``tgsample generate`` end to end (Lightning,
PNGs written) for each family at the largest batch: images/s between the first and the last image
written (start-up excluded) and the wall time with start-up.

Random weights (the architectures of the real models from ``scripts/gpu_check.py``; ``--size tiny``: the
test suite's tiny pipelines): the numbers measure time only. Record the card (printed) with the numbers.

    python scripts/bench_gpu.py                                   # GPU: real sizes, fp16 + bf16, eager + compile
    python scripts/bench_gpu.py --size tiny --device cpu --dtypes float32 --modes eager --batches 1 4
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

FAMILIES = ("lcm-sd15", "dmd2-sdxl")


def family_options(paths: dict[str, Path], name: str) -> tuple[dict, str, dict]:
    """(student options, teacher name, teacher options) of a family on the pipelines at ``paths``."""
    if name == "lcm-sd15":
        return {"path": str(paths["lcm-sd15"])}, "sd15", {"path": str(paths["sd15"])}
    return {"path": str(paths["sdxl"]), "unet": str(paths["dmd2-unet"])}, "sdxl", {}


def pipeline(name: str, student: Any, paths: dict[str, Path], dtype: torch.dtype, device: str, compiled: bool) -> Any:
    """The family's diffusers pipeline around the student's own UNet (its other parts loaded from disk)."""
    import diffusers as D

    unet = torch.compile(student.parts.unet) if compiled else student.parts.unet
    if name == "lcm-sd15":
        pipe = D.LatentConsistencyModelPipeline.from_pretrained(paths["lcm-sd15"], unet=unet, safety_checker=None,
                                                                requires_safety_checker=False, torch_dtype=dtype)
    else:
        xl = paths["sdxl"]
        pipe = D.StableDiffusionXLPipeline.from_pretrained(
            xl, unet=unet, scheduler=D.LCMScheduler.from_pretrained(xl, subfolder="scheduler"), torch_dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def pipeline_call(name: str) -> dict:
    """The pipeline call of the family's 4-step student (as in tests/test_diffusers_parity.py)."""
    if name == "lcm-sd15":
        return dict(num_inference_steps=4, guidance_scale=8.0)
    return dict(timesteps=[999, 749, 499, 249], guidance_scale=0.0)


def times(fns: dict[str, Callable[[], Any]], device: torch.device, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, interleaved, after one warm-up each (compilation happens there)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    sync()
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            sync()
            out[k].append(time.perf_counter() - t)
    return out


def bench_family(name: str, paths: dict[str, Path], dtype: str, mode: str, batches: list[int], repeats: int,
                 device: str) -> list[dict]:
    """One row per (batch, runner): images/s and ms per step, min and median."""
    from tgsample import registry, sample
    from tgsample.resolve import resolve

    s_opts, t_name, t_opts = family_options(paths, name)
    common = {"device": device, "dtype": dtype, "compile": mode == "compile"}
    s = registry.create("students", name, **s_opts, **common)
    t = registry.create("teachers", t_name, student=s, **t_opts, **common)
    plain4, plain5 = resolve(s, steps=4), resolve(s, steps=5)
    guided = resolve(s, "++", teacher=t, steps=4)
    guided = dataclasses.replace(guided, guidance=dataclasses.replace(guided.guidance, guided_steps=(0,)))
    pipe = pipeline(name, s, paths, getattr(torch, dtype), device, mode == "compile")
    call = pipeline_call(name)
    rows = []
    for b in batches:
        prompts = [f"a photo of object {i}" for i in range(b)]
        seeds = list(range(b))

        def ours(run: Any) -> Callable[[], Any]:
            def go() -> Any:
                cond, uncond = s.encode(prompts)
                return sample(s, cond, uncond=uncond, seeds=seeds, run=run)
            return go

        fns = {"tgsample 4": ours(plain4), "tgsample 4+1": ours(guided), "tgsample 5": ours(plain5),
               "diffusers 4": lambda: pipe(prompt=prompts, output_type="latent",
                                           generator=torch.Generator().manual_seed(0), **call).images}
        steps = {"tgsample 4": 4, "tgsample 4+1": 4, "tgsample 5": 5, "diffusers 4": 4}
        for runner, secs in times(fns, torch.device(device), repeats).items():
            lo, med = min(secs), statistics.median(secs)
            rows.append({"family": name, "dtype": dtype, "mode": mode, "batch": b, "runner": runner,
                         "steps": steps[runner], "seconds_min": lo, "seconds_median": med,
                         "images_per_s": b / med, "ms_per_step": 1e3 * med / steps[runner]})
    del s, t, pipe
    return rows


def generate_end_to_end(name: str, paths: dict[str, Path], dtype: str, batch: int, records: int, device: str,
                        out: Path) -> dict:
    """``tgsample generate`` in this process: images/s between the first and last PNG, and wall time."""
    from tgsample.lightning.cli import main as generate

    s_opts, _, _ = family_options(paths, name)
    prompts = out / f"prompts-{name}.txt"
    prompts.write_text("".join(f"a photo of object {i}\n" for i in range(records)))
    accelerator = "gpu" if device.startswith("cuda") else "cpu"
    args = ["--model.student", name, "--model.student_options", json.dumps({**s_opts, "dtype": dtype}),
            "--model.steps", "4", "--data.prompt_file", str(prompts), "--data.batch_size", str(batch),
            "--output.dir", str(out / f"generate-{name}"), "--output.preview", "0",
            "--trainer.accelerator", accelerator, "--trainer.devices", "1", "--trainer.enable_progress_bar", "false"]
    t = time.perf_counter()
    code = generate(args)
    wall = time.perf_counter() - t
    rows = [json.loads(line) for line in (out / f"generate-{name}" / "manifest.jsonl").read_text().splitlines()]
    finished = sorted(r["finished"] for r in rows)
    span = finished[-1] - finished[0]
    # images after the first batch's, over the time from the first batch's end to the last's
    rate = (len(rows) - batch) / span if span > 0 and len(rows) > batch else float("nan")
    return {"family": name, "dtype": dtype, "batch": batch, "records": len(rows), "exit": code,
            "images_per_s": rate, "wall_s": wall}


def build(size: str, root: Path) -> dict[str, Path]:
    """The pipelines to time: the tiny test ones, or random ones of the real sizes (fp16 on disk)."""
    if size == "tiny":
        from tiny_pipelines import build_all

        return build_all(root)
    from gpu_check import build_real

    return build_real(root, ["sd15", "sdxl"] if size == "both" else [size])


def run(paths: dict[str, Path], families: list[str], dtypes: list[str], modes: list[str], batches: list[int],
        repeats: int, device: str, generate_records: int, workdir: Path) -> dict:
    """Every measurement; the results as a dict (also what ``--out`` writes)."""
    result: dict[str, Any] = {"device": device, "torch": torch.__version__,
                              "card": torch.cuda.get_device_name() if device.startswith("cuda") else "CPU",
                              "threads": torch.get_num_threads(), "rows": [], "generate": []}
    for name in families:
        for dtype in dtypes:
            for mode in modes:
                result["rows"] += bench_family(name, paths, dtype, mode, batches, repeats, device)
        if generate_records:
            result["generate"].append(generate_end_to_end(name, paths, dtypes[0], max(batches), generate_records,
                                                          device, workdir))
    return result


def report(result: dict) -> str:
    lines = [f"card: {result['card']}  torch {result['torch']}  threads {result['threads']}",
             "| family | dtype | mode | batch | runner | images/s | ms/step (median) | s per batch min / median |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['family']} | {r['dtype']} | {r['mode']} | {r['batch']} | {r['runner']} | "
                     f"{r['images_per_s']:.2f} | {r['ms_per_step']:.1f} | {r['seconds_min']:.3f} / "
                     f"{r['seconds_median']:.3f} |")
    keyed = {(r["family"], r["dtype"], r["mode"], r["batch"], r["runner"]): r["seconds_median"] for r in result["rows"]}
    for (fam, dt, mode, b, runner), sec in keyed.items():
        if runner == "tgsample 4+1":
            five, diff = keyed[(fam, dt, mode, b, "tgsample 5")], keyed[(fam, dt, mode, b, "diffusers 4")]
            four = keyed[(fam, dt, mode, b, "tgsample 4")]
            lines.append(f"{fam} {dt} {mode} batch {b}: 4+1 guided / 5 plain = {sec / five:.3f}; "
                         f"tgsample 4 / diffusers 4 = {four / diff:.3f}")
    for g in result["generate"]:
        lines.append(f"tgsample generate {g['family']} {g['dtype']} batch {g['batch']}: {g['images_per_s']:.2f} "
                     f"images/s after the first batch ({g['records']} images, wall with start-up {g['wall_s']:.1f} s)")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None, paths: Optional[dict[str, Path]] = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["sd15", "sdxl", "both", "tiny"], default="both")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"])
    ap.add_argument("--modes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8, 16])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--generate-records", type=int, default=64, help="records of the end-to-end run (0: skip)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.size in ("sd15", "sdxl"):
        a.families = [f for f in a.families if f.endswith(a.size)]
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        paths = paths or build(a.size, Path(tmp))
        result = run(paths, a.families, a.dtypes, a.modes, a.batches, a.repeats, a.device, a.generate_records,
                     Path(tmp))
    print(report(result))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
