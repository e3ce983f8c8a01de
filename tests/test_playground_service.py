"""The service calls behind each tab (chat, playground, compare, state, models, session), on a tiny model."""
from pathlib import Path

import pytest

from rwkv_app.errors import InputError
from rwkv_app.services import state_inspector, views
from rwkv_app.state_tree import SessionError, SessionFileError

from .app_helpers import tiny_playground, write_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("pg") / "tiny")


@pytest.fixture(scope="module")
def playground(model_dir):
    service = tiny_playground(model_dir, max_prompt_chars=1000, max_upload_mb=1)
    yield service
    service.close()


@pytest.fixture
def session(playground):
    s = playground.new_session()
    yield s
    s.close()


def test_generate_streams_and_repeats_with_a_seed(session):
    texts = list(session.generate("Hello there", "balanced", 10, 7))
    assert texts and texts[-1]
    node = session.tree.node(session.current)
    assert node.role == "generated" and len(node.tokens) == 10 and node.meta["seed"] == 7
    again = list(session.generate("Hello there", "balanced", 10, 7))
    assert again[-1] == texts[-1]


def test_chat_turns_retry_undo_edit_and_branches(session):
    branch = session.branch("chat", 8, None)
    first = list(session.chat_send("hi bot", branch))[-1]
    assert [m["role"] for m in first] == ["user", "assistant"] and first[0]["content"] == "hi bot"
    second = list(session.chat_send("and again", branch))[-1]
    assert [m["content"] for m in second][::2] == ["hi bot", "and again"]
    list(session.chat_retry(branch))
    assert len(session.chat.siblings(session.chat.current)) == 2  # the retried reply sits beside the first
    assert len(session.chat_switch(3, -1)) == 4
    assert len(session.chat_undo()) == 2
    edited = session.chat_edit(0, "hello instead")
    assert edited[0]["content"] == "hello instead"
    assert len(session.chat.siblings(session.turn_node(0))) == 2


def test_a_chat_reply_becomes_the_selected_node_for_state_and_compare(session):
    """The State tab and Compare pointed at "(start)" after chatting: the reply is now the session's node."""
    list(session.chat_send("hi bot", session.branch("chat", 6, 1)))
    assert session.current == session.chat.current and session.tree.node(session.current).role == "bot"
    assert session.current in session.last_run


def test_a_message_sent_while_another_generation_runs_adds_no_turn(session):
    branch = session.branch("chat", 4)
    list(session.chat_send("first", branch))
    nodes = len(session.tree.nodes)
    late = session.chat_send("late", branch)  # accepted at the call, before the other generation starts
    running = session.generate("Hello", "balanced", 50, 1)
    next(running)  # holds the session's lock now
    with pytest.raises(InputError, match="already generating"):
        next(late)
    with pytest.raises(InputError, match="already generating"):
        session.chat_send("too soon", branch)
    running.close()
    assert not any(n.role == "user" and n.text == "late" for n in session.tree.nodes.values())
    assert len(session.tree.nodes) > nodes  # only the other generation added nodes


@pytest.mark.parametrize("text, words", [("", "empty"), ("   ", "empty"), ("x" * 100_000, "at most")])
def test_bad_messages_are_clear_errors_and_the_session_keeps_working(session, text, words):
    with pytest.raises(InputError, match=words):
        list(session.chat_send(text, session.branch("chat", 4)))
    assert list(session.chat_send("fine", session.branch("chat", 4)))[-1][0]["content"] == "fine"


def test_tree_tokens_rewind_and_force(session):
    list(session.generate("Once upon", "balanced", 6, 1))
    node = session.current
    rows = views.tree_rows(session.tree, node)
    assert rows[0]["label"] == "(start)" and rows[-1]["current"] and "seed 1" in rows[-1]["label"]
    tokens = views.token_rows(session.tree, node)
    assert len(tokens) == 6 and all(0 <= t["prob"] <= 1 and t["bucket"] for t in tokens)
    alternatives = views.alternatives(session.tree, node, 2)
    assert any(a["chosen"] for a in alternatives)
    point = session.rewind(node, 3)
    assert session.tree.node(point).tokens == session.tree.node(node).tokens[:3]
    labels = {row["id"]: row["label"] for row in views.tree_rows(session.tree, point)}
    assert "rewound after token 3" in labels[point] and "rewound" not in labels[node]  # twins told apart
    assert list(session.continue_from(point, None, "balanced", 4, 2))
    other = next(a["token"] for a in alternatives if not a["chosen"])
    forced = session.force(node, 2, other)
    assert session.tree.node(forced).tokens[2] == other
    label = next(row["label"] for row in views.tree_rows(session.tree, forced) if row["id"] == forced)
    assert f"forced {session.tree.decode([other])!r}" in label  # twin branches differ by the token forced
    list(session.continue_from(forced, " more", "balanced", 3, 2))
    assert session.tree.node(session.current).parent != forced  # the text became its own node first


def test_the_continuation_shown_is_what_the_model_generated_at_the_selected_node(session):
    """The Continuation box follows the selection: the node's own text if the model wrote it, as Generate showed."""
    shown = list(session.generate("Once upon", "balanced", 6, 1))[-1]
    first = session.current
    assert session.continuation() == session.continuation(first) == shown == session.tree.node(first).text
    prompt = session.tree.node(first).parent
    second = list(session.generate("Once upon", "balanced", 6, 2))[-1]
    assert session.continuation() == second != shown  # the other sibling, selected now
    session.select(first)
    assert session.continuation() == shown
    for typed_or_start in (prompt, session.tree.root):
        session.select(typed_or_start)
        assert session.continuation() == ""  # nothing generated there yet
    point = session.rewind(first, 3)
    resampled = list(session.continue_from(point, None, "balanced", 4, 3))[-1]
    assert session.continuation() == resampled  # what Rewind showed
    assert session.continuation(point) == session.tree.node(point).text  # the kept first tokens, its own text
    reply = list(session.chat_send("hi bot", session.branch("chat", 4, 1)))[-1][-1]["content"]
    assert session.continuation() == session.tree.node(session.current).text and reply  # a chat reply: written


def test_deleting_the_root_is_refused_before_any_question_and_other_nodes_may_go(session):
    list(session.generate("Once upon", "balanced", 3, 1))
    count = session.node_count()
    with pytest.raises(SessionError, match="the start of the tree cannot be deleted: select a node under it first"):
        session.check_delete(session.tree.root)
    with pytest.raises(SessionError, match="unknown node"):
        session.check_delete("f" * 16)
    session.check_delete(session.current)  # asks nothing of the tree: a node under the root may go
    assert session.node_count() == count
    with pytest.raises(SessionError, match="start of the tree"):
        session.delete(session.tree.root)  # the same rule where the delete itself happens
    session.delete(session.current)
    assert session.node_count() == count - 1


def test_tree_rows_keep_preset_and_seed_apart_from_the_text_preview(session):
    """Sibling generations differ in their row's extra (preset, seed) even when their previews look alike."""
    list(session.generate("Once upon", "balanced", 30, 11))
    list(session.generate("Once upon", "creative", 30, 12))
    rows = [r for r in views.tree_rows(session.tree, session.current) if r["role"] == "generated"]
    assert [r["extra"] for r in rows] == [["balanced", "seed 11"], ["creative", "seed 12"]]
    assert all(len(r["snippet"]) <= views.PREVIEW for r in rows)


def test_compare_columns_and_keep(session):
    list(session.generate("The cat", "balanced", 4, 1))
    start = session.current
    columns = list(session.compare(None, [("balanced", 1), ("creative", 2), ("deterministic", None)], 6))
    assert len(columns[-1]) == 3 and all(columns[-1])
    assert [session.tree.node(n).parent for n in session.compared] == [start] * 3
    assert session.keep(1) == session.compared[1] == session.current
    with pytest.raises(InputError, match="2 to 4"):
        session.compare(None, [("balanced", 1)], 4)
    with pytest.raises(InputError, match="unknown sampling preset"):
        session.compare(None, [("balanced", 1), ("nope", 1)], 4)


def test_state_inspector_data(session):
    list(session.generate("Hello", "balanced", 5, 1))
    family = session.tree.family
    state, _ = session.tree.state_at(session.current)
    norms = state_inspector.layer_norms(family, state)
    assert len(norms) == 5 * 2 and all(r["norm"] >= 0 for r in norms)
    heat = state_inspector.heatmap(family, state, "att_shift")
    assert len(heat["values"]) == 2 and len(heat["values"][0]) == 16
    decay = state_inspector.decay_rows(session.tree)
    assert all(0 < r["decay"] < 1 for r in decay)
    assert len(state_inspector.trace_rows(session.tree, session.current)) == 5 * 2
    parent = session.tree.node(session.current).parent
    assert any(r["norm"] > 0 for r in state_inspector.diff_rows(session.tree, parent, session.current))
    root = session.tree.root
    assert all(r["norm"] == 0 for r in state_inspector.layer_norms(family, session.tree.state_at(root)[0]))
    report = state_inspector.state_report(session.tree, session.current, None, parent)
    assert report["heatmap"]["tensor"] == "num" and report["diff"] and report["tensors"][0]["name"] == "ffn_shift"


def test_export_import_and_bad_files(session, playground, tmp_path):
    list(session.chat_send("remember me", session.branch("chat", 4)))
    path = session.export(tmp_path)
    other = playground.new_session()
    try:
        other.load_file(path)
        assert other.chat.messages()[0]["content"] == "remember me"
        bad = tmp_path / "bad.zip"
        bad.write_bytes(b"\xff\xfe not a zip \x80")
        with pytest.raises(SessionFileError):
            other.load_file(bad)
        big = tmp_path / "big.zip"
        big.write_bytes(b"0" * (2 * 2 ** 20))
        with pytest.raises(InputError, match="at most 1 MiB"):
            other.load_file(big)
        assert other.chat.messages()[0]["content"] == "remember me"  # still the good session
    finally:
        other.close()


def test_undo_gives_back_the_undone_message(session):
    list(session.chat_send("a typo here", session.branch("chat", 3)))
    messages, text = session.chat_undo_to_box()
    assert text == "a typo here" and all(m["content"] != "a typo here" for m in messages)


def test_exported_files_are_removed_by_the_next_export_and_when_the_session_ends(playground, tmp_path):
    session = playground.new_session()
    list(session.generate("Hi", "balanced", 3, 1))
    neighbour = tmp_path / "keep.txt"
    neighbour.write_text("not the session's")
    first = Path(session.export(tmp_path / "a"))
    second = Path(session.export(tmp_path / "b"))
    assert not first.exists() and not first.parent.exists() and second.exists()
    third = Path(session.export(tmp_path))  # a folder holding other files: only the session's file goes
    session.close()
    assert not third.exists() and tmp_path.exists() and neighbour.read_text() == "not the session's"


def test_each_visitor_keeps_states_within_the_operators_budget(model_dir):
    service = tiny_playground(model_dir, session_state_mb=0.01)  # ~10 KiB: a handful of the tiny model's states
    try:
        session = service.new_session()
        for seed in range(6):
            list(session.generate("Hello there", "balanced", 4, seed))
        store = session.tree.store
        assert store.nbytes <= 0.01 * 2 ** 20 and store.drops > 0
        oldest = next(n for n in session.tree.nodes.values() if n.role == "generated")
        assert oldest.id not in store.entries  # dropped for the budget ...
        assert list(session.continue_from(oldest.id, " again", "balanced", 3, 1))  # ... and recomputed on demand
        session.close()
    finally:
        service.close()
    with pytest.raises(SessionError, match="budget"):
        tiny_playground(model_dir, session_state_mb=1e-6)


def test_session_file_for_another_model_is_refused(session, tmp_path, model_dir):
    list(session.generate("Hi", "balanced", 3, 1))
    path = session.export(tmp_path)
    other_dir = write_tiny_model(tmp_path / "other", seed=5)
    service = tiny_playground(other_dir)
    try:
        stranger = service.new_session()
        with pytest.raises(SessionFileError, match="model"):
            stranger.load_file(path)
        stranger.close()
    finally:
        service.close()


def test_models_only_presets_unless_allowed(session, playground, tmp_path):
    with pytest.raises(InputError, match="allow-any-model"):
        session.switch_model("someone/else")
    with pytest.raises(InputError, match="allow-any-model"):
        session.switch_model("/etc")
    assert list(session.generate("still", "balanced", 2, 1))  # the current model keeps working
    report = playground.memory_report()
    assert report and report[0]["device"] == "cpu" and report[0]["memory"].endswith("GiB")


def test_closing_a_session_frees_it(playground):
    before = playground.sessions
    s = playground.new_session()
    assert playground.sessions == before + 1
    s.close()
    assert playground.sessions == before and s.tree is None
