"""The shipped miniature (tgsample.models.mini): its diffusers layout, loading through registry.create and
the diffusers code, teacher guidance at lam = 0, the classifier's verdict on samples, reproducible training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tgsample import registry
from tgsample.models.diffusers.bundle import DiffusersModel
from tgsample.models.mini import components as C
from tgsample.models.mini import data as D
from tgsample.models.mini import evaluate as E
from tgsample.models.mini.training import Loop

STUDENTS = ("mini-lcm", "mini-lcm-lora", "mini-lightning")

# Measured with the shipped weights by `tgsample bench mini` (docs/results.md), recipe '', 10 x 200 samples: mini-lcm
# 0.859, mini-lcm-lora 0.810, mini-lightning 0.917. This test's own sample (all 40 captions x 4, a seed each,
# n = 160) has a binomial sd of 0.022-0.031: the minima sit 3 sd below; an untrained model scores about 1/40
# (a right digit and attributes by chance).
ALIGN_MIN = {"mini-lcm": 0.78, "mini-lcm-lora": 0.72, "mini-lightning": 0.85}


@pytest.fixture(scope="module")
def students():
    import warnings

    torch.set_num_threads(1)
    with warnings.catch_warnings():  # e.g. peft's warning that LoRA target modules have no weights in the file
        warnings.simplefilter("error", RuntimeWarning)
        return {name: registry.create("students", name) for name in STUDENTS}


def test_shipped_pipeline_is_a_diffusers_folder():
    index = json.loads((C.MINI_DIR / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (C.MINI_DIR / part).is_dir(), part
    for folder in ("unet", "vae", "text_encoder"):
        from safetensors import safe_open

        files = list((C.MINI_DIR / folder).glob("*.safetensors"))
        assert len(files) == 1
        with safe_open(str(files[0]), "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}, folder
    sched = json.loads((C.MINI_DIR / "scheduler" / "scheduler_config.json").read_text())
    assert (sched["beta_schedule"], sched["beta_start"], sched["beta_end"]) == ("scaled_linear", 0.00085, 0.012)
    tok = C.tokenizer()
    for word in D.VOCABULARY:
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word


def test_students_load_through_the_registry_and_the_diffusers_code(students):
    for name, s in students.items():
        assert isinstance(s, DiffusersModel) and s.parts.root == C.MINI_DIR and s.parts.kind == "sd15", name
        assert tuple(s.sample_shape) == (4, 8, 8) and set(s.recipes) >= {"", "++"}
    assert students["mini-lcm"].parts.unet.config.time_cond_proj_dim == C.TIME_COND_PROJ_DIM
    assert students["mini-lcm-lora"].parts.lora == "student"
    from peft.tuners.lora import LoraLayer

    lora_layers = [m for m in students["mini-lcm-lora"].parts.unet.modules() if isinstance(m, LoraLayer)]
    assert len(lora_layers) == 56  # every target module of components.LORA, attention layers included
    assert students["mini-lightning"].parts.unet.config.time_cond_proj_dim is None
    teacher = registry.create("teachers", "mini", student=students["mini-lcm-lora"])
    assert teacher.parts.unet is students["mini-lcm-lora"].parts.unet  # zero-copy: adapters off in its calls
    assert teacher.parts.net.adapters_off
    full = registry.create("teachers", "mini", student=students["mini-lcm"])
    assert full.parts.encoder is students["mini-lcm"].parts.encoder  # same pipeline folder: one prompt encoding


@pytest.mark.parametrize("name", STUDENTS)
def test_teacher_guidance_at_lam_zero_is_the_plain_student(students, name):
    s = students[name]
    caps = ["a thick slanted two", "a thin upright one", "a thin slanted seven"]
    plain = E.generate(s, caps, [0, 1, 2], "")
    guided = E.generate(s, caps, [0, 1, 2], "++", lam=0.0)
    assert torch.equal(plain, guided)
    assert not torch.equal(plain, E.generate(s, caps, [0, 1, 2], "++"))  # the published lam changes the samples


@pytest.mark.parametrize("name", STUDENTS)
def test_samples_are_recognised_by_the_shipped_classifier(students, name):
    scorer = E.Scorer()
    caps = E.prompts(False) + E.prompts(True)
    caps = [c for c in caps for _ in range(4)]
    seeds = [100 + k for k in range(len(caps))]  # one seed each (a seed shared by every caption shares its luck)
    result = scorer(E.generate(students[name], caps, seeds, ""), caps)
    assert result["alignment"] >= ALIGN_MIN[name], result


def test_classifier_is_accurate_on_the_heldout_split():
    from tgsample.models.mini.classifier import accuracies, load_classifier

    acc = accuracies(load_classifier(), D.load("heldout"))
    assert acc["digit"] >= 0.9 and acc["all"] >= 0.5, acc


def test_data_split_and_captions():
    tr, ho = D.load("train"), D.load("heldout")
    assert len(tr.images) == 4000 and len(ho.images) == 1000
    assert (torch.bincount(torch.as_tensor(tr.digit)) == 400).all()
    assert D.parse_caption(D.caption(7, 1, 1)) == (7, 1, 1) and D.caption(7, 1, 1) == "a thick slanted seven"
    held = set(D.all_captions(True))
    assert len(held) == 10 and not held & set(D.all_captions(False))
    train_caps = set(tr.subset(tr.in_distribution()).captions())
    assert not held & train_caps  # the held-out combinations never reach the generative models
    with pytest.raises(ValueError, match="not of the form"):
        D.parse_caption("a seven")


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {f"{p.relative_to(folder)}:{k}": v for p in sorted(folder.rglob("*.safetensors"))
            for k, v in load_file(p).items()}


@pytest.mark.slow
def test_training_is_deterministic(tmp_path):
    from tgsample.models.mini import training as T

    torch.set_num_threads(1)
    runs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        T.train_vae(out, iters=2, batch=8)
        T.train_teacher(out, iters=2, batch=8)
        for part in ("lcm", "lcm-lora", "lightning"):
            T.DISTILL[part](out, iters=1, batch=4)
        runs.append(_weights(out))
    assert runs[0].keys() == runs[1].keys() and len(runs[0]) > 100
    assert any("lcm_lora" in k for k in runs[0]) and any("lightning" in k for k in runs[0])
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    # another seed gives other weights (the classifier: the cheapest part to train)
    from safetensors.torch import load_file

    from tgsample.models.mini.classifier import train as train_classifier

    files = [train_classifier(iters=2, batch=8, seed=seed, save=tmp_path / f"clf{seed}.safetensors")["file"]
             for seed in (0, 0, 1)]
    a, b, c = (load_file(f) for f in files)
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)


class _Stop(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    def train(ckpt, stop_at=None):
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 2)
        loop = Loop("toy", {"net": net}, list(net.parameters()), iters=6, lr=1e-2, seed=0, ckpt=ckpt, ckpt_every=2,
                    log_every=100)
        calls = []

        def step(gen):
            calls.append(1)
            if stop_at is not None and len(calls) == stop_at:
                raise _Stop
            x = torch.randn(4, 3, generator=gen)
            return net(x).pow(2).mean()

        loop.run(step)
        return net.state_dict()

    whole = train(None)
    with pytest.raises(_Stop):
        train(tmp_path, stop_at=4)  # interrupted after the checkpoint of iteration 2
    resumed = train(tmp_path)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_demo_draws_the_miniature_by_default(tmp_path, capsys):
    from PIL import Image

    from tgsample.demo import DEFAULT_STUDENT, main
    from tgsample.models.mini.picture import CAPTIONS

    assert DEFAULT_STUDENT.startswith("mini-")
    assert main(["--out", str(tmp_path), "--per-class", "2", "--scale", "2"]) == 0
    img = Image.open(tmp_path / f"demo_{DEFAULT_STUDENT}.png")
    out = capsys.readouterr().out
    assert "student alone: alignment" in out and "student + teacher guidance" in out and "FD" in out
    assert img.mode == "L" and img.size[1] > len(CAPTIONS) * 2 * 28
    assert len(set(CAPTIONS) & set(D.all_captions(True))) == 4  # held-out captions are shown
