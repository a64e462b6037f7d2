"""Per-sample, per-purpose random streams.

Every random draw of a sampling run -- initial noise, ancestral noise, the teacher's
renoise noise, a random renoise level -- comes from a generator owned by one sample
*and* one purpose. A sample therefore gets the same numbers whatever its batch size,
its position in the batch or the number of processes, and adding a draw for one
purpose (teacher guidance, say) never shifts the draws of another (the solver's
ancestral noise): teacher guidance at `lam = 0` reproduces the plain student bit
for bit.
"""

from __future__ import annotations

import hashlib
import math
import operator
from typing import Any, Mapping, Sequence, Union

import torch
from torch import Tensor

PURPOSES = ("init", "ancestral", "renoise", "renoise_level")
"""The noise streams of a sample, one per purpose (so that no draw shifts another)."""
SEED_RANGE = 2**63 - 1
"""integer seeds drawn for other generators (k-diffusion's Brownian trees)"""


def check_seed(value: Any, where: str = "seed") -> int:
    """`value` as a Python int if it is an integer (`int`, NumPy or 0-d integer tensor), else
    [`ConfigError`][tgsample.errors.ConfigError]: `1.5`, `2.0`, `True` and `"3"` are refused, not rounded."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    from .errors import ConfigError

    raise ConfigError(f"{where} {value!r} is not an integer (a {type(value).__name__}); seeds are integers")


def stream_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for `(seed, purpose)`, stable across Python versions and platforms."""
    digest = hashlib.sha256(f"tgsample:{int(seed)}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


AHEAD_BYTES = 1 << 26
"""the most bytes of noise drawn ahead per purpose (float32 on the CPU, before the move to the device)."""


def _ahead_ok(numel: int) -> bool:
    """Whether `k` draws of `numel` numbers equal one draw of `k * numel` (torch's CPU normal sampler
    transforms uniforms in blocks of 16; a smaller or ragged draw re-draws its tail)."""
    return numel >= 16 and numel % 16 == 0


class NoiseStreams:
    """One CPU generator per (sample, purpose); draws are made on the CPU, then moved.

    Drawing on the CPU makes a seed mean the same numbers on every device.

    With `lookahead=k` a purpose's `randn` draws the next `k` draws of each sample at once,
    `torch.randn([k, n], generator=g)` (the same numbers as `k` draws of `n`: `n` a multiple of 16),
    and moves them to the device in one copy; later draws are slices. A sample's numbers are exactly those
    of `lookahead=1`: the per-sample generators cost `B / k` generator calls per draw instead of `B`,
    and no host work per draw once ahead. A purpose later drawn with another shape, or by
    [`rand`][tgsample.noise.NoiseStreams.rand] / [`integers`][tgsample.noise.NoiseStreams.integers], is first replayed
    to where its draws stopped (its generators re-seeded
    and advanced past what was used), so unused numbers drawn ahead never shift a stream.

    Args:
        seeds: one integer seed per sample of the batch.
        device: where drawn tensors are placed.
        dtype: their dtype.
        lookahead: draws made at once: one number for every purpose, or `{purpose: k}` (others 1);
            [`tgsample.sample`][tgsample.sampling.sample] gives `{"ancestral": steps}`, a solver's at most one draw per
            step.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 lookahead: Union[int, Mapping[str, int]] = 1):
        self.seeds = [check_seed(s, f"seeds[{i}]") for i, s in enumerate(seeds)]
        if not self.seeds:
            from .errors import ConfigError

            raise ConfigError("seeds is empty: give one integer seed per sample")
        self.device = torch.device(device)
        self.dtype = dtype
        self.lookahead = dict(lookahead) if isinstance(lookahead, Mapping) else {p: int(lookahead) for p in PURPOSES}
        self._gens: dict[str, list[torch.Generator]] = {}
        self._ahead: dict[str, list] = {}  # purpose -> [shape, rows on the device [B, k, *shape], next row]
        self._used: dict[str, list[int]] = {}  # purpose -> every draw used: numel, or -1 rand, -2 integers

    def __len__(self) -> int:
        return len(self.seeds)

    def generators(self, purpose: str) -> list[torch.Generator]:
        """The generators of `purpose`, created on first use (one per sample)."""
        gens = self._gens.get(purpose)
        if gens is None:
            gens = [torch.Generator("cpu").manual_seed(stream_seed(s, purpose)) for s in self.seeds]
            self._gens[purpose] = gens
        return gens

    def _settle(self, purpose: str) -> None:
        """Drop `purpose`'s unused draws ahead: re-seed its generators and replay the draws used."""
        ahead = self._ahead.pop(purpose, None)
        if ahead is None or ahead[2] == ahead[1].shape[1]:
            return
        self._gens.pop(purpose, None)
        for g in self.generators(purpose):
            for n in self._used.get(purpose, ()):
                if n >= 0:
                    torch.randn(n, generator=g, dtype=torch.float32)
                elif n == -1:
                    torch.rand((), generator=g, dtype=torch.float64)
                else:
                    torch.randint(0, SEED_RANGE, (), generator=g)

    def _rows(self, purpose: str, shape: tuple[int, ...], k: int) -> Tensor:
        """`[B, k, *shape]`: each sample's next `k` draws, one generator call each, moved at once."""
        rows = torch.empty((len(self), k, *shape), dtype=torch.float32)
        for g, row in zip(self.generators(purpose), rows):
            torch.randn((k, *shape), generator=g, out=row)
        if self.device.type == "cuda":
            rows = rows.pin_memory()
        return rows.to(self.device, self.dtype, non_blocking=True)

    def randn(self, purpose: str, shape: Sequence[int]) -> Tensor:
        """Standard normal noise of shape `[B, *shape]`, row `i` from sample `i`'s stream."""
        shape = tuple(int(n) for n in shape)
        numel = math.prod(shape)
        ahead = self._ahead.get(purpose)
        if ahead is not None and (ahead[0] != shape or ahead[2] == ahead[1].shape[1]):
            self._settle(purpose)
            ahead = None
        if ahead is None:
            k = min(max(1, self.lookahead.get(purpose, 1)), max(1, AHEAD_BYTES // (4 * max(1, numel) * len(self))))
            if k == 1 or not _ahead_ok(numel):
                rows = [torch.randn(shape, generator=g, dtype=torch.float32) for g in self.generators(purpose)]
                self._used.setdefault(purpose, []).append(numel)
                return torch.stack(rows).to(self.device, self.dtype)
            ahead = self._ahead[purpose] = [shape, self._rows(purpose, shape, k), 0]
        z = ahead[1][:, ahead[2]]
        ahead[2] += 1
        self._used.setdefault(purpose, []).append(numel)
        return z

    def randn_like(self, purpose: str, x: Tensor) -> Tensor:
        """[`randn`][tgsample.noise.NoiseStreams.randn] with the per-sample shape of `x` (`x.shape[1:]`)."""
        return self.randn(purpose, x.shape[1:]).to(x.device, x.dtype)

    def rand(self, purpose: str) -> Tensor:
        """One uniform number in `[0, 1)` per sample, shape `[B]` (float64 on the CPU)."""
        self._settle(purpose)
        self._used.setdefault(purpose, []).append(-1)
        return torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in self.generators(purpose)])

    def integers(self, purpose: str) -> list[int]:
        """One integer seed in `[0, 2^63 - 1)` per sample (to seed another generator, e.g. a Brownian tree)."""
        self._settle(purpose)
        self._used.setdefault(purpose, []).append(-2)
        return [int(torch.randint(0, SEED_RANGE, (), generator=g)) for g in self.generators(purpose)]


class GeneratorNoise(NoiseStreams):
    """Diffusers' seeding convention for the purposes in `shared` (default `init` and `ancestral`).

    They are drawn from the one `generator`, the whole batch per call,
    `torch.randn([B, *shape], generator=generator, dtype=dtype)` on the generator's device, which is how a
    diffusers pipeline given `generator=torch.Generator().manual_seed(s)` draws its initial latents and
    its scheduler's per-step noise. A sample then depends on the batch it is in. Every other purpose (the
    teacher's renoise draws) keeps its per-sample stream from `seeds`, so teacher guidance at `lam = 0`
    still reproduces the plain student bit for bit.

    Args:
        generator: the `torch.Generator` (its state advances, as in diffusers).
        seeds: per-sample seeds of the other purposes.
        device: where drawn tensors are placed.
        dtype: the dtype they are drawn in (a diffusers pipeline draws in its latents' dtype).
        shared: the purposes drawn from `generator`.
        lookahead: draws made at once for the other purposes ([`NoiseStreams`][tgsample.noise.NoiseStreams]).
    """

    def __init__(self, generator: torch.Generator, seeds: Sequence[int], device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, shared: Sequence[str] = ("init", "ancestral"),
                 lookahead: Union[int, Mapping[str, int]] = 1):
        super().__init__(seeds, device, dtype, lookahead)
        self.generator, self.shared = generator, tuple(shared)

    def randn(self, purpose: str, shape: Sequence[int]) -> Tensor:
        """`[B, *shape]` standard normal noise: one batch draw from the generator for a shared purpose."""
        if purpose not in self.shared:
            return super().randn(purpose, shape)
        z = torch.randn((len(self), *shape), generator=self.generator, dtype=self.dtype, device=self.generator.device)
        return z.to(self.device)

    def integers(self, purpose: str) -> list[int]:
        """Per-sample integer seeds; for a shared purpose one batch draw from the generator."""
        if purpose not in self.shared:
            return super().integers(purpose)
        return torch.randint(0, SEED_RANGE, (len(self),), generator=self.generator,
                             device=self.generator.device).tolist()


def generator_seeds(generator: torch.Generator, batch: int) -> list[int]:
    """Per-sample seeds derived from `generator.initial_seed()` (for the purposes it does not draw)."""
    return [stream_seed(generator.initial_seed(), f"sample:{i}") for i in range(batch)]
