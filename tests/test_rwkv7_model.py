"""RWKV-7 (x070) fidelity: BlinkDL's reference logits and state, whole == chunked == token by token, batching,
reduced precision, training, generation."""
import pytest
import torch

from rwkv_app import InputError, Rwkv7ForCausalLM
from rwkv_app.core.generation import FinishEvent

from .rwkv7_helpers import blinkdl_reference, save_pth, tiny_model7

PROMPTS = [[5, 17, 250, 3, 99, 0, 42, 7, 8, 1, 2, 150, 299], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 299, 64, 128]]
REFERENCE_RTOL = 1e-4  # float32 against BlinkDL: relative to the largest logit
INVARIANT_ATOL = 1e-5  # float32: whole == chunked == token by token


def assert_close_relative(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.fixture(scope="module")
def pth_and_reference(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rwkv7")
    pth = save_pth(tiny_model7(seed=3), directory / "tiny-x070.pth")
    return pth, blinkdl_reference(pth, PROMPTS, directory / "reference.pt")


@pytest.fixture(scope="module")
def model(pth_and_reference):
    return Rwkv7ForCausalLM.from_pretrained(pth_and_reference[0])


@torch.no_grad()
def test_whole_prompt_matches_blinkdl(model, pth_and_reference):
    reference = pth_and_reference[1]
    for i, prompt in enumerate(PROMPTS):
        out = model(torch.tensor([prompt]))
        assert_close_relative(out.logits[0], reference[f"whole{i}"], REFERENCE_RTOL)
        att_shift, ffn_shift, wkv = (s[0] for s in out.state)
        assert_close_relative(wkv, reference[f"wkv{i}"], REFERENCE_RTOL)
        assert_close_relative(att_shift, reference[f"att_shift{i}"], REFERENCE_RTOL)
        assert_close_relative(ffn_shift, reference[f"ffn_shift{i}"], REFERENCE_RTOL)


@torch.no_grad()
def test_token_by_token_with_state_carried_matches_blinkdl(model, pth_and_reference):
    reference = pth_and_reference[1]
    for i, prompt in enumerate(PROMPTS):
        state, steps = None, []
        for token in prompt:
            out = model(torch.tensor([[token]]), state=state)
            state = out.state
            steps.append(out.logits[0, -1])
        assert_close_relative(torch.stack(steps), reference[f"steps{i}"], REFERENCE_RTOL)
        assert_close_relative(state[2][0], reference[f"wkv{i}"], REFERENCE_RTOL)


@torch.no_grad()
def test_batch_of_two_prompts_equals_each_alone(model):
    batch = model(torch.tensor(PROMPTS))
    for i, prompt in enumerate(PROMPTS):
        alone = model(torch.tensor([prompt]))
        torch.testing.assert_close(batch.logits[i], alone.logits[0], rtol=0, atol=INVARIANT_ATOL)
        for together, single in zip(batch.state, alone.state):
            torch.testing.assert_close(together[i], single[0], rtol=0, atol=INVARIANT_ATOL)


@torch.no_grad()
def test_whole_equals_chunked_equals_token_by_token(model):
    ids = torch.tensor(PROMPTS)  # (2, 13)
    whole = model(ids)
    chunks, state = [], None
    for piece in (ids[:, :5], ids[:, 5:6], ids[:, 6:]):
        out = model(piece, state=state)
        chunks.append(out.logits)
        state = out.state
    steps, step_state = [], None
    for t in range(ids.size(1)):
        out = model(ids[:, t:t + 1], state=step_state)
        steps.append(out.logits)
        step_state = out.state
    for logits, final in ((torch.cat(chunks, 1), state), (torch.cat(steps, 1), step_state)):
        torch.testing.assert_close(logits, whole.logits, rtol=0, atol=INVARIANT_ATOL)
        for got, want in zip(final, whole.state):
            torch.testing.assert_close(got, want, rtol=0, atol=INVARIANT_ATOL)


@torch.no_grad()
def test_state_layout_and_the_callers_state_is_never_modified(model):
    config = model.config
    out = model(torch.tensor(PROMPTS))
    att, ffn, wkv = out.state
    L, C, H, N = config.num_hidden_layers, config.hidden_size, config.num_heads, config.head_dim
    assert att.shape == ffn.shape == (2, L, C) and wkv.shape == (2, L, H, N, N)
    assert wkv.dtype == torch.float32
    kept = [s.clone() for s in out.state]
    model(torch.tensor([[1, 2], [3, 4]]), state=out.state)
    assert all(torch.equal(a, b) for a, b in zip(kept, out.state))


def test_bad_state_and_inputs_are_named(model):
    with pytest.raises(InputError, match="wkv"):
        model(torch.tensor([[1]]), state=[torch.zeros(1, 3, 128), torch.zeros(1, 3, 128), torch.zeros(1, 3, 2, 64)])
    with pytest.raises(InputError, match="outside the vocabulary"):
        model(torch.tensor([[300]]))
    with pytest.raises(InputError, match="output_attentions"):
        model(torch.tensor([[1]]), output_attentions=True)


@pytest.mark.parametrize("dtype, rtol", [(torch.bfloat16, 0.05), (torch.float16, 0.01)])
@torch.no_grad()
def test_half_precision_logits_near_float32_and_state_stays_float32(pth_and_reference, model, dtype, rtol):
    """bf16/fp16 weights: logits within `rtol` of the largest float32 logit; the WKV state is float32."""
    half = Rwkv7ForCausalLM.from_pretrained(pth_and_reference[0], dtype=dtype)
    ids = torch.tensor(PROMPTS)
    out = half(ids)
    assert out.logits.dtype == dtype and out.state[2].dtype == torch.float32 and out.state[0].dtype == dtype
    assert_close_relative(out.logits.float(), model(ids).logits, rtol)


@pytest.mark.slow  # ~12 s each on the token-loop reference kernel
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@torch.no_grad()
def test_half_precision_state_stays_finite_over_2000_tokens(pth_and_reference, dtype):
    half = Rwkv7ForCausalLM.from_pretrained(pth_and_reference[0], dtype=dtype)
    ids = torch.randint(0, half.config.vocab_size, (1, 2000), generator=torch.Generator().manual_seed(0))
    out = half(ids[:, :1000])
    out = half(ids[:, 1000:], state=out.state)
    assert torch.isfinite(out.logits).all() and all(torch.isfinite(s).all() for s in out.state)


def test_training_loss_and_finite_gradients():
    model = tiny_model7(seed=1).train()
    ids = torch.tensor(PROMPTS)
    out = model(ids, labels=ids)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    assert model.model.layers[1].attn.v_lora.lora[0].weight.grad.abs().sum() > 0  # v_first reaches later layers


@torch.no_grad()
def test_generate_and_stream_generate_run_on_the_rwkv7_state(model):
    prompt = torch.tensor([PROMPTS[0][:5]])
    sequences = model.generate(prompt, max_new_tokens=6, do_sample=False, eos_token_id=None)
    out, expected = model(prompt), []
    for _ in range(6):
        token = out.logits[:, -1].argmax(-1)  # (1,)
        expected.append(int(token))
        out = model(token[:, None], state=out.state)
    assert sequences[0, 5:].tolist() == expected
    events = list(model.stream_generate(torch.tensor([PROMPTS[0][:5], PROMPTS[1][:5]]), max_new_tokens=4,
                                        do_sample=False, eos_token_id=None))
    finished = [e for e in events if isinstance(e, FinishEvent)]
    assert len(finished) == 2
    assert [tuple(s.shape) for s in finished[0].state] == [(1, 3, 128), (1, 3, 128), (1, 3, 2, 64, 64)]
    assert finished[0].tokens == tuple(expected[:4])
