#!/usr/bin/env python
"""Parity of tgsample's FLUX / SD3.5 adapters with diffusers' own pipelines, on tiny saved pipelines.

Builds the FLUX- and SD3-shaped pipelines of ``tests/tiny_flow.py`` (random weights, real shapes and
scheduler configs) in a temporary directory, then for each case of ``tiny_flow.CASES`` runs
``FluxPipeline`` / ``StableDiffusion3Pipeline`` and tgsample (the model's published settings: the
``flow`` schedule, Euler, its guidance) from the same initial latents, and prints the largest absolute
difference of the final latents, over a few seeds. CPU, float32, about half a minute.

Usage::

    python scripts/flow_parity.py            # the table in docs/flow.md ("Parity with diffusers")
    python scripts/flow_parity.py --seeds 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="initial latents per case (default 3)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    from tiny_flow import CASES, build_all, parity

    paths = build_all(Path(tempfile.mkdtemp()))
    print(f"| case | steps | max abs diff (latents), {args.seeds} seeds | max abs latent |")
    print("| --- | --- | --- | --- |")
    for case in CASES:
        diffs, scale, steps = [], 0.0, None
        for seed in range(args.seeds):
            x, ref, model = parity(paths, case, seed)
            diffs.append((x - ref).abs().max().item())
            scale = max(scale, ref.abs().max().item())
            steps = CASES[case][3] or model.defaults["steps"]
        print(f"| {case} | {steps} | {max(diffs):.1e} | {scale:.2f} |")


if __name__ == "__main__":
    main()
