"""``tgsample eval``: runs in, the paper's table out — on small networks the tests build (no weights downloaded).

* FID of a set against itself is ~0, against a shifted set larger, and equals clean-fid's own end-to-end
  ``compute_fid`` and torchmetrics' FID on the same images and feature network;
* the cache: a partial run (one batch) then a full one computes only the rest, a rerun computes nothing and
  gives identical numbers, a regenerated image is recomputed;
* CLIP score / PickScore of a tiny CLIP built from a config equal the model's own ``logits_per_image``;
* the Inception loader goes through clean-fid's ``InceptionV3W`` (on a small TorchScript stand-in saved under
  the real file name), and its "clean" resize matches clean-fid's;
* missing weights / packages give typed errors naming the path or package; bad runs give typed errors;
* reference statistics carry provenance, are reused, and refuse another feature network;
* the digit models are evaluated through the same command (``tgsample generate`` runs, shipped classifier).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tgsample.errors import TgsampleError
from tgsample.eval import ModuleExtractor, evaluate, reference_stats
from tgsample.eval.errors import MissingDependencyError, MissingWeightsError, PairingError, ReferenceStatsError, RunError
from tgsample.eval.extractors import CLIPScorer, InceptionExtractor, build_extractor, imagereward, hpsv2
from tgsample.eval.runs import open_run

CPU = {"accelerator": "cpu"}


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def texture(seed: int, size: int = 16, shift: float = 0.0) -> np.ndarray:
    """A smooth random RGB image (uint8), brightened by ``shift`` (0..1)."""
    g = np.random.default_rng(seed)
    low = g.normal(size=(4, 4, 3))
    img = np.kron(low, np.ones((size // 4, size // 4, 1))) + 0.3 * g.normal(size=(size, size, 3))
    img = 1 / (1 + np.exp(-img)) + shift
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def write_run(root: Path, records: list[tuple[str, object, int, np.ndarray]], student: str = "tiny") -> Path:
    """A run directory as ``tgsample generate`` writes it (plus an unknown column, as future manifests may have)."""
    (root / "images").mkdir(parents=True)
    rows = []
    for rid, prompt, seed, img in records:
        Image.fromarray(img).save(root / "images" / f"{rid}.png")
        rows.append({"id": rid, "prompt": prompt, "seed": seed, "negative": None, "path": f"images/{rid}.png",
                     "new_column": 1})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"id": "cut-off', "utf-8")
    (root / "run.json").write_text(json.dumps({"config": {"settings": {"student": student}}, "config_hash": "h"}))
    return root


def write_folder(root: Path, images: list[np.ndarray]) -> Path:
    root.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(root / f"{i:04d}.png")
    return root


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.Tanh(), nn.Conv2d(8, 12, 3, stride=2), nn.Tanh(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


PROMPTS = ["a red cube", "two blue balls", "a green cat", "a small house"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs A and B (B brighter, same ids / prompts / seeds), and a reference folder."""
    root = tmp_path_factory.mktemp("eval")
    recs = [(f"{i:06d}-{s}", p, s) for i, p in enumerate(PROMPTS) for s in range(12)]
    a = write_run(root / "A", [(r, p, s, texture(100 * i + s)) for i, (r, p, s) in enumerate(recs)])
    b = write_run(root / "B", [(r, p, s, texture(100 * i + s, shift=0.15)) for i, (r, p, s) in enumerate(recs)])
    ref = write_folder(root / "ref", [texture(10_000 + i) for i in range(60)])
    return root, a, b, ref


def test_fid_zero_against_itself_larger_when_shifted_and_equal_to_the_libraries(runs, tmp_path):
    root, a, b, ref = runs
    net = tiny_cnn()
    kw = dict(features=ModuleExtractor(net, name="tinycnn"), scores=[], cache_dir=tmp_path / "c", resamples=50,
              trainer=CPU, progress=False, batch_size=7)
    same = evaluate([a], reference=a / "images", **kw)
    assert same.metric("fid")["per_run"]["A"]["value"] == pytest.approx(0.0, abs=1e-7)
    r = evaluate([a, b], reference=ref, **kw)
    fa, fb = (r.metric("fid")["per_run"][k]["value"] for k in "AB")
    assert fb > 5 * fa > 0  # the brighter set is much farther from the reference

    # clean-fid's own pipeline (its loader, its feature loop) on the same folders and network
    from cleanfid import fid as cfid

    with torch.no_grad():
        theirs = cfid.compute_fid(str(a / "images"), str(ref), mode="clean", custom_feat_extractor=lambda x: net(x / 255),
                                  custom_fn_resize=lambda img: img.astype(np.float32), device=torch.device("cpu"),
                                  num_workers=0, verbose=False, use_dataparallel=False)
    assert fa == pytest.approx(theirs, rel=1e-4)

    # torchmetrics' FID with the same module as its feature extractor
    from torchmetrics.image.fid import FrechetInceptionDistance

    def tensors(folder):
        files = sorted(Path(folder).glob("*.png"))
        return torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files]) / 255

    tm = FrechetInceptionDistance(feature=net, normalize=True)
    tm.update(tensors(ref), real=True)
    tm.update(tensors(b / "images"), real=False)
    assert fb == pytest.approx(float(tm.compute()), rel=1e-3)


def test_paired_table_json_csv_and_plot(runs, tmp_path):
    root, a, b, ref = runs
    scorer = build_extractor(tiny_cnn())  # any nn.Module is a feature network
    r = evaluate([a, b], reference=ref, features=scorer, scores=[], cache_dir=tmp_path / "c", resamples=50,
                 trainer=CPU, progress=False, labels=["lcm", "lcm++"])
    c = r.comparison("fid", "lcm++")
    assert c["baseline"] == "lcm" and c["lo"] < c["delta"] < c["hi"] and 0 < c["p_holm"] <= 1
    files = r.save(tmp_path / "out", "tgsample eval A B")
    names = {p.name for p in files}
    assert names == {"eval.md", "eval.json", "per_image.csv", "eval.png"}
    md = (tmp_path / "out" / "eval.md").read_text()
    assert "| lcm++ | FID [Sequential] ↓ |" in md and "Holm" in md
    js = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert js["comparisons"][0]["metric"] == "fid" and js["reference"]["count"] == 60
    assert len(js["comparisons"]) == 2  # FID and KID


def test_pairing_needs_the_same_records(runs, tmp_path):
    root, a, b, ref = runs
    recs = [(f"{i:06d}-{s}", p, s + 100) for i, p in enumerate(PROMPTS) for s in range(12)]
    other = write_run(tmp_path / "other", [(r, p, s, texture(i)) for i, (r, p, s) in enumerate(recs)])
    with pytest.raises(PairingError, match="seed"):
        evaluate([a, other], reference=ref, features=tiny_cnn(), scores=[], cache_dir=tmp_path / "c", trainer=CPU)
    disjoint = write_run(tmp_path / "disjoint", [("x1", "p", 0, texture(1))])
    with pytest.raises(PairingError, match="share no image ids"):
        evaluate([a, disjoint], reference=ref, features=tiny_cnn(), scores=[], cache_dir=tmp_path / "c", trainer=CPU)


def test_cache_resume_reuse_and_invalidation(runs, tmp_path):
    root, a, b, ref = runs
    run = tmp_path / "run"
    import shutil

    shutil.copytree(a, run)
    kw = dict(reference=ref, features=tiny_cnn(), scores=[], cache_dir=tmp_path / "c", resamples=40, progress=False,
              batch_size=8)
    with pytest.raises(TgsampleError, match="rerun to compute them"):  # stopped after one batch ...
        evaluate([run], trainer={**CPU, "limit_predict_batches": 1}, **kw)
    cache = sorted((tmp_path / "c").rglob("*.safetensors"))
    assert cache, "the finished batch is on disk"
    full = evaluate([run], trainer=CPU, **kw)  # ... the rerun computes the rest only
    assert full.settings["computed"]["run"] == {"Sequential": 48 - 8} and full.settings["computed"]["ref"] == {"Sequential": 60}
    again = evaluate([run], trainer=CPU, **kw)
    assert set(again.settings["computed"]["run"].values()) == {0} and set(again.settings["computed"]["ref"].values()) == {0}
    assert again.as_dict()["metrics"] == full.as_dict()["metrics"]  # identical numbers from the cache
    fresh = evaluate([run], trainer=CPU, **{**kw, "cache_dir": tmp_path / "fresh"})
    assert fresh.metric("fid")["per_run"]["run"]["value"] == pytest.approx(full.metric("fid")["per_run"]["run"]["value"],
                                                                           rel=1e-6)
    # a regenerated image (new bytes) is recomputed, the others are not
    first = open_run(run).items[0]
    Image.fromarray(texture(999)).save(first.path)
    changed = evaluate([run], trainer=CPU, **kw)
    assert list(changed.settings["computed"]["run"].values()) == [1]
    assert not list((tmp_path / "c").rglob("part-*")), "parts are merged after a run"


def tiny_clip(path: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from tiny_pipelines import _tokenizer

    _tokenizer(path)
    cfg = CLIPConfig(text_config=dict(vocab_size=514, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=16, bos_token_id=512,
                                      eos_token_id=513, pad_token_id=513),
                     vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                        image_size=16, patch_size=8), projection_dim=8)
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}).save_pretrained(path)
    return path


@pytest.mark.parametrize("kind", ["clip", "pickscore"])
def test_clip_score_and_pickscore_equal_the_models_own_logits(runs, tmp_path, kind):
    from transformers import CLIPModel, CLIPProcessor

    root, a, b, ref = runs
    path = tiny_clip(tmp_path / "clip")
    r = evaluate([a, b], reference=None, scores=[CLIPScorer(path, kind=kind)], cache_dir=tmp_path / "c", trainer=CPU,
                 progress=False)
    model, proc = CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)
    got = r.per_image["B"][kind]
    for n in (0, 17, 40):
        it = r.items[n]
        img = Image.open(Path(b) / "images" / f"{it.id}.png")
        with torch.no_grad():
            logits = float(model(**proc(text=[it.prompt], images=img, return_tensors="pt", padding=True)).logits_per_image)
        want = max(logits / float(model.logit_scale.exp()), 0) * 100 if kind == "clip" else logits
        assert got[n] == pytest.approx(want, rel=1e-4, abs=1e-4)
    c = r.comparison(kind, "B")
    assert c["prompts"] == len(PROMPTS) and 0 <= c["win_rate"] <= 1 and c["win_lo"] <= c["win_rate"] <= c["win_hi"]
    assert c["delta"] == pytest.approx(float(np.mean(r.per_image["B"][kind] - r.per_image["A"][kind])))


def test_missing_weights_and_packages_are_typed_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("TGSAMPLE_WEIGHTS", str(tmp_path / "w"))
    with pytest.raises(MissingWeightsError, match=str(tmp_path / "w" / "inception-2015-12-05.pt")):
        build_extractor("inception")
    with pytest.raises(MissingWeightsError, match="nowhere"):
        build_extractor("clip", weights=str(tmp_path / "nowhere"))
    for name, module in (("imagereward", "ImageReward"), ("hpsv2", "hpsv2")):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
        with pytest.raises(MissingDependencyError, match="pip install"):
            build_extractor(name)
    with pytest.raises(Exception, match="unknown feature network 'incepton'.*did you mean 'inception'"):
        build_extractor("incepton")


def test_inception_loads_through_clean_fid_from_a_local_file(tmp_path):
    class Layers(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2048, 1)

        def forward(self, x):
            return torch.nn.functional.adaptive_avg_pool2d(self.conv(x), 1)

    class Fake(nn.Module):  # clean-fid's TorchScript interface: .layers and forward(x, return_features)
        def __init__(self):
            super().__init__()
            self.layers = Layers()

        def forward(self, x, return_features: bool = False):
            return self.layers(x)

    torch.manual_seed(0)
    torch.jit.script(Fake()).save(str(tmp_path / "inception-2015-12-05.pt"))
    ext = InceptionExtractor(weights=tmp_path)
    img = Image.fromarray(texture(3, size=32))
    x = ext.transform(img)
    from cleanfid.utils import ResizeDataset  # clean-fid's own loader, "clean" mode

    img.save(tmp_path / "x.png")
    theirs = ResizeDataset([str(tmp_path / "x.png")], mode="clean")[0]
    assert x.shape == (3, 299, 299) and torch.allclose(x, theirs, atol=1e-4)
    with torch.no_grad():
        f = ext(x[None], [None])["features"]
    assert f.shape == (1, 2048)
    (tmp_path / "other.pt").write_bytes(b"")
    with pytest.raises(MissingWeightsError, match="rename"):
        InceptionExtractor(weights=tmp_path / "other.pt")


def test_reference_stats_provenance_reuse_and_mismatch(runs, tmp_path):
    root, a, b, ref = runs
    net = tiny_cnn()
    kw = dict(cache_dir=tmp_path / "c", trainer=CPU, progress=False)
    stats = tmp_path / "ref.npz"
    made = reference_stats(ref, ModuleExtractor(net, name="tinycnn"), out=stats, **kw)
    prov = made.provenance
    assert prov["count"] == 60 and prov["source"] == str(ref) and prov["features"]["name"] == "tinycnn"
    assert prov["tgsample"] and prov["created"] and prov["features"]["weights"]
    with np.load(stats) as z:
        assert set(z.files) == {"mu", "sigma", "feats", "provenance"}
    by_folder = evaluate([a], reference=ref, features=ModuleExtractor(net, name="tinycnn"), scores=[], resamples=20, **kw)
    by_stats = evaluate([a], reference=stats, features=ModuleExtractor(net, name="tinycnn"), scores=[], resamples=20, **kw)
    assert by_stats.metric("fid")["per_run"]["A"]["value"] == pytest.approx(by_folder.metric("fid")["per_run"]["A"]["value"])
    assert by_stats.settings["computed"]["A"] == {"tinycnn": 0}
    with pytest.raises(ReferenceStatsError, match="tinycnn"):
        evaluate([a], reference=stats, features=ModuleExtractor(nn.Sequential(nn.Flatten()), name="flat"), scores=[], **kw)
    bare = tmp_path / "bare.npz"
    np.savez(bare, mu=made.mu, sigma=made.sigma)  # clean-fid / pytorch-fid style: FID only
    with pytest.raises(Exception, match="KID needs reference features"):
        evaluate([a], reference=bare, features=net, scores=[], metrics=["kid"], **kw)


def test_bad_runs_are_typed_errors(tmp_path):
    with pytest.raises(RunError, match="no manifest.jsonl"):
        open_run(tmp_path)
    (tmp_path / "manifest").mkdir()
    (tmp_path / "manifest" / "part-x-r0000.jsonl").write_text("{}")
    with pytest.raises(RunError, match="did not finish"):
        open_run(tmp_path)
    run = write_run(tmp_path / "r", [("a", "p", 0, texture(0)), ("b", "p", 1, texture(1))])
    (run / "images" / "b.png").unlink()
    with pytest.raises(RunError, match="missing"):
        open_run(run)


# ----------------------------------------------------------------------------- the shipped digit models


@pytest.fixture(scope="module")
def digit_runs(tmp_path_factory):
    from tgsample.lightning.cli import main as generate

    root = tmp_path_factory.mktemp("digits")
    for preset in ("digits-compact", "digits-compact++"):
        assert generate(["--model.preset", preset, "--data.prompts", "[0,1,2,3,4,5,6,7,8,9]", "--data.seeds", "3",
                         "--output.dir", str(root / preset), "--trainer.accelerator", "cpu",
                         "--trainer.enable_progress_bar", "false"]) == 0
    return root


def test_digit_runs_through_the_command(digit_runs, tmp_path, capsys):
    from tgsample.cli import main

    out = tmp_path / "out"
    code = main(["eval", str(digit_runs / "digits-compact"), str(digit_runs / "digits-compact++"), "--resamples", "50",
                 "--accelerator", "cpu", "--num-workers", "0", "--cache-dir", str(tmp_path / "c"), "--out", str(out),
                 "--no-progress"])
    assert code == 0
    js = json.loads((out / "eval.json").read_text())
    assert js["n"] == 30 and js["networks"]["features"]["name"] == "digits" and js["reference"]["source"] == "digits-train"
    assert [m["key"] for m in js["metrics"]] == ["fid", "kid", "acc"]
    # the features are the shipped classifier's on the PNGs, the same numbers bench quality's scorer uses
    from tgsample.eval.features import FeatureCache
    from tgsample.models.digits.classifier import load_classifier

    run = open_run(digit_runs / "digits-compact")
    cache_dirs = list((tmp_path / "c").glob(f"{run.key}/digits-*"))
    cached = FeatureCache(tmp_path / "c", run, cache_dirs[0].name).read()
    x = torch.stack([torch.from_numpy(np.array(Image.open(it.path), dtype=np.float32)) for it in run.items])[:, None]
    clf = load_classifier()
    with torch.no_grad():
        want = clf.features(x / 255 * 2 - 1)
    got = torch.stack([cached[it.id][1]["features"] for it in run.items])
    assert torch.allclose(got, want, atol=1e-5)
    acc = float((clf.head(want).argmax(1) == torch.tensor([it.prompt for it in run.items])).float().mean())
    assert js["metrics"][2]["per_run"]["digits-compact"]["value"] == pytest.approx(acc)
    assert "| digits-compact++ | acc" in capsys.readouterr().out


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    from tgsample.cli import main

    assert main(["eval", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tgsample eval: error:") and "missing" in err[0]
    assert main(["eval", "--weights", "oops"]) == 2
    assert main(["export", str(tmp_path), "--format", "clean-fid", "--out", str(tmp_path / "x")]) == 2


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(digit_runs, tmp_path):
    exe = str(Path(sys.executable).with_name("tgsample"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    runs_ = [str(digit_runs / "digits-compact"), str(digit_runs / "digits-compact++")]
    outs = {}
    for devices in ("1", "2"):
        out = tmp_path / f"out{devices}"
        cmd = [exe, "eval", *runs_, "--resamples", "50", "--accelerator", "cpu", "--devices", devices, "--strategy",
               "ddp" if devices == "2" else "auto", "--num-workers", "0", "--batch-size", "4", "--cache-dir",
               str(tmp_path / f"c{devices}"), "--out", str(out), "--no-progress", "--no-plot"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        outs[devices] = json.loads((out / "eval.json").read_text())
    assert outs["2"]["settings"]["computed"] == outs["1"]["settings"]["computed"]
    for m1, m2 in zip(outs["1"]["metrics"], outs["2"]["metrics"]):
        for run in m1["per_run"]:
            assert m2["per_run"][run]["value"] == pytest.approx(m1["per_run"][run]["value"], rel=1e-6)
