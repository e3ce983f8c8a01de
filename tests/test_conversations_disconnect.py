"""A tab reloaded or closed while a generation streams: what was streamed stays in the tree and is saved (as after
Stop), so the reload brings it back, and the closed session is still freed. The engine is held at a model forward
(fault_helpers.EngineGate), so "mid-generation" is a state the test sets up. Gradio's two moves on a disconnect
come in either order: the unload event closes the session (`client_gone`), and the event's generator is closed."""
import threading

import pytest

from rwkv_app.services import conversations
from rwkv_app.services.identity import new_visitor_key, owner_of
from rwkv_app.services.stores import open_store

from .app_helpers import tiny_playground, write_tiny_model
from .fault_helpers import EngineGate, default_model, idle, wait_for

LONG = 400  # max_new_tokens of a generation the disconnect cuts short: it never gets near the end
TAB = "tab-1"  # the browser session's id (Gradio's session hash)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("disconnect") / "tiny")


@pytest.fixture
def served(model_dir, tmp_path):
    playground = tiny_playground(model_dir)
    playground.store = open_store(str(tmp_path / "data"), ttl_s=86400.0, quota_bytes=2 ** 20)
    gate = EngineGate(default_model(playground))
    yield playground, gate
    gate.remove()
    playground.close()


def start(tab, action: str):
    """The action's stream, started (its first update out): generate a prompt, a chat reply, or a comparison under
    a generation that finished (and was saved) first."""
    if action == "generate":
        stream = tab.generate("Chapter 1. It is a truth", "balanced", LONG, 1)
    elif action == "chat":
        stream = tab.chat_send("It is a truth", tab.branch("chat", LONG, 3))
        next(stream)  # the message and the reply's opening, shown before the reply is submitted
    else:
        stream = tab.compare(tab.current, [("balanced", 1), ("creative", 2)], LONG)
    next(stream)
    return stream


def streamed(playground, gate, action: str):
    """A visitor's tab in the middle of `action`, three tokens streamed: (tab, its stream, the visitor)."""
    owner = owner_of(new_visitor_key())
    tab = playground.session_for(TAB)
    conversations.identify(tab, owner)
    if action == "compare":
        gate.open()
        list(tab.generate("A first prompt", "balanced", 3, 1))
        gate.hold()
    stream = start(tab, action)
    gate.allow(2)
    gate.wait_arrivals(3)  # tokens 0..2 handed out; the engine is held in the forward after token 2
    return tab, stream, owner


def reopened(playground, owner):
    """The reload: a new browser session of the same visitor, which reopens their latest conversation."""
    back = playground.new_session()
    conversations.identify(back, owner)
    return back


def cut_short(tree, typed: str):
    """The generations the disconnect cut (stopped, as Stop stops them), each checked to hang under the text the
    visitor typed (the prompt or the chat message: saved too)."""
    cut = [node for node in tree.nodes.values() if node.meta.get("reason") == "cancelled"]
    for node in cut:
        assert typed in tree.path_text(node.parent)
    return cut


@pytest.mark.parametrize("action", ["generate", "chat", "compare"])
@pytest.mark.parametrize("unload_first", [True, False], ids=["unload-then-stream-closed", "stream-closed-then-unload"])
def test_a_tab_gone_mid_generation_keeps_what_was_streamed(served, action, unload_first):
    playground, gate = served
    tab, stream, owner = streamed(playground, gate, action)
    engine, before = tab.engine, playground.sessions
    if unload_first:
        assert playground.client_gone(TAB)  # Gradio's unload event: the heartbeat stopped
        stream.close()  # then the event's generator is closed
    else:
        stream.close()
        assert playground.client_gone(TAB)
    gate.open()
    wait_for(lambda: idle(engine), "the engine to retire the cancelled generation")
    assert tab.closed and tab.tree is None and tab.chat is None  # freed: no tree left behind
    assert playground.sessions == before - 1

    back = reopened(playground, owner)
    cut = cut_short(back.tree, "It is a truth" if action != "compare" else "A first prompt")
    assert len(cut) == (2 if action == "compare" else 1)
    assert all(len(node.tokens) == 3 for node in cut)  # every token streamed before the tab went is kept
    assert back.current == tab.current  # where the tab was: the cut generation (a comparison's node, for compare)
    assert action == "compare" or back.current == cut[0].id
    back.close()


def test_a_reload_while_the_gone_tabs_stream_still_ends_reopens_what_it_streamed(served):
    """The unload lands while Gradio's worker still reads the stream: the stream ends as after Stop (waiting up to
    runner.STOP_WAIT_S for the engine, held here, to retire its row), and the reloaded page, already asking for the
    visitor's latest conversation, waits for that end's save rather than reopening the conversation without it."""
    playground, gate = served
    tab, stream, owner = streamed(playground, gate, "generate")
    results = {}
    reader = threading.Thread(target=lambda: results.update(last=list(stream)[-1]))
    reader.start()
    assert playground.client_gone(TAB)
    back = reopened(playground, owner)  # the engine is still held: the gone tab's stream has not ended yet
    gate.open()
    reader.join(30)
    assert tab.tree is None
    cut = cut_short(back.tree, "It is a truth")
    assert len(cut) == 1 and cut[0].text == results["last"] and len(cut[0].tokens) == 3
    assert back.current == cut[0].id
    back.close()


def test_a_session_closed_idle_is_freed_at_once_and_saves_nothing_new(served):
    playground, gate = served
    gate.open()
    owner = owner_of(new_visitor_key())
    tab = playground.session_for(TAB)
    conversations.identify(tab, owner)
    list(tab.generate("Saved as it ends", "balanced", 4, 1))
    version = tab.saved.version
    assert playground.client_gone(TAB)
    assert tab.tree is None and not tab.generating
    assert playground.store.load(owner, tab.saved.id).info.version == version
