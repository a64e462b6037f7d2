"""Throughput features that must not change a value: noise drawn ahead, batched sampling, deferred checks."""

from __future__ import annotations

import pytest
import torch

import tgsample
import tgsample.guidance
from tgsample.noise import NoiseStreams

SIGMAS = [20.0, 5.0, 1.0, 0.3, 0.0]


def draws(streams: NoiseStreams, plan) -> list[torch.Tensor]:
    out = []
    for what, shape in plan:
        if what == "rand":
            out.append(streams.rand("ancestral"))
        elif what == "int":
            out.append(torch.tensor(streams.integers("ancestral")))
        else:
            out.append(streams.randn(what, shape))
    return out


@pytest.mark.parametrize("plan", [
    [("ancestral", (1, 8, 8))] * 5,
    [("ancestral", (4, 4))] * 2 + [("ancestral", (2, 8))] + [("ancestral", (4, 4))] * 3,  # a shape change
    [("ancestral", (32,))] * 2 + [("rand", None), ("ancestral", (32,)), ("int", None), ("ancestral", (32,))],
    [("ancestral", (3,))] * 3 + [("ancestral", (20,))] * 2,  # sizes torch draws in one piece only
    [("init", (16,)), ("renoise", (16,)), ("ancestral", (16,)), ("renoise", (16,)), ("ancestral", (16,))],
], ids=["same-shape", "shape-change", "rand-and-integers", "ragged", "purposes"])
def test_lookahead_gives_exactly_the_draws_of_one_at_a_time(plan):
    seeds = [3, 11, 7]
    one = draws(NoiseStreams(seeds), plan)
    for k in (2, 4, 9):
        ahead = draws(NoiseStreams(seeds, lookahead=k), plan)
        assert all(torch.equal(a, b) for a, b in zip(ahead, one))


def test_a_sample_gets_the_same_noise_in_any_batch():
    plan = [("init", (1, 8, 8))] + [("ancestral", (1, 8, 8))] * 4 + [("renoise", (1, 8, 8))]
    alone = draws(NoiseStreams([42], lookahead={"ancestral": 4}), plan)
    for batch, pos in (([1, 42, 5], 1), ([42] + list(range(100, 130)), 0)):
        got = draws(NoiseStreams(batch, lookahead={"ancestral": 4}), plan)
        assert all(torch.equal(g[pos], a[0]) for g, a in zip(got, alone))


@pytest.mark.parametrize("solver", ["euler_ancestral", "lcm", "dpmpp_2s_ancestral", "tcd"])
def test_sampling_a_seed_alone_or_in_a_batch_is_bit_identical_for_a_pointwise_model(solver):
    """With a per-element denoiser (no batched arithmetic) the batch changes nothing, bit for bit."""
    D = tgsample.CallableDenoiser(lambda x, s, **c: torch.tanh(x) * 0.7)
    batch = tgsample.sample(D, seeds=[9, 4, 2, 8], sigmas=SIGMAS, shape=(1, 8, 8), solver=solver)
    for i, seed in enumerate([9, 4, 2, 8]):
        alone = tgsample.sample(D, seeds=[seed], sigmas=SIGMAS, shape=(1, 8, 8), solver=solver)
        assert torch.equal(alone[0], batch[i])


def test_a_nan_anywhere_in_the_run_is_caught_at_the_end_of_sampling():
    """Finite checks are deferred inside sample(): a teacher's NaN on one guided step still raises
    NonFiniteError (naming the rows) before sample() returns, so nothing non-finite is decoded or written."""
    student = tgsample.CallableDenoiser(lambda x, s, **c: torch.tanh(x))
    teacher = tgsample.CallableDenoiser(lambda x, s, **c: torch.where(torch.arange(len(x))[:, None] == 1,
                                                                      float("nan"), x))
    g = tgsample.TeacherGuidance(teacher, lam=0.5, guided_steps=[1])
    with pytest.raises(tgsample.NonFiniteError, match=r"NaN or inf for batch rows \[1\]"):
        tgsample.sample(student, seeds=[0, 1, 2], sigmas=SIGMAS, shape=(4,), guidance=g)
    with pytest.raises(tgsample.NonFiniteError, match="returned NaN or inf"):  # a single call is checked at once
        tgsample.guidance.denoise(teacher, torch.zeros(3, 4), torch.ones(3), {})
