"""The parity table of docs/models.md: each family against its diffusers pipeline, on tiny saved models.

For every family of ``tests/test_diffusers_parity.py`` (the same pipelines, calls and settings) this
prints max |tgsample - diffusers| of the final latents with tgsample's default convention and with
``diffusers_parity=True``, both runs given the same ``latents=`` and ``generator=``::

    python scripts/diffusers_parity.py            # a markdown table (CPU, ~1 min)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_diffusers_parity import FAMILIES, _families, _z, call_options, ours, theirs  # noqa: E402
from tiny_pipelines import build_all  # noqa: E402


def teachers(tiny):
    """(name, run(parity) -> (ours, theirs)) for the teacher cases."""
    import diffusers as D

    from tgsample import registry

    sd = str(tiny["sd15"])

    def dpm(parity):
        t = registry.create("teachers", "sd15", path=sd, diffusers_parity=parity)
        pipe = D.StableDiffusionPipeline.from_pretrained(
            sd, unet=t.parts.unet, safety_checker=None, requires_safety_checker=False,
            scheduler=D.DPMSolverMultistepScheduler.from_pretrained(sd, subfolder="scheduler", use_karras_sigmas=True))
        z = _z(t.sample_shape)
        return (ours(t, z, schedule="karras", steps=10, solver="dpmpp_2m", guidance={"name": "cfg", "scale": 7.5}),
                theirs(pipe, z, num_inference_steps=10, guidance_scale=7.5))

    def euler_karras(parity):
        t = registry.create("teachers", "sd15", path=sd, diffusers_parity=parity)
        karras = D.EulerDiscreteScheduler.from_pretrained(sd, subfolder="scheduler", use_karras_sigmas=True)
        karras.set_timesteps(10)
        pipe = D.StableDiffusionPipeline.from_pretrained(sd, unet=t.parts.unet, safety_checker=None,
                                                         requires_safety_checker=False, scheduler=karras)
        z = _z(t.sample_shape)
        return (ours(t, z, sigmas=karras.sigmas, solver="euler", guidance={"name": "cfg", "scale": 7.5}),
                theirs(pipe, z, num_inference_steps=10, guidance_scale=7.5))

    def euler_leading(parity):
        from tgsample.schedules import timesteps_to_sigmas

        xl = str(tiny["sdxl"])
        t = registry.create("teachers", "sdxl", path=xl, diffusers_parity=parity)
        leading = D.EulerDiscreteScheduler.from_pretrained(xl, subfolder="scheduler")
        leading.set_timesteps(10)
        pipe = D.StableDiffusionXLPipeline.from_pretrained(xl, unet=t.parts.unet, scheduler=leading)
        z = _z(t.sample_shape)
        return (ours(t, z, sigmas=timesteps_to_sigmas(t, leading.timesteps.tolist()), solver="euler",
                     guidance={"name": "cfg", "scale": 5.0}), theirs(pipe, z, num_inference_steps=10, guidance_scale=5.0))

    return [("sd15 teacher, DPM++ 2M Karras, CFG 7.5, 10 steps", dpm),
            ("sdxl teacher, Euler leading (SDXL config), CFG 5, 10 steps", euler_leading),
            ("sd15 teacher, Euler Karras (SD 1.5 config), CFG 7.5, 10 steps", euler_karras)]


def main() -> None:
    torch.set_num_threads(1)
    from tgsample import registry

    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_all(Path(tmp))
        families = _families(tiny)
        rows = []
        for name in FAMILIES:
            options, pipe, call, _ = families[name]
            diffs = []
            for parity in (False, True):
                model = registry.create("students", name, diffusers_parity=parity, **options)
                z = _z(model.sample_shape)
                diffs.append((ours(model, z) - theirs(pipe(model), z, **call_options(model, call))).abs().max().item())
            rows.append((f"{name} ({type(pipe(model).scheduler).__name__})", *diffs))
        for label, run in teachers(tiny):
            rows.append((label, *[(lambda a, b: (a - b).abs().max().item())(*run(p)) for p in (False, True)]))
    print("| family (diffusers scheduler) | default | `diffusers_parity=True` |")
    print("| --- | --- | --- |")
    for label, default, parity in rows:
        print(f"| {label} | {default:.2g} | {parity:.2g} |")


if __name__ == "__main__":
    main()
