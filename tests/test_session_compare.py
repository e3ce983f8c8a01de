"""compare(): several continuations of one node as one batch, each row as it would run alone; the
generation additions it rests on (per-row settings, resuming from state + logits, FinishEvent.logits)."""
import pytest
import torch

from rwkv_app import InputError, SamplingSettings
from rwkv_app.core.generation import FinishEvent, TokenEvent
from rwkv_app.state_tree import Branch

from .session_helpers import TOL, assert_resumes_exactly, run, sampled, tiny_model, tiny_tree


def tokens_of(tree, node_id):
    return list(tree.node(node_id).tokens)


def test_compare_rows_equal_their_runs_alone():
    tree = tiny_tree()
    base = tree.extend(tree.root, "The quick brown fox").node
    branches = [sampled(1, 10), sampled(2, 6, temperature=0.7, top_p=0.9), sampled(3, 12, presence_penalty=0.5),
                SamplingSettings(max_new_tokens=7), Branch(sampled(1, 10), seed=99), Branch(sampled(1, 10))]
    items = run(tree.compare(base, branches))
    done = items[-1]
    assert done.node == base and len(done.added) == 6 and tree.node(base).children == list(done.added)
    lengths = [len(tokens_of(tree, i)) for i in done.added]
    assert lengths == [10, 6, 12, 7, 10, 10]  # each row its own max_new_tokens
    assert tokens_of(tree, done.added[0]) == tokens_of(tree, done.added[5])  # same seed, same continuation
    assert tokens_of(tree, done.added[0]) != tokens_of(tree, done.added[4])
    assert tree.node(done.added[4]).meta["seed"] == 99
    for branch, node_id in zip(branches, done.added):
        alone = run(tree.generate(base, branch.sampling if isinstance(branch, Branch) else branch,
                                  seed=branch.seed if isinstance(branch, Branch) else None))[-1].node
        assert tokens_of(tree, alone) == tokens_of(tree, node_id)
        torch.testing.assert_close(tree.node(alone).probs, tree.node(node_id).probs, atol=TOL, rtol=0)
        assert_resumes_exactly(tree, node_id)
    rows = {e.row for e in items if isinstance(e, (TokenEvent, FinishEvent))}
    assert rows == set(range(6))


def test_compare_runs_one_batch_from_the_kept_state():
    tree = tiny_tree()
    base = tree.extend(tree.root, "Once upon a time").node
    shapes = []
    tree.model.register_forward_pre_hook(lambda m, a, k: shapes.append(tuple(k["input_ids"].shape)), with_kwargs=True)
    run(tree.compare(base, [sampled(1, 4), sampled(2, 4), sampled(3, 4)]))
    assert shapes == [(3, 1)] * 4


def test_compare_with_presets_records_their_names():
    tree = tiny_tree()
    base = tree.extend(tree.root, "Hi").node
    done = run(tree.compare(base, [Branch("balanced", seed=5, overrides={"max_new_tokens": 4}),
                                   Branch("creative", seed=5, overrides={"max_new_tokens": 4})]))[-1]
    assert [tree.node(i).meta["preset"] for i in done.added] == ["balanced", "creative"]
    assert tree.node(done.added[0]).meta["sampling"]["min_p"] == 0.05


def test_compare_across_models_groups_rows_per_model():
    tree = tiny_tree()
    other = tiny_model(seed=7)
    base = tree.extend(tree.root, "The quick brown fox").node
    done = run(tree.compare(base, [sampled(1, 6), Branch(sampled(1, 6), model=other, model_id="other"),
                                   sampled(2, 6)]))[-1]
    foreign = tree.node(done.added[1])
    assert foreign.meta["model"] == "other" and foreign.id not in tree.store and done.added[0] in tree.store
    context = torch.tensor([tree.path_tokens(base)])
    alone = other.generate(context, sampling=sampled(1, 6), eos_token_id=0)[0, context.size(1):].tolist()
    assert list(foreign.tokens) == alone[:len(foreign.tokens)]
    assert tokens_of(tree, done.added[0]) != list(foreign.tokens)
    assert_resumes_exactly(tree, foreign.id)  # the tree's own model recomputes a state for it
    with pytest.raises(Exception, match="vocabulary"):
        tree.compare(base, [None, Branch(model=tiny_model(vocab_size=97))])


# ---- generation.py additions ------------------------------------------------------------------------
def test_resuming_from_state_and_logits_equals_a_prefill():
    model = tiny_model()
    prompt = torch.tensor([[5, 6, 7, 8, 9]])
    settings = sampled(4, 9, repetition_penalty=1.3)
    prefilled = list(model.stream_generate(prompt, sampling=settings, eos_token_id=None))
    with torch.no_grad():
        out = model(prompt, use_cache=True)
    resumed = list(model.stream_generate(prompt, sampling=settings, eos_token_id=None, state=out.state,
                                         start_logits=out.logits[:, -1]))
    assert [e.token for e in resumed[:-1]] == [e.token for e in prefilled[:-1]]  # penalties saw the same context
    for mine, reference in zip(resumed[-1].state, prefilled[-1].state):
        torch.testing.assert_close(mine, reference, atol=TOL, rtol=0)
    no_context = model.generate(None, state=out.state, start_logits=out.logits[0, -1], max_new_tokens=3,
                                eos_token_id=None)
    assert no_context.shape == (1, 3)


def test_finish_event_carries_the_logits_after_the_last_token():
    model = tiny_model()
    prompt = torch.tensor([[1, 2, 3]])
    finish = list(model.stream_generate(prompt, sampling=sampled(2, 5), eos_token_id=None))[-1]
    with torch.no_grad():
        whole = model(torch.cat([prompt, torch.tensor([finish.tokens])], dim=1)).logits[0, -1]
    assert finish.logits.shape == (400,)
    torch.testing.assert_close(finish.logits, whole, atol=TOL, rtol=0)
    assert list(model.generate(prompt, max_new_tokens=2, return_dict_in_generate=True).seeds) == [None]


def test_per_row_settings_sample_exactly_their_own_seed():
    model = tiny_model()
    prompt = torch.tensor([[3, 4, 5], [3, 4, 5]])
    rows = [sampled(10, 6), sampled(10, 3, stop=["zz"])]
    out = model.generate(prompt, sampling=rows, eos_token_id=None, return_dict_in_generate=True,
                         tokenizer=tiny_tree().tokenizer)
    assert out.seeds == [10, 10]  # no seed + i with a list
    assert out.sequences[1, 6:].tolist() == [0, 0, 0]  # row 1 stopped at its own length (padded)
    assert out.sequences[0, 3:6].tolist() == out.sequences[1, 3:6].tolist()
    with pytest.raises(InputError, match="2 settings for a batch of 1"):
        model.generate(prompt[:1], sampling=rows)
    with pytest.raises(InputError, match="start_logits needs the state"):
        model.generate(prompt, start_logits=torch.zeros(2, 400))
