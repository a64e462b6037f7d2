"""Each family's output equals its diffusers pipeline (with ``diffusers_parity=True``), on tiny saved models.

Both sides get the same initial latents (``latents=``, diffusers' convention) and the same per-step noise
(``generator=torch.Generator().manual_seed(s)``: diffusers' seeding convention, the whole batch per draw).
Latents are compared after the last step (``output_type="latent"``).
"""

from __future__ import annotations

import pytest
import torch

from tgsample import registry, sample
from tgsample.schedules import timesteps_to_sigmas

torch.set_num_threads(1)
PROMPTS = ["a red cube", "a cat"]
ATOL = 1e-4  # float32 accumulation over the steps; the differences the switch removes are 0.04-0.1


def _z(shape, seed=5):
    return torch.randn(len(PROMPTS), *shape, generator=torch.Generator().manual_seed(seed))


def theirs(pipe, z, seed=11, **kwargs):
    """The diffusers pipeline's final latents."""
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt=PROMPTS, latents=z.clone(), generator=torch.Generator().manual_seed(seed),
                output_type="latent", **kwargs).images


def ours(model, z, seed=11, **kwargs):
    cond, uncond = model.encode(PROMPTS)
    return sample(model, cond, uncond=uncond, latents=z, generator=torch.Generator().manual_seed(seed), **kwargs)


def steps(model):
    """The diffusers call's step count: the student's plain recipe's (tgsample samples that recipe by default)."""
    return model.recipes[""].steps


def call_options(model, call):
    """The pipeline call's options, the step count taken from the student's recipe."""
    return {k: (v(model) if callable(v) else v) for k, v in call.items()}


def _families(tiny):
    """name -> (student options, pipeline builder(model), pipeline call options, default convention also matches)."""
    import diffusers as D

    sd, xl, turbo = str(tiny["sd15"]), str(tiny["sdxl"]), str(tiny["turbo"])

    def sd_pipe(scheduler, root=sd):
        return lambda m: D.StableDiffusionPipeline.from_pretrained(
            root, unet=m.parts.unet, safety_checker=None, requires_safety_checker=False,
            scheduler=scheduler.from_pretrained(root, subfolder="scheduler"))

    def xl_pipe(scheduler, root=xl, **config):
        return lambda m: D.StableDiffusionXLPipeline.from_pretrained(
            root, unet=m.parts.unet, scheduler=scheduler.from_pretrained(root, subfolder="scheduler", **config))

    lcm = lambda m: D.LatentConsistencyModelPipeline.from_pretrained(  # noqa: E731
        tiny["lcm-sd15"], unet=m.parts.unet, safety_checker=None, requires_safety_checker=False)
    return {
        "lcm-sd15": (dict(path=str(tiny["lcm-sd15"])), lcm, dict(num_inference_steps=steps, guidance_scale=8.0), True),
        "lcm-lora-sd15": (dict(path=sd, lora=str(tiny["lora-sd15"])), sd_pipe(D.LCMScheduler),
                          dict(num_inference_steps=steps, guidance_scale=1.0), True),
        "lcm-sdxl": (dict(path=xl, unet=str(tiny["lcm-sdxl-unet"])), xl_pipe(D.LCMScheduler),
                     dict(num_inference_steps=steps, guidance_scale=8.0), True),
        "dmd2-sdxl": (dict(path=xl, unet=str(tiny["dmd2-unet"])), xl_pipe(D.LCMScheduler),
                      dict(timesteps=[999, 749, 499, 249], guidance_scale=0.0), True),
        "tcd-sd15": (dict(path=sd, lora=str(tiny["lora-sd15"])), sd_pipe(D.TCDScheduler),
                     dict(num_inference_steps=steps, guidance_scale=1.0, eta=0.3), False),
        "lightning-sdxl": (dict(path=xl, unet=str(tiny["dmd2-unet"])),
                           xl_pipe(D.EulerDiscreteScheduler, timestep_spacing="trailing"),
                           dict(num_inference_steps=steps, guidance_scale=0.0), False),
        "lightning-lora-sdxl": (dict(path=xl, lora=str(tiny["lora-sdxl"])),
                                xl_pipe(D.EulerDiscreteScheduler, timestep_spacing="trailing"),
                                dict(num_inference_steps=steps, guidance_scale=0.0), False),
        "turbo-sdxl": (dict(path=turbo), xl_pipe(D.EulerAncestralDiscreteScheduler, root=turbo, timestep_spacing="trailing"),
                       dict(num_inference_steps=steps, guidance_scale=0.0), False),
    }


FAMILIES = ["lcm-sd15", "lcm-lora-sd15", "lcm-sdxl", "dmd2-sdxl", "tcd-sd15", "lightning-sdxl", "lightning-lora-sdxl",
            "turbo-sdxl"]


@pytest.mark.parametrize("name", FAMILIES)
def test_student_equals_its_diffusers_pipeline(tiny, name):
    options, pipe, call, default_matches = _families(tiny)[name]
    model = registry.create("students", name, diffusers_parity=True, **options)
    z = _z(model.sample_shape)
    expected = theirs(pipe(model), z, **call_options(model, call))
    torch.testing.assert_close(ours(model, z), expected, rtol=0, atol=ATOL)  # the student's plain recipe
    default = ours(registry.create("students", name, **options), z)
    if default_matches:  # tgsample's own convention already is diffusers' for these schedulers
        torch.testing.assert_close(default, expected, rtol=0, atol=ATOL)
    else:  # the start (Euler trailing) or the last step (TCD) differ by design
        assert (default - expected).abs().max() > 1e-2


@pytest.mark.parametrize("name", ["lightning-sdxl", "tcd-sd15"])
def test_teacher_guidance_at_lam_zero_is_the_diffusers_pipeline(tiny, name):
    options, pipe, call, _ = _families(tiny)[name]
    model = registry.create("students", name, diffusers_parity=True, **options)
    z = _z(model.sample_shape)
    guided = model.recipes["++"]
    x = ours(model, z, recipe="++", guidance={**guided.guidance, "lam": 0.0})  # its teacher built with student=
    torch.testing.assert_close(x, theirs(pipe(model), z, **call_options(model, call)), rtol=0, atol=ATOL)


def test_diffusers_seeding_without_latents(tiny):
    """generator= alone: the latents are the generator's first batch draw, as in the pipeline."""
    import diffusers as D

    options, pipe, call, _ = _families(tiny)["turbo-sdxl"]
    model = registry.create("students", "turbo-sdxl", diffusers_parity=True, **options)
    p = pipe(model)
    p.set_progress_bar_config(disable=True)
    expected = p(prompt=PROMPTS, generator=torch.Generator().manual_seed(42), output_type="latent",
                 **call_options(model, call)).images
    cond, _ = model.encode(PROMPTS)
    x = sample(model, cond, generator=torch.Generator().manual_seed(42))
    torch.testing.assert_close(x, expected, rtol=0, atol=ATOL)
    assert isinstance(p.scheduler, D.EulerAncestralDiscreteScheduler)
    per_sample = sample(model, cond, seeds=[42, 43])  # tgsample's default: per-sample streams
    assert (per_sample - expected).abs().max() > 1e-2


# --- teachers ------------------------------------------------------------------------------------------------


def test_teacher_dpmpp_2m_karras_equals_dpm_solver_multistep(tiny):
    import diffusers as D

    sd = str(tiny["sd15"])
    run = dict(schedule="karras", steps=10, solver="dpmpp_2m", guidance={"name": "cfg", "scale": 7.5})
    t = registry.create("teachers", "sd15", path=sd, diffusers_parity=True)
    pipe = D.StableDiffusionPipeline.from_pretrained(
        sd, unet=t.parts.unet, safety_checker=None, requires_safety_checker=False,
        scheduler=D.DPMSolverMultistepScheduler.from_pretrained(sd, subfolder="scheduler", use_karras_sigmas=True))
    z = _z(t.sample_shape)
    expected = theirs(pipe, z, num_inference_steps=10, guidance_scale=7.5)
    torch.testing.assert_close(ours(t, z, **run), expected, rtol=0, atol=2 * ATOL)
    unrounded = ours(registry.create("teachers", "sd15", path=sd), z, **run)  # fractional t (916.28, not 916)
    assert (unrounded - expected).abs().max() > 1e-2


def test_teacher_euler_leading_and_karras_match(tiny):
    """Euler on the SDXL config's "leading" spacing matches by default; Euler with Karras sigmas on SD 1.5's
    config (no timestep_spacing key: Euler's "linspace") starts at sigma_max z, which the switch gives."""
    import diffusers as D

    sd, xl = str(tiny["sd15"]), str(tiny["sdxl"])
    tx = registry.create("teachers", "sdxl", path=xl)
    leading = D.EulerDiscreteScheduler.from_pretrained(xl, subfolder="scheduler")
    leading.set_timesteps(10)
    pipe = D.StableDiffusionXLPipeline.from_pretrained(xl, unet=tx.parts.unet, scheduler=leading)
    z = _z(tx.sample_shape)
    x = ours(tx, z, sigmas=timesteps_to_sigmas(tx, leading.timesteps.tolist()), solver="euler",
             guidance={"name": "cfg", "scale": 5.0})
    torch.testing.assert_close(x, theirs(pipe, z, num_inference_steps=10, guidance_scale=5.0), rtol=0, atol=ATOL)

    karras = D.EulerDiscreteScheduler.from_pretrained(sd, subfolder="scheduler", use_karras_sigmas=True)
    karras.set_timesteps(10)  # Euler spans its spacing's timesteps (DPM-Solver and tgsample's karras: the table)
    for parity in (True, False):
        t = registry.create("teachers", "sd15", path=sd, diffusers_parity=parity)
        pipe = D.StableDiffusionPipeline.from_pretrained(sd, unet=t.parts.unet, safety_checker=None,
                                                         requires_safety_checker=False, scheduler=karras)
        z = _z(t.sample_shape)
        x = ours(t, z, sigmas=karras.sigmas, solver="euler", guidance={"name": "cfg", "scale": 7.5})
        expected = theirs(pipe, z, num_inference_steps=10, guidance_scale=7.5)
        if parity:
            torch.testing.assert_close(x, expected, rtol=0, atol=ATOL)
        else:
            assert (x - expected).abs().max() > 1e-2  # sqrt(1 + sigma_max^2) z vs sigma_max z


# --- guidance_rescale, SDXL micro-conditioning, clip_skip --------------------------------------------------------


def test_guidance_rescale_equals_diffusers(tiny):
    import diffusers as D

    sd = str(tiny["sd15"])
    t = registry.create("teachers", "sd15", path=sd, diffusers_parity=True)
    pipe = D.StableDiffusionPipeline.from_pretrained(
        sd, unet=t.parts.unet, safety_checker=None, requires_safety_checker=False,
        scheduler=D.DPMSolverMultistepScheduler.from_pretrained(sd, subfolder="scheduler", use_karras_sigmas=True))
    z = _z(t.sample_shape)
    run = dict(schedule="karras", steps=6, solver="dpmpp_2m")
    expected = theirs(pipe, z, num_inference_steps=6, guidance_scale=7.5, guidance_rescale=0.7)
    x = ours(t, z, **run, guidance={"name": "rescaled_cfg", "scale": 7.5, "rescale": 0.7})
    torch.testing.assert_close(x, expected, rtol=0, atol=ATOL)
    assert (ours(t, z, **run, guidance={"name": "cfg", "scale": 7.5}) - expected).abs().max() > 1e-2


def test_sdxl_micro_conditioning_equals_diffusers(tiny):
    import diffusers as D

    xl = str(tiny["sdxl"])
    micro = dict(original_size=(40, 24), crops_coords_top_left=(4, 2), target_size=(16, 16))
    t = registry.create("teachers", "sdxl", path=xl, diffusers_parity=True, **micro)
    cond, uncond = t.encode(PROMPTS)
    assert cond["time_ids"].tolist() == [[40, 24, 4, 2, 16, 16]] * 2 and torch.equal(uncond["time_ids"], cond["time_ids"])
    pipe = D.StableDiffusionXLPipeline.from_pretrained(
        xl, unet=t.parts.unet, scheduler=D.EulerDiscreteScheduler.from_pretrained(xl, subfolder="scheduler",
                                                                                  timestep_spacing="trailing"))
    z = _z(t.sample_shape)
    expected = theirs(pipe, z, num_inference_steps=4, guidance_scale=5.0, **micro)
    x = ours(t, z, schedule="trailing", steps=4, solver="euler", guidance={"name": "cfg", "scale": 5.0})
    torch.testing.assert_close(x, expected, rtol=0, atol=ATOL)
    plain = ours(registry.create("teachers", "sdxl", path=xl, diffusers_parity=True), z, schedule="trailing", steps=4,
                 solver="euler", guidance={"name": "cfg", "scale": 5.0})
    assert (plain - expected).abs().max() > 1e-3  # the micro-conditioning reaches the UNet


def test_clip_skip_sd15_on_flattened_clip(tiny):
    """SD 1.x clip_skip = k: the hidden state k layers before the last, through the final layer norm
    (diffusers' meaning), on transformers' flattened CLIPTextModel."""
    t = registry.create("teachers", "sd15", path=str(tiny["sd15"]), clip_skip=1)
    enc, tok = t.parts.encoder.text_encoders[0], t.parts.encoder.tokenizers[0]
    cond, uncond = t.encode(PROMPTS)
    ids = tok(PROMPTS, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = enc(ids.input_ids, output_hidden_states=True).hidden_states
        norm = getattr(enc, "text_model", enc).final_layer_norm
        torch.testing.assert_close(cond["encoder_hidden_states"], norm(hidden[-2]))
        assert not torch.allclose(cond["encoder_hidden_states"], enc(ids.input_ids)[0])
    plain = registry.create("teachers", "sd15", path=str(tiny["sd15"]))
    torch.testing.assert_close(uncond["encoder_hidden_states"], plain.encode(PROMPTS)[1]["encoder_hidden_states"])


def test_clip_skip_sdxl_equals_diffusers(tiny):
    import diffusers as D

    xl = str(tiny["sdxl"])
    t = registry.create("teachers", "sdxl", path=xl, clip_skip=1)
    pipe = D.StableDiffusionXLPipeline.from_pretrained(xl)
    cond, _ = t.encode(PROMPTS)
    c, _, pooled, _ = pipe.encode_prompt(PROMPTS, device="cpu", do_classifier_free_guidance=True, clip_skip=1)
    torch.testing.assert_close(cond["encoder_hidden_states"], c)
    torch.testing.assert_close(cond["text_embeds"], pooled)
