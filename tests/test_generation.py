"""generate / stream_generate on tiny random models and on a scripted model whose next tokens are fixed."""
import random
from types import SimpleNamespace

import pytest
import torch

from rwkv_app import InputError, SamplingSettings
from rwkv_app.core.generation import FinishEvent, GenerationMixin, TokenEvent
from rwkv_app.core.sampling import SettingsError

from .test_tokenizer import build_tokenizer, random_split_ids

# ---- the RWKV documentation's stopping criterion, verbatim but for its import -------------------------
from rwkv_app import StoppingCriteria


class RwkvStoppingCriteria(StoppingCriteria):
    def __init__(self, eos_sequence = [187,187], eos_token_id = 537):
        self.eos_sequence = eos_sequence
        self.eos_token_id = eos_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> bool:
        last_2_ids = input_ids[:,-2:].tolist()
        return self.eos_sequence in last_2_ids
# ----------------------------------------------------------------------------------------------------------


class ScriptedLM(GenerationMixin, torch.nn.Module):
    """Row b emits scripts[b][n] as its n-th new token. Its state counts the tokens taken in, per row."""

    def __init__(self, scripts: list[list[int]], vocab_size: int, eos_token_id: int | None = 0):
        super().__init__()
        self.config = SimpleNamespace(vocab_size=vocab_size, eos_token_id=eos_token_id)
        self.scripts = torch.tensor(scripts)  # (B, N)
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.calls: list[tuple[int, ...]] = []

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    def forward(self, input_ids, state=None, use_cache=True, logits_to_keep=0, attention_mask=None):
        B, T = input_ids.shape
        self.calls.append(tuple(input_ids.shape))
        if state is None:
            state = [torch.zeros(B, 1), torch.full((B, 1), float(T))]  # [tokens taken in, prompt length]
        state = [state[0] + T, state[1]]  # a new list: the caller's state is untouched
        step = (state[0] - state[1]).long().clamp(max=self.scripts.size(1) - 1)  # (B, 1)
        logits = torch.zeros(B, 1, self.config.vocab_size).scatter(-1, self.scripts.gather(1, step)[..., None], 10.0)
        return SimpleNamespace(logits=logits, state=state)


def new_tokens(sequences: torch.Tensor, prompt: torch.Tensor) -> list[list[int]]:
    return sequences[:, prompt.size(1):].tolist()


def test_greedy_equals_argmax_step_by_step(tiny_lm):
    model = tiny_lm()
    prompt = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(0))
    got = model.generate(prompt, max_new_tokens=10, eos_token_id=None)
    tokens = prompt
    with torch.no_grad():
        for _ in range(10):
            tokens = torch.cat([tokens, model(tokens).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(got, tokens)


def test_prefill_is_one_parallel_forward(tiny_lm):
    model, shapes = tiny_lm(), []

    def record(module, args, kwargs):
        shapes.append((tuple(kwargs["input_ids"].shape), kwargs.get("logits_to_keep")))
    model.register_forward_pre_hook(record, with_kwargs=True)
    model.generate(torch.zeros(1, 7, dtype=torch.long), max_new_tokens=4, eos_token_id=None)
    assert shapes[0] == ((1, 7), 1) and [s for s, _ in shapes[1:]] == [(1, 1)] * 3  # no forward after the last token


def test_documentation_stopping_criteria_stop_after_the_second_187(tiny_lm):
    model = tiny_lm(vocab_size=300)
    prompt = torch.tensor([[5, 6, 7]])
    out = model.generate(prompt, max_new_tokens=64, stopping_criteria=[RwkvStoppingCriteria()], logit_bias={187: 100.0})
    assert out.tolist() == [[5, 6, 7, 187, 187]]
    out = model.generate(torch.tensor([[5, 187]]), max_new_tokens=64, stopping_criteria=[RwkvStoppingCriteria()],
                         logit_bias={187: 100.0})
    assert out.tolist() == [[5, 187, 187]]  # the prompt's 187 counts: HF passes prompt + new tokens


def test_documentation_stopping_criteria_on_a_rigged_model():
    model = ScriptedLM([[11, 187, 12, 187, 187, 13, 14]], vocab_size=300)
    out = model.generate(torch.tensor([[1, 2]]), max_new_tokens=64, stopping_criteria=[RwkvStoppingCriteria()])
    assert out.tolist() == [[1, 2, 11, 187, 12, 187, 187]]


def test_eos_and_per_row_finishing_pads_like_hf():
    model = ScriptedLM([[5, 6, 0, 9, 9], [7, 8, 9, 10, 11]], vocab_size=20, eos_token_id=0)
    prompt = torch.tensor([[1], [2]])
    out = model.generate(prompt, max_new_tokens=5, pad_token_id=3, return_dict_in_generate=True)
    assert new_tokens(out.sequences, prompt) == [[5, 6, 0, 3, 3], [7, 8, 9, 10, 11]]
    assert out.finish_reasons == ["eos", "length"]
    assert out.state[0].squeeze(-1).tolist() == [4.0, 6.0]  # each row's state took in prompt + its own tokens
    assert model.generate(prompt[:1], max_new_tokens=5).tolist() == [[1, 5, 6, 0]]


def test_criteria_may_stop_single_rows():
    model = ScriptedLM([[5, 6, 7, 8], [5, 9, 9, 9]], vocab_size=20, eos_token_id=None)
    per_row = lambda input_ids, scores: input_ids[:, -1] == 9  # noqa: E731 - any callable is a criterion
    out = model.generate(torch.tensor([[1], [1]]), max_new_tokens=4, stopping_criteria=[per_row],
                         return_dict_in_generate=True, pad_token_id=0)
    assert out.sequences.tolist() == [[1, 5, 6, 7, 8], [1, 5, 9, 0, 0]]
    assert out.finish_reasons == ["length", "criteria"]


def stop_text_case(split_seed: int):
    tok = build_tokenizer()
    text = "Sure 😀 café 中文.\n\nUser: this must not show"
    ids = random_split_ids(text, random.Random(split_seed))
    return tok, ScriptedLM([ids + [0]], vocab_size=tok.vocab_size, eos_token_id=None), tok.encode("Hi")


@pytest.mark.parametrize("split_seed", range(6))
def test_stop_strings_cut_the_text_and_never_stream_it(split_seed):
    tok, model, prompt = stop_text_case(split_seed)
    events = list(model.stream_generate(prompt, tokenizer=tok, stop=["\n\nUser:"], max_new_tokens=80))
    finish = events[-1]
    deltas = [e.delta for e in events[:-1]] + [finish.delta]
    assert isinstance(finish, FinishEvent) and finish.reason == "stop"
    assert "".join(deltas) == finish.text == "Sure 😀 café 中文."
    assert not any("\ufffd" in d or "\n" in d for d in deltas)
    assert tok.decode(finish.tokens).startswith("Sure 😀 café 中文.\n\nUser:")  # tokens run up to the stop
    assert "must" not in tok.decode(finish.tokens)
    assert finish.state[0].item() == len(prompt) + len(finish.tokens)


def test_stop_strings_in_generate_and_without_a_tokenizer():
    tok, model, prompt = stop_text_case(0)
    out = model.generate(prompt, tokenizer=tok, stop_strings=["\n\nUser:"], max_new_tokens=80,
                         return_dict_in_generate=True)
    assert out.texts == ["Sure 😀 café 中文."] and out.finish_reasons == ["stop"]
    assert tok.decode(out.sequences[0, len(prompt):]).endswith("\n\nUser:")
    with pytest.raises(InputError, match="stop strings need a tokenizer"):
        model.generate(prompt, stop=["\n"])


def test_text_held_for_a_possible_stop_string_is_released_at_the_end():
    tok = build_tokenizer()
    ids = tok.encode("one\n\nUs")
    model = ScriptedLM([ids], vocab_size=tok.vocab_size, eos_token_id=None)
    events = list(model.stream_generate(tok.encode("x"), tokenizer=tok, stop=["\n\nUser:"], max_new_tokens=len(ids)))
    assert "".join(e.delta for e in events[:-1]) == "one"
    assert events[-1].reason == "length" and events[-1].delta == "\n\nUs" and events[-1].text == "one\n\nUs"


def sampling_case(tiny_lm):
    tok = build_tokenizer()
    model = tiny_lm(vocab_size=tok.vocab_size)
    settings = SamplingSettings(do_sample=True, temperature=1.3, top_p=0.95, presence_penalty=0.3,
                                frequency_penalty=0.3, penalty_decay=0.99, seed=11, max_new_tokens=24)
    return tok, model, settings, tok("Crème brûlée 😀", return_tensors="pt")


def test_stream_tokens_equal_generate_tokens(tiny_lm):
    tok, model, settings, inputs = sampling_case(tiny_lm)
    sequences = model.generate(**inputs, sampling=settings, tokenizer=tok, eos_token_id=None)
    events = list(model.stream_generate(inputs["input_ids"], sampling=settings, tokenizer=tok, eos_token_id=None))
    tokens = [e.token for e in events if isinstance(e, TokenEvent)]
    assert tokens == new_tokens(sequences, inputs["input_ids"])[0] and len(tokens) == 24
    finish = events[-1]
    assert finish.reason == "length" and finish.seed == 11 and list(finish.tokens) == tokens
    streamed = "".join(e.delta for e in events[:-1]) + finish.delta
    assert streamed == finish.text == tok.decode(tokens, skip_special_tokens=True)
    for e in events[:-1]:
        assert e.top[0][1] >= e.prob > 0 and len(e.top) == 5 and e.top == tuple(sorted(e.top, key=lambda t: -t[1]))


def test_same_seed_same_output_different_seed_different_output(tiny_lm):
    tok, model, settings, inputs = sampling_case(tiny_lm)
    first = model.generate(inputs["input_ids"], sampling=settings, eos_token_id=None)
    assert torch.equal(model.generate(inputs["input_ids"], sampling=settings, eos_token_id=None), first)
    other = model.generate(inputs["input_ids"], sampling=settings, seed=12, eos_token_id=None)
    assert not torch.equal(other, first)


def test_batched_rows_sample_as_they_would_alone(tiny_lm):
    model = tiny_lm()
    prompt = torch.randint(0, 97, (2, 4), generator=torch.Generator().manual_seed(3))
    kwargs = dict(do_sample=True, top_k=20, max_new_tokens=12, eos_token_id=None)
    batched = model.generate(prompt, seed=40, **kwargs)  # row i samples with seed 40 + i
    assert torch.equal(batched[0], model.generate(prompt[:1], seed=40, **kwargs)[0])
    assert torch.equal(batched[1], model.generate(prompt[1:], seed=41, **kwargs)[0])


def test_state_in_and_out(tiny_lm):
    model = tiny_lm()
    prompt = torch.tensor([[3, 1, 4, 1, 5]])
    out = model.generate(prompt, max_new_tokens=6, eos_token_id=None, return_dict_in_generate=True)
    with torch.no_grad():
        whole = model(out.sequences).state
        for mine, expected in zip(out.state, whole):
            torch.testing.assert_close(mine, expected, atol=1e-5, rtol=0)
        # Continuing from a state equals running the prompt from the start.
        prefix_state = model(prompt[:, :3]).state
        kept = [s.clone() for s in prefix_state]
        continued = model.generate(prompt[:, 3:], state=prefix_state, max_new_tokens=6, eos_token_id=None)
    assert torch.equal(continued[:, 2:], out.sequences[:, 5:])
    assert all(torch.equal(a, b) for a, b in zip(prefix_state, kept))  # the caller's state is untouched


def test_stream_final_state_matches_a_whole_forward(tiny_lm):
    tok, model, settings, inputs = sampling_case(tiny_lm)
    events = list(model.stream_generate("Crème brûlée 😀", tokenizer=tok, eos_token_id=None,
                                        sampling=settings.replace(max_new_tokens=5)))
    finish = events[-1]
    with torch.no_grad():
        whole = model(torch.tensor([tok.encode("Crème brûlée 😀") + list(finish.tokens)])).state
    for mine, expected in zip(finish.state, whole):
        torch.testing.assert_close(mine, expected, atol=1e-5, rtol=0)


def test_bad_arguments_are_clear_errors(tiny_lm):
    model = tiny_lm()
    prompt = torch.tensor([[1, 2]])
    with pytest.raises(SettingsError, match="^num_beams: unknown sampling setting"):
        model.generate(prompt, num_beams=4)
    with pytest.raises(SettingsError, match="^temperature: expected a number >= 0"):
        model.generate(prompt, do_sample=True, temperature=-1.0)
    with pytest.raises(SettingsError, match="^max_new_tokens"):
        model.generate(prompt, max_new_tokens=0)
    with pytest.raises(InputError, match="text prompt needs a tokenizer"):
        next(model.stream_generate("hello"))
    with pytest.raises(InputError, match="non-empty"):
        model.generate(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(InputError, match="outside the vocabulary"):
        model.generate(prompt, logit_bias={97: 1.0})


def test_generate_defaults_are_hugging_faces(tiny_lm):
    model = tiny_lm()
    prompt = torch.tensor([[1, 2, 3]])
    out = model.generate(prompt, eos_token_id=None)
    assert out.shape == (1, 3 + 20)  # HF's default length
    assert torch.equal(model.generate(prompt, temperature=0.5, eos_token_id=None), out)  # no do_sample: greedy
    assert torch.equal(model.generate(prompt, sampling=SamplingSettings(), top_k=None, eos_token_id=None), out)
