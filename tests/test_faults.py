"""Fault handling in the playground service, each fault set up deterministically with the engine held at a
model forward (tests/fault_helpers.EngineGate): an abandoned stream, a failed model load, non-finite logits, a
full queue, a model switch while others stream. The same faults through the web app: test_faults_app.py."""
import threading

import pytest

from rwkv_app.errors import InputError, RwkvError
from rwkv_app.services.manager import ModelManager
from rwkv_app.services.model_presets import ModelPreset
from rwkv_app.services import Playground, PlaygroundOptions
from rwkv_app.services.runner import QueueFull

from .app_helpers import tiny_playground, write_tiny_model
from .fault_helpers import EngineGate, default_model, idle, wait_for

LONG = 400  # max_new_tokens of a generation the test cuts short: it never gets near the end


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("faults") / "tiny")


@pytest.fixture(scope="module")
def other_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("faults") / "other", seed=7)


@pytest.fixture(scope="module")
def corrupt_dir(tmp_path_factory):
    directory = write_tiny_model(tmp_path_factory.mktemp("faults") / "corrupt", seed=3)
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])  # truncated download
    return directory


@pytest.fixture
def playground(model_dir):
    service = tiny_playground(model_dir, allow_any_model=True)
    yield service
    service.close()


@pytest.fixture
def gate(playground):
    held = EngineGate(default_model(playground))
    yield held
    held.remove()


def consume(stream, results: dict, name: str) -> threading.Thread:
    """Drain a stream in a thread: results[name] is its last value, or the exception it raised."""
    def run():
        try:
            results[name] = list(stream)[-1]
        except Exception as err:  # the test asserts on it
            results[name] = err
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_closed_stream_frees_its_engine_slot_within_one_step_and_keeps_its_text(playground, gate):
    session = playground.new_session()
    engine = session.engine
    stream = session.generate("Once upon a time", "balanced", LONG, 1)
    next(stream)
    gate.allow(2)
    gate.wait_arrivals(3)  # tokens 0..2 handed out; the engine is held in the forward after token 2
    stream.close()  # what Gradio does when the browser goes away or the event is cancelled
    at_close = engine.stats().steps
    assert not session.generating  # the session's busy lock is free at once
    gate.open()
    wait_for(lambda: idle(engine), "the engine to retire the cancelled generation")
    assert engine.stats().steps <= at_close + 1
    partial = session.tree.node(session.current)
    assert partial.meta["reason"] == "cancelled" and len(partial.tokens) == 3  # kept, as Stop keeps it
    assert list(session.continue_from(partial.id, None, "balanced", 4, 2))[-1]  # the session goes on from it
    session.close()


def test_stop_keeps_the_partial_node_with_its_state(playground, gate):
    session = playground.new_session()
    results = {}
    thread = consume(session.generate("Stop me", "balanced", LONG, 1), results, "text")
    gate.wait_arrivals(1)
    assert session.stop()
    gate.open()
    thread.join(30)
    node = session.tree.node(session.current)
    assert node.meta["reason"] == "cancelled" and results["text"] == node.text and node.id in session.tree.store
    session.close()


def test_a_failed_load_leaves_the_current_model_serving(playground, corrupt_dir):
    session, other = playground.new_session(), playground.new_session()
    before = playground.manager.loaded()
    key = session.loaded.key
    for _ in range(2):  # a second try fails the same way: no load left half-registered
        with pytest.raises(RwkvError, match="could not load|corrupt|truncat|safetensors"):
            session.switch_model(str(corrupt_dir))
    assert session.loaded.key == key and playground.manager.loaded() == before  # no model added, no borrow leaked
    assert list(session.generate("Still here", "balanced", 4, 1))[-1]
    assert list(other.generate("Me too", "balanced", 4, 1))[-1]
    session.close(), other.close()
    assert [m["in_use"] for m in playground.manager.loaded()] == [0]


def test_a_preset_that_cannot_be_downloaded_is_a_clear_error(model_dir):
    presets = {"offline": ModelPreset("offline", "rwkv-tests/never-downloaded", 1, 0.1)}
    service = Playground(PlaygroundOptions(device="cpu", dtype="float32"),
                         ModelManager(local_files_only=True, presets=presets))
    service.start(str(model_dir))
    try:
        session = service.new_session()
        with pytest.raises(RwkvError, match="rwkv-tests/never-downloaded") as refused:
            session.switch_model("offline")
        assert "not downloaded on this server" in str(refused.value)  # a visitor's words: no cache path, no switches
        assert "HF_HUB_OFFLINE" not in str(refused.value) and "cache at" not in str(refused.value)
        assert list(session.generate("Still here", "balanced", 4, 1))[-1]
        assert [m["in_use"] for m in service.manager.loaded()] == [1]
        session.close()
    finally:
        service.close()


def corrupt(session, node_id: str, value: float) -> None:
    """Overwrite the node's kept feed-forward token shift: 3e38 is finite but overflows the next forward."""
    session.tree.store.get(node_id).state[0].fill_(value)


@pytest.mark.parametrize("value, words", [(float("nan"), "NaN or inf"), (float("inf"), "NaN or inf")])
def test_a_non_finite_kept_state_is_refused_before_it_runs(playground, value, words):
    session = playground.new_session()
    list(session.generate("Hello there", "balanced", 3, 1))
    corrupt(session, session.current, value)
    with pytest.raises(InputError, match=words):
        list(session.continue_from(session.current, None, "balanced", 5, 1))
    assert not session.generating
    session.close()


def test_nan_logits_end_that_generation_alone(playground):
    good, bad = playground.new_session(), playground.new_session()
    reference = list(good.generate("A calm story", "balanced", 30, 5))[-1]
    list(bad.generate("Hello there", "balanced", 3, 1))
    poisoned = bad.current
    corrupt(bad, poisoned, 3e38)
    engine, errors = good.engine, good.engine.stats().errors
    gate = EngineGate(default_model(playground))
    try:
        results = {}
        threads = [consume(good.generate("A calm story", "balanced", 30, 5), results, "good")]
        gate.wait_arrivals(1)  # the good one is running, the engine held in its first forward
        threads.append(consume(bad.continue_from(poisoned, None, "balanced", 30, 2), results, "bad"))
        wait_for(lambda: engine.stats().waiting == 1, "the bad one to queue")  # it joins the same batch
        gate.open()
        for thread in threads:
            thread.join(30)
    finally:
        gate.remove()
    assert isinstance(results["bad"], RwkvError) and "generation failed" in str(results["bad"])
    assert "NaN" in str(results["bad"]) and engine.stats().errors == errors + 1
    assert results["good"] == reference
    healthy = bad.tree.node(poisoned).parent
    assert list(bad.continue_from(healthy, None, "balanced", 5, 2))[-1]  # the bad session goes on elsewhere
    good.close(), bad.close()


def test_a_full_queue_answers_busy_without_waiting_for_the_engine(model_dir):
    service = tiny_playground(model_dir, max_queue=1, max_batch=1)
    gate = EngineGate(default_model(service))
    first, second, third = (service.new_session() for _ in range(3))
    engine, results = first.engine, {}
    try:
        threads = [consume(first.generate("One", "balanced", 20, 1), results, "first")]
        gate.wait_arrivals(1)  # running: the batch (max_batch=1) is full
        threads.append(consume(second.generate("Two", "balanced", 20, 2), results, "second"))
        wait_for(lambda: engine.stats().waiting == 1, "the queue (max_queue=1) to fill")
        steps = engine.stats().steps
        with pytest.raises(QueueFull, match="busy"):
            next(third.generate("Three", "balanced", 20, 3))
        assert engine.stats().steps == steps  # answered while the engine was held: it waited for no step
        assert not third.generating
        gate.open()
        for thread in threads:
            thread.join(30)
        assert results["first"] and results["second"]
        assert list(third.generate("Three", "balanced", 20, 3))[-1]  # room again
    finally:
        gate.remove()
        for session in (first, second, third):
            session.close()
        service.close()


def test_a_model_switch_while_others_stream_leaves_their_tokens_unchanged(playground, other_dir):
    a, b, c = (playground.new_session() for _ in range(3))
    references = [list(a.generate("First voice", "balanced", 40, 11))[-1],
                  list(b.generate("Second voice", "balanced", 40, 12))[-1]]
    engine, results = a.engine, {}
    gate = EngineGate(default_model(playground))
    try:
        threads = [consume(a.generate("First voice", "balanced", 40, 11), results, "a")]
        gate.wait_arrivals(1)
        threads.append(consume(b.generate("Second voice", "balanced", 40, 12), results, "b"))
        wait_for(lambda: engine.stats().waiting == 1, "the second stream to queue")
        c.switch_model(str(other_dir))  # while both streams are mid-flight
        assert list(c.generate("Elsewhere", "balanced", 6, 1))[-1]  # on its own engine
        gate.open()
        for thread in threads:
            thread.join(30)
    finally:
        gate.remove()
    assert [results["a"], results["b"]] == references
    b.switch_model(str(other_dir))  # one of them, now idle, switches too
    assert list(a.generate("Still the first model", "balanced", 4, 1))[-1]
    in_use = {m["source"]: m["in_use"] for m in playground.manager.loaded()}
    assert sorted(in_use.values()) == [1, 2]  # a on the default model; b and c on the other
    for session in (a, b, c):
        session.close()


def test_browser_sessions_are_registered_and_freed_when_they_end(playground):
    first = playground.session_for("browser-1")
    assert playground.session_for("browser-1") is first  # e.g. its first action failed and its state lost it
    other = playground.session_for("browser-2")
    list(first.generate("Hello", "balanced", 3, 1))
    assert playground.sessions == 2
    assert playground.client_gone("browser-1") and first.closed and first.tree is None
    assert not playground.client_gone("browser-1")  # gone already: nothing left to free
    assert playground.session_for("browser-1") is not first  # the same browser, back: a fresh session
    other.close()  # the state's delete callback (the second line) deregisters it too
    assert not playground.client_gone("browser-2")
    assert playground.sessions == 1


def test_a_queued_stream_closed_before_it_ran_leaves_the_queue(model_dir):
    service = tiny_playground(model_dir, max_queue=1, max_batch=1)
    gate = EngineGate(default_model(service))
    running, queued, later = (service.new_session() for _ in range(3))
    engine, results = running.engine, {}
    try:
        thread = consume(running.generate("One", "balanced", 20, 1), results, "running")
        gate.wait_arrivals(1)
        stream = queued.generate("Two", "balanced", 20, 2)
        assert next(stream) == ""  # no token while it waits: the stream still yields, so it can be closed
        assert engine.stats().waiting == 1
        stream.close()
        assert not queued.generating
        assert [n.role for n in queued.tree.nodes.values()] == ["root", "text"]  # nothing ran: only the prompt
        assert queued.tree.node(queued.current).role == "text"
        gate.open()
        thread.join(30)
        wait_for(lambda: idle(engine), "the engine to drop the queued request")
        assert results["running"] and list(later.generate("Three", "balanced", 5, 3))[-1]
    finally:
        gate.remove()
        for session in (running, queued, later):
            session.close()
        service.close()
