"""Training loops of the digit teacher and students (used by `scripts/*.py`; CPU, seeded).

Teacher: EDM training (Karras et al. 2022). `ln sigma ~ N(P_mean, P_std^2)`, loss
`lambda(sigma) ||D(x0 + sigma n, sigma, c) - x0||^2` with `lambda = (sigma^2 + sd^2) / (sigma sd)^2`;
the label is replaced by the null class with probability `p_uncond` (CFG label dropout).
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from ...denoisers import EDMDenoiser
from .data import NULL_CLASS, load

P_MEAN, P_STD = -1.2, 1.2


def set_threads(threads: int) -> None:
    torch.set_num_threads(max(1, int(threads)))


def training_parser(doc: Optional[str], iters: Optional[int], lr: Optional[float] = 2e-3) -> "argparse.ArgumentParser":
    """The flags every training script shares: `--iters --batch [--lr] --seed --threads --out`."""
    import argparse

    from .weights import WEIGHTS_DIR

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=iters)
    p.add_argument("--batch", type=int, default=128)
    if lr is not None:
        p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    return p


def drop_labels(y: Tensor, p: float, gen: torch.Generator) -> Tensor:
    """Replace each label by the null class with probability `p` (CFG label dropout)."""
    return torch.where(torch.rand(y.shape, generator=gen) < p, torch.full_like(y, NULL_CLASS), y)


def edm_loss(den: EDMDenoiser, x0: Tensor, y: Tensor, gen: torch.Generator, **cond: Tensor) -> Tensor:
    """EDM's weighted denoising loss (see module doc)."""
    sigma = (torch.randn(x0.shape[0], generator=gen) * P_STD + P_MEAN).exp()
    n = torch.randn(x0.shape, generator=gen)
    weight = (sigma**2 + den.sigma_data**2) / (sigma * den.sigma_data) ** 2
    d = den(x0 + sigma[:, None, None, None] * n, sigma, class_labels=y, **cond)
    return (weight[:, None, None, None] * (d - x0) ** 2).mean()


def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """`ema <- decay * ema + (1 - decay) * model`."""
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm, 1 - decay)


def lr_at(i: int, iters: int, lr: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 5 % of `lr`."""
    if i < warmup:
        return lr * (i + 1) / warmup
    t = (i - warmup) / max(1, iters - warmup)
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def batches(x: Tensor, y: Tensor, batch: int, gen: torch.Generator):
    """Endless shuffled minibatches."""
    while True:
        perm = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x) - batch + 1, batch):
            idx = perm[s:s + batch]
            yield x[idx], y[idx]


def fit(step: Callable[[int, torch.Generator], Tensor], params, iters: int, lr: float, seed: int,
        on_step: Optional[Callable[[int], None]] = None, log_every: int = 200, name: str = "") -> list[float]:
    """Adam loop over `step(i, gen) -> loss`; returns the logged running losses."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(params, lr=lr)
    warmup = min(200, max(1, iters // 10))
    losses, run, t0 = [], 0.0, time.time()
    for i in range(iters):
        for g in opt.param_groups:
            g["lr"] = lr_at(i, iters, lr, warmup)
        loss = step(i, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(i)
        lv = loss.item()
        run = 0.98 * run + 0.02 * lv if i else lv
        if (i + 1) % log_every == 0 or i + 1 == iters:
            losses.append(run)
            print(f"[{name}] iter {i + 1}/{iters} loss {run:.4f} {time.time() - t0:.0f}s", flush=True)
    return losses


def train_teacher(den: EDMDenoiser, iters: int, batch: int = 128, lr: float = 2e-3, seed: int = 0,
                  p_uncond: float = 0.1, ema_decay: float = 0.999, log_every: int = 200) -> EDMDenoiser:
    """Train `den` on the train split; returns its EMA copy (eval mode)."""
    torch.manual_seed(seed)
    x, y = load("train")
    data_gen = torch.Generator().manual_seed(seed + 1)
    it = batches(x, y, batch, data_gen)
    ema = copy.deepcopy(den).requires_grad_(False)
    den.train()

    def step(i: int, gen: torch.Generator) -> Tensor:
        xb, yb = next(it)
        return edm_loss(den, xb, drop_labels(yb, p_uncond, gen), gen)

    decay = lambda i: min(ema_decay, (1 + i) / (10 + i))  # noqa: E731 - warm-up of the EMA
    fit(step, den.parameters(), iters, lr, seed, lambda i: ema_update(ema, den, decay(i)), log_every, "teacher")
    return ema.eval()


# --- consistency distillation (LCM style) with the guidance scale as an input ------------------
#
# Guided consistency distillation (Luo et al. 2023 "LCM"; Meng et al. 2023, arXiv 2210.03142):
# on the teacher's Karras grid s_0 > ... > s_N (N intervals), draw n, a class c and a scale
# w ~ U[w_min, w_max]; x_hi = x0 + s_n z; one teacher Euler step with CFG at scale w,
#   D_T = D_u + w (D_c - D_u),   x_lo = D_T + s_{n+1} (x_hi - D_T) / s_n;
# and the loss  d(f(x_hi, s_n, c, w), f_ema(x_lo, s_{n+1}, c, w))  with the pseudo-Huber
# distance d(a, b) = sqrt(||a - b||^2 + k^2) - k. The EDM scalings give f(x, s_min) ~= x
# (c_skip(0.002) = 1 - 1.6e-5), the consistency boundary condition.


def karras_grid(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Tensor:
    """`n + 1` Karras sigmas from `sigma_max` down to `sigma_min` (no trailing zero)."""
    ramp = torch.linspace(0, 1, n + 1)
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def pseudo_huber(a: Tensor, b: Tensor, k: float) -> Tensor:
    """`sqrt(||a - b||^2 + k^2) - k` per sample, averaged."""
    return ((a - b).flatten(1).square().sum(1) + k * k).sqrt().sub(k).mean()


def distill(student: EDMDenoiser, teacher: EDMDenoiser, iters: int, batch: int = 128, lr: float = 1e-3,
            seed: int = 0, grid: int = 40, w_range: tuple[float, float] = (1.0, 4.0), p_uncond: float = 0.1,
            target_decay: float = 0.95, ema_decay: float = 0.999, log_every: int = 200,
            name: str = "student") -> EDMDenoiser:
    """Consistency-distil `teacher` into `student` (see above); returns the student's EMA (eval)."""
    torch.manual_seed(seed)
    teacher = teacher.eval().requires_grad_(False)
    x, y = load("train")
    it = batches(x, y, batch, torch.Generator().manual_seed(seed + 1))
    sig = karras_grid(grid, teacher.sigma_min, teacher.sigma_max)
    target = copy.deepcopy(student).requires_grad_(False)
    ema = copy.deepcopy(student).requires_grad_(False)
    k = 0.00054 * math.sqrt(x[0].numel()) * 2  # iCT's constant, for data in [-1, 1]
    student.train()

    def step(i: int, gen: torch.Generator) -> Tensor:
        x0, yb = next(it)
        b = x0.shape[0]
        yb = drop_labels(yb, p_uncond, gen)
        w = w_range[0] + (w_range[1] - w_range[0]) * torch.rand(b, generator=gen)
        n = torch.randint(0, grid, (b,), generator=gen)
        s_hi, s_lo = sig[n], sig[n + 1]
        x_hi = x0 + s_hi[:, None, None, None] * torch.randn(x0.shape, generator=gen)
        with torch.no_grad():
            both = teacher(torch.cat([x_hi, x_hi]), torch.cat([s_hi, s_hi]),
                           class_labels=torch.cat([yb, torch.full_like(yb, NULL_CLASS)]))
            d_c, d_u = both[:b], both[b:]
            from ... import math as M

            d_t = M.cfg(d_u, d_c, w)
            x_lo = d_t + M.append_dims(s_lo / s_hi, 4) * (x_hi - d_t)
            tgt = target(x_lo, s_lo, class_labels=yb, guidance_scale=w)
        pred = student(x_hi, s_hi, class_labels=yb, guidance_scale=w)
        return pseudo_huber(pred, tgt, k)

    def after(i: int) -> None:
        ema_update(target, student, target_decay)
        ema_update(ema, student, min(ema_decay, (1 + i) / (10 + i)))

    fit(step, student.parameters(), iters, lr, seed, after, log_every, name)
    return ema.eval()
