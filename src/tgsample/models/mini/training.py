"""Seeded, resumable training of the miniature's parts (`scripts/train_mini.py`; CPU, one thread).

Every run seeds torch **before** building its model, draws every random number (batches, noise,
timesteps, caption dropout) from one `torch.Generator`, and can be interrupted: each
`ckpt_every` iterations the models, optimiser, generator and iteration are saved to
`<ckpt>/<part>.pt`, and a run with the same command resumes from there (same final weights).

* VAE: `||D(z) - x||^2 + beta KL(q(z|x) || N(0, I))`, `z ~ q(z|x)`; its `scaling_factor` is set
  to `1 / std` of the train split's latents (SD's convention).
* Teacher (UNet + text encoder): eps prediction on SD's table, `||eps_theta(z_t, t, c) - eps||^2`,
  `t ~ U{0..999}`, the caption replaced by `""` with probability `p_uncond` (CFG by caption dropout).
* Students: `distill` (LCM consistency distillation, with or without the `w` embedding, full or
  LoRA) and `distill_trailing` (a trailing-schedule Euler student).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from . import components as C
from . import data as D
from .recipes import STUDENT_W

TRAILING = (999, 749, 499, 249)
"""the Lightning-style student's timesteps (diffusers' "trailing", 4 steps)"""


def abar_table() -> Tensor:
    """SD 1.5's `alphas_cumprod` `[1000]` (the scheduler's table), float32."""
    return C.scheduler().alphas_cumprod.float()


class Loop:
    """An Adam loop with EMA, checkpoints and wall time; `step(gen) -> loss` does one iteration."""

    def __init__(self, name: str, modules: dict[str, torch.nn.Module], params: list, *, iters: int, lr: float,
                 seed: int, ckpt: Optional[Path] = None, ckpt_every: int = 200, ema: Optional[dict] = None,
                 ema_decay: float = 0.999, log_every: int = 100):
        self.name, self.modules, self.iters, self.lr = name, modules, iters, lr
        self.ema, self.ema_decay = ema or {}, ema_decay
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        self.ckpt = Path(ckpt) / f"{name}.pt" if ckpt is not None else None
        self.ckpt_every, self.log_every = ckpt_every, log_every
        self.start, self.elapsed = 0, 0.0

    def _state(self, i: int) -> dict:
        return {"iter": i, "elapsed": self.elapsed, "gen": self.gen.get_state(), "opt": self.opt.state_dict(),
                "modules": {k: m.state_dict() for k, m in self.modules.items()},
                "ema": {k: m.state_dict() for k, m in self.ema.items()}}

    def resume(self) -> None:
        if self.ckpt is None or not self.ckpt.is_file():
            return
        s = torch.load(self.ckpt, weights_only=False)
        for k, m in self.modules.items():
            m.load_state_dict(s["modules"][k])
        for k, m in self.ema.items():
            m.load_state_dict(s["ema"][k])
        self.opt.load_state_dict(s["opt"])
        self.gen.set_state(s["gen"])
        self.start, self.elapsed = s["iter"], s["elapsed"]
        print(f"[{self.name}] resumed at iter {self.start} from {self.ckpt}", flush=True)

    def run(self, step: Callable[[torch.Generator], Tensor]) -> float:
        """Train to `iters`; returns the wall time in seconds (all sessions of an interrupted run)."""
        self.resume()
        t0, run = time.time() - self.elapsed, None
        warmup = min(100, max(1, self.iters // 10))
        for i in range(self.start, self.iters):
            for g in self.opt.param_groups:
                g["lr"] = self.lr * min(1.0, (i + 1) / warmup)
            loss = step(self.gen)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            with torch.no_grad():
                for k, e in self.ema.items():
                    for pe, pm in zip(e.parameters(), self.modules[k].parameters()):
                        pe.lerp_(pm, 1 - self.ema_decay)
            run = loss.item() if run is None else 0.98 * run + 0.02 * loss.item()
            self.elapsed = time.time() - t0
            if (i + 1) % self.log_every == 0 or i + 1 == self.iters:
                print(f"[{self.name}] iter {i + 1}/{self.iters} loss {run:.4f} {self.elapsed:.0f}s", flush=True)
            if self.ckpt is not None and ((i + 1) % self.ckpt_every == 0 or i + 1 == self.iters):
                self.ckpt.parent.mkdir(parents=True, exist_ok=True)
                torch.save(self._state(i + 1), self.ckpt)
        return self.elapsed


def train_vae(out: Path, *, iters: int = 700, batch: int = 64, lr: float = 2e-3, seed: int = 0, beta: float = 1e-4,
              ckpt: Optional[Path] = None) -> dict:
    """Train the VAE on the train split; writes `out/vae`; returns `{"wall_s", "scaling_factor", "mse"}`."""
    torch.manual_seed(seed)
    vae = C.vae()
    x = D.pad32(D.load("train").images)
    loop = Loop("vae", {"vae": vae}, list(vae.parameters()), iters=iters, lr=lr, seed=seed, ckpt=ckpt)

    def step(gen: torch.Generator) -> Tensor:
        xb = x[torch.randint(0, len(x), (batch,), generator=gen)]
        post = vae.encode(xb).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        return (rec - xb).pow(2).mean() + beta * post.kl().mean() / z[0].numel()

    wall = loop.run(step)
    vae.eval()
    with torch.no_grad():
        lat = torch.cat([vae.encode(x[i:i + 500]).latent_dist.mean for i in range(0, len(x), 500)])
        scaling = float(1.0 / lat.std())
        mse = float(torch.cat([(vae.decode(lat[i:i + 500]).sample - x[i:i + 500]).pow(2).mean((1, 2, 3))
                               for i in range(0, len(x), 500)]).mean())
    vae.register_to_config(scaling_factor=round(scaling, 5))
    C.save_fp16(vae, out / "vae")
    return {"wall_s": wall, "scaling_factor": scaling, "mse": mse}


def load_vae(root: Path) -> Any:
    """The trained `AutoencoderKL` in `root/vae` (float32, frozen)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(root / "vae", torch_dtype=torch.float32).eval().requires_grad_(False)


@torch.no_grad()
def latents(root: Path, split: D.Split) -> tuple[Tensor, Tensor]:
    """Posterior mean and std `[N, 4, 8, 8]` of the shipped (float16 on disk) VAE, scaled by its factor."""
    vae = load_vae(root)
    x = D.pad32(split.images)
    means, stds = [], []
    for i in range(0, len(x), 500):
        post = vae.encode(x[i:i + 500]).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    s = vae.config.scaling_factor
    return torch.cat(means) * s, torch.cat(stds) * s


def training_set(root: Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The generative models' data: in-distribution train images as latents `(mean, std)`, their token ids
    `[N, L]` and the empty caption's ids `[1, L]`."""
    split = D.load("train")
    split = split.subset(split.in_distribution())
    mean, std = latents(root, split)
    tok = C.tokenizer(root / "tokenizer")
    ids = lambda caps: tok(caps, padding="max_length", max_length=C.MAX_LENGTH, truncation=True,  # noqa: E731
                           return_tensors="pt").input_ids
    return mean, std, ids(split.captions()), ids([""])


def draw(mean: Tensor, std: Tensor, ids: Tensor, empty: Tensor, batch: int, gen: torch.Generator,
         p_uncond: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """A batch: latents `z ~ q(z|x)`, caption ids (`""` with probability `p_uncond`), and the caption ids."""
    idx = torch.randint(0, len(mean), (batch,), generator=gen)
    z = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)
    cond = ids[idx]
    drop = torch.rand(batch, generator=gen) < p_uncond
    return z, torch.where(drop[:, None], empty.expand_as(cond), cond), cond


def add_noise(z: Tensor, t: Tensor, eps: Tensor, abar: Tensor) -> Tensor:
    """`z_t = sqrt(abar_t) z + sqrt(1 - abar_t) eps`."""
    a = abar[t].reshape(-1, 1, 1, 1)
    return a.sqrt() * z + (1 - a).sqrt() * eps


def train_teacher(out: Path, *, iters: int = 1000, batch: int = 64, lr: float = 1e-3, seed: int = 0,
                  p_uncond: float = 0.1, ckpt: Optional[Path] = None) -> dict:
    """Train the teacher UNet and the text encoder; writes `out/{unet,text_encoder,tokenizer,scheduler}` and
    `model_index.json` (the VAE must be in `out/vae`)."""
    C.write_tokenizer(out / "tokenizer")
    torch.manual_seed(seed)
    tok = C.tokenizer(out / "tokenizer")
    enc, unet = C.text_encoder(tok), C.unet()
    ema = {"unet": copy.deepcopy(unet).requires_grad_(False), "enc": copy.deepcopy(enc).requires_grad_(False)}
    mean, std, ids, empty = training_set(out)
    abar = abar_table()
    loop = Loop("teacher", {"unet": unet, "enc": enc}, [*unet.parameters(), *enc.parameters()], iters=iters, lr=lr,
                seed=seed, ckpt=ckpt, ema=ema, ema_decay=0.995)

    def step(gen: torch.Generator) -> Tensor:
        z, c, _ = draw(mean, std, ids, empty, batch, gen, p_uncond)
        t = torch.randint(0, len(abar), (batch,), generator=gen)
        eps = torch.randn(z.shape, generator=gen)
        return (unet(add_noise(z, t, eps, abar), t, enc(c)[0]).sample - eps).pow(2).mean()

    wall = loop.run(step)
    C.save_fp16(ema["unet"], out / "unet")
    C.save_fp16(ema["enc"], out / "text_encoder")
    C.scheduler().save_pretrained(out / "scheduler")
    C.write_model_index(out)
    return {"wall_s": wall}


# ---- students -------------------------------------------------------------------------------------------------

DDIM_SKIP = 20
"""LCM's DDIM solver: 50 timesteps 19, 39, ..., 999, one solver step = 20 timesteps"""
LCM_W = (2.0, 6.0)
"""the LCM student's range of CFG scales w (embedded as w - 1)"""


def frozen_teacher(root: Path) -> tuple[Any, Any]:
    """The teacher UNet and text encoder in `root` (float32, frozen)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(root / "unet", torch_dtype=torch.float32).eval().requires_grad_(False)
    enc = CLIPTextModel.from_pretrained(root / "text_encoder", dtype=torch.float32).eval().requires_grad_(False)
    return unet, enc


@torch.no_grad()
def cfg_eps(unet: Any, z: Tensor, t: Tensor, cond: Tensor, uncond: Tensor, w: Tensor) -> Tensor:
    """`eps_u + w (eps_c - eps_u)` in one batched call."""
    e = unet(torch.cat([z, z]), torch.cat([t, t]), torch.cat([cond, uncond.expand_as(cond)])).sample
    ec, eu = e.chunk(2)
    return eu + w.reshape(-1, 1, 1, 1) * (ec - eu)


def x0_of(z: Tensor, t: Tensor, eps: Tensor, abar: Tensor) -> Tensor:
    """`x0 = (z_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`."""
    a = abar[t].reshape(-1, 1, 1, 1)
    return (z - (1 - a).sqrt() * eps) / a.sqrt()


def ddim(z: Tensor, t: Tensor, t_next: Tensor, eps: Tensor, abar: Tensor) -> Tensor:
    """DDIM's step `z_s = sqrt(abar_s) x0 + sqrt(1 - abar_s) eps` from `t` to `s = t_next`."""
    return add_noise(x0_of(z, t, eps, abar), t_next, eps, abar)


def _text(enc: Any, ids: Tensor, empty: Tensor) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        return torch.cat([enc(ids[i:i + 500])[0] for i in range(0, len(ids), 500)]), enc(empty)[0]


def distill(out: Path, *, lora: bool, iters: int = 500, batch: int = 32, lr: Optional[float] = None, seed: int = 0,
            ckpt: Optional[Path] = None, huber_c: float = 1e-3) -> dict:
    """LCM consistency distillation (Luo et al. 2023) from the teacher at CFG scale `w`.

    `z_{t+k} = q(z | x)`, `k = 20`; the teacher's CFG-`w` DDIM step gives `z_t`; the loss is the
    pseudo-Huber distance between `f_theta(z_{t+k}, t + k, w)` and `f_target(z_t, t, w)` with LCM's boundary
    `f = c_skip(t) z + c_out(t) x0(z, t)` (timestep scaling 10). Full student (`lora=False`): a copy of the
    teacher with the `w` embedding (`time_cond_proj_dim`, zero-initialised), `w ~ U` `LCM_W`, EMA
    target (decay 0.95). LoRA student: adapters on the teacher's UNet (the teacher is the same UNet with the
    adapters off), `w` fixed at `STUDENT_W`, the target the student itself without gradient
    (LCM-LoRA's training). Writes `students/lcm/unet` or `students/lcm_lora/pytorch_lora_weights.safetensors`.
    """
    from ...denoisers import lcm_boundary
    from ..diffusers.net import guidance_embedding

    lr = lr if lr is not None else (1e-3 if lora else 3e-4)  # LoRA's usual higher rate
    torch.manual_seed(seed)
    teacher, enc = frozen_teacher(out)
    mean, std, ids, empty = training_set(out)
    states, null = _text(enc, ids, empty)
    abar = abar_table()
    boundary = lcm_boundary(10.0)
    if lora:
        from peft import LoraConfig

        student = teacher
        student.add_adapter(LoraConfig(init_lora_weights="gaussian", **C.LORA))
        params = [p for p in student.parameters() if p.requires_grad]
        target, ema = None, None
    else:
        student = C.unet(C.TIME_COND_PROJ_DIM)
        missing = student.load_state_dict(teacher.state_dict(), strict=False).missing_keys
        assert missing == ["time_embedding.cond_proj.weight"], missing
        torch.nn.init.zeros_(student.time_embedding.cond_proj.weight)
        target = copy.deepcopy(student).requires_grad_(False)
        ema, params = {"unet": target}, list(student.parameters())
    student.train()
    loop = Loop("lcm-lora" if lora else "lcm", {"unet": student}, params, iters=iters, lr=lr, seed=seed, ckpt=ckpt,
                ema=ema, ema_decay=0.95)

    def f(net: Any, z: Tensor, t: Tensor, cond: Tensor, w: Tensor) -> Tensor:
        kw = {} if lora else {"timestep_cond": guidance_embedding(w, C.TIME_COND_PROJ_DIM)}
        c_skip, c_out = (s.reshape(-1, 1, 1, 1) for s in boundary(t.float()))
        return c_skip * z + c_out * x0_of(z, t, net(z, t, cond, **kw).sample, abar)

    def step(gen: torch.Generator) -> Tensor:
        idx = torch.randint(0, len(mean), (batch,), generator=gen)
        z = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)
        cond = states[idx]
        n = torch.randint(1, 1000 // DDIM_SKIP + 1, (batch,), generator=gen)
        t = n * DDIM_SKIP - 1
        s = (t - DDIM_SKIP).clamp(min=0)
        zt = add_noise(z, t, torch.randn(z.shape, generator=gen), abar)
        if lora:
            w = torch.full((batch,), STUDENT_W)
        else:
            w = LCM_W[0] + (LCM_W[1] - LCM_W[0]) * torch.rand(batch, generator=gen)
        pred = f(student, zt, t, cond, w)
        with torch.no_grad():
            if lora:
                student.disable_adapters()
            zs = ddim(zt, t, s, cfg_eps(teacher, zt, t, cond, null, w), abar)
            if lora:
                student.enable_adapters()
            tgt = f(student if lora else target, zs, s, cond, w)
        return ((pred - tgt).pow(2) + huber_c**2).sqrt().sub(huber_c).mean()

    wall = loop.run(step)
    if lora:
        _save_lora(student, C.STUDENTS_DIR if out == C.MINI_DIR else out / "students")
    else:
        C.save_fp16(target, (C.STUDENTS_DIR if out == C.MINI_DIR else out / "students") / "lcm" / "unet")
    return {"wall_s": wall}


def _save_lora(unet: Any, students: Path) -> Path:
    """The LoRA in peft's key layout (`unet.<module>.lora_A.weight`), float16, as diffusers' loader reads it.

    (`convert_state_dict_to_diffusers` would rename the attention layers' keys to the old `lora.down` form,
    which diffusers' loader then skips with a warning: the attention LoRA would be lost.)"""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    from ..diffusers.loading import LORA_WEIGHT_NAME

    layers = {f"unet.{k}": v.detach().to(torch.float16).contiguous()
              for k, v in get_peft_model_state_dict(unet).items()}
    folder = students / "lcm_lora"
    folder.mkdir(parents=True, exist_ok=True)
    save_file(layers, str(folder / LORA_WEIGHT_NAME), metadata={"format": "pt"})
    return folder


def distill_trailing(out: Path, *, iters: int = 400, batch: int = 32, lr: float = 3e-4, seed: int = 0,
                     ckpt: Optional[Path] = None, substeps: int = 2) -> dict:
    """A trailing-schedule Euler student (SDXL-Lightning / progressive-distillation style), full UNet.

    For each of its steps `t_i -> t_{i+1}` on `TRAILING` (the last one to the clean image): `z_{t_i} =
    q(z | x)`; the teacher at CFG `STUDENT_W` runs `substeps` DDIM steps to `t_{i+1}` (to timestep 0
    on the last); `x0*` is the x0 whose single DDIM (Euler) step from `z_{t_i}` lands there, and the
    student learns `x0_theta(z_{t_i}, t_i) = x0*` (weight `clamp(SNR(t_i), 0.1, 5)`). Initialised from the
    teacher; EMA 0.99. Writes `students/lightning/unet`.
    """
    torch.manual_seed(seed)
    teacher, enc = frozen_teacher(out)
    mean, std, ids, empty = training_set(out)
    states, null = _text(enc, ids, empty)
    abar = abar_table()
    student = copy.deepcopy(teacher).requires_grad_(True).train()
    ema = {"unet": copy.deepcopy(teacher)}
    loop = Loop("lightning", {"unet": student}, list(student.parameters()), iters=iters, lr=lr, seed=seed, ckpt=ckpt,
                ema=ema, ema_decay=0.99)
    ends = torch.tensor([*TRAILING, 0])

    def step(gen: torch.Generator) -> Tensor:
        idx = torch.randint(0, len(mean), (batch,), generator=gen)
        z = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)
        cond = states[idx]
        i = torch.randint(0, len(TRAILING), (batch,), generator=gen)
        t, s = ends[i], ends[i + 1]
        zt = add_noise(z, t, torch.randn(z.shape, generator=gen), abar)
        w = torch.full((batch,), STUDENT_W)
        with torch.no_grad():
            zk = zt
            for k in range(substeps):
                a = (t + (s - t) * k / substeps).round().long()
                b = (t + (s - t) * (k + 1) / substeps).round().long()
                zk = ddim(zk, a, b, cfg_eps(teacher, zk, a, cond, null, w), abar)
            at, as_ = abar[t].reshape(-1, 1, 1, 1), abar[s].reshape(-1, 1, 1, 1)
            r = ((1 - as_) / (1 - at)).sqrt()
            x0_star = (zk - r * zt) / (as_.sqrt() - r * at.sqrt())  # z_s = sqrt(a_s) x0 + r (z_t - sqrt(a_t) x0)
            weight = (at / (1 - at)).clamp(0.1, 5.0)
        x0 = x0_of(zt, t, student(zt, t, cond).sample, abar)
        return (weight * (x0 - x0_star).pow(2)).mean()

    wall = loop.run(step)
    C.save_fp16(ema["unet"], (C.STUDENTS_DIR if out == C.MINI_DIR else out / "students") / "lightning" / "unet")
    return {"wall_s": wall}


DISTILL = {"lcm": lambda out, **kw: distill(out, lora=False, **kw),
           "lcm-lora": lambda out, **kw: distill(out, lora=True, **kw),
           "lightning": distill_trailing}
"""the students' training functions by `scripts/train_mini.py` part name"""
