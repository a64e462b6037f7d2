"""FLUX and SD3.5 students and teachers on tiny saved pipelines (tests/tiny_flow.py), against diffusers'
own ``FluxPipeline`` / ``StableDiffusion3Pipeline`` with the same injected latents. No network, no GPU
(the one CUDA test is skipped without one)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tgsample import DistilledCFG, TeacherGuidance, registry, sample
from tgsample.errors import ConfigError, ShapeMismatchError
from tgsample.models.diffusers import FamilyMismatchError, ModelNotFoundError, OfflineModelError

from tiny_flow import CASES, PROMPTS, SEQ, SIZE, load, ours, parity, theirs
from tiny_pipelines import _save_sd, sd_unet

torch.set_num_threads(1)
PARITY_ATOL = 1e-5


def student(name, path, **options):
    return registry.create("students", name, path=str(path), **{**SIZE, **options})


def teacher(name, path, **options):
    return registry.create("teachers", name, path=str(path), **{**SIZE, **options})


# --- parity with the diffusers pipelines at lam = 0 -----------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_equals_the_diffusers_pipeline_with_injected_latents(flow_tiny, case):
    """Each student's plain recipe, and each teacher on its own (its CFG, FLUX-dev's embedded guidance --
    default or routed by DistilledCFG -- and FLUX's true CFG), equal FluxPipeline / StableDiffusion3Pipeline
    from the same initial latents (``sample(latents=...)``). (CFG on x0 estimates is the pipelines' CFG on
    velocities: D is affine in v.) ``diffusers_parity=True`` is accepted and changes nothing: the flow
    pipelines' scheduler is tgsample's own convention."""
    seed = sorted(CASES).index(case)
    x, ref, model = parity(flow_tiny, case, seed=seed)
    torch.testing.assert_close(x, ref, rtol=0, atol=PARITY_ATOL)
    switched = load(flow_tiny, case, diffusers_parity=True)
    assert switched.denoiser.diffusers_parity
    _, _, _, steps, guidance, _ = CASES[case]
    z = torch.randn(len(PROMPTS), *model.sample_shape, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(ours(switched, z, guidance, steps=steps or model.recipes[""].steps), x)
    if CASES[case][0] == "students":
        r = model.recipes[""]
        assert r.guidance is None and r.steps == 4 and r.schedule == "flow" and r.solver == "euler"


@pytest.mark.parametrize("fixture", ["flux-schnell", "sd35-turbo"])
def test_diffusers_seeding_and_a_start_below_pure_noise(flow_tiny, fixture):
    """``generator=`` alone draws the pipeline's own initial latents; and with ``diffusers_parity=True`` a schedule
    that starts below pure noise (the pipelines' ``sigmas=[0.75, 0.5, 0.25]``, shifted by the scheduler's
    factor) still starts as the flow pipelines do, from ``x_t = z`` (``x = (1 + sigma_0) z``), not from Euler's
    ``sigma_0 z``."""
    import tgsample.math as M
    from tgsample.flow import t_to_sigma

    case = "flux-schnell recipe" if fixture == "flux-schnell" else "sd35-large-turbo recipe"
    model = load(flow_tiny, case, diffusers_parity=True)
    expected = theirs(flow_tiny[fixture], None, 4, guidance_scale=0.0, generator=torch.Generator().manual_seed(7))
    cond, uncond = model.encode(PROMPTS)
    x = sample(model, cond, uncond=uncond, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(x, expected, rtol=0, atol=PARITY_ATOL)
    z = torch.randn(len(PROMPTS), *model.sample_shape, generator=torch.Generator().manual_seed(8))
    t = [0.75, 0.5, 0.25]
    factor = model.denoiser.flow_schedule.factor()  # the scheduler shifts given sigmas too (SD3.5: 3)
    sigmas = torch.cat([M.flow_shift(t_to_sigma(torch.tensor(t)), factor), torch.zeros(1, dtype=torch.float64)])
    torch.testing.assert_close(sigmas[:3], factor * torch.tensor([3.0, 1.0, 1 / 3], dtype=torch.float64))
    expected = theirs(flow_tiny[fixture], z, 3, guidance_scale=0.0, sigmas=t)
    torch.testing.assert_close(ours(model, z, sigmas=sigmas), expected, rtol=0, atol=PARITY_ATOL)


def test_distilled_guidance_scale_reaches_the_embedding(flow_tiny):
    t = teacher("flux-dev", flow_tiny["flux-dev"])
    z = torch.randn(2, *t.sample_shape, generator=torch.Generator().manual_seed(0))
    routed = ours(t, z, DistilledCFG(1.5), steps=3)
    assert (ours(t, z, steps=3) - routed).abs().max() > 1e-3
    option = teacher("flux-dev", flow_tiny["flux-dev"], guidance_scale=1.5)  # the teacher option: same scale
    assert torch.equal(ours(option, z, steps=3), routed)
    schnell = student("flux-schnell", flow_tiny["flux-schnell"])  # no guidance embedding: the key is not read
    assert torch.equal(ours(schnell, z), ours(schnell, z, DistilledCFG(1.5)))


@pytest.mark.parametrize("fixture", ["flux-schnell", "sd35-turbo"])
def test_decode_equals_pipeline_images(flow_tiny, fixture):
    case = "flux-schnell recipe" if fixture == "flux-schnell" else "sd35-large-turbo recipe"
    s = load(flow_tiny, case)
    z = torch.randn(2, *s.sample_shape, generator=torch.Generator().manual_seed(5))
    images = theirs(flow_tiny[fixture], z, 4, output_type="pt", guidance_scale=0.0)
    decoded = s.decode(ours(s, z))
    assert decoded.shape == images.shape == (2, 3, 16, 16)
    torch.testing.assert_close(decoded, images, rtol=0, atol=1e-4)


# --- teacher guidance ------------------------------------------------------------------------------------------


PAIRS = {"flux": ("flux-schnell", "flux-schnell", "flux-dev", "flux-dev"),
         "sd3": ("sd35-large-turbo", "sd35-turbo", "sd35-large", "sd35-large")}


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_teacher_guidance_lam_zero_is_the_plain_student_bit_for_bit(flow_tiny, pair):
    s_name, s_path, t_name, t_path = PAIRS[pair]
    s = student(s_name, flow_tiny[s_path])
    guided = s.recipes["++"]
    t = teacher(t_name, flow_tiny[t_path], student=s, **guided.teacher_options)
    assert guided.teacher == t_name and guided.guidance["renoise"] == "next"
    cond, uncond = s.encode(PROMPTS)

    def go(**settings):
        return sample(s, cond, uncond=uncond, seeds=[1, 2], **settings)

    plain = go()  # the plain recipe
    before = t.parts.net.calls
    assert torch.equal(go(recipe="++", teacher=t, guidance={**guided.guidance, "lam": 0.0}), plain)
    assert t.parts.net.calls == before + guided.guidance["guided_steps"]  # one (batched) call per guided step
    assert not torch.equal(go(recipe="++", teacher=t), plain)
    assert plain.dtype == torch.float32 and plain.shape == (2, 16, 8, 8)


def test_teacher_shares_the_students_text_encoders(flow_tiny, monkeypatch):
    from tgsample.models.diffusers import flow_bundle

    s = student("flux-schnell", flow_tiny["flux-schnell"])
    t = teacher("flux-dev", flow_tiny["flux-dev"], student=s)  # separate files, equal weights: one copy kept
    assert t.parts.encoder is s.parts.encoder and t.parts.net.prefix == ""
    before = s.parts.encoder.calls
    s.encode(["a dog", "a cat"])
    t.encode(["a dog", "a cat"])
    assert s.parts.encoder.calls == before + 1  # each batch encoded once
    loads = []
    real = flow_bundle._load_encoder
    monkeypatch.setattr(flow_bundle, "_load_encoder", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    linked = teacher("flux-dev", flow_tiny["flux-dev-link"], student=s)  # the same files: never loaded
    assert linked.parts.encoder is s.parts.encoder and loads == []
    s3 = student("sd35-large-turbo", flow_tiny["sd35-turbo"])
    forced = teacher("sd35-large", flow_tiny["sd35-large"], share_text_encoders=True, student=s3)
    assert forced.parts.encoder is s3.parts.encoder and forced.parts.net.prefix == ""
    assert loads == ["sd3"]  # only the SD3 student loaded its encoders


def test_teacher_with_other_encoder_settings_keeps_its_own_encoder(flow_tiny):
    """The same text-encoder files but another T5 length (or SD3 without T5): the teacher encodes with its own
    settings (``teacher_*`` keys), with equal weights too; forcing the student's encoder on it is refused."""
    s = student("flux-schnell", flow_tiny["flux-schnell"])
    for path in (flow_tiny["flux-dev-link"], flow_tiny["flux-dev"]):  # the same files / equal weights
        t = teacher("flux-dev", path, student=s, max_sequence_length=SEQ + 4)
        assert t.parts.encoder is not s.parts.encoder and t.parts.encoder.max_sequence_length == SEQ + 4
        assert t.parts.net.prefix == "teacher_"
    cond, _ = s.encode(PROMPTS)
    assert cond["encoder_hidden_states"].shape[1] == SEQ and cond["teacher_encoder_hidden_states"].shape[1] == SEQ + 4
    with pytest.raises(ConfigError, match="share_text_encoders=True, but teacher 'flux-dev'"):
        teacher("flux-dev", flow_tiny["flux-dev"], student=s, max_sequence_length=SEQ + 4, share_text_encoders=True)
    s3 = student("sd35-large-turbo", flow_tiny["sd35-turbo"])
    t3 = teacher("sd35-large", flow_tiny["sd35-turbo"], student=s3, t5=False)  # the student's own folder
    assert t3.parts.encoder is not s3.parts.encoder and t3.parts.net.prefix == "teacher_"


def test_teacher_with_fewer_text_encoders_reads_its_own_keys(flow_tiny):
    """An SD3 teacher without T5 for a student with T5: the same latent space, other text encoders."""
    s = student("sd35-large-turbo", flow_tiny["sd35-turbo"])
    t = teacher("sd35-large", flow_tiny["sd35-no-t5"], student=s)
    assert len(t.parts.encoder.text_encoders) == 2 and len(s.parts.encoder.text_encoders) == 3
    assert t.parts.net.prefix == "teacher_"
    cond, uncond = s.encode(PROMPTS)
    assert set(cond) == set(uncond) == {"encoder_hidden_states", "pooled_projections",
                                        "teacher_encoder_hidden_states", "teacher_pooled_projections"}
    own, _ = t.parts.encoder.encode(PROMPTS)
    x, sigma = torch.randn(2, *t.sample_shape), torch.tensor([2.0, 0.5])
    torch.testing.assert_close(t.denoiser(x, sigma, **cond), t.denoiser(x, sigma, **own))
    assert not torch.allclose(t.denoiser(x, sigma, **cond),
                              t.denoiser(x, sigma, encoder_hidden_states=cond["encoder_hidden_states"],
                                         pooled_projections=cond["pooled_projections"]))
    x = sample(s, cond, uncond=uncond, seeds=[1, 2], recipe="++", teacher=t)
    assert torch.isfinite(x).all()


def test_teacher_of_another_latent_space_is_refused_before_loading(flow_tiny, monkeypatch, tmp_path):
    from tgsample.models.diffusers import loading

    sd3 = student("sd35-large-turbo", flow_tiny["sd35-turbo"])
    flux = student("flux-schnell", flow_tiny["flux-schnell"])

    def no_loading(*a, **k):
        raise AssertionError("weights were loaded before the latent spaces were compared")

    monkeypatch.setattr(loading, "load_part", no_loading)
    with pytest.raises(FamilyMismatchError, match=r"scaling_factor 1.5305 vs 0.3611, shift_factor 0.0609 vs 0.1159"):
        teacher("flux-dev", flow_tiny["flux-dev"], student=sd3)  # both 16 channels, not one latent space
    with pytest.raises(FamilyMismatchError, match="teacher 'sd35-large'"):
        teacher("sd35-large", flow_tiny["sd35-large"], student=flux)
    monkeypatch.undo()
    sd15 = registry.create("teachers", "sd15", path=str(_save_sd(tmp_path / "sd15", sd_unet(seed=1))))
    with pytest.raises(FamilyMismatchError, match="latent_channels 4 vs 16"):
        teacher("sd35-large", flow_tiny["sd35-large"], student=sd15)
    # the same one check refuses an SD teacher for a flow student (after loading: SD teachers load first)
    with pytest.raises(FamilyMismatchError, match="latent_channels 16 vs 4"):
        registry.create("teachers", "sd15", path=str(tmp_path / "sd15"), student=flux)
    digits = registry.create("students", "digits")  # no VAE: only the channels can be compared, still before loading
    monkeypatch.setattr(loading, "load_part", no_loading)
    with pytest.raises(ShapeMismatchError, match="student 'digits' has 1 latent channels but teacher 'flux-dev'"):
        teacher("flux-dev", flow_tiny["flux-dev"], student=digits)


def test_wrong_family_and_bad_options_are_typed_errors(flow_tiny, monkeypatch, tmp_path):
    with pytest.raises(FamilyMismatchError, match=r"'flux-schnell' is registered for the FLUX family .* pipeline of "
                                                  r"the SD3 family"):
        student("flux-schnell", flow_tiny["sd35-turbo"])
    with pytest.raises(FamilyMismatchError, match=r"pipeline of the SD 1.x / 2.x family.*teacher 'sd15'"):
        teacher("sd35-large", _save_sd(tmp_path / "sd15", sd_unet(seed=1)))  # an SD pipeline for a flow teacher
    with pytest.raises(FamilyMismatchError, match=r"pipeline of the FLUX family.*teacher 'flux-dev'"):
        registry.create("teachers", "sdxl", path=str(flow_tiny["flux-dev"]))  # and the other way round
    with pytest.raises(FamilyMismatchError, match=r"pipeline of the SD3 family.*load_flow_model"):
        from tgsample.models.diffusers import load_model

        load_model("any", str(flow_tiny["sd35-large"]))
    with pytest.raises(ConfigError, match=r"height=14 must be a positive multiple of 4"):
        student("flux-schnell", flow_tiny["flux-schnell"], height=14)
    with pytest.raises(ConfigError, match="offload='disk'"):
        student("flux-schnell", flow_tiny["flux-schnell"], offload="disk")
    with pytest.raises(ConfigError, match="weights='int4'"):
        student("flux-schnell", flow_tiny["flux-schnell"], weights="int4")
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(ModelNotFoundError, match="transformer/config.json' is missing"):
        student("sd35-large-turbo", broken)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineModelError, match="'black-forest-labs/FLUX.1-dev'"):
        registry.create("teachers", "flux-dev")
    with pytest.raises(OfflineModelError, match="'stabilityai/stable-diffusion-3.5-large-turbo'"):
        registry.create("students", "sd35-large-turbo")


# --- memory: offload, bf16, fp8 ------------------------------------------------------------------------------


def _placement_run(flow_tiny, offload, device="cpu"):
    """Sample flux-schnell with a flux-dev teacher offloaded; record, at every step, the teacher's calls and
    where its weights are, and, inside each teacher call, where the first layer's weights are."""
    s = student("flux-schnell", flow_tiny["flux-schnell"], device=device)
    t = teacher("flux-dev", flow_tiny["flux-dev"], student=s, offload=offload, device=device)
    tr, net = t.parts.transformer, t.parts.net
    leaf = tr.x_embedder
    inside = []
    attr = "_old_forward" if offload == "sequential" else "forward"  # accelerate calls the layer's own forward there
    layer_forward = getattr(leaf, attr)
    setattr(leaf, attr, lambda *a, **k: inside.append(leaf.weight.device.type) or layer_forward(*a, **k))
    steps = []
    cond, uncond = s.encode(PROMPTS)
    g = TeacherGuidance(t.denoiser, lam=0.5, guided_steps=[0, 2])
    x = sample(s, cond, uncond=uncond, seeds=[1, 2], solver="euler", guidance=g,
               callback=lambda info: steps.append((info["i"], net.calls, {p.device.type for p in tr.parameters()})))
    return x, steps, inside, t, s


def test_sequential_offload_keeps_the_teacher_off_the_device_between_guided_steps(flow_tiny):
    x, steps, inside, t, s = _placement_run(flow_tiny, "sequential")
    assert [i for i, calls, _ in steps] == [0, 1, 2, 3]
    assert [calls for _, calls, _ in steps] == [1, 1, 2, 2]  # the teacher runs on guided steps 0 and 2 only
    assert all(where == {"meta"} for _, _, where in steps)  # between calls: no weights resident anywhere
    assert inside == ["cpu", "cpu"]  # during each call: on the execution device
    resident = teacher("flux-dev", flow_tiny["flux-dev"], student=s)
    cond, uncond = s.encode(PROMPTS)
    again = sample(s, cond, uncond=uncond, seeds=[1, 2], solver="euler",
                   guidance=TeacherGuidance(resident.denoiser, lam=0.5, guided_steps=[0, 2]))
    assert torch.equal(x, again)  # offloading changes where the weights are, not the result


def test_model_offload_moves_the_teacher_only_for_guided_steps(flow_tiny):
    x, steps, inside, t, _ = _placement_run(flow_tiny, "model")
    moves = t.parts.net.placement
    assert [calls for _, calls, _ in steps] == [1, 1, 2, 2] and moves.moves == 4  # to the device and back, twice
    assert all(where == {"cpu"} for _, _, where in steps) and inside == ["cpu", "cpu"]
    assert torch.isfinite(x).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="placement on a GPU needs CUDA (run on a GPU machine)")
@pytest.mark.parametrize("offload", ["model", "sequential"])
def test_offloaded_teacher_is_on_the_gpu_only_during_its_calls(flow_tiny, offload):
    x, steps, inside, t, _ = _placement_run(flow_tiny, offload, device="cuda")
    assert x.device.type == "cuda" and inside == ["cuda", "cuda"]
    assert all("cuda" not in where for _, _, where in steps)


def test_bf16_and_fp8_weights_sample_in_float32(flow_tiny):
    full = student("flux-schnell", flow_tiny["flux-schnell"])
    bf16 = student("flux-schnell", flow_tiny["flux-schnell"], dtype="bfloat16")
    fp8 = student("flux-schnell", flow_tiny["flux-schnell"], weights="fp8")
    assert {p.dtype for p in bf16.parts.transformer.parameters()} == {torch.bfloat16}
    assert torch.float8_e4m3fn in {p.dtype for p in fp8.parts.transformer.parameters()}
    cond, _ = full.encode(PROMPTS)
    x, sigma = torch.randn(2, *full.sample_shape), torch.tensor([3.0, 0.5])
    ref = full.denoiser(x, sigma, **cond)
    for model, tol in ((bf16, 0.1), (fp8, 0.3)):
        out = model.denoiser(x, sigma, **cond)
        assert out.dtype == torch.float32 and (out - ref).abs().max() < tol * ref.abs().max()
        y = sample(model, cond, seeds=[1, 2])
        assert y.dtype == torch.float32 and torch.isfinite(y).all()  # samples stay float32 (pure noise is 2**53)


def test_model_to_moves_and_casts_and_offloaded_models_refuse(flow_tiny):
    s = student("sd35-large-turbo", flow_tiny["sd35-turbo"])
    s.to("cpu", torch.bfloat16)
    assert {p.dtype for p in s.parts.transformer.parameters()} == {torch.bfloat16}
    assert s.parts.net.dtype == torch.bfloat16
    cond, _ = s.encode(PROMPTS)
    assert torch.isfinite(s.denoiser(torch.randn(2, *s.sample_shape), torch.tensor([1.0, 1.0]), **cond)).all()
    off = student("sd35-large-turbo", flow_tiny["sd35-turbo"], offload="model")
    with pytest.raises(ConfigError, match="offload='model'"):
        off.to("cpu")


# --- published settings -----------------------------------------------------------------------------------


def test_published_recipes_are_the_models_recipes_and_presets(flow_tiny):
    from tgsample import presets
    from tgsample.models.diffusers import flow_recipes, flow_zoo
    from tgsample.recipes import published

    code = ("import sys, tgsample.models.diffusers.flow_recipes as R, tgsample.presets as P; "
            "print(R.FLUX_SCHNELL[''].schedule, sorted(n for n in P.names() if 'flux' in n or 'sd35' in n), "
            "'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "flow ['flux-schnell', 'flux-schnell++', 'sd35-large-turbo', 'sd35-large-turbo++'] False"
    for name, attr in (("flux-schnell", "FLUX_SCHNELL"), ("sd35-large-turbo", "SD35_LARGE_TURBO")):
        table = published(name)
        assert table == getattr(flow_recipes, attr) and set(table) == {"", "++"}
        assert presets.get(name + "++").recipe == table["++"]
        assert registry.get("students", name) is flow_zoo.STUDENTS[name]
        plain, guided = table[""], table["++"]
        assert (plain.schedule, plain.steps, plain.solver, plain.guidance) == ("flow", 4, "euler", None)
        assert guided.teacher in registry.names("teachers") and guided.guidance["name"] == "teacher"
        assert (guided.schedule, guided.steps, guided.solver) == ("flow", 4, "euler")
    assert published("flux-schnell")["++"].teacher_options == {"guidance_scale": 3.5}
    s = student("flux-schnell", flow_tiny["flux-schnell"])
    assert s.recipes == published("flux-schnell")  # Model.recipes: the published ones, one source
    for name in flow_zoo.TEACHERS:
        assert flow_recipes.TEACHERS[name].schedule == "flow" and name in registry.names("teachers")
    t = teacher("flux-dev", flow_tiny["flux-dev"])
    assert t.recipes == {"": flow_recipes.TEACHERS["flux-dev"]}
