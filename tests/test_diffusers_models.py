"""Diffusers-backed students and teachers on tiny random pipelines saved with save_pretrained.

The pipelines (tests/tiny_pipelines.py; fixture ``tiny`` in conftest.py) are written once per session and
loaded through the same registry factories and loading code a user's real model goes through. No network, no GPU.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from tgsample import registry, sample
from tgsample.errors import ConfigError, ShapeMismatchError, TgsampleError, UnknownNameError
from tgsample.models import Model
from tgsample.models.diffusers import LoRAMismatchError, ModelNotFoundError, OfflineModelError, load_model

torch.set_num_threads(1)
SD_CONFIG = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)


def student(name, **options):
    return registry.create("students", name, **options)


def teacher(name, **options):
    return registry.create("teachers", name, **options)


def run(s, t, prompts=("a red cube", "a cat"), seeds=(1, 2), **overrides):
    """Sample ``s`` with its published teacher-guided recipe (``++``), teacher ``t``; returns (latents, images)."""
    guided = s.recipes["++"]
    recipe = guided.replace(guidance={**guided.guidance, **overrides})
    cond, uncond = s.encode(list(prompts), None)
    x = sample(s, cond, uncond=uncond, seeds=list(seeds), recipe=recipe, teacher=t)
    return x, s.decode(x)


# --- sigma <-> timestep on the real SD table --------------------------------------------------


def test_sd_table_sigmas_and_timesteps_match_diffusers():
    from diffusers import EulerDiscreteScheduler, LCMScheduler

    from tgsample.denoisers import DiscreteVPDenoiser
    from tgsample.models.diffusers.loading import alphas_cumprod
    from tgsample.schedules import lcm, trailing

    lcm_sched = LCMScheduler(**SD_CONFIG)
    den = DiscreteVPDenoiser(lambda x, t: x, alphas_cumprod(dict(lcm_sched.config)))
    lcm_sched.set_timesteps(4)
    assert lcm_sched.timesteps.tolist() == [999, 759, 499, 259]
    euler = EulerDiscreteScheduler(**SD_CONFIG)
    euler.set_timesteps(timesteps=[999, 759, 499, 259])
    ours = lcm(4, den)
    torch.testing.assert_close(ours, euler.sigmas.double(), rtol=1e-5, atol=1e-5)
    assert [round(v, 1) for v in ours[:-1].tolist()] == [14.6, 4.3, 1.6, 0.7]  # DESIGN.md section 2
    ts = torch.tensor([999.0, 759, 499, 259], dtype=torch.float64)
    torch.testing.assert_close(den.sigma_to_t(ours[:-1]), ts, rtol=0, atol=1e-3)
    trail = EulerDiscreteScheduler(**SD_CONFIG, timestep_spacing="trailing")
    trail.set_timesteps(4)
    assert trail.timesteps.tolist() == [999, 749, 499, 249]
    torch.testing.assert_close(trailing(4, den), trail.sigmas.double(), rtol=1e-5, atol=1e-5)


# --- the LCM student against diffusers' own LCM step --------------------------------------------


def test_lcm_denoiser_equals_lcm_scheduler_step(tiny):
    from diffusers import LCMScheduler, StableDiffusionPipeline

    s = student("lcm-sd15", path=str(tiny["lcm-sd15"]))
    cond, _ = s.encode(["a red cube"])
    unet = s.parts.unet
    sched = LCMScheduler.from_pretrained(tiny["lcm-sd15"], subfolder="scheduler")
    sched.set_timesteps(4)
    t = int(sched.timesteps[1])  # 759
    sigma = s.denoiser.t_to_sigma(torch.tensor(float(t))).float()
    x_vp = torch.randn(1, *s.sample_shape, generator=torch.Generator().manual_seed(0))
    for w in (2.0, 8.0):
        emb = StableDiffusionPipeline.get_guidance_scale_embedding(None, torch.tensor([w - 1]), 8)
        eps = unet(x_vp, t, encoder_hidden_states=cond["encoder_hidden_states"], timestep_cond=emb).sample
        sched._step_index = 1
        expected = sched.step(eps, t, x_vp).denoised
        ours = s.denoiser(x_vp * (1 + sigma**2) ** 0.5, sigma.reshape(1), **cond,
                          guidance_scale=torch.tensor([w]))
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
    assert s.denoiser.prediction == "epsilon" and s.denoiser.boundary is not None


def test_v_prediction_pipeline(tiny):
    t = teacher("sd15", path=str(tiny["sd15-v"]))
    assert t.denoiser.prediction == "v_prediction"
    cond, _ = t.encode(["x"])
    x, sigma = torch.randn(1, *t.sample_shape), torch.tensor([3.0])
    ts = t.denoiser.sigma_to_t(sigma)
    v = t.parts.unet(x / (1 + sigma**2) ** 0.5, ts, encoder_hidden_states=cond["encoder_hidden_states"]).sample
    expected = x / (sigma**2 + 1) - sigma / (sigma**2 + 1) ** 0.5 * v
    torch.testing.assert_close(t.denoiser(x, sigma, **cond), expected, rtol=1e-5, atol=1e-5)


# --- encoding ------------------------------------------------------------------------------------


def test_sdxl_encode_keys_time_ids_and_negatives(tiny):
    t = teacher("sdxl", path=str(tiny["sdxl"]))
    cond, uncond = t.encode(["a", "b"])
    assert set(cond) == set(uncond) == {"encoder_hidden_states", "text_embeds", "time_ids"}
    assert cond["encoder_hidden_states"].shape == (2, 16, 64) and cond["text_embeds"].shape == (2, 32)
    assert cond["time_ids"].tolist() == [[16, 16, 0, 0, 16, 16]] * 2  # 8x8 latents, VAE factor 2
    assert uncond["encoder_hidden_states"].abs().sum() == 0  # force_zeros_for_empty_prompt
    _, neg = t.encode(["a", "b"], ["blurry", "dark"])
    assert neg["encoder_hidden_states"].abs().sum() > 0
    with pytest.raises(ConfigError, match="1 negative prompts for 2 prompts"):
        t.encode(["a", "b"], ["blurry"])


def test_prompts_encoded_once_when_encoders_are_shared(tiny):
    s = student("lcm-sd15", path=str(tiny["lcm-sd15"]))
    t = teacher("sd15", path=str(tiny["sd15"]), student=s)  # separate pipeline, equal text-encoder weights
    assert t.parts.encoder is s.parts.encoder and t.parts.net.prefix == ""
    before = s.parts.encoder.calls
    s.encode(["a cat", "a dog"])
    t.encode(["a cat", "a dog"])
    assert s.parts.encoder.calls == before + 1


def test_encoders_with_equal_weights_but_other_options_are_not_shared(tiny):
    """PromptEncoder.same_as compares the options that shape the embeddings (clip skip, SDXL's micro-conditioning),
    not only the weights."""
    s = student("turbo-sdxl", path=str(tiny["turbo"]))
    assert teacher("sdxl", path=str(tiny["sdxl"]), student=s, height=16, width=16).parts.encoder is s.parts.encoder
    t = teacher("sdxl", path=str(tiny["sdxl"]), student=s, height=16, width=16, original_size=(40, 24))
    assert t.parts.encoder is not s.parts.encoder and t.parts.net.prefix == "teacher_"
    cond, _ = s.encode(["a cat"])
    assert cond["teacher_time_ids"].tolist()[0][:2] == [40, 24] != cond["time_ids"].tolist()[0][:2]
    sd = student("lcm-sd15", path=str(tiny["lcm-sd15"]))
    assert teacher("sd15", path=str(tiny["sd15"]), student=sd, clip_skip=1).parts.encoder is not sd.parts.encoder


def test_teacher_with_other_text_encoder_gets_its_own_keys(tiny):
    s = student("lcm-sd15", path=str(tiny["lcm-sd15"]))
    t = teacher("sd15", path=str(tiny["sd15-te"]), student=s)
    assert t.parts.encoder is not s.parts.encoder and t.parts.net.prefix == "teacher_"
    cond, uncond = s.encode(["a cat"])
    own, _ = t.parts.encoder.encode(["a cat"])
    assert set(uncond) == set(cond) == {"encoder_hidden_states", "teacher_encoder_hidden_states"}
    assert not torch.equal(cond["encoder_hidden_states"], cond["teacher_encoder_hidden_states"])
    x, sigma = torch.randn(1, *t.sample_shape), torch.tensor([2.0])
    torch.testing.assert_close(t.denoiser(x, sigma, **cond), t.denoiser(x, sigma, encoder_hidden_states=own["encoder_hidden_states"]))


# --- zero-copy teacher -----------------------------------------------------------------------------


def test_zero_copy_teacher_equals_separately_loaded_base(tiny):
    s = student("lcm-lora-sd15", path=str(tiny["sd15"]), lora=str(tiny["lora-sd15"]))
    t = teacher("sd15", student=s)
    assert t.parts.unet is s.parts.unet  # no second copy of the weights
    base = teacher("sd15", path=str(tiny["sd15"]), student=s, zero_copy=False)
    assert base.parts.unet is not s.parts.unet
    cond, _ = s.encode(["a cat", "a dog"])
    x, sigma = torch.randn(2, *s.sample_shape, generator=torch.Generator().manual_seed(3)), torch.tensor([4.0, 1.5])
    d_student = s.denoiser(x, sigma, **cond)
    d_zero = t.denoiser(x, sigma, **cond)
    assert torch.equal(d_zero, base.denoiser(x, sigma, **cond))
    assert not torch.allclose(d_zero, d_student)  # the LoRA matters ...
    assert torch.equal(s.denoiser(x, sigma, **cond), d_student)  # ... and is back on after the teacher's call
    # the toggle flips the listed LoRA layers only: outputs exactly as before, no requires_grad change
    lora = {n: p.requires_grad for n, p in s.parts.unet.named_parameters() if "lora" in n}
    assert lora and len(t.parts.net.adapters.layers) > 0
    for _ in range(3):
        assert torch.equal(t.denoiser(x, sigma, **cond), d_zero)
        assert torch.equal(s.denoiser(x, sigma, **cond), d_student)
    assert lora == {n: p.requires_grad for n, p in s.parts.unet.named_parameters() if "lora" in n}
    with pytest.raises(ConfigError, match="offload=True cannot be used with a zero-copy teacher"):
        teacher("sd15", student=s, offload=True)


# --- every student family, end to end with teacher guidance ----------------------------------------


def _families(tiny):
    sd, xl = str(tiny["sd15"]), str(tiny["sdxl"])
    return {
        "lcm-sd15": (dict(path=str(tiny["lcm-sd15"])), "sd15", dict(path=sd)),
        "lcm-lora-sd15": (dict(path=sd, lora=str(tiny["lora-sd15"])), "sd15", {}),
        "tcd-sd15": (dict(path=sd, lora=str(tiny["lora-sd15"])), "sd15", {}),
        "lcm-sdxl": (dict(path=xl, unet=str(tiny["lcm-sdxl-unet"])), "sdxl", {}),
        "dmd2-sdxl": (dict(path=xl, unet=str(tiny["dmd2-unet"])), "sdxl", {}),
        "lightning-sdxl": (dict(path=xl, unet=str(tiny["dmd2-unet"])), "sdxl", {}),
        "lightning-lora-sdxl": (dict(path=xl, lora=str(tiny["lora-sdxl"])), "sdxl", {}),
        "turbo-sdxl": (dict(path=str(tiny["turbo"])), "sdxl", dict(path=xl)),
        "tdd-sdxl": (dict(path=xl, lora=str(tiny["lora-sdxl"]), x0_clip={"mode": "clamp", "value": 3.0,
                                                                          "sigma_min": 1.0}), "sdxl", {}),
    }


@pytest.mark.parametrize("name", ["lcm-sd15", "lcm-lora-sd15", "tcd-sd15", "lcm-sdxl", "dmd2-sdxl", "lightning-sdxl",
                                  "lightning-lora-sdxl", "turbo-sdxl", "tdd-sdxl"])
def test_student_family_with_teacher_guidance(tiny, name):
    s_opts, t_name, t_opts = _families(tiny)[name]
    s = student(name, **s_opts)
    t = teacher(t_name, student=s, **t_opts)
    x, images = run(s, t)
    assert x.shape == (2, 4, 8, 8) and images.shape == (2, 3, 16, 16)
    assert torch.isfinite(x).all() and 0 <= images.min() and images.max() <= 1
    x2, _ = run(s, t)
    assert torch.equal(x, x2)  # reproducible with seeds
    x3, _ = run(s, t, seeds=(1, 5))
    assert torch.equal(x3[0], x[0]) and not torch.equal(x3[1], x[1])  # per-sample seeds
    x0, _ = run(s, t, lam=0.0)
    assert not torch.equal(x0, x)  # the teacher changes the result at lam > 0
    cond, uncond = s.encode(["a red cube", "a cat"])
    plain = sample(s, cond, uncond=uncond, seeds=[1, 2])  # the plain recipe, completely
    assert torch.equal(plain, x0)  # lam = 0 is the plain student, bit for bit


def test_tdd_x0_clipping_only_on_early_steps(tiny):
    s = student("tdd-sdxl", path=str(tiny["sdxl"]), lora=str(tiny["lora-sdxl"]),
                x0_clip={"mode": "clamp", "value": 0.05, "sigma_min": 2.0})
    cond, _ = s.encode(["a"])
    x = 10 * torch.randn(1, *s.sample_shape, generator=torch.Generator().manual_seed(0))
    early, late = s.denoiser(x, torch.tensor([5.0]), **cond), s.denoiser(x, torch.tensor([1.0]), **cond)
    assert early.abs().max() <= 0.05 and late.abs().max() > 0.05
    with pytest.raises(ConfigError, match="x0_clip mode='soft'"):
        student("tdd-sdxl", path=str(tiny["sdxl"]), lora=str(tiny["lora-sdxl"]), x0_clip={"mode": "soft"})


def test_sliced_decode_equals_full_decode(tiny):
    s = load_model("t", str(tiny["sd15"]), decode_batch_size=1)
    full = load_model("t", str(tiny["sd15"]))
    x = torch.randn(3, *s.sample_shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s.decode(x), full.decode(x))


# --- errors --------------------------------------------------------------------------------------


def test_missing_directory(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        student("lcm-sd15", path=str(tmp_path / "nowhere" / "model"))


def test_missing_weights_file(tiny, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny["sd15"], broken)
    for f in (broken / "unet").glob("diffusion_pytorch_model*"):
        f.unlink()
    with pytest.raises(ModelNotFoundError, match="could not load UNet2DConditionModel from .*broken/unet"):
        teacher("sd15", path=str(broken))
    shutil.rmtree(broken / "scheduler")
    with pytest.raises(ModelNotFoundError, match="scheduler_config.json' is missing"):
        teacher("sd15", path=str(broken))


def test_hub_id_while_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineModelError) as info:
        teacher("sd15", path="someone/not-cached-model")
    msg = str(info.value)
    assert "'someone/not-cached-model'" in msg and "allow_download=True" in msg and "path=" in msg
    with pytest.raises(OfflineModelError, match="'stable-diffusion-v1-5/stable-diffusion-v1-5'"):
        teacher("sd15")  # the default hub id


def test_lora_that_does_not_fit(tiny):
    with pytest.raises(LoRAMismatchError, match="does not fit its base UNet"):
        student("lcm-lora-sd15", path=str(tiny["sd15"]), lora=str(tiny["lora-sdxl"]))


def test_unet_weights_that_do_not_fit(tiny):
    with pytest.raises(ConfigError, match="do not fit the base UNet"):
        load_model("any", str(tiny["sd15"]), unet=str(tiny["dmd2-unet"]))  # SDXL UNet weights, SD 1.x config


def test_unknown_prediction_type(tiny):
    with pytest.raises(ConfigError, match="unknown prediction type 'flow'"):
        teacher("sd15", path=str(tiny["bad-pred"]))


def test_student_teacher_shape_mismatch(tiny):
    from tgsample.denoisers import CallableDenoiser

    t_dir = str(tiny["sdxl"])
    s = student("dmd2-sdxl", path=t_dir, unet=str(tiny["dmd2-unet"]), height=32, width=32)
    with pytest.raises(ShapeMismatchError, match=r"latents of size \(16, 16\) but teacher 'sdxl' \(8, 8\)"):
        teacher("sdxl", student=s)
    assert teacher("sdxl", student=s, height=32, width=32).sample_shape == (4, 16, 16)
    eight = Model("eight", CallableDenoiser(lambda x, s: x), (8, 8, 8), encode=lambda p, n: ({}, {}))
    with pytest.raises(ShapeMismatchError, match="8 latent channels but teacher 'sdxl' has 4"):
        teacher("sdxl", path=t_dir, student=eight)


def test_errors_are_tgsample_errors():
    for cls in (ModelNotFoundError, OfflineModelError, LoRAMismatchError):
        assert issubclass(cls, TgsampleError)
    with pytest.raises(ConfigError, match="dtype='float8'"):
        teacher("sd15", path="/nonexistent", dtype="float8")


def test_presets_are_the_students_recipes():
    from tgsample import presets
    from tgsample.recipes import published

    names = presets.names()
    for student in registry.names("students"):
        if student not in registry.names("recipes"):
            continue  # an in-process test student without recipes
        for variant, recipe in published(student).items():
            p = presets.get(student + variant)
            assert (p.student, p.variant, p.recipe) == (student, variant, recipe)
            assert student + variant in names
    assert "tdd-sd15" in names and "tdd-sd15++" in names  # falls out of deriving presets
    assert presets.get("lcm-sd15++").recipe.guidance == {
        "name": "teacher", "lam": 0.01, "guided_steps": 1, "renoise": "next", "teacher_cfg": 8.0, "space": "eps",
        "student": {"name": "distilled_cfg", "scale": 8.0}}
    assert presets.get("lcm-sd15++").recipe.steps == 8 and presets.get("lcm-sd15").recipe.steps == 8
    assert presets.get("dmd2-sdxl++").recipe.guidance["guided_steps"] == 2
    assert presets.get("turbo-sdxl++").recipe.teacher_options == {"height": 512, "width": 512}
    assert presets.get("digits-compact").student == "digits-compact"  # the longest student name wins
    with pytest.raises(UnknownNameError, match="did you mean 'lcm-sd15'"):
        presets.get("lcm-sd16")


def test_offloaded_teacher_and_bf16_student(tiny):
    s = student("lcm-sd15", path=str(tiny["lcm-sd15"]))
    plain = teacher("sd15", path=str(tiny["sd15"]), student=s)
    off = teacher("sd15", path=str(tiny["sd15"]), student=s, offload=True)
    assert off.parts.net.offload and next(off.parts.unet.parameters()).device.type == "cpu"
    cond, _ = s.encode(["a cat"])
    x, sigma = torch.randn(1, *s.sample_shape), torch.tensor([2.0])
    assert torch.equal(off.denoiser(x, sigma, **cond), plain.denoiser(x, sigma, **cond))
    half = student("lcm-sd15", path=str(tiny["lcm-sd15"]), dtype="bfloat16")
    assert next(half.parts.unet.parameters()).dtype == torch.bfloat16
    assert half.denoiser.schedule.log_sigmas.dtype == torch.float64  # the abar table stays exact
    out = half.denoiser(x, sigma, **cond, guidance_scale=torch.tensor([8.0]))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out, s.denoiser(x, sigma, **cond, guidance_scale=torch.tensor([8.0])), rtol=0.1, atol=0.1)
