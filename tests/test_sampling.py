"""Samplers on hand-made logits with known distributions, penalties on known counts, seeds, settings checks."""
import math

import pytest
import torch

from rwkv_app import InputError, SamplingSettings
from rwkv_app.core.sampling import (Sampler, SettingsError, apply_presence_frequency, apply_repetition_penalty,
                               logits_to_probs, sample)

KNOWN = torch.tensor([0.5, 0.25, 0.15, 0.1])  # a distribution to filter by hand
KNOWN_LOGITS = KNOWN.log()


def close(got: torch.Tensor, expected) -> None:
    torch.testing.assert_close(got, torch.as_tensor(expected, dtype=got.dtype), atol=1e-6, rtol=0)


def renormalized(keep: list[int]) -> torch.Tensor:
    kept = torch.zeros_like(KNOWN)
    kept[keep] = KNOWN[keep]
    return kept / kept.sum()


def test_temperature_scales_logits():
    logits = torch.tensor([1.0, 2.0, 3.0])
    close(logits_to_probs(logits, temperature=0.5), torch.softmax(logits * 2, -1))
    close(logits_to_probs(logits, temperature=2.0), torch.softmax(logits / 2, -1))
    close(logits_to_probs(logits), torch.softmax(logits, -1))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_keeps_exactly_k(k):
    logits = torch.tensor([0.3, 2.0, -1.0, 1.5, 0.9])
    probs = logits_to_probs(logits, top_k=k)
    kept = logits.topk(k).indices
    assert int((probs > 0).sum()) == k and bool((probs[kept] > 0).all())
    close(probs[kept], torch.softmax(logits[kept], -1))
    close(logits_to_probs(logits, top_k=0), torch.softmax(logits, -1))  # 0: off


@pytest.mark.parametrize("top_p, keep", [(0.4, [0]), (0.7, [0, 1]), (0.8, [0, 1, 2]), (0.95, [0, 1, 2, 3]),
                                         (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_the_smallest_prefix_reaching_p(top_p, keep):
    close(logits_to_probs(KNOWN_LOGITS, top_p=top_p), renormalized(keep))


@pytest.mark.parametrize("min_p, keep", [(0.0, [0, 1, 2, 3]), (0.25, [0, 1, 2]), (0.4, [0, 1]), (0.9, [0])])
def test_min_p_drops_tokens_below_a_fraction_of_the_top(min_p, keep):
    close(logits_to_probs(KNOWN_LOGITS, min_p=min_p), renormalized(keep))


def test_typical_p_keeps_the_tokens_nearest_the_entropy():
    # Entropy 1.208 nats; surprises 0.69, 1.39, 1.90, 2.30: token 1 is the most typical, then 0, 2, 3.
    close(logits_to_probs(KNOWN_LOGITS, typical_p=0.2), renormalized([1]))  # not the most likely token
    close(logits_to_probs(KNOWN_LOGITS, typical_p=0.5), renormalized([0, 1]))
    close(logits_to_probs(KNOWN_LOGITS, typical_p=0.8), renormalized([0, 1, 2]))


def test_filters_match_hugging_face_warpers():
    lp = pytest.importorskip("transformers.generation.logits_process")
    noise = torch.randn(6, 500, generator=torch.Generator().manual_seed(0))  # (B, V)
    for logits in (noise * 0.3, noise * 3, noise * 8):  # flat to peaked: nucleus wider and narrower than 64 tokens
        check_against_hf(lp, logits)


def check_against_hf(lp, logits: torch.Tensor) -> None:
    cases = [
        (dict(temperature=0.7), lp.TemperatureLogitsWarper(0.7)),
        (dict(top_k=7), lp.TopKLogitsWarper(7)),
        (dict(top_p=0.6), lp.TopPLogitsWarper(0.6)),
        (dict(min_p=0.1), lp.MinPLogitsWarper(0.1)),
        (dict(typical_p=0.7), lp.TypicalLogitsWarper(0.7)),
    ]
    for ours, theirs in cases:
        close(logits_to_probs(logits, **ours), torch.softmax(theirs(None, logits.clone()), -1))


def test_sample_frequencies_follow_the_probabilities():
    probs = torch.tensor([0.5, 0.3, 0.2, 0.0])
    draws = sample(probs.expand(20000, 4), torch.Generator().manual_seed(0))  # (N,)
    freq = torch.bincount(draws, minlength=4).float() / draws.numel()
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)
    assert sample(probs).shape == ()


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([2.0, -2.0, 1.0, 0.5])
    seen = torch.tensor([0, 1])  # the distinct tokens met so far
    close(apply_repetition_penalty(logits, seen, 2.0), [1.0, -4.0, 1.0, 0.5])
    lp = pytest.importorskip("transformers.generation.logits_process")
    hf = lp.RepetitionPenaltyLogitsProcessor(2.0)(torch.tensor([[0, 1]]), logits[None].clone())[0]
    close(apply_repetition_penalty(logits, seen, 2.0), hf)


def test_presence_and_frequency_penalties_on_known_counts():
    tokens, counts = torch.tensor([1, 2, 3]), torch.tensor([1.0, 3.0, 0.5])
    penalized = apply_presence_frequency(torch.zeros(4), tokens, counts, presence=0.5, frequency=0.1)
    close(penalized, [0.0, -0.6, -0.8, -0.55])


def test_penalty_counts_decay_each_step_and_skip_exempt_tokens():
    settings = SamplingSettings(presence_penalty=0.5, frequency_penalty=1.0, penalty_decay=0.5)
    exempt = torch.tensor([False, False, False, True, False])
    sampler = Sampler(settings, vocab_size=5, prompt_ids=[4], exempt_from_penalty=exempt)
    for token in [1, 2, 3, 1]:
        sampler.observe(token)
    # token 1: 1 -> 0.5 -> 0.25 -> 0.125 + 1; token 2: 1 -> 0.5 -> 0.25; 3 is exempt; 4 was only in the prompt.
    close(sampler.counted.dense(5), [0.0, 1.125, 0.25, 0.0, 0.0])
    close(sampler.adjust(torch.zeros(5)), [0.0, -1.625, -0.75, 0.0, 0.0])


def test_repetition_penalty_covers_the_prompt_and_generated_tokens():
    sampler = Sampler(SamplingSettings(repetition_penalty=2.0), vocab_size=4, prompt_ids=[0])
    sampler.observe(2)
    close(sampler.adjust(torch.tensor([4.0, 4.0, -4.0, 4.0])), [2.0, 4.0, -8.0, 4.0])


def test_bans_and_bias():
    logits = torch.tensor([5.0, 4.0, 3.0, 0.0])
    assert int(Sampler(SamplingSettings(), 4).choose(logits)) == 0
    assert int(Sampler(SamplingSettings(banned_tokens=[0]), 4).choose(logits)) == 1
    assert int(Sampler(SamplingSettings(logit_bias={3: 10.0}), 4).choose(logits)) == 3
    assert int(Sampler(SamplingSettings(logit_bias={0: -2.5}, banned_tokens=[1]), 4).choose(logits)) == 2
    sampled = Sampler(SamplingSettings(do_sample=True, banned_tokens=[0, 1, 2], seed=0), 4)
    assert {int(sampled.choose(logits)) for _ in range(20)} == {3}
    with pytest.raises(SettingsError, match=r"logit_bias: token id 9 is outside the vocabulary \[0, 4\)"):
        Sampler(SamplingSettings(logit_bias={9: 1.0}), 4)
    with pytest.raises(SettingsError, match="every token in the vocabulary is banned"):
        Sampler(SamplingSettings(banned_tokens=[0, 1, 2, 3]), 4)


def test_begin_suppress_tokens_are_banned_at_the_first_step_only():
    logits = torch.tensor([5.0, 4.0, 3.0, 0.0])
    sampler = Sampler(SamplingSettings(begin_suppress_tokens=[0, 1]), 4)
    first = int(sampler.choose(logits))
    sampler.observe(first)
    assert first == 2 and int(sampler.choose(logits)) == 0
    assert SamplingSettings.from_dict(SamplingSettings(begin_suppress_tokens=[3]).to_dict()).begin_suppress_tokens == (3,)
    with pytest.raises(SettingsError, match=r"begin_suppress_tokens: token id 7 is outside the vocabulary"):
        Sampler(SamplingSettings(begin_suppress_tokens=[7]), 4)
    with pytest.raises(SettingsError, match="begin_suppress_tokens"):
        SamplingSettings(begin_suppress_tokens=[-1])


def run_sampler(sampler: Sampler, logits: torch.Tensor, steps: int = 40) -> list[int]:
    tokens = []
    for _ in range(steps):
        tokens.append(int(sampler.choose(logits)))
        sampler.observe(tokens[-1])
    return tokens


def test_same_seed_same_tokens_different_seed_different_tokens():
    logits = torch.randn(50, generator=torch.Generator().manual_seed(0))
    settings = SamplingSettings(do_sample=True, temperature=1.5, top_p=0.95, frequency_penalty=0.1, seed=123)
    first = run_sampler(Sampler(settings, 50), logits)
    torch.rand(10)  # the global generator is not involved in a seeded run
    assert run_sampler(Sampler(settings, 50), logits) == first
    assert run_sampler(Sampler(settings.replace(seed=124), 50), logits) != first


def test_samplers_are_independent_per_row():
    """Interleaving two sequences' samplers gives each the tokens it gets alone (what batching relies on)."""
    logits = torch.randn(2, 30, generator=torch.Generator().manual_seed(1))
    settings = [SamplingSettings(do_sample=True, seed=s, presence_penalty=0.3) for s in (7, 8)]
    alone = [run_sampler(Sampler(s, 30), logits[i], steps=25) for i, s in enumerate(settings)]
    rows = [Sampler(s, 30) for s in settings]
    together = [[], []]
    for _ in range(25):
        for i, sampler in enumerate(rows):
            together[i].append(int(sampler.choose(logits[i])))
            sampler.observe(together[i][-1])
    assert together == alone


def test_unseeded_runs_follow_torch_manual_seed():
    logits = torch.randn(40, generator=torch.Generator().manual_seed(2))
    settings = SamplingSettings(do_sample=True)
    torch.manual_seed(5)
    first = Sampler(settings, 40)
    tokens = run_sampler(first, logits)
    torch.manual_seed(5)
    again = Sampler(settings, 40)
    assert again.seed == first.seed and run_sampler(again, logits) == tokens
    assert run_sampler(Sampler(settings.replace(seed=first.seed), 40), logits) == tokens


def test_greedy_is_argmax_and_temperature_zero_is_greedy():
    logits = torch.randn(64, generator=torch.Generator().manual_seed(3))
    for settings in (SamplingSettings(), SamplingSettings(do_sample=True, temperature=0.0)):
        sampler = Sampler(settings, 64)
        assert settings.greedy and sampler.generator is None and sampler.seed is None
        assert int(sampler.choose(logits)) == int(logits.argmax())


@pytest.mark.parametrize("key, value", [
    ("temperature", -0.1), ("temperature", math.inf), ("top_p", 0.0), ("top_p", 1.01), ("top_k", -1), ("top_k", 2.5),
    ("min_p", -0.1), ("min_p", 1.5), ("typical_p", 0.0), ("typical_p", 2.0), ("repetition_penalty", 0.0),
    ("penalty_decay", 0.0), ("penalty_decay", 1.5), ("presence_penalty", math.nan), ("do_sample", "yes"),
    ("banned_tokens", [-1]), ("banned_tokens", 3), ("logit_bias", {"a": 1}), ("logit_bias", [1, 2]),
    ("seed", -1), ("max_new_tokens", 0), ("stop", [""]), ("stop", [1]),
])
def test_bad_settings_are_errors_naming_the_key(key, value):
    with pytest.raises(SettingsError, match=f"^{key}: expected") as err:
        SamplingSettings(**{key: value})
    assert err.value.key == key and isinstance(err.value, InputError)


def test_unknown_keys_are_errors_naming_the_key():
    with pytest.raises(SettingsError, match="^top_q: unknown sampling setting"):
        SamplingSettings.from_dict({"temperature": 0.5, "top_q": 0.9})
    with pytest.raises(SettingsError, match="^nucleus: unknown"):
        SamplingSettings().replace(nucleus=0.9)


def test_settings_normalize_plain_data():
    settings = SamplingSettings.from_dict({"banned_tokens": [3, 4], "stop": "\n\n", "logit_bias": {"187": -1.5}})
    assert settings.banned_tokens == (3, 4) and settings.stop == ("\n\n",) and settings.logit_bias == {187: -1.5}
    assert SamplingSettings.from_dict(settings.to_dict()) == settings
    assert SamplingSettings().greedy and not SamplingSettings(do_sample=True).greedy
