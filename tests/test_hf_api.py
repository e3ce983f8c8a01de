"""The transformers API a user of RwkvForCausalLM reaches for, each checked on our model and on transformers'
(the installed 5.24, test-only) with the same weights: the same calls, the same answers."""
import inspect
import json

import pytest
import torch

from rwkv_app import InputError, RwkvConfig, RwkvForCausalLM, RwkvModel

from .conftest import randomize, tiny_config
from .hub_fixtures import populate_hub_cache
from .test_parity_hf import LOGITS_ATOL, ids, make_pair

transformers = pytest.importorskip("transformers")

IMPLS = ["ours", "hf"]
SMALL = dict(hidden_size=32, num_hidden_layers=4, rescale_every=2)


def pick(impl: str, overrides: dict | None = None, seed: int = 0):
    """One model of the pair with identical weights: ours or transformers'."""
    ours, hf = make_pair(overrides or SMALL, seed)
    return ours if impl == "ours" else hf


def same_signature(ours, theirs) -> None:
    def shape(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]
    assert shape(ours) == shape(theirs)


# ---- forward: positional order, output_attentions, **kwargs ------------------------------------------
def test_forward_signatures_are_transformers():
    same_signature(RwkvForCausalLM.forward, transformers.RwkvForCausalLM.forward)
    same_signature(RwkvModel.forward, transformers.RwkvModel.forward)


@pytest.mark.parametrize("impl", IMPLS)
@torch.no_grad()
def test_positional_state_and_attention_mask(impl):
    model = pick(impl)
    x = ids(1, 9)
    whole = model(x).logits
    state = model(x[:, :6]).state
    rest = model(x[:, 6:], None, None, state).logits  # input_ids, attention_mask, inputs_embeds, state
    torch.testing.assert_close(rest, whole[:, 6:], atol=LOGITS_ATOL, rtol=0)
    torch.testing.assert_close(model(x, torch.ones_like(x)).logits, whole, atol=0, rtol=0)
    base = model.rwkv(x[:, 6:], None, None, model.rwkv(x[:, :6]).state).last_hidden_state
    torch.testing.assert_close(base, model.rwkv(x).last_hidden_state[:, 6:], atol=LOGITS_ATOL, rtol=0)


@torch.no_grad()
def test_output_attentions_are_transformers_time_mixing_outputs():
    ours, hf = make_pair(SMALL)
    x = ids(2, 7)
    got, expected = ours(x, output_attentions=True), hf(x, output_attentions=True)
    assert len(got.attentions) == len(expected.attentions) == SMALL["num_hidden_layers"]
    for mine, theirs in zip(got.attentions, expected.attentions):
        torch.testing.assert_close(mine, theirs, atol=LOGITS_ATOL, rtol=0)
    assert ours(x).attentions is None and hf(x).attentions is None
    assert ours(x, output_attentions=False).attentions is None
    assert len(ours(x, output_attentions=True, return_dict=False)) == len(hf(x, output_attentions=True,
                                                                               return_dict=False))


@pytest.mark.parametrize("impl", IMPLS)
@torch.no_grad()
def test_unknown_keyword_arguments_are_ignored_and_num_items_in_batch_used(impl):
    model = pick(impl)
    x = ids(2, 8)
    plain = model(x, labels=x)
    extra = model(x, labels=x, position_ids=None, cache_position=3, something_else="ignored")
    torch.testing.assert_close(extra.logits, plain.logits, atol=0, rtol=0)
    summed = model(x, labels=x, num_items_in_batch=torch.tensor(5)).loss
    torch.testing.assert_close(summed, plain.loss * (2 * 7) / 5, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_num_items_in_batch_loss_matches_transformers():
    ours, hf = make_pair(SMALL)
    x = ids(2, 8)
    torch.testing.assert_close(ours(x, labels=x, num_items_in_batch=9).loss,
                               hf(x, labels=x, num_items_in_batch=9).loss, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_final_layer_norm_uses_1e_5_whatever_layer_norm_epsilon():
    overrides = dict(SMALL, layer_norm_epsilon=0.5)
    ours, hf = make_pair(overrides)
    assert ours.rwkv.ln_out.eps == hf.rwkv.ln_out.eps == 1e-5
    assert ours.rwkv.blocks[1].ln1.eps == hf.rwkv.blocks[1].ln1.eps == 0.5
    x = ids(2, 9)
    torch.testing.assert_close(ours(x).logits, hf(x).logits, atol=LOGITS_ATOL, rtol=0)
    torch.testing.assert_close(ours.rwkv(x, use_cache=False).last_hidden_state,
                               hf.rwkv(x, use_cache=False).last_hidden_state, atol=LOGITS_ATOL, rtol=0)


@torch.no_grad()
def test_attention_mask_with_zeros_is_a_clear_error_where_transformers_ignores_it():
    ours, hf = make_pair(SMALL)
    x = ids(1, 5)
    mask = torch.tensor([[0, 1, 1, 1, 1]])
    hf(x, attention_mask=mask)  # transformers runs it, the mask unused (a documented difference)
    for call in (lambda: ours(x, mask), lambda: ours.rwkv(x, mask), lambda: ours.generate(x, attention_mask=mask)):
        with pytest.raises(InputError, match="attention_mask with zeros"):
            call()


# ---- embeddings --------------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_embedding_accessors(impl):
    model = pick(impl)
    assert model.get_input_embeddings() is model.rwkv.embeddings is model.rwkv.get_input_embeddings()
    assert model.get_output_embeddings() is model.head
    assert model.rwkv.get_output_embeddings() is None
    embeddings = torch.nn.Embedding(model.config.vocab_size, model.config.hidden_size)
    model.set_input_embeddings(embeddings)
    assert model.get_input_embeddings() is embeddings and model.rwkv.embeddings is embeddings
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=False)
    model.set_output_embeddings(head)
    assert model.get_output_embeddings() is head and model.head is head


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("new_size,multiple", [(120, None), (80, None), (100, 16)])
@torch.no_grad()
def test_resize_token_embeddings_like_transformers(tied, new_size, multiple):
    ours, hf = make_pair(dict(SMALL, tie_word_embeddings=tied))
    old_vocab = ours.config.vocab_size
    old_rows = ours.rwkv.embeddings.weight.clone()
    got = ours.resize_token_embeddings(new_size, pad_to_multiple_of=multiple)
    expected = hf.resize_token_embeddings(new_size, pad_to_multiple_of=multiple)
    size = expected.num_embeddings
    assert got is ours.get_input_embeddings() and got.num_embeddings == size == ours.config.vocab_size
    assert ours.head.weight.shape == hf.head.weight.shape == (size, SMALL["hidden_size"])
    assert (ours.head.weight is ours.rwkv.embeddings.weight) == tied == (hf.head.weight is hf.rwkv.embeddings.weight)
    kept = min(old_vocab, size)
    torch.testing.assert_close(got.weight[:kept], old_rows[:kept], atol=0, rtol=0)
    if size > old_vocab:
        torch.testing.assert_close(got.weight[kept:], old_rows.mean(0).expand(size - kept, -1), atol=1e-6, rtol=0)
    x = ids(1, 6, vocab=kept)
    torch.testing.assert_close(ours(x).logits[..., :kept], hf(x).logits[..., :kept], atol=LOGITS_ATOL, rtol=0)
    assert ours(torch.tensor([[size - 1]])).logits.shape[-1] == size  # the new ids are in the vocabulary
    assert ours.resize_token_embeddings() is got


def test_resize_token_embeddings_rejects_bad_sizes(tiny_lm):
    model = tiny_lm()
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InputError, match="new_num_tokens"):
            model.resize_token_embeddings(bad)
    with pytest.raises(InputError, match="pad_to_multiple_of"):
        model.resize_token_embeddings(100, pad_to_multiple_of=0)
    assert model.config.vocab_size == 97


# ---- gradient checkpointing --------------------------------------------------------------------------
def loss_and_grads(model, x, state=None):
    model.zero_grad()
    out = model(x, labels=x, state=state, use_cache=state is not None)
    out.loss.backward()
    return out, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("impl", IMPLS)
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(impl):
    model = pick(impl).train()
    x = ids(2, 10)
    assert not model.is_gradient_checkpointing
    plain, plain_grads = loss_and_grads(model, x)
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    checkpointed, grads = loss_and_grads(model, x)
    torch.testing.assert_close(checkpointed.loss, plain.loss, atol=1e-6, rtol=1e-6)
    assert grads.keys() == plain_grads.keys() and len(grads) == len(list(model.parameters()))
    for name in grads:
        torch.testing.assert_close(grads[name], plain_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    model.activation_checkpointing_enable()  # transformers 5's newer name
    assert model.is_activation_checkpointing


def test_gradient_checkpointing_matches_transformers_and_carries_state():
    ours, hf = (m.train() for m in make_pair(SMALL))
    ours.gradient_checkpointing_enable(), hf.gradient_checkpointing_enable()
    x = ids(2, 10)
    mine, my_grads = loss_and_grads(ours, x)
    theirs, their_grads = loss_and_grads(hf, x)
    torch.testing.assert_close(mine.loss, theirs.loss, atol=1e-5, rtol=1e-5)
    for name in their_grads:
        torch.testing.assert_close(my_grads[name], their_grads[name], atol=1e-4, rtol=1e-3, msg=name)
    with torch.no_grad():
        state = ours(x[:, :4], use_cache=True).state
    carried, carried_grads = loss_and_grads(ours, x[:, 4:], state)
    ours.gradient_checkpointing_disable()
    plain, plain_grads = loss_and_grads(ours, x[:, 4:], state)
    torch.testing.assert_close(carried.loss, plain.loss, atol=1e-6, rtol=1e-6)
    for mine_state, plain_state in zip(carried.state, plain.state):
        torch.testing.assert_close(mine_state, plain_state, atol=1e-6, rtol=1e-6)
    for name in plain_grads:
        torch.testing.assert_close(carried_grads[name], plain_grads[name], atol=1e-5, rtol=1e-4, msg=name)


# ---- config ------------------------------------------------------------------------------------------
CONFIG_KWARGS = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, pad_token_id=3, eos_token_id=[0, 5],
                     foo="bar", max_position_embeddings=77)


@pytest.mark.parametrize("impl", IMPLS)
def test_config_keeps_unknown_kwargs_and_aliases(impl):
    cls = RwkvConfig if impl == "ours" else transformers.RwkvConfig
    config = cls(**CONFIG_KWARGS)
    assert (config.pad_token_id, config.foo, config.eos_token_id) == (3, "bar", [0, 5])
    assert config.context_length == config.max_position_embeddings == 77
    config.max_position_embeddings = 99
    assert config.context_length == 99
    written = json.loads(config.to_json_string())
    assert written["pad_token_id"] == 3 and written["foo"] == "bar" and written["context_length"] == 99
    assert "return_dict" not in written  # use_diff=True: generic fields at their defaults left out
    assert json.loads(config.to_json_string(use_diff=False))["return_dict"] is True


def test_configs_read_each_others_json():
    ours = RwkvConfig(**CONFIG_KWARGS)
    hf = transformers.RwkvConfig(**json.loads(ours.to_json_string(use_diff=False)))
    back = RwkvConfig.from_dict(json.loads(hf.to_json_string(use_diff=False)))
    assert back == ours and (back.pad_token_id, back.foo) == (3, "bar")
    for name in ("context_length", "attention_hidden_size", "intermediate_size", "eos_token_id", "pad_token_id"):
        assert getattr(hf, name) == getattr(ours, name)


def test_config_from_pretrained_directory_file_and_hub_cache(tmp_path):
    transformers.RwkvConfig(**CONFIG_KWARGS).save_pretrained(tmp_path / "saved")
    expected = transformers.RwkvConfig.from_pretrained(tmp_path / "saved")
    for source in (tmp_path / "saved", str(tmp_path / "saved" / "config.json")):
        config = RwkvConfig.from_pretrained(source)
        assert (config.hidden_size, config.context_length, config.pad_token_id, config.foo) == \
            (expected.hidden_size, expected.context_length, expected.pad_token_id, expected.foo)
    overridden = RwkvConfig.from_pretrained(tmp_path / "saved", rescale_every=0, pad_token_id=7)
    assert (overridden.rescale_every, overridden.pad_token_id) == (0, 7)
    cache = tmp_path / "cache"
    populate_hub_cache(cache, "org/tiny", {"config.json": (tmp_path / "saved" / "config.json").read_bytes()})
    from_hub = RwkvConfig.from_pretrained("org/tiny", cache_dir=cache, local_files_only=True)
    assert from_hub == RwkvConfig.from_pretrained(tmp_path / "saved")


def test_config_rejects_bad_eos():
    from rwkv_app.errors import ConfigError
    for bad in ("0", [0, -1], 1.5, [True]):
        with pytest.raises(ConfigError, match="eos_token_id"):
            tiny_config(eos_token_id=bad)


# ---- half precision: time_decay/time_first ----------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_time_parameters_stay_float32_in_half_precision(tmp_path, dtype):
    """Ours keeps them float32 in float16 and bfloat16; transformers 5.24 in float16 only (README says so)."""
    ours, _ = make_pair(SMALL)
    ours.save_pretrained(tmp_path)
    mine = RwkvForCausalLM.from_pretrained(tmp_path, dtype=dtype)
    theirs = transformers.RwkvForCausalLM.from_pretrained(tmp_path, dtype=dtype)
    attention = mine.rwkv.blocks[1].attention
    assert attention.time_decay.dtype == attention.time_first.dtype == torch.float32
    assert attention.key.weight.dtype == dtype
    hf_attention = theirs.rwkv.blocks[1].attention
    assert hf_attention.time_decay.dtype == (torch.float32 if dtype == torch.float16 else dtype)


def test_fused_decode_final_layer_norm_uses_1e_5_too(tmp_path):
    """The CUDA fused step (here under the Triton interpreter) takes the same eps as the per-op path."""
    from .test_fused_decode import CONFIG, TOL, per_op_steps, prompt_and_steps
    from .test_kernels_triton import run_interpreted, unpack

    torch.manual_seed(0)
    model = randomize(RwkvForCausalLM(tiny_config(**CONFIG, layer_norm_epsilon=0.5)), seed=0).eval()
    state, steps = prompt_and_steps(model)
    with torch.no_grad():
        expected, _ = per_op_steps(model, steps, state)
    config = {k: v for k, v in model.config.to_dict().items() if k in RwkvConfig.__dataclass_fields__}
    state_dict = dict(model.state_dict())
    calls = {"f32": ("tests.test_fused_decode:fused_steps", (state_dict, config, torch.float32, steps, state))}
    (logits, _, _), _ = unpack(run_interpreted(calls, tmp_path)["f32"])
    for got, want in zip(logits, expected, strict=True):
        torch.testing.assert_close(got, want, **TOL[torch.float32])
