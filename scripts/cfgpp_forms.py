"""How far tgsample's CFG++ on DPM++ 2M / 2S-a is from the peers' forms (docs/guidance.md, "CFG++").

On an exact 1-D Gaussian-mixture denoiser (conditional and unconditional mixtures), the same start and
the same ancestral noise, this runs tgsample's ``dpmpp_2m`` / ``dpmpp_2s_ancestral`` with ``CFGPP(lam)``
and the peers' update rules written out below, and prints max |tgsample - peer| of the final samples:

* 2M, ComfyUI / official CFG++ after its "dpm++_2m_cfg++ bug fix": correction ``D - D_u_old``;
* 2S-a, official CFG++ code: midpoint ``s x + (1 - s) D_u``, landing ``s x + (1 - s) D_u2 + (D_2 - D_u2)``;
* 2S-a, ComfyUI: midpoint ``s x + (1 - s) D_u``, landing ``s x + (1 - s) D_u2``, then ``+ (D - D_u)``
  of the first stage after the noise.

    python scripts/cfgpp_forms.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import tgsample  # noqa: E402
from tgsample import math as M  # noqa: E402
from tgsample.denoisers import CallableDenoiser  # noqa: E402
from tgsample.noise import NoiseStreams  # noqa: E402
from tgsample.schedules import karras  # noqa: E402

from analytic import mixture  # noqa: E402

MEANS = torch.tensor([-2.0, 0.5, 3.0])
COND_W, UNCOND_W = torch.tensor([0.1, 0.2, 0.7]), torch.tensor([0.45, 0.35, 0.2])


def denoiser() -> CallableDenoiser:
    cond, uncond = mixture(MEANS, COND_W, 0.4), mixture(MEANS, UNCOND_W, 0.4)

    def D(x, sigma, label):
        pick = (label > 0).reshape(-1, 1)
        return torch.where(pick, cond(x, sigma), uncond(x, sigma))

    return CallableDenoiser(D, sigma_min=0.01, sigma_max=20.0)


def pair(den, x, sigma):
    b = x.shape[0]
    s = sigma.expand(b)
    return den(x, s, label=torch.ones(b)), den(x, s, label=torch.zeros(b))


def peer_2m(den, x, sigmas, lam):
    old_u = None
    for i in range(len(sigmas) - 1):
        d_c, d_u = pair(den, x, sigmas[i])
        d = M.cfg(d_u, d_c, lam)
        if sigmas[i + 1] == 0:
            return d
        s = sigmas[i + 1] / sigmas[i]
        x = s * x + d - s * d_u
        if old_u is not None:
            r = (sigmas[i - 1].log() - sigmas[i].log()) / (sigmas[i].log() - sigmas[i + 1].log())
            x = x + (1 - s) / (2 * r) * (d - old_u)
        old_u = d_u
    return x


def peer_2sa(den, x, sigmas, lam, noise, comfy):
    for i in range(len(sigmas) - 1):
        d_c, d_u = pair(den, x, sigmas[i])
        d = M.cfg(d_u, d_c, lam)
        down, up = M.ancestral_split(sigmas[i], sigmas[i + 1])
        if down == 0:
            x = d + down * M.implied_noise(x, d_u, sigmas[i])
        else:
            mid = (sigmas[i] * down).sqrt()
            s_mid, s = mid / sigmas[i], down / sigmas[i]
            x_mid = s_mid * x + (1 - s_mid) * d_u
            d_c2, d_u2 = pair(den, x_mid, mid)
            d2 = M.cfg(d_u2, d_c2, lam)
            x = s * x + (1 - s) * d_u2 + (0 if comfy else d2 - d_u2)
        if sigmas[i + 1] > 0:
            x = x + noise.randn_like("ancestral", x) * up
        if comfy:
            x = x + (d - d_u)
    return x


def main() -> None:
    torch.set_num_threads(1)
    den = denoiser()
    seeds, steps = list(range(2000)), 10
    sigmas = karras(steps, den)
    cond, uncond = {"label": torch.ones(len(seeds))}, {"label": torch.zeros(len(seeds))}
    start = NoiseStreams(seeds).randn("init", (1,)) * sigmas[0]
    print(f"exact 3-mode mixture, {len(seeds)} samples, {steps} Karras steps, sigma 0.01..20; "
          f"mean / max |tgsample - peer| (lam = 0: the forms coincide, a check of the peer code)")
    print("| lam | 2M vs ComfyUI/official | 2S-a vs official CFG++ | 2S-a vs ComfyUI |")
    print("| --- | --- | --- | --- |")
    for lam in (0.0, 0.2, 0.6, 1.0):
        run = lambda solver: tgsample.sample(den, cond, uncond=uncond, seeds=seeds, sigmas=sigmas, solver=solver,  # noqa: E731
                                             guidance=tgsample.CFGPP(lam), shape=(1,))
        ours_2m, ours_2sa = run("dpmpp_2m"), run("dpmpp_2s_ancestral")
        diffs = [(ours_2m - peer_2m(den, start, sigmas, lam)).abs()]
        for comfy in (False, True):
            diffs.append((ours_2sa - peer_2sa(den, start, sigmas, lam, NoiseStreams(seeds), comfy)).abs())
        print(f"| {lam} | " + " | ".join(f"{d.mean().item():.3g} / {d.max().item():.3g}" for d in diffs) + " |")


if __name__ == "__main__":
    main()
