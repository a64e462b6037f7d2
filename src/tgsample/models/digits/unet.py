"""A small class-conditional UNet for 8x8 digits (the network `F` inside EDM preconditioning).

`F(x_in, c_noise, class_labels, guidance_scale=None)`: `c_noise = log(sigma) / 4` (EDM),
`class_labels` in `0..10` (10 = the null class of classifier-free guidance). A student
built with `guidance_embedding=True` also embeds the guidance scale `w` it was distilled
for (guided distillation, arXiv 2210.03142); that embedding's last layer starts at zero, so a
student initialised from the teacher starts as the teacher.

Levels: 8x8 -> 4x4 -> 2x2 with `channels * mult` channels, `blocks` residual blocks per
level, scale/shift modulation from the summed noise / class / guidance embedding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import NULL_CLASS


@dataclass(frozen=True)
class UNetConfig:
    channels: int = 48
    mult: tuple[int, ...] = (1, 2, 2)
    blocks: int = 2
    emb: int = 128
    guidance_embedding: bool = False
    dropout: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mult"] = list(self.mult)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        d = dict(d)
        d["mult"] = tuple(d["mult"])
        return cls(**d)


def sinusoidal(t: Tensor, dim: int, max_freq: float = 100.0) -> Tensor:
    """Sinusoidal embedding of a scalar per sample, `[B] -> [B, dim]`, frequencies 1..`max_freq`
    (geometric); suited to `c_noise = log(sigma)/4` in about `[-1.6, 1.1]` and to `w - 1`."""
    half = dim // 2
    freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), half, device=t.device))
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=1)


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c // 4) or 1, c)


class ResBlock(nn.Module):
    """`x + conv(act(norm(conv(act(norm(x)))) * (1 + scale) + shift))` with the embedding's scale/shift."""

    def __init__(self, cin: int, cout: int, emb: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.mod = nn.Linear(emb, 2 * cout)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.mod(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv2(self.drop(h))


class UNet(nn.Module):
    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        self.config = config
        c, e = config.channels, config.emb
        chans = [c * m for m in config.mult]
        self.noise_emb = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.class_emb = nn.Embedding(NULL_CLASS + 1, e)
        self.w_emb: Optional[nn.Module] = None
        if config.guidance_embedding:
            self.w_emb = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
            nn.init.zeros_(self.w_emb[2].weight)
            nn.init.zeros_(self.w_emb[2].bias)
        self.conv_in = nn.Conv2d(1, c, 3, padding=1)
        self.down = nn.ModuleList()
        skips, cur = [c], c
        for level, ch in enumerate(chans):
            for _ in range(config.blocks):
                self.down.append(ResBlock(cur, ch, e, config.dropout))
                cur = ch
                skips.append(cur)
            if level < len(chans) - 1:
                self.down.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                skips.append(cur)
        self.mid = nn.ModuleList([ResBlock(cur, cur, e, config.dropout), ResBlock(cur, cur, e, config.dropout)])
        self.up = nn.ModuleList()
        for level, ch in reversed(list(enumerate(chans))):
            for _ in range(config.blocks + 1):
                self.up.append(ResBlock(cur + skips.pop(), ch, e, config.dropout))
                cur = ch
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.norm_out, self.conv_out = _norm(cur), nn.Conv2d(cur, 1, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def embed(self, c_noise: Tensor, class_labels: Tensor, guidance_scale: Optional[Tensor]) -> Tensor:
        e = self.config.emb
        emb = self.noise_emb(sinusoidal(c_noise, e)) + self.class_emb(class_labels.long())
        if self.w_emb is not None:
            if guidance_scale is None:
                guidance_scale = torch.ones_like(c_noise)
            # w - 1 as LCM does: w = 1 (no guidance) maps to the zero embedding input
            emb = emb + self.w_emb(sinusoidal(torch.as_tensor(guidance_scale, device=c_noise.device).float() - 1, e))
        return F.silu(emb)

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Optional[Tensor] = None,
                guidance_scale: Optional[Tensor] = None, **_: object) -> Tensor:
        if class_labels is None:
            class_labels = torch.full((x.shape[0],), NULL_CLASS, dtype=torch.long, device=x.device)
        emb = self.embed(c_noise, class_labels, guidance_scale)
        h = self.conv_in(x)
        hs = [h]
        for m in self.down:
            h = m(h, emb) if isinstance(m, ResBlock) else m(h)
            hs.append(h)
        for m in self.mid:
            h = m(h, emb)
        for m in self.up:
            if isinstance(m, ResBlock):
                h = m(torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = m(h)
        return self.conv_out(F.silu(self.norm_out(h)))
