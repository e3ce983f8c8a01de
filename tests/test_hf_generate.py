"""generate() with transformers' arguments and meanings, checked against transformers' generate on the same
weights. transformers 5.24's batched RWKV decode is wrong for B > 1 (see test_parity_hf), so its side runs one
prompt at a time."""
import pytest
import torch

from rwkv_app import InputError
from rwkv_app.engine import Engine

from .test_parity_hf import ids, make_pair

transformers = pytest.importorskip("transformers")

SMALL = dict(hidden_size=32, num_hidden_layers=4, rescale_every=2)
SCORES_ATOL = 1e-4


@pytest.fixture(scope="module")
def pair():
    return make_pair(SMALL, seed=3)


def hf_generate(hf, prompt, **kwargs):
    kwargs.setdefault("do_sample", False)
    return hf.generate(prompt, **kwargs)


def greedy_tokens(model, prompt, n=8) -> list[int]:
    return model.generate(prompt, max_new_tokens=n, eos_token_id=None)[0, prompt.size(1):].tolist()


@pytest.mark.parametrize("impl", ["ours", "hf"])
@torch.no_grad()
def test_eos_token_id_list_stops_and_pads(pair, impl):
    ours, hf = pair
    prompt = ids(1, 5, seed=4)
    tokens = greedy_tokens(ours, prompt)
    eos = [tokens[3], 96 if tokens[3] != 96 else 95]  # the second id never comes: the first must stop it
    model = ours if impl == "ours" else hf
    kwargs = dict(max_new_tokens=8, eos_token_id=eos, pad_token_id=1)
    out = model.generate(prompt, **kwargs) if impl == "ours" else hf_generate(hf, prompt, **kwargs)
    assert out[0, 5:].tolist() == tokens[:4]


@torch.no_grad()
def test_eos_list_in_the_config_stream_and_engine(pair):
    ours, _ = pair
    prompt = ids(1, 5, seed=4)
    tokens = greedy_tokens(ours, prompt)
    ours.config.eos_token_id = [97 - 1 if tokens[2] != 96 else 95, tokens[2]]
    try:
        assert ours.generate(prompt, max_new_tokens=8)[0, 5:].tolist() == tokens[:3]  # no pad id: no TypeError
        finish = list(ours.stream_generate(prompt, max_new_tokens=8))[-1]
        assert finish.reason == "eos" and list(finish.tokens) == tokens[:3]
        with Engine(ours) as engine:
            result = engine.submit(prompt[0].tolist(), max_new_tokens=8).result(timeout=60)
            explicit = engine.submit(prompt[0].tolist(), max_new_tokens=8, eos_token_id=[tokens[1]]).result(60)
        assert result.reason == "eos" and list(result.tokens) == tokens[:3]
        assert explicit.reason == "eos" and list(explicit.tokens) == tokens[:2]
        with pytest.raises(InputError, match="eos_token_id"):
            ours.generate(prompt, eos_token_id=[1, "2"])
    finally:
        ours.config.eos_token_id = 0


@torch.no_grad()
def test_batch_rows_finish_on_different_eos_ids_padded_with_pad_token_id(pair):
    ours, hf = pair
    prompts = [ids(1, 5, seed=4), ids(1, 5, seed=5)]
    eos = [greedy_tokens(ours, prompts[0])[2], greedy_tokens(ours, prompts[1])[4]]
    got = ours.generate(torch.cat(prompts), max_new_tokens=8, eos_token_id=eos, pad_token_id=1)
    for row, prompt in enumerate(prompts):
        expected = hf_generate(hf, prompt, max_new_tokens=8, eos_token_id=eos, pad_token_id=1)[0]
        width = expected.numel()
        assert got[row, :width].tolist() == expected.tolist()
        assert (got[row, width:] == 1).all()


@torch.no_grad()
def test_pad_token_id_from_the_config(pair):
    ours, _ = pair
    prompt = torch.cat([ids(1, 5, seed=4), ids(1, 5, seed=5)])
    stop = greedy_tokens(ours, prompt[:1])[1]
    ours.config.pad_token_id = 7
    try:
        out = ours.generate(prompt, max_new_tokens=8, eos_token_id=stop)
    finally:
        del ours.config.pad_token_id
    first = out[0, 5:].tolist()
    assert first[:2] == greedy_tokens(ours, prompt[:1])[:2] and set(first[2:]) <= {7}


@torch.no_grad()
def test_max_length_counts_the_prompt(pair):
    ours, hf = pair
    prompt = ids(1, 5, seed=6)
    got = ours.generate(prompt, max_length=11, eos_token_id=None)
    assert torch.equal(got, hf_generate(hf, prompt, max_length=11, eos_token_id=None, pad_token_id=0))
    assert got.shape == (1, 11)
    assert ours.generate(prompt, max_length=11, max_new_tokens=2, eos_token_id=None).shape == (1, 7)  # HF: wins
    with pytest.raises(InputError, match="max_length"):
        ours.generate(prompt, max_length=5)
    with pytest.raises(ValueError, match="max_length"):
        hf_generate(hf, prompt, max_length=5)


@pytest.mark.parametrize("settings", [dict(), dict(repetition_penalty=1.5)])
@torch.no_grad()
def test_output_scores_and_logits_match_transformers(pair, settings):
    ours, hf = pair
    prompt = ids(1, 6, seed=7)
    kwargs = dict(max_new_tokens=6, eos_token_id=None, return_dict_in_generate=True, output_scores=True,
                  output_logits=True, **settings)
    got = ours.generate(prompt, **kwargs)
    expected = hf_generate(hf, prompt, pad_token_id=0, **kwargs)
    assert torch.equal(got.sequences, expected.sequences)
    assert len(got.scores) == len(expected.scores) == len(got.logits) == 6
    for mine, theirs in zip(got.scores + got.logits, expected.scores + expected.logits):
        torch.testing.assert_close(mine, theirs, atol=SCORES_ATOL, rtol=0)
    assert ours.generate(prompt, max_new_tokens=2, return_dict_in_generate=True).scores is None


@torch.no_grad()
def test_num_return_sequences_repeats_each_row_in_place(pair):
    """do_sample with top_k=1 is deterministic, so transformers' single-row run gives each copy's tokens and scores."""
    ours, hf = pair
    prompts = [ids(1, 5, seed=8), ids(1, 5, seed=9)]
    kwargs = dict(max_new_tokens=5, eos_token_id=None, do_sample=True, top_k=1, return_dict_in_generate=True,
                  output_scores=True)
    got = ours.generate(torch.cat(prompts), num_return_sequences=3, **kwargs)
    assert got.sequences.shape == (6, 10) and len(got.seeds) == 6
    for i, prompt in enumerate(prompts):
        expected = hf.generate(prompt, pad_token_id=0, **kwargs)
        for row in range(3 * i, 3 * i + 3):
            assert torch.equal(got.sequences[row], expected.sequences[0])
            for mine, theirs in zip(got.scores, expected.scores):
                torch.testing.assert_close(mine[row], theirs[0], atol=SCORES_ATOL, rtol=0)
    events = list(ours.stream_generate(prompts[0], max_new_tokens=3, num_return_sequences=2, eos_token_id=None))
    assert sorted({e.row for e in events}) == [0, 1]
    with pytest.raises(InputError, match="num_return_sequences"):
        ours.generate(prompts[0], num_return_sequences=0)


@torch.no_grad()
def test_inputs_embeds_prompt(pair):
    ours, hf = pair
    prompt = ids(1, 6, seed=10)
    embeds = ours.get_input_embeddings()(prompt)  # (1, 6, H)
    for length, new in ((dict(max_new_tokens=5), 5), (dict(max_length=9), 3)):  # max_length counts the embeds
        got = ours.generate(inputs_embeds=embeds, eos_token_id=None, **length)
        expected = hf_generate(hf, None, inputs_embeds=embeds, eos_token_id=None, pad_token_id=0, **length)
        assert torch.equal(got, expected) and got.shape == (1, new)  # only the new tokens, as in transformers
        assert got[0].tolist() == greedy_tokens(ours, prompt, new)
    both = ours.generate(prompt, inputs_embeds=embeds, max_new_tokens=4, eos_token_id=None)
    assert torch.equal(both, hf_generate(hf, prompt, inputs_embeds=embeds, max_new_tokens=4, eos_token_id=None,
                                         pad_token_id=0))
    with pytest.raises(InputError, match="input_ids"):
        ours.generate(max_new_tokens=2)
