"""Smoke test of scripts/bench_gpu.py on CPU with the tiny pipelines: every runner and the end-to-end
``tgsample generate`` produce a number (the numbers themselves are for the script to print)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


def test_bench_gpu_runs_on_cpu_with_tiny_models(tiny, tmp_path):
    import bench_gpu

    before = torch.get_num_threads()
    try:
        result = bench_gpu.main(["--size", "tiny", "--device", "cpu", "--dtypes", "float32", "--modes", "eager",
                                 "--batches", "2", "--repeats", "1", "--generate-records", "3", "--threads", "1",
                                 "--workdir", str(tmp_path), "--out", str(tmp_path / "r.json")], paths=tiny)
    finally:
        torch.set_num_threads(before)
    runners = {(r["family"], r["runner"]) for r in result["rows"]}
    assert runners == {(f, r) for f in bench_gpu.FAMILIES
                       for r in ("tgsample 4", "tgsample 4+1", "tgsample 5", "diffusers 4")}
    assert all(r["images_per_s"] > 0 and math.isfinite(r["ms_per_step"]) for r in result["rows"])
    assert [(g["family"], g["exit"], g["records"]) for g in result["generate"]] == [(f, 0, 3) for f in bench_gpu.FAMILIES]
    assert (tmp_path / "r.json").exists() and result["card"] == "CPU"
