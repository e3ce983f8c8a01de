"""The model's own contracts: the RNN invariant, state handling, rescaling, dtypes, bad input."""
import pytest
import torch

from rwkv_app import InputError, RwkvConfig, RwkvForCausalLM, RwkvModel

from .conftest import randomize, tiny_config



@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


def test_config_has_hf_defaults():
    config = RwkvConfig()
    assert (config.vocab_size, config.context_length, config.hidden_size, config.num_hidden_layers) == (50277, 1024, 4096, 32)
    assert config.attention_hidden_size == 4096 and config.intermediate_size == 4 * 4096
    assert (config.layer_norm_epsilon, config.bos_token_id, config.eos_token_id, config.rescale_every) == (1e-5, 0, 0, 6)
    assert config.tie_word_embeddings is False and config.use_cache is True


def test_config_json_round_trip_keeps_unknown_keys(tmp_path):
    config = RwkvConfig.from_dict({"hidden_size": 64, "num_hidden_layers": 2, "torch_dtype": "float16",
                                   "transformers_version": "4.30.0", "model_type": "rwkv"})
    config.save_pretrained(tmp_path)
    again = RwkvConfig.from_json_file(tmp_path / "config.json")
    assert again == config and again.extra["transformers_version"] == "4.30.0"


def test_seed_documentation_example(tiny_lm):
    """The RWKV docs' example: whole == first two tokens, then the rest with the carried state (atol 1e-5)."""
    model = tiny_lm().rwkv
    input_ids = torch.randint(0, 97, (1, 9))
    output_whole = model(input_ids).last_hidden_state
    outputs = model(input_ids[:, :2])
    output_one = outputs.last_hidden_state
    output_two = model(input_ids[:, 2:], state=outputs.state).last_hidden_state
    assert torch.allclose(torch.cat([output_one, output_two], dim=1), output_whole, atol=1e-5)


@pytest.mark.parametrize("impl", ["reference", "cpu"])
def test_whole_equals_chunked_equals_token_by_token(tiny_lm, impl):
    model = tiny_lm(num_hidden_layers=3)
    model.wkv_impl = impl
    tokens = torch.randint(0, 97, (3, 23))
    whole = model(tokens)
    state, chunked = None, []
    for piece in tokens.split([7, 1, 10, 5], dim=1):
        out = model(piece, state=state)
        chunked.append(out.logits)
        state = out.state
    torch.testing.assert_close(torch.cat(chunked, dim=1), whole.logits, atol=1e-5, rtol=0)
    state, stepped = None, []
    for t in range(tokens.size(1)):
        out = model(tokens[:, t:t + 1], state=state)
        stepped.append(out.logits)
        state = out.state
    torch.testing.assert_close(torch.cat(stepped, dim=1), whole.logits, atol=1e-5, rtol=0)
    for mine, theirs in zip(state, whole.state):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)


def test_forward_does_not_mutate_the_callers_state(tiny_lm):
    model = tiny_lm()
    state = model(torch.randint(0, 97, (2, 5))).state
    before = [s.clone() for s in state]
    model(torch.randint(0, 97, (2, 4)), state=state)
    model(torch.randint(0, 97, (2, 1)), state=state)
    for original, now in zip(before, state):
        assert torch.equal(original, now)


def test_state_layout_matches_hf(tiny_lm):
    model = tiny_lm(hidden_size=24, attention_hidden_size=40)
    state = model(torch.randint(0, 97, (2, 3))).state
    assert [tuple(s.shape) for s in state] == [(2, 24, 4), (2, 24, 4), (2, 40, 4), (2, 40, 4), (2, 40, 4)]
    assert [s.dtype for s in state] == [torch.float32] * 5


def test_rescaling_never_touches_weights(tiny_lm, tmp_path):
    model = tiny_lm(rescale_every=1)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    tokens = torch.randint(0, 97, (1, 6))
    eval_logits = model(tokens).logits
    model.train()
    train_logits = model(tokens).logits
    model.eval()
    torch.testing.assert_close(model(tokens).logits, eval_logits, atol=0, rtol=0)
    # Same function up to layer-norm epsilon, which sees a 2^-k smaller stream when rescaled.
    assert (train_logits - eval_logits).abs().max() <= 1e-2 * eval_logits.abs().max()
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    model.save_pretrained(tmp_path)
    reloaded = RwkvForCausalLM.from_pretrained(tmp_path)
    for key, value in reloaded.state_dict().items():
        assert torch.equal(value, weights[key]), key


def overflowing_model(rescale_every: int) -> RwkvForCausalLM:
    """24 blocks whose feed-forwards all push the residual stream the same way: past 65504 by block 12.

    With rescale_every=6 the float32 stream peaks near 3e4, so float16 holds it.
    """
    model = randomize(RwkvForCausalLM(tiny_config(num_hidden_layers=24, rescale_every=rescale_every)), 3)
    for block in model.rwkv.blocks:
        block.feed_forward.receptance.weight.zero_()  # sigmoid(0) = 0.5 gate
        block.feed_forward.value.weight.abs_().mul_(2500.0)  # relu^2 >= 0 times positive weights: coherent growth
    return model.eval()


@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 0.05), (torch.bfloat16, 0.3)])
def test_half_precision_stays_finite_and_close_with_rescaling(dtype, tolerance):
    # tolerance: relative L2 error of the logits. bfloat16 keeps 8 mantissa bits, and this stream reaches
    # ~3e4 where bfloat16's spacing is 128 (float16's: 16), so the bounds are loose; measured 0.026 and 0.20.
    tokens = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(0))
    without = overflowing_model(rescale_every=0).to(torch.float16)
    assert not torch.isfinite(without(tokens).logits).all(), "the test model must overflow float16 unrescaled"
    model = overflowing_model(rescale_every=6)
    reference = model(tokens).logits
    logits = model.to(dtype)(tokens).logits.float()
    assert torch.isfinite(logits).all()
    assert (logits - reference).norm() <= tolerance * reference.norm()


@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 0.01), (torch.bfloat16, 0.05)])
def test_half_precision_close_to_float32_on_an_ordinary_model(tiny_lm, dtype, tolerance):
    model = tiny_lm(num_hidden_layers=6)
    tokens = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(0))
    reference = model(tokens).logits
    logits = model.to(dtype)(tokens).logits.float()
    assert (logits - reference).norm() <= tolerance * reference.norm()


@pytest.mark.parametrize("bad, message", [
    (dict(input_ids=torch.tensor([[1, 97]])), "token id 97"),
    (dict(input_ids=torch.tensor([[-1, 2]])), "token id -1"),
    (dict(input_ids=torch.zeros(1, 0, dtype=torch.long)), "empty"),
    (dict(input_ids=torch.tensor([1, 2])), "batch dimension"),
    (dict(input_ids=torch.tensor([[1.0, 2.0]])), "integer"),
    (dict(), "exactly one"),
    (dict(input_ids=torch.tensor([[1]]), inputs_embeds=torch.zeros(1, 1, 32)), "exactly one"),
    (dict(inputs_embeds=torch.zeros(1, 2, 31)), "inputs_embeds"),
    (dict(input_ids=torch.tensor([[1, 2]]), attention_mask=torch.tensor([[1, 0]])), "attention_mask"),
    (dict(input_ids=torch.tensor([[1, 2]]), labels=torch.tensor([[1, 200]])), "labels"),
])
def test_bad_input_names_the_problem(tiny_lm, bad, message):
    with pytest.raises(InputError, match=message):
        tiny_lm()(**bad)


def test_bad_state_names_the_entry(tiny_lm):
    model = tiny_lm()
    state = model(torch.tensor([[1, 2]])).state
    with pytest.raises(InputError, match=r"state\[0\].*shape"):
        model(torch.tensor([[1, 2], [3, 4]]), state=state)  # batch 2, state for batch 1
    with pytest.raises(InputError, match=r"state\[3\]"):
        model(torch.tensor([[1]]), state=state[:3] + [state[3][:, :5]] + state[4:])
    with pytest.raises(InputError, match="5 tensors"):
        model(torch.tensor([[1]]), state=state[:4])


def test_base_model_and_tied_head(tiny_lm):
    model = tiny_lm(tie_word_embeddings=True)
    assert model.head.weight is model.rwkv.embeddings.weight
    base = RwkvModel(model.config)
    base.load_state_dict(model.rwkv.state_dict(), strict=True)
    tokens = torch.randint(0, 97, (1, 4))
    torch.testing.assert_close(base.eval()(tokens).last_hidden_state, model.rwkv(tokens).last_hidden_state)
