#!/usr/bin/env python
"""Parity of tgsample's FLUX / SD3.5 adapters with diffusers' own pipelines, on tiny saved pipelines.

Builds the FLUX- and SD3-shaped pipelines of ``tests/tiny_flow.py`` (random weights, real shapes and
scheduler configs) in a temporary directory, then for each case of ``tiny_flow.CASES`` runs
``FluxPipeline`` / ``StableDiffusion3Pipeline`` and tgsample (the model's own recipe: the ``flow``
schedule, Euler, its guidance) from the same initial latents (``sample(latents=...)``), and prints the
largest absolute difference of the final latents over a few seeds, with tgsample's default convention
and with the model loaded with ``diffusers_parity=True``. CPU, float32, about a minute.

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
from tiny_flow import CASES, build_all, parity  # noqa: E402


def table(paths: dict, seeds: int) -> None:
    """Print the markdown table for the pipelines at ``paths`` (:func:`tiny_flow.build_all`)."""
    print(f"| case | steps | max abs diff (latents), {seeds} seeds | same with `diffusers_parity=True` "
          "| max abs latent |")
    print("| --- | --- | --- | --- | --- |")
    for case in CASES:
        diffs, switched, scale, steps = [], [], 0.0, None
        for seed in range(seeds):
            x, ref, model = parity(paths, case, seed)
            y, _, _ = parity(paths, case, seed, diffusers_parity=True)
            diffs.append((x - ref).abs().max().item())
            switched.append((y - ref).abs().max().item())
            scale = max(scale, ref.abs().max().item())
            steps = CASES[case][3] or model.recipes[""].steps
        print(f"| {case} | {steps} | {max(diffs):.1e} | {max(switched):.1e} | {scale:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="initial latents per case (default 3)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        table(build_all(Path(tmp)), args.seeds)


if __name__ == "__main__":
    main()
