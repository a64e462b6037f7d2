"""Loading diffusers models as diffusers does: LoRA strength, the offline hub cache, families, bad files.

Tiny pipelines (fixture ``tiny``, tests/tiny_pipelines.py); no network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tgsample import registry
from tgsample.errors import ConfigError
from tgsample.models.diffusers import load_model
from tgsample.models.diffusers.errors import (AmbiguousWeightsError, CorruptWeightsError, FamilyMismatchError,
                                              ModelNotFoundError, OfflineModelError)

from tiny_pipelines import SD_SCALING, SDXL_SCALING, hub_cache

torch.set_num_threads(1)
LORA = "pytorch_lora_weights.safetensors"


def student(name, **options):
    return registry.create("students", name, **options)


def teacher(name, **options):
    return registry.create("teachers", name, **options)


def _unet_out(unet, encoder_hidden_states, seed=0):
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
    return unet(x, torch.tensor([500.0, 200.0]), encoder_hidden_states=encoder_hidden_states).sample


# --- 1. LoRA strength from the file's adapter metadata -------------------------------------------------------


def test_lora_alpha_metadata_sets_the_strength_as_load_lora_weights_does(tiny):
    from diffusers import StableDiffusionPipeline
    from peft.tuners.lora import LoraLayer

    path, lora = str(tiny["sd15"]), str(tiny["lora-sd15-alpha"])  # r = 4, lora_alpha = 2 in the metadata
    s = student("lcm-lora-sd15", path=path, lora=lora)
    pipe = StableDiffusionPipeline.from_pretrained(path, safety_checker=None, requires_safety_checker=False)
    pipe.load_lora_weights(lora)
    scalings = {m.scaling["student"] for m in s.parts.unet.modules() if isinstance(m, LoraLayer)}
    assert scalings == {0.5}  # lora_alpha / r, not 1.0
    cond, _ = s.encode(["a cat", "a dog"])
    ehs = cond["encoder_hidden_states"]
    ours, theirs = _unet_out(s.parts.unet, ehs), _unet_out(pipe.unet, ehs)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    base = StableDiffusionPipeline.from_pretrained(path, safety_checker=None, requires_safety_checker=False).unet
    assert (ours - _unet_out(base, ehs)).abs().max() > 1e-3  # the LoRA is on


def test_lora_without_metadata_keeps_scale_one(tiny):
    from peft.tuners.lora import LoraLayer

    s = student("lcm-lora-sd15", path=str(tiny["sd15"]), lora=str(tiny["lora-sd15"]))
    assert {m.scaling["student"] for m in s.parts.unet.modules() if isinstance(m, LoraLayer)} == {1.0}


# --- 2. published students from a populated Hugging Face cache, offline -----------------------------------------


def published_students() -> dict:
    """name -> factory of every registered student with a published hub location (the diffusers factories; the
    miniature's students ship inside the package and are tested in test_mini.py)."""
    from tgsample.models.diffusers.loading import is_hub_id

    factories = {n: registry.get("students", n) for n in registry.names("students")}
    return {n: f for n, f in factories.items() if hasattr(f, "loading") and is_hub_id(f.loading["path"])}


def _published_repos(tiny, flow_tiny, tmp_path: Path) -> dict[str, dict[str, object]]:
    """Every published repo a registered student or teacher loads, laid out as the releases are (with the
    other files of multi-file repos present, as unreadable bytes: loading a wrong one fails)."""
    from safetensors.torch import load_file

    bin_unet = tmp_path / "unet.bin"
    torch.save(load_file(tiny["dmd2-unet"]), bin_unet)
    other = b"another release's weights"
    sd, xl = tiny["lora-sd15"] / LORA, tiny["lora-sdxl"] / LORA
    return {
        "stable-diffusion-v1-5/stable-diffusion-v1-5": {"": tiny["sd15"]},
        "stabilityai/stable-diffusion-xl-base-1.0": {"": tiny["sdxl"]},
        "SimianLuo/LCM_Dreamshaper_v7": {"": tiny["lcm-sd15"]},
        "stabilityai/sdxl-turbo": {"": tiny["turbo"]},
        "latent-consistency/lcm-lora-sdv1-5": {LORA: sd},
        "latent-consistency/lcm-lora-sdxl": {LORA: xl},
        "latent-consistency/lcm-sdxl": {"": tiny["lcm-sdxl-unet"]},
        "tianweiy/DMD2": {"dmd2_sdxl_4step_unet_fp16.bin": bin_unet, "dmd2_sdxl_1step_unet_fp16.bin": other,
                          "dmd2_sdxl_4step_lora_fp16.safetensors": other},
        "ByteDance/SDXL-Lightning": {"sdxl_lightning_4step_unet.safetensors": tiny["dmd2-unet"],
                                     "sdxl_lightning_4step_lora.safetensors": xl,
                                     "sdxl_lightning_8step_unet.safetensors": other,
                                     "sdxl_lightning_8step_lora.safetensors": other},
        "h1t/TCD-SD15-LoRA": {LORA: sd},
        "h1t/TCD-SDXL-LoRA": {LORA: xl},
        "RedAIGC/TDD": {"sdxl_tdd_lora_weights.safetensors": xl, "sdxl_tdd_wo_adv_lora.safetensors": other},
        "redaigc/tdd_SD15_LoRAs": {"tdd_sd15_lora.safetensors": sd},  # file name unconfirmed: guessed
        "someone/two-loras": {"a.safetensors": sd, "b.safetensors": sd},
        "black-forest-labs/FLUX.1-schnell": {"": flow_tiny["flux-schnell"]},
        "black-forest-labs/FLUX.1-dev": {"": flow_tiny["flux-dev"]},
        "stabilityai/stable-diffusion-3.5-large-turbo": {"": flow_tiny["sd35-turbo"]},
        "stabilityai/stable-diffusion-3.5-large": {"": flow_tiny["sd35-large"]},
    }


OFFLINE_SCRIPT = """
import json, sys
from tgsample import registry
from tgsample.models.diffusers.errors import AmbiguousWeightsError, OfflineModelError
out = {}
for name in NAMES:
    m = registry.create("students", name)
    t = registry.create("teachers", m.recipes["++"].teacher, student=m)
    cond, _ = m.encode(["a cat"])
    x = m.denoiser(torch.zeros(1, *m.sample_shape), torch.tensor([2.0]), **cond, guidance_scale=torch.tensor([2.0]))
    out[name] = {"lora": m.parts.lora, "root": str(m.parts.root), "teacher": t.name, "finite": bool(x.isfinite().all())}
for name in ("sd15", "sdxl"):
    out[name] = {"root": str(registry.create("teachers", name).parts.root)}
for lora, key in (("someone/two-loras", "ambiguous"), ("someone/not-cached", "missing")):
    try:
        registry.create("students", "lcm-lora-sd15", lora=lora)
    except (AmbiguousWeightsError, OfflineModelError) as err:
        out[key] = f"{type(err).__name__}: {err}"
print("RESULT" + json.dumps(out))
"""


def test_published_students_load_offline_from_the_hub_cache(tiny, flow_tiny, tmp_path):
    repos = _published_repos(tiny, flow_tiny, tmp_path)
    students = published_students()
    assert len(students) >= 12
    for name, factory in students.items():  # the test covers every registered student's published files
        for key in ("path", "unet", "lora"):
            if factory.loading.get(key):
                assert factory.loading[key] in repos, f"{name}: {factory.loading[key]} missing from the fake cache"
    cache = hub_cache(tmp_path / "hub", repos)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    script = f"import torch; torch.set_num_threads(1)\nNAMES = {sorted(students)!r}\n" + OFFLINE_SCRIPT
    proc = subprocess.run([sys.executable, "-c", script],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    for name, factory in students.items():
        assert out[name]["finite"] and out[name]["root"].startswith(str(cache)), out[name]
        assert out[name]["lora"] == ("student" if factory.loading.get("lora") else None)
    assert out["sd15"]["root"].startswith(str(cache)) and out["sdxl"]["root"].startswith(str(cache))
    assert out["ambiguous"].startswith("AmbiguousWeightsError") and "['a.safetensors', 'b.safetensors']" in out["ambiguous"]
    assert "lora_weight_name=" in out["ambiguous"]
    assert out["missing"].startswith("OfflineModelError") and "someone/not-cached" in out["missing"]


def test_user_lora_folder_weight_guess(tiny, tmp_path):
    import shutil

    one = tmp_path / "one"
    one.mkdir()
    shutil.copyfile(tiny["lora-sd15"] / LORA, one / "my_lora.safetensors")
    assert student("lcm-lora-sd15", path=str(tiny["sd15"]), lora=str(one)).parts.lora == "student"  # the only file
    two = tmp_path / "two"
    shutil.copytree(one, two)
    shutil.copyfile(one / "my_lora.safetensors", two / "other.safetensors")
    with pytest.raises(AmbiguousWeightsError, match=r"\['my_lora.safetensors', 'other.safetensors'\]"):
        student("lcm-lora-sd15", path=str(tiny["sd15"]), lora=str(two))
    s = student("lcm-lora-sd15", path=str(tiny["sd15"]), lora=str(two), lora_weight_name="other.safetensors")
    assert s.parts.lora == "student"
    shutil.copyfile(one / "my_lora.safetensors", two / LORA)  # diffusers' own file name wins, as in diffusers
    assert student("lcm-lora-sd15", path=str(tiny["sd15"]), lora=str(two)).parts.lora == "student"
    with pytest.raises(ModelNotFoundError, match="'nope.safetensors' not found"):
        student("lcm-lora-sd15", path=str(tiny["sd15"]), lora=str(two), lora_weight_name="nope.safetensors")


# --- 3. families and latent spaces --------------------------------------------------------------------------


def test_teacher_of_another_family_is_refused(tiny):
    with pytest.raises(FamilyMismatchError, match=r"registered for the SD 1.x / 2.x family .* pipeline of the SDXL"):
        teacher("sd15", path=str(tiny["sdxl"]))
    with pytest.raises(FamilyMismatchError, match="registered for the SDXL family"):
        teacher("sdxl", path=str(tiny["sd15"]))
    with pytest.raises(FamilyMismatchError):
        student("lcm-sd15", path=str(tiny["sdxl"]))
    sd_lora = student("lcm-lora-sd15", path=str(tiny["sd15"]), lora=str(tiny["lora-sd15"]))
    with pytest.raises(FamilyMismatchError):
        teacher("sdxl", student=sd_lora)  # the zero-copy teacher of an SD 1.x student is not an SDXL teacher


def test_teacher_with_another_latent_space_is_refused(tiny):
    s = student("dmd2-sdxl", path=str(tiny["sdxl"]), unet=str(tiny["dmd2-unet"]))
    # an SD 1.x pipeline loaded without a family check still has SD's VAE: refused even at the same size
    other = load_model("any-sd", str(tiny["sd15"]))
    from tgsample.models.diffusers import check_compatible

    with pytest.raises(FamilyMismatchError, match=f"scaling_factor {SDXL_SCALING!r} vs {SD_SCALING!r}"):
        check_compatible(s, other)
    with pytest.raises(FamilyMismatchError):
        teacher("sd15", path=str(tiny["sd15"]), student=s)


# --- 8. bad files, single-file checkpoints ------------------------------------------------------------------


def test_corrupt_weight_files_raise_typed_errors(tiny, tmp_path):
    import shutil

    for suffix in (".safetensors", ".bin"):
        bad = tmp_path / f"unet{suffix}"
        bad.write_bytes(b"\x00garbage, a truncated download" * 10)
        with pytest.raises(CorruptWeightsError, match="cannot be read"):
            student("dmd2-sdxl", path=str(tiny["sdxl"]), unet=str(bad))
        lora = tmp_path / f"lora{suffix}"
        lora.write_bytes(b"\x00garbage" * 10)
        with pytest.raises(CorruptWeightsError, match="could not read its weights"):
            student("lcm-lora-sd15", path=str(tiny["sd15"]), lora=str(lora))
    broken = tmp_path / "broken"
    shutil.copytree(tiny["sd15"], broken)
    for f in (broken / "unet").glob("diffusion_pytorch_model*"):
        f.write_bytes(b"garbage")
    with pytest.raises(CorruptWeightsError, match="cannot be read"):
        teacher("sd15", path=str(broken))


def test_single_file_checkpoints_say_how_to_convert(tiny, tmp_path):
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"...")
    with pytest.raises(ModelNotFoundError, match=r"single-file checkpoint.*from_single_file.*save_pretrained"):
        teacher("sd15", path=str(ckpt))
    from safetensors.torch import save_file

    ldm = tmp_path / "ldm-unet.safetensors"  # original-layout keys (a checkpoint's UNet part)
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, ldm)
    with pytest.raises(ConfigError, match="single-file checkpoint"):
        student("dmd2-sdxl", path=str(tiny["sdxl"]), unet=str(ldm))
