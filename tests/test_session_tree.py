"""The session tree on a tiny random model: every operation, and resuming any node exactly."""
import ast
import random
from pathlib import Path

import pytest
from rwkv_app.core.generation import FinishEvent, TokenEvent
from rwkv_app.core.sampling import SettingsError
from rwkv_app.state_tree import Change, SessionError, StateBudget

from .session_helpers import assert_resumes_exactly, run, sampled, tiny_tree


def test_extend_and_generate_resume_exactly():
    tree = tiny_tree()
    change = tree.extend(tree.root, "The quick brown fox")
    assert change == Change(change.node, (change.node,))
    node = tree.node(change.node)
    assert node.role == "text" and node.text == "The quick brown fox" and node.parent == tree.root
    assert list(node.tokens) == tree.tokenizer.encode("The quick brown fox")
    assert_resumes_exactly(tree, node.id)
    items = run(tree.generate(node.id, sampled(3)))
    tokens = [e for e in items if isinstance(e, TokenEvent)]
    finish, done = items[-2], items[-1]
    assert isinstance(finish, FinishEvent) and isinstance(done, Change) and done.added == (done.node,)
    new = tree.node(done.node)
    assert new.role == "generated" and new.parent == node.id and list(new.tokens) == [e.token for e in tokens]
    assert new.probs == tuple(e.prob for e in tokens) and new.top == tuple(e.top for e in tokens)
    assert new.meta["seed"] == 3 and new.meta["sampling"]["temperature"] == 1.2 and new.meta["reason"] == "length"
    assert new.text == finish.text and tree.path_text(new.id) == tree.tokenizer.decode(tree.path_tokens(new.id))
    assert_resumes_exactly(tree, new.id)


def test_generation_starts_from_the_kept_state_without_running_the_path_again():
    tree = tiny_tree()
    node = tree.extend(tree.root, "The quick brown fox").node
    shapes = []
    tree.model.register_forward_pre_hook(lambda m, a, k: shapes.append(tuple(k["input_ids"].shape)), with_kwargs=True)
    run(tree.generate(node, sampled(1, max_new_tokens=5)))
    assert shapes == [(1, 1)] * 5  # one decode step per token, nothing else


def test_rewind_to_every_token_of_a_node():
    tree = tiny_tree(budget=StateBudget(max_states=3))
    base = tree.extend(tree.root, "User: hello there!").node
    node = tree.node(run(tree.generate(base, sampled(5, max_new_tokens=12)))[-1].node)
    tree.store.drop(node.id)
    tree.store.drop(base)  # rewinds must recompute from the root
    for position in range(len(node.tokens) + 1):
        point = tree.fork(node.id, position).node
        expected = tree.path_tokens(base) + list(node.tokens[:position])
        assert point == (base if position == 0 else node.id if position == len(node.tokens) else point)
        assert_resumes_exactly(tree, point, expected)
        if 0 < position < len(node.tokens):
            prefix = tree.node(point)
            assert prefix.tokens == node.tokens[:position] and prefix.probs == node.probs[:position]
            assert prefix.meta["forked_from"] == node.id and prefix.meta["position"] == position


def test_deep_random_tree_resumes_every_node_exactly_after_drops():
    rng = random.Random(0)
    tree = tiny_tree(budget=StateBudget(max_states=4))
    ids = [tree.extend(tree.root, "The").node]
    for step in range(60):
        parent = rng.choice(ids) if rng.random() < 0.2 else ids[-1]
        kind = rng.random()
        if kind < 0.4:
            change = tree.extend_tokens(parent, [rng.randrange(400) for _ in range(rng.randint(1, 6))])
        elif kind < 0.8:
            change = run(tree.generate(parent, sampled(step, max_new_tokens=rng.randint(1, 6))))[-1]
        else:
            target = tree.node(rng.choice(ids))
            change = tree.fork(target.id, rng.randint(0, len(target.tokens)))
        ids.extend(change.added)
    assert max(len(tree.path(i)) for i in ids) > 15 and tree.store.drops > 20
    for node_id in rng.sample(ids, len(ids)):
        assert_resumes_exactly(tree, node_id)
        assert len(tree.store) <= 4


def test_recompute_is_one_forward_from_the_nearest_kept_ancestor():
    tree = tiny_tree()
    chain = [tree.extend(tree.root, "one").node]
    for word in [" two", " three", " four"]:
        chain.append(tree.extend(chain[-1], word).node)
    for node_id in chain[1:]:
        tree.store.drop(node_id)
    calls = []
    tree.model.register_forward_pre_hook(lambda m, a, k: calls.append(k["input_ids"].shape[1]), with_kwargs=True)
    tree.state_at(chain[-1])
    assert calls == [sum(len(tree.node(i).tokens) for i in chain[1:])]  # from "one"'s state, not from the root
    assert chain[-1] in tree.store and chain[1] not in tree.store


def test_force_token_then_continue():
    tree = tiny_tree()
    base = tree.extend(tree.root, "The quick").node
    node = tree.node(run(tree.generate(base, sampled(2, max_new_tokens=6)))[-1].node)
    other = next(t for t, _ in node.top[3] if t != node.tokens[3])
    forced = tree.node(tree.force_token(node.id, 3, other).node)
    assert forced.parent == base and forced.tokens == node.tokens[:3] + (other,)
    assert forced.probs[:3] == node.probs[:3] and forced.probs[3] == pytest.approx(dict(node.top[3])[other], abs=1e-6)
    assert forced.meta["forced"] == {"position": 3, "token": other, "text": tree.decode([other]), "replaced": node.tokens[3],
                                     "node": node.id}
    assert_resumes_exactly(tree, forced.id)
    continued = run(tree.generate(forced.id, sampled(4, max_new_tokens=4)))[-1].node
    assert tree.node(continued).parent == forced.id
    assert_resumes_exactly(tree, continued)


def test_edit_regenerate_delete_and_paths():
    tree = tiny_tree()
    first = tree.extend(tree.root, "User: hi").node
    edited = tree.edit(first, "User: hello").node
    assert tree.node(edited).meta["edited_from"] == first and tree.node(tree.root).children == [first, edited]
    reply = run(tree.generate(edited, sampled(9)))[-1].node
    again = run(tree.regenerate(reply))[-1].node
    assert tree.node(again).parent == edited and tree.node(again).meta["seed"] != 9
    assert tree.node(again).meta["sampling"]["temperature"] == 1.2
    assert_resumes_exactly(tree, again)
    assert [n.id for n in tree.path(reply)] == [tree.root, edited, reply]
    messages = tree.chat_messages(reply)
    assert [m["role"] for m in messages] == ["user", "assistant"] and messages[0]["content"] == "User: hello"
    change = tree.delete(edited)
    assert change.node == tree.root and set(change.removed) == {edited, reply, again}
    assert tree.node(tree.root).children == [first] and reply not in tree.store
    with pytest.raises(SessionError, match="unknown node"):
        tree.node(reply)
    with pytest.raises(SessionError, match="start of the tree cannot be deleted"):
        tree.delete(tree.root)


def test_closing_a_stream_keeps_what_was_generated():
    tree = tiny_tree()
    base = tree.extend(tree.root, "The").node
    stream = tree.generate(base, sampled(1, max_new_tokens=20))
    seen = [next(stream) for _ in range(5)]
    stream.close()
    (partial,) = tree.children(base)
    assert list(partial.tokens) == [e.token for e in seen] and partial.meta["reason"] == "cancelled"
    assert partial.id not in tree.store
    assert_resumes_exactly(tree, partial.id)


def test_bad_requests_are_clear_errors():
    tree = tiny_tree()
    node = tree.extend(tree.root, "abc").node
    with pytest.raises(SessionError, match="nothing to continue at the root"):
        tree.generate(tree.root)
    with pytest.raises(SessionError, match="outside the vocabulary"):
        tree.extend_tokens(node, [400])
    with pytest.raises(SessionError, match="at least one token"):
        tree.extend_tokens(node, [])
    with pytest.raises(SessionError, match="position must be"):
        tree.fork(node, 99)
    with pytest.raises(SessionError, match="2 to 8 branches"):
        tree.compare(node, [None])
    with pytest.raises(SessionError, match="cannot hold the root"):
        tiny_tree(budget=StateBudget(max_states=4, max_bytes=1000))
    with pytest.raises(SettingsError, match="temperature"):
        tree.generate(node, {"temperature": -1})


def test_node_ids_are_random_hex():
    tree = tiny_tree()
    ids = [tree.extend(tree.root, "x").node for _ in range(20)] + [tree.root]
    assert len(set(ids)) == 21 and all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


def test_the_session_package_is_a_service_layer_without_gradio():
    for path in (Path(__file__).parents[1] / "rwkv_app" / "session").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        modules |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not any(m.split(".")[0] == "gradio" for m in modules), path
