"""The faults of test_faults.py through the web app: the app launched on a free port with tiny local models,
driven by gradio_client (and, for a dropped event stream, by raw HTTP), the engine held at a model forward
(EngineGate) so that "mid-stream" is a state the test sets up, not a race."""
import os
import time

import pytest

gradio = pytest.importorskip("gradio")
import httpx  # noqa: E402
from gradio_client import Client  # noqa: E402

from rwkv_app.ui import build_app  # noqa: E402

from .app_helpers import free_port, tiny_playground, write_tiny_model  # noqa: E402
from .fault_helpers import EngineGate, default_model, idle, wait_for  # noqa: E402

LONG = 400
HEARTBEAT_S = "0.25"  # how often Gradio checks the heartbeat stream: a closed client is noticed this fast


@pytest.fixture(scope="module", autouse=True)
def quick_heartbeat():
    before = os.environ.get("GRADIO_HEARTBEAT_INTERVAL")
    os.environ["GRADIO_HEARTBEAT_INTERVAL"] = HEARTBEAT_S  # read by Gradio per heartbeat connection
    yield
    if before is None:
        del os.environ["GRADIO_HEARTBEAT_INTERVAL"]
    else:
        os.environ["GRADIO_HEARTBEAT_INTERVAL"] = before


def launch(playground) -> tuple:
    demo = build_app(playground)
    demo.queue()
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    return url, demo


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults_app")
    corrupt = write_tiny_model(root / "corrupt", seed=3)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    return {"tiny": write_tiny_model(root / "tiny"), "other": write_tiny_model(root / "other", seed=7),
            "corrupt": corrupt}


@pytest.fixture(scope="module")
def served(dirs):
    playground = tiny_playground(dirs["tiny"], allow_any_model=True)
    url, demo = launch(playground)
    yield url, playground
    demo.close()
    playground.close()


@pytest.fixture
def clients(served):
    """A factory of clients of the served app; each is closed when the test ends."""
    made = []

    def make():
        made.append(Client(served[0], verbose=False))
        return made[-1]
    yield make
    for client in made:
        client.close()


@pytest.fixture
def gate(served):
    held = EngineGate(default_model(served[1]))
    yield held
    held.remove()


def engine_of(playground):
    loaded = playground.acquire_default()
    playground.manager.release(loaded)
    return playground.engine_for(loaded)


def freed_within_one_step(playground, session, handles, gate) -> None:
    """Once the session's generation is cancelled (the engine held meanwhile), the engine drops it at its next
    step; the session is free again (or closed) with the partial text kept."""
    engine = engine_of(playground)
    wait_for(lambda: all(h.cancelled for h in handles), "the generation to be cancelled")
    at_cancel = engine.stats().steps
    gate.open()
    wait_for(lambda: idle(engine), "the engine to drop the generation")
    assert engine.stats().steps <= at_cancel + 1
    wait_for(lambda: not session.generating, "the stream to end")
    assert session.closed or session.tree.node(session.current).meta["reason"] == "cancelled"


def test_a_cancelled_job_frees_its_engine_slot(served, clients, gate):
    url, playground = served
    client = clients()
    job = client.submit("Once upon a time", "balanced", LONG, 1, api_name="/generate")
    gate.wait_arrivals(1)
    session = playground.session_for(client.session_hash)
    handles = list(session.job.handles)
    assert session.generating and handles
    job.cancel()  # the browser's Stop of the event itself: Gradio closes the generator
    freed_within_one_step(playground, session, handles, gate)
    assert client.predict("Again", "balanced", 5, 1, api_name="/generate")  # the same session goes on
    assert playground.session_for(client.session_hash) is session


def test_a_client_that_closes_mid_stream_is_freed(served, clients, gate):
    url, playground = served
    leaving, staying = clients(), clients()
    sessions = playground.sessions
    leaving.submit("Once upon a time", "balanced", LONG, 1, api_name="/generate")
    gate.wait_arrivals(1)
    session = playground.session_for(leaving.session_hash)
    handles = list(session.job.handles)
    leaving.close()  # its heartbeat stops: Gradio runs the unload event
    wait_for(lambda: session.closed, "the unload event to close the session")
    assert playground.sessions == sessions  # the one it made is gone again
    freed_within_one_step(playground, session, handles, gate)
    assert staying.predict("Still here", "balanced", 5, 1, api_name="/generate")


def fn_index(url: str, api_name: str) -> int:
    config = httpx.get(f"{url}config", timeout=30).json()
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)


def stream_then_drop(url: str, session_hash: str, data: list) -> None:
    """Start /generate over Gradio's queue protocol, read its first streamed output, then drop the connection."""
    with httpx.Client(timeout=30) as http:
        http.post(f"{url}gradio_api/queue/join", json={"data": data, "fn_index": fn_index(url, "generate"),
                                                        "session_hash": session_hash}).raise_for_status()
        with http.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session_hash}) as response:
            for line in response.iter_lines():
                if "process_generating" in line:
                    return


def test_a_dropped_event_stream_frees_its_engine_slot(served, gate):
    url, playground = served
    session_hash = "dropped-stream-1"
    stream_then_drop(url, session_hash, ["Once upon a time", "balanced", LONG, 1, None])
    session = playground.session_for(session_hash)
    handles = list(session.job.handles)
    freed_within_one_step(playground, session, handles, gate)
    session.close()


def test_closed_clients_free_their_sessions(dirs):
    playground = tiny_playground(dirs["tiny"])
    url, demo = launch(playground)
    try:
        visitors = [Client(url, verbose=False) for _ in range(4)]
        for i, visitor in enumerate(visitors):
            visitor.predict(f"Visitor {i}", "balanced", 4, i, api_name="/generate")
            visitor.predict("hello", api_name="/chat")
        assert playground.sessions == 4
        for visitor in visitors:
            visitor.close()
        wait_for(lambda: playground.sessions == 0, "every closed client's session to be freed", timeout=15)
        assert [m["in_use"] for m in playground.manager.loaded()] == [0]
    finally:
        demo.close()
        playground.close()


def test_a_failed_load_is_a_clear_error_and_the_model_keeps_serving(served, clients, dirs):
    url, playground = served
    client, other = clients(), clients()
    text = client.predict("Still the same model", "balanced", 6, 4, api_name="/generate")
    before = playground.manager.loaded()
    with pytest.raises(Exception, match="truncated or corrupt"):
        client.predict(str(dirs["corrupt"]), api_name="/load_model")
    assert playground.manager.loaded() == before  # nothing added, no borrow leaked
    assert client.predict("Still the same model", "balanced", 6, 4, api_name="/generate") == text
    assert other.predict("Still the same model", "balanced", 6, 4, api_name="/generate") == text


def test_nan_logits_end_one_generation_and_the_others_run_on(served, clients, gate):
    url, playground = served
    good, bad = clients(), clients()
    gate.open()
    reference = good.predict("A calm story", "balanced", 30, 5, api_name="/generate")
    bad.predict("Hello there", "balanced", 3, 1, api_name="/generate")
    session = playground.session_for(bad.session_hash)
    poisoned = session.current
    session.tree.store.get(poisoned).state[0].fill_(3e38)  # finite, but the next forward overflows
    gate.hold()
    engine = engine_of(playground)
    running = good.submit("A calm story", "balanced", 30, 5, api_name="/generate")
    gate.wait_arrivals(1)
    failing = bad.submit(None, "", "balanced", 30, 2, api_name="/continue")  # from its current node
    wait_for(lambda: engine.stats().waiting == 1, "the bad generation to queue beside the good one")
    gate.open()
    with pytest.raises(Exception, match="Generation failed: .*NaN"):
        failing.result(timeout=60)
    assert running.result(timeout=60) == reference
    assert session.current == poisoned
    assert bad.predict(None, 1, "balanced", 5, 2, api_name="/rewind")  # from a point rebuilt from healthy states
    assert bad.predict("A fresh start", "balanced", 5, 2, api_name="/generate")


def test_a_model_switch_while_others_stream(served, clients, gate, dirs):
    url, playground = served
    a, b, c = clients(), clients(), clients()
    gate.open()
    references = [a.predict("First voice", "balanced", 40, 11, api_name="/generate"),
                  b.predict("Second voice", "balanced", 40, 12, api_name="/generate")]
    gate.hold()
    engine = engine_of(playground)
    jobs = [a.submit("First voice", "balanced", 40, 11, api_name="/generate")]
    gate.wait_arrivals(1)
    jobs.append(b.submit("Second voice", "balanced", 40, 12, api_name="/generate"))
    wait_for(lambda: engine.stats().waiting == 1, "the second stream to queue")
    status, _ = c.predict(str(dirs["other"]), api_name="/load_model")
    assert status.startswith("Loaded ")
    assert c.predict("Elsewhere", "balanced", 6, 1, api_name="/generate")
    gate.open()
    assert [job.result(timeout=60) for job in jobs] == references


def test_a_full_queue_answers_busy_at_once(dirs):
    playground = tiny_playground(dirs["tiny"], max_queue=1, max_batch=1)
    url, demo = launch(playground)
    gate = EngineGate(default_model(playground))
    visitors = [Client(url, verbose=False) for _ in range(3)]
    try:
        engine = engine_of(playground)
        jobs = [visitors[0].submit("One", "balanced", 20, 1, api_name="/generate")]
        gate.wait_arrivals(1)
        jobs.append(visitors[1].submit("Two", "balanced", 20, 2, api_name="/generate"))
        wait_for(lambda: engine.stats().waiting == 1, "the queue (max_queue=1) to fill")
        steps, start = engine.stats().steps, time.monotonic()
        with pytest.raises(Exception, match="busy"):
            visitors[2].predict("Three", "balanced", 20, 3, api_name="/generate")
        busy_s = time.monotonic() - start
        assert engine.stats().steps == steps  # answered while the engine was held: no generation waited for
        gate.open()
        start = time.monotonic()
        assert all(job.result(timeout=60) for job in jobs)
        assert visitors[2].predict("Three", "balanced", 20, 3, api_name="/generate")
        print(f"busy answered in {busy_s * 1000:.0f} ms; two queued generations took "
              f"{(time.monotonic() - start) * 1000:.0f} ms once the engine ran")
    finally:
        gate.remove()
        for visitor in visitors:
            visitor.close()
        demo.close()
        playground.close()


def test_a_failed_first_action_does_not_leave_a_session_behind(served, clients):
    url, playground = served
    client = clients()
    sessions = playground.sessions
    with pytest.raises(Exception, match="empty"):
        client.predict("   ", api_name="/chat")  # makes the session, fails: the browser state never gets it
    assert client.predict("hello", api_name="/chat")[-1]["role"] == "assistant"
    assert playground.sessions == sessions + 1  # the second action found the first one's session


def test_the_chat_branch_buttons_reach_the_session(served, clients):
    client = clients()
    client.predict("hello", api_name="/chat")
    for api_name in ("/chat_previous_branch", "/chat_next_branch"):  # a visible error, not a crash
        with pytest.raises(Exception, match="no message"):
            client.predict(None, api_name=api_name)
