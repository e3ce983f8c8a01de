"""The batched decode engine on tiny random models: determinism batched vs alone, chunked prefill, cancellation,
the queue limit, failure isolation, concurrent submitters, shutdown."""
import ast
import gc
import threading
import time
from pathlib import Path

import pytest
import torch

from rwkv_app import InputError, RwkvForCausalLM, SamplingSettings
from rwkv_app.engine import CANCELLED, ERROR, Engine, EngineBusy, EngineClosed, ErrorFinish
from rwkv_app.engine.batch import finite_rows
from rwkv_app.core.generation import TokenEvent
from rwkv_app.core.sampling import SettingsError

from .conftest import randomize, tiny_config
from .test_tokenizer import build_tokenizer

TIMEOUT = 30  # seconds; only reached when something hangs
POISON = 7  # the token the failing models below choke on


@pytest.fixture
def engines():
    """A factory for engines that are closed after the test, whatever happens."""
    made = []

    def build(model, tokenizer=None, **options) -> Engine:
        made.append(Engine(model, tokenizer, **options))
        return made[-1]
    yield build
    for engine in made:
        engine.close(timeout=TIMEOUT)


def ids(n: int, seed: int, vocab: int = 97) -> list[int]:
    """n random token ids, never POISON."""
    drawn = torch.randint(1, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()
    return [t + 1 if t == POISON else t for t in drawn]


def tokens_of(events) -> list[int]:
    return [e.token for e in events if isinstance(e, TokenEvent)]


def drain(handle) -> list:
    events = []
    while handle.finish is None:
        events.append(handle.next_event(TIMEOUT))
    return events


def reference(model, prompt, **kwargs) -> list:
    return list(model.stream_generate(torch.tensor([prompt]), eos_token_id=None, **kwargs))


SETTINGS = [
    SamplingSettings(max_new_tokens=12),  # greedy
    SamplingSettings(do_sample=True, temperature=1.3, top_p=0.95, seed=11, max_new_tokens=16),
    SamplingSettings(do_sample=True, top_k=20, repetition_penalty=1.3, presence_penalty=0.4, frequency_penalty=0.4,
                     penalty_decay=0.99, seed=12, max_new_tokens=9),
    SamplingSettings(do_sample=True, min_p=0.05, typical_p=0.9, seed=13, max_new_tokens=20),
]


def test_batched_equals_alone_equals_stream_generate(tiny_lm, engines):
    model = tiny_lm()
    prompts = [ids(n, n) for n in (1, 5, 17, 40)]
    expected = [reference(model, p, sampling=s) for p, s in zip(prompts, SETTINGS)]
    alone = engines(model, prefill_budget=16)
    for prompt, settings, want in zip(prompts, SETTINGS, expected):
        assert tokens_of(drain(alone.submit(prompt, sampling=settings, eos_token_id=None))) == tokens_of(want)
    batched = engines(model, prefill_budget=16, start=False)
    handles = [batched.submit(p, sampling=s, eos_token_id=None, row=i)
               for i, (p, s) in enumerate(zip(prompts, SETTINGS))]
    batched.start()
    for i, (handle, want) in enumerate(zip(handles, expected)):
        got = drain(handle)
        assert tokens_of(got) == tokens_of(want) and len(got) == len(want)
        assert all(e.row == i for e in got)
        for mine, theirs in zip(got[:-1], want[:-1]):
            assert mine.index == theirs.index and [t for t, _ in mine.top] == [t for t, _ in theirs.top]
            assert mine.prob == pytest.approx(theirs.prob, abs=1e-5)
        finish, theirs = got[-1], want[-1]
        assert (finish.reason, finish.tokens, finish.seed) == (theirs.reason, theirs.tokens, theirs.seed)
        for mine, other in zip(finish.state + [finish.logits], theirs.state + [theirs.logits]):
            torch.testing.assert_close(mine, other, atol=1e-5, rtol=0)
    assert batched.stats().decode_forwards < sum(len(tokens_of(e)) for e in expected)  # rows shared forwards


def test_text_prompts_stop_strings_and_eos_match_stream_generate(tiny_lm, engines):
    tok = build_tokenizer()
    model = tiny_lm(vocab_size=tok.vocab_size)
    settings = SamplingSettings(do_sample=True, temperature=1.5, seed=3, max_new_tokens=40, stop=("e",))
    engine = engines(model, tok, prefill_budget=4)
    for prompt in ("Crème brûlée 😀", "Hello there", "a"):
        want = list(model.stream_generate(prompt, sampling=settings, tokenizer=tok))
        got = drain(engine.submit(prompt, sampling=settings))
        assert [(e.token, e.delta) for e in got[:-1]] == [(e.token, e.delta) for e in want[:-1]]
        assert (got[-1].reason, got[-1].text, got[-1].delta) == (want[-1].reason, want[-1].text, want[-1].delta)


def test_chunked_prefill_equals_whole_prefill(tiny_lm, engines):
    model = tiny_lm()
    prompt = ids(11, 0)
    engine = engines(model, prefill_budget=3)
    finish = engine.submit(prompt, max_new_tokens=0).result(TIMEOUT)  # prefill only
    assert finish.tokens == () and finish.reason == "length"
    with torch.no_grad():
        whole = model(torch.tensor([prompt]))
        head = model(torch.tensor([prompt[:4]]))
    for mine, expected in zip(finish.state + [finish.logits], whole.state + [whole.logits[0, -1]]):
        torch.testing.assert_close(mine, expected, atol=1e-5, rtol=0)
    on_state = engine.submit(prompt[4:], state=head.state, max_new_tokens=0).result(TIMEOUT)  # a prompt on a state
    for mine, expected in zip(on_state.state, whole.state):
        torch.testing.assert_close(mine, expected, atol=1e-5, rtol=0)


def test_a_start_state_and_logits_resume_like_stream_generate(tiny_lm, engines):
    model = tiny_lm()
    prompt = ids(9, 1)
    with torch.no_grad():
        out = model(torch.tensor([prompt]))
    settings = SETTINGS[2]
    want = list(model.stream_generate(torch.tensor([prompt]), state=out.state, start_logits=out.logits[:, -1],
                                      sampling=settings, eos_token_id=None))
    engine = engines(model)
    got = drain(engine.submit(state=out.state, logits=out.logits[0, -1], context=prompt, sampling=settings,
                              eos_token_id=None))
    assert tokens_of(got) == tokens_of(want) and got[-1].reason == "length"


def test_cancel_takes_effect_within_one_step(tiny_lm, engines):
    model = tiny_lm()
    engine = engines(model)
    prompt = ids(6, 2)
    handle = engine.submit(prompt, max_new_tokens=100_000, eos_token_id=None)
    for _ in range(5):
        handle.next_event(TIMEOUT)
    handle.cancel()
    finish = handle.result(TIMEOUT)
    assert finish.reason == CANCELLED and 5 <= len(finish.tokens) <= handle.emitted_at_cancel + 1
    assert len(finish.tokens) == handle.emitted
    with torch.no_grad():
        whole = model(torch.tensor([prompt + list(finish.tokens)]))
    for mine, expected in zip(finish.state, whole.state):  # the state took in every token it reported
        torch.testing.assert_close(mine, expected, atol=1e-5, rtol=0)
    with engine.submit(prompt, max_new_tokens=100_000) as scoped:  # leaving the block cancels
        scoped.next_event(TIMEOUT)
    assert scoped.result(TIMEOUT).reason == CANCELLED


def test_a_dropped_handle_cancels_its_generation(tiny_lm, engines):
    engine = engines(tiny_lm())
    handle = engine.submit(ids(3, 7), max_new_tokens=100_000)
    handle.next_event(TIMEOUT)
    del handle
    gc.collect()
    deadline = time.monotonic() + TIMEOUT
    while engine.stats().finished == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.stats().finished == 1


def test_cancel_while_waiting_in_the_queue(tiny_lm, engines):
    engine = engines(tiny_lm(), max_batch=1)
    busy = engine.submit(ids(3, 3), max_new_tokens=100_000)
    busy.next_event(TIMEOUT)
    waiting = engine.submit(ids(3, 4), max_new_tokens=5)
    waiting.cancel()
    finish = waiting.result(TIMEOUT)
    assert finish.reason == CANCELLED and finish.tokens == () and finish.state is None
    assert busy.finish is None and engine.stats().running == 1
    busy.cancel()
    assert busy.result(TIMEOUT).reason == CANCELLED


def test_full_queue_is_busy_at_once(tiny_lm, engines):
    engine = engines(tiny_lm(), max_queue=2, start=False)
    handles = [engine.submit(ids(4, i), max_new_tokens=3) for i in range(2)]
    began = time.perf_counter()
    with pytest.raises(EngineBusy, match="busy: 2 requests already wait"):
        engine.submit(ids(4, 9), max_new_tokens=3)
    assert time.perf_counter() - began < 0.5
    engine.start()
    assert [h.result(TIMEOUT).reason for h in handles] == ["length", "length"]
    assert engine.submit(ids(4, 9), max_new_tokens=3).result(TIMEOUT).reason == "length"  # room again


class PoisonLM(RwkvForCausalLM):
    """Returns NaN logits for every row whose last input token is POISON."""

    def forward(self, input_ids=None, **kwargs):
        out = super().forward(input_ids=input_ids, **kwargs)
        out.logits[input_ids[:, -1] == POISON] = float("nan")
        return out


class RaisingLM(RwkvForCausalLM):
    """Raises whenever POISON is among the input tokens (so a batch holding that row raises as a whole)."""

    def forward(self, input_ids=None, **kwargs):
        if bool((input_ids == POISON).any()):
            raise RuntimeError("poisoned input")
        return super().forward(input_ids=input_ids, **kwargs)


@pytest.mark.parametrize("kind, message", [(PoisonLM, "NaN or inf"), (RaisingLM, "RuntimeError: poisoned input")])
def test_one_failing_generation_fails_alone(tiny_lm, engines, kind, message):
    model = randomize(kind(tiny_config()), 0).eval()
    clean = SamplingSettings(do_sample=True, seed=5, banned_tokens=(POISON,), max_new_tokens=10)
    doomed = SamplingSettings(logit_bias={POISON: 100.0}, max_new_tokens=10)  # picks POISON at once
    prompts = [ids(5, 10 + i) for i in range(3)]
    expected = [tokens_of(reference(model, p, sampling=clean)) for p in prompts]
    engine = engines(model, start=False)
    good = [engine.submit(p, sampling=clean, eos_token_id=None) for p in prompts[:2]]
    bad = engine.submit(prompts[2], sampling=doomed, eos_token_id=None)
    good.append(engine.submit(prompts[2], sampling=clean, eos_token_id=None))
    engine.start()
    failure = bad.result(TIMEOUT)
    assert isinstance(failure, ErrorFinish) and failure.reason == ERROR and message in failure.error
    assert failure.tokens == (POISON,)
    assert [tokens_of(drain(h)) for h in good] == expected
    assert all(h.finish.reason == "length" for h in good) and engine.stats().errors == 1
    prefill_fail = engine.submit(prompts[0] + [POISON], max_new_tokens=3).result(TIMEOUT)  # fails in its prefill
    assert isinstance(prefill_fail, ErrorFinish) and prefill_fail.tokens == ()
    assert "prefill failed" in prefill_fail.error


def test_a_sampler_that_raises_fails_its_row_alone(tiny_lm, engines):
    """The batched sampler raises for the whole batch; the engine then samples row by row, so only the broken
    row fails and the others keep their tokens."""
    model = tiny_lm()
    clean = SamplingSettings(do_sample=True, top_k=20, seed=5, max_new_tokens=8)
    prompts = [ids(4, 30 + i) for i in range(3)]
    expected = [tokens_of(reference(model, p, sampling=clean)) for p in prompts]
    engine = engines(model, start=False)
    handles = [engine.submit(p, sampling=clean, eos_token_id=None) for p in prompts]
    engine._waiting[1].tracker.sampler.bias = torch.zeros(3)  # a (3,) bias on (V,) logits: this row cannot sample
    engine.start()
    failure = handles[1].result(TIMEOUT)
    assert isinstance(failure, ErrorFinish) and "sampling failed" in failure.error and failure.tokens == ()
    assert [tokens_of(drain(handles[i])) for i in (0, 2)] == [expected[0], expected[2]]


def test_bad_input_is_refused_at_submit(tiny_lm, engines):
    model = tiny_lm()
    engine = engines(model)
    state = model(torch.tensor([[1, 2]])).state
    cases = [
        (dict(prompt=[1, 97]), InputError, "prompt: token id 97 is outside the vocabulary"),
        (dict(prompt=[]), InputError, "non-empty"),
        (dict(prompt="text"), InputError, "needs a tokenizer"),
        (dict(prompt=[[1, 2], [3, 4]]), InputError, "one sequence"),
        (dict(prompt=[1], state=[s[:, :-1] for s in state]), InputError, r"state\[0\] \(ffn_shift\) has shape"),
        (dict(state=state), InputError, "give a prompt, or a start"),
        (dict(state=state, logits=torch.full((97,), float("nan"))), InputError, "NaN or inf"),
        (dict(state=state, logits=torch.zeros(5)), InputError, "shaped"),
        (dict(prompt=[1], sampling={"temperature": 2}), InputError, "sampling must be a SamplingSettings"),
        (dict(prompt=[1], stop=["x"]), InputError, "stop strings need a tokenizer"),
        (dict(prompt=[1], max_new_tokens=-1), SettingsError, "max_new_tokens"),
        (dict(prompt=[1], sampling=SamplingSettings(logit_bias={500: 1.0})), SettingsError, "outside the vocabulary"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            engine.submit(**kwargs)
    assert engine.stats().waiting == 0
    assert engine.submit([1, 2], max_new_tokens=2).result(TIMEOUT).reason == "length"


def test_many_threads_submit_at_once(tiny_lm, engines):
    model = tiny_lm()
    engine = engines(model, max_batch=6, max_queue=64, prefill_budget=8)
    jobs = [(ids(3 + i % 13, 100 + i), SETTINGS[i % len(SETTINGS)]) for i in range(24)]
    expected = [tokens_of(reference(model, p, sampling=s)) for p, s in jobs]
    results, errors = [None] * len(jobs), []

    def client(worker: int) -> None:
        try:
            for i in range(worker, len(jobs), 8):
                results[i] = tokens_of(drain(engine.submit(jobs[i][0], sampling=jobs[i][1], eos_token_id=None)))
        except Exception as err:  # surfaced below
            errors.append(err)
    threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not errors and results == expected


@pytest.mark.parametrize("threads", [False, True])
def test_requests_submitted_together_share_one_prefill(tiny_lm, engines, threads):
    """An idle engine gathers a burst (a Compare run's seeds from one thread, or visitors' threads) into one
    prefill forward and one decode batch, instead of prefilling the first alone."""
    engine = engines(tiny_lm(), gather_ms=300)  # generous: a loaded CI machine may pause a submitting thread
    prompts = [ids(5, 40 + i) for i in range(6)]
    handles = [None] * len(prompts)

    def submit(i: int) -> None:
        handles[i] = engine.submit(prompts[i], max_new_tokens=3, eos_token_id=None)
    if threads:
        workers = [threading.Thread(target=submit, args=(i,)) for i in range(len(prompts))]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(TIMEOUT)
    else:
        for i in range(len(prompts)):
            submit(i)
    assert [len(h.result(TIMEOUT).tokens) for h in handles] == [3] * len(prompts)
    stats = engine.stats()
    assert (stats.prefill_forwards, stats.decode_forwards, stats.decode_rows) == (1, 3, 18)  # 6 rows every step


def test_finite_rows_flags_exactly_the_rows_with_nan_or_inf():
    logits = torch.zeros(6, 50277)
    logits[1, 7], logits[2, 9], logits[3, 0] = float("nan"), float("inf"), -float("inf")
    logits[4, 3], logits[4, 5] = float("inf"), -float("inf")  # their sum is NaN
    logits[5] = 1e30  # large but finite everywhere: its float32 sum still is
    assert finite_rows(logits) == [True, False, False, False, False, True]
    half = torch.full((2, 50277), 60000.0, dtype=torch.float16)  # a float16 sum would overflow to inf
    half[1, 2] = float("nan")
    assert finite_rows(half) == [True, False]


def test_gather_ms_is_checked():
    for bad in (-1, 1001, "5", True, None):
        with pytest.raises(InputError, match="gather_ms must be a number of milliseconds from 0 to 1000"):
            Engine(torch.nn.Linear(1, 1), gather_ms=bad, start=False)


def test_a_long_prompt_does_not_stall_running_generations(tiny_lm, engines):
    engine = engines(tiny_lm(), prefill_budget=8)
    running = engine.submit(ids(3, 5), max_new_tokens=100_000, eos_token_id=None)
    running.next_event(TIMEOUT)
    long = engine.submit(ids(200, 6), max_new_tokens=1)  # 25 steps of prefill at 8 tokens a step
    long.next_event(TIMEOUT)
    assert running.emitted >= 25 and running.finish is None
    running.cancel()


def test_close_with_work_in_flight(tiny_lm, engines):
    model = tiny_lm()
    engine = Engine(model, max_batch=2)
    handles = [engine.submit(ids(4, i), max_new_tokens=100_000) for i in range(4)]  # 2 run, 2 wait
    handles[0].next_event(TIMEOUT)
    engine.close(timeout=TIMEOUT)
    assert not engine.alive
    assert [h.result(TIMEOUT).reason for h in handles] == [CANCELLED] * 4
    with pytest.raises(EngineClosed):
        engine.submit([1], max_new_tokens=1)
    draining = Engine(model)
    handles = [draining.submit(ids(4, i), max_new_tokens=6) for i in range(3)]
    draining.close(drain=True, timeout=TIMEOUT)
    assert [len(h.result(TIMEOUT).tokens) for h in handles] == [6, 6, 6]


def test_an_idle_engine_sleeps(tiny_lm, engines):
    engine = engines(tiny_lm())
    engine.submit([1, 2, 3], max_new_tokens=4).result(TIMEOUT)
    time.sleep(0.05)
    before = engine.stats().loops
    time.sleep(0.3)
    assert engine.stats().loops == before  # no polling while there is nothing to do


def test_engine_imports_no_gradio():
    for path in (Path(__file__).parents[1] / "rwkv_app" / "engine").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        names |= {node.module.split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.level == 0}
        assert "gradio" not in names, path
