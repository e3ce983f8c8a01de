"""The batched sampler (core/batch_sampling.py) against the per-row reference (Sampler.choose), token for token,
over many steps, with every setting mixed across the rows of one batch."""
import math

import pytest
import torch

from rwkv_app import SamplingSettings
from rwkv_app.core.batch_sampling import choose_rows, keep_rows_until_mass, warp_rows
from rwkv_app.core.sampling import Sampler, keep_until_mass, warp_logits

VOCAB = 211
MIXED = [
    SamplingSettings(),  # greedy
    SamplingSettings(do_sample=True, temperature=0.7, seed=1),
    SamplingSettings(do_sample=True, temperature=1.3, top_k=5, seed=2),
    SamplingSettings(do_sample=True, top_p=0.9, seed=3),
    SamplingSettings(do_sample=True, top_p=0.999, temperature=3.0, seed=4),  # needs the full sort
    SamplingSettings(do_sample=True, min_p=0.1, seed=5),
    SamplingSettings(do_sample=True, typical_p=0.8, seed=6),
    SamplingSettings(do_sample=True, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repetition_penalty=1.1,
                     seed=7),  # the "balanced" preset
    SamplingSettings(repetition_penalty=1.3, presence_penalty=0.4, frequency_penalty=0.3, penalty_decay=0.9),
    SamplingSettings(do_sample=True, presence_penalty=-0.5, frequency_penalty=1.0, seed=8, top_k=VOCAB),
    SamplingSettings(do_sample=True, logit_bias={3: 5.0, 9: -2.0}, banned_tokens=(4, 5), seed=9,
                     begin_suppress_tokens=(0, 1, 2)),
    SamplingSettings(do_sample=True, temperature=0.0, repetition_penalty=1.5),  # temperature 0: greedy
]


def samplers(settings_list, history_seed: int) -> list[Sampler]:
    gen = torch.Generator().manual_seed(history_seed)
    exempt = torch.zeros(VOCAB, dtype=torch.bool)
    exempt[:20] = True
    return [Sampler(s, VOCAB, torch.randint(0, VOCAB, (7,), generator=gen).tolist(), exempt) for s in settings_list]


def run_both(settings_list, steps: int, scale: float, seed: int = 0):
    batched, alone = samplers(settings_list, seed), samplers(settings_list, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    got, want = [], []
    for _ in range(steps):
        logits = torch.randn(len(settings_list), VOCAB, generator=gen) * scale  # (B, V)
        tokens = choose_rows(batched, logits).tolist()
        expected = [int(s.choose(logits[i])) for i, s in enumerate(alone)]
        for s, t in zip(batched, tokens):
            s.observe(t)
        for s, t in zip(alone, expected):
            s.observe(t)
        got.append(tokens)
        want.append(expected)
    return got, want


@pytest.mark.parametrize("scale", [0.5, 3.0, 12.0])  # flat, trained-like and peaked distributions
def test_mixed_settings_batched_equal_each_row_alone(scale):
    got, want = run_both(MIXED, steps=40, scale=scale)
    assert got == want


def test_rows_sharing_settings_keep_their_own_seeds_and_histories():
    shared = [SamplingSettings(do_sample=True, temperature=0.9, top_k=30, top_p=0.9, seed=s) for s in range(8)]
    got, want = run_both(shared, steps=30, scale=2.0, seed=3)
    assert got == want
    assert len({tuple(row) for row in zip(*got)}) > 1  # different seeds, different streams


def test_one_row_equals_the_reference_for_each_setting():
    for settings in MIXED:
        got, want = run_both([settings], steps=10, scale=2.0)
        assert got == want, settings


def test_warp_rows_equals_warp_logits_row_by_row():
    logits = torch.randn(len(MIXED), VOCAB) * 4  # (B, V)
    warped = warp_rows(logits.clone(), MIXED)
    for i, s in enumerate(MIXED):
        torch.testing.assert_close(warped[i], warp_logits(logits[i], s.temperature, s.top_k, s.top_p, s.min_p,
                                                          s.typical_p), rtol=0, atol=0)


def test_keep_rows_until_mass_mixes_short_and_full_sorts():
    probs = torch.cat([torch.softmax(torch.randn(3, 500) * 8, -1), torch.full((2, 500), 1 / 500)])  # peaked, flat
    mass = torch.tensor([[0.9], [0.5], [0.99], [0.9], [0.3]])  # (R, 1)
    keep = keep_rows_until_mass(probs, probs, mass)
    for i in range(5):
        assert torch.equal(keep[i], keep_until_mass(probs[i], probs[i], float(mass[i, 0])))


@pytest.mark.parametrize("scale", [0.5, 4.0])
def test_top_k_rows_draw_among_their_candidates_as_the_reference_does(scale):
    rows = [SamplingSettings(do_sample=True, top_k=k, seed=k, temperature=t, top_p=p, min_p=m, typical_p=y)
            for k, t, p, m, y in ((1, 1.0, 1.0, 0.0, 1.0), (2, 0.5, 1.0, 0.0, 1.0), (17, 1.0, 0.8, 0.0, 1.0),
                                  (64, 2.0, 0.95, 0.05, 1.0), (VOCAB - 1, 1.0, 1.0, 0.2, 1.0),
                                  (30, 1.0, 1.0, 0.0, 0.7))]
    got, want = run_both(rows, steps=60, scale=scale, seed=5)
    assert got == want


def test_ties_at_the_kth_value_keep_every_tied_token_as_the_reference_does():
    rows = [SamplingSettings(do_sample=True, top_k=3, seed=s) for s in range(4)]
    batched, alone = samplers(rows, 0), samplers(rows, 0)
    for step in range(30):
        logits = torch.zeros(len(rows), VOCAB)  # (B, V) many exact ties, as half-precision logits have
        logits[:, :2] = torch.tensor([2.0, 1.0])
        logits[:, 2:40] = 0.5  # the 3rd value is shared by 38 tokens: the reference keeps all of them
        if step % 2:
            logits[:, 100:] = -math.inf  # and with most of the vocabulary banned
        tokens = choose_rows(batched, logits).tolist()
        assert tokens == [int(s.choose(logits[i])) for i, s in enumerate(alone)]
        for s, t in zip(batched + alone, tokens + tokens):
            s.observe(t)
