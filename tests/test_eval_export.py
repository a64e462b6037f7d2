"""``tgsample export``: each layout read back by that evaluator's own parsing rule (written here as the rule,
from reading the evaluator's code, not copied), and the run left untouched.

* GenEval (``evaluation/evaluate_images.py``): sub-folders of the image dir whose names are all digits;
  each holds ``metadata.jsonl`` read with ``json.load`` (one object with ``tag`` and ``prompt``) and
  ``samples/`` files matching ``\\d+\\.png``.
* T2I-CompBench (``BLIPvqa_eval``, ``CLIPScore_eval``, ``UniDet_eval``, ``3_in_1``): ``samples/`` files sorted by
  ``int(name.split("_")[-1].split(".")[0])``, the prompt is ``name.split("_")[0]``, the number is the question id,
  and image ``k`` belongs to prompt ``k // images_per_prompt`` of the benchmark's prompt file.
* HPSv2 (``evaluate_benchmark``): styles are ``os.listdir(root)``; image ``i`` of a style is ``<style>/<i:05d>.jpg``,
  opened with PIL, scored against prompt ``i`` of ``<style>.json``.
* Taited/clip-score: the sorted non-dot names of the image and text folders pair up; Hugging Face ``imagefolder``:
  ``metadata.jsonl`` rows with ``file_name`` relative to its folder.
* clean-fid: every file with an image extension under the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tgsample.eval import export
from tgsample.eval.errors import ExportError

PROMPTS = ["a photo of a bench", "a red cube and a blue ball", "an anime cat", "a watercolor house"]


def write_run(root: Path, prompts=PROMPTS, seeds=3) -> Path:
    (root / "images").mkdir(parents=True)
    rows = []
    for i, p in enumerate(prompts):
        for s in range(seeds):
            rid = f"{i:06d}-{s}"
            Image.fromarray(np.full((8, 8, 3), 10 * i + s, np.uint8)).save(root / "images" / f"{rid}.png")
            rows.append({"id": rid, "prompt": p, "seed": s, "path": f"images/{rid}.png", "sha256": f"x{i}{s}"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    return root


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def run(tmp_path):
    return write_run(tmp_path / "run")


def image_of(run: Path, prompt: str, seed: int) -> bytes:
    return (run / "images" / f"{PROMPTS.index(prompt):06d}-{seed}.png").read_bytes()


def test_geneval_layout(run, tmp_path):
    meta = tmp_path / "evaluation_metadata.jsonl"
    lines = [{"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"},
             {"tag": "colors", "include": [], "prompt": "unused prompt"}]
    lines += [{"tag": "t", "include": [], "prompt": p} for p in PROMPTS[1:]]
    meta.write_text("".join(json.dumps(m) + "\n" for m in lines))
    before = snapshot(run)
    out = tmp_path / "geneval"
    summary = export(run, "geneval", out, metadata=meta)
    assert summary.images == 12 and snapshot(run) == before
    # GenEval's rule
    seen = {}
    for sub in os.listdir(out):
        folder = out / sub
        if not folder.is_dir() or not sub.isdigit():
            continue
        with open(folder / "metadata.jsonl") as fp:
            metadata = json.load(fp)
        assert {"tag", "prompt"} <= set(metadata)
        names = [n for n in os.listdir(folder / "samples") if re.match(r"\d+\.png", n)]
        seen[int(sub)] = (metadata, sorted(names))
    assert sorted(seen) == [0, 2, 3, 4]  # the folder is the prompt's line number in GenEval's file
    assert seen[0][0] == lines[0] and seen[0][1] == ["00000.png", "00001.png", "00002.png"]
    assert (out / "00000" / "samples" / "00002.png").read_bytes() == image_of(run, PROMPTS[0], 2)
    with pytest.raises(ExportError, match="evaluation_metadata"):
        export(run, "geneval", tmp_path / "g2")
    meta.write_text(json.dumps(lines[0]) + "\n")
    with pytest.raises(ExportError, match="3 prompt"):
        export(run, "geneval", tmp_path / "g3", metadata=meta)


def test_t2i_compbench_layout(run, tmp_path):
    prompt_file = tmp_path / "color_val.txt"
    order = [PROMPTS[2], PROMPTS[0], PROMPTS[3], PROMPTS[1], "a prompt not generated"]
    prompt_file.write_text("\n".join(order) + "\n")
    out = tmp_path / "t2i"
    export(run, "t2i-compbench", out, metadata=prompt_file, mode="copy")
    names = os.listdir(out / "samples")
    names.sort(key=lambda x: int(x.split("_")[-1].split(".")[0]))  # their sort
    ids = [int(n.split("_")[-1].split(".")[0]) for n in names]
    assert ids == list(range(12))
    for n, qid in zip(names, ids):
        prompt = n.split("_")[0]  # their prompt parsing
        assert prompt == order[qid // 3]
        seed = qid % 3
        assert (out / "samples" / n).read_bytes() == image_of(run, prompt, seed)
        assert not (out / "samples" / n).is_symlink()
    bad = write_run(tmp_path / "bad", prompts=["snake_case prompt"], seeds=1)
    with pytest.raises(ExportError, match="'_'"):
        export(bad, "t2i-compbench", tmp_path / "t2")


def test_hpsv2_layout(run, tmp_path):
    bench = tmp_path / "benchmark"
    bench.mkdir()
    styles = {"anime": [PROMPTS[2], "x"], "paintings": [PROMPTS[3]], "photo": [PROMPTS[0], PROMPTS[1]],
              "concept-art": ["y"]}
    for style, prompts in styles.items():
        (bench / f"{style}.json").write_text(json.dumps(prompts))
    out = tmp_path / "hps" / "mymodel"
    summary = export(run, "hpsv2", out, metadata=bench)
    assert summary.images == 4 and any("one image per prompt" in n for n in summary.notes)
    assert any("'anime': 1 of 2" in n for n in summary.notes)
    for style in os.listdir(out):  # their rule
        annotations = json.loads((bench / f"{style}.json").read_text())
        for idx, prompt in enumerate(annotations):
            path = out / style / f"{idx:05d}.jpg"
            if prompt in PROMPTS:
                with Image.open(path) as im:  # PIL reads by content: the linked PNG opens as is
                    im.load()
                assert path.read_bytes() == image_of(run, prompt, 0)
            else:
                assert not path.exists()
    with pytest.raises(ExportError, match="benchmark prompt folder"):
        export(run, "hpsv2", tmp_path / "h2")


def test_captions_and_clean_fid_layouts(run, tmp_path):
    out = tmp_path / "cap"
    export(run, "captions", out, mode="hardlink")
    imgs = sorted(n for n in os.listdir(out / "images") if n[0] != ".")  # Taited/clip-score's listing
    txts = sorted(n for n in os.listdir(out / "texts") if n[0] != ".")
    assert len(imgs) == len(txts) == 12
    for i, t in zip(imgs, txts):
        assert i.split(".")[0] == t.split(".")[0]
        prompt = (out / "texts" / t).read_text()
        assert (out / "images" / i).read_bytes() == image_of(run, prompt, int(i.split("-")[1].split(".")[0]))
        assert os.path.samefile(out / "images" / i, run / "images" / i)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert all((out / r["file_name"]).is_file() and r["text"] in PROMPTS for r in rows) and len(rows) == 12
    flat = tmp_path / "flat"
    export(run, "clean-fid", flat)
    from cleanfid.utils import EXTENSIONS

    files = [p for p in flat.rglob("*") if p.suffix[1:] in EXTENSIONS]
    assert len(files) == 12 and all(p.is_symlink() and p.resolve().parent == (run / "images").resolve() for p in files)


def test_exports_never_overwrite_or_write_into_the_run(run, tmp_path):
    out = tmp_path / "flat"
    export(run, "clean-fid", out)
    export(run, "clean-fid", out)  # the same export again: nothing to do
    other = write_run(tmp_path / "other", prompts=["z"] * 4, seeds=3)
    before = sorted(os.listdir(out))
    with pytest.raises(ExportError, match="already exists.*nothing was written"):
        export(other, "clean-fid", out)
    assert sorted(os.listdir(out)) == before
    with pytest.raises(ExportError, match="inside the run"):
        export(run, "clean-fid", run / "exports")
    with pytest.raises(ExportError, match="unknown export format 'genevel'.*'geneval'"):
        export(run, "genevel", tmp_path / "x")
