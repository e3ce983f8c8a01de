"""State roots: a state file (RWKV-Runner / RWKV-PEFT layout for RWKV-7; RWKV-4's own) as the start of a session.

The files are written here the way those tools lay them out, not by the code under test, and generations from
the loaded root are compared with the model run directly from the state the file's matrices describe.
"""
import io
import json
import zipfile

import pytest
import torch
from safetensors.torch import save as save_bytes, save_file

from rwkv_app.errors import CheckpointError
from rwkv_app.models.rwkv7.state import init_state7
from rwkv_app.models.state_files import load_state_file, save_state_file
from rwkv_app.state_tree import ChatSession, SessionError, SessionFileError, StateBudget, SessionTree
from rwkv_app.state_tree import export_session, import_session
from rwkv_app.state_tree.nodes import STATE

from .rwkv7_helpers import tiny_model7
from .session_helpers import run, tiny_model
from .test_tokenizer import build_tokenizer

PROMPT = [5, 17, 42, 8]


def runner_time_state(model, seed: int = 5, scale: float = 0.5) -> dict[str, torch.Tensor]:
    """What RWKV-PEFT saves after state tuning (torch.save): one (heads, head size, head size) float32 matrix per
    layer, indexed [head, key, value]."""
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    return {f"blocks.{i}.att.time_state": scale * torch.randn(config.num_heads, config.head_dim, config.head_dim,
                                                                generator=generator)
            for i in range(config.num_hidden_layers)}


def runner_state(model, time_state: dict, transpose: bool = True) -> list[torch.Tensor]:
    """The state RWKV-Runner's backend runs from: each matrix transposed to [value, key], token shifts zero."""
    state = init_state7(model.config, 1, model.dtype, model.device)
    for i in range(model.config.num_hidden_layers):
        matrix = time_state[f"blocks.{i}.att.time_state"]
        state[2][0, i] = matrix.transpose(1, 2) if transpose else matrix  # (H, N, N)
    return state


def generated(tree, parent, count=8) -> tuple[int, ...]:
    change = run(tree.generate(parent, None, max_new_tokens=count))[-1]
    return tree.node(change.node).tokens


@torch.no_grad()
def direct(model, state, prompt, count=8) -> tuple[torch.Tensor, tuple[int, ...]]:
    """The model run directly from `state`: the logits after the prompt, and its greedy continuation."""
    logits = model(input_ids=torch.tensor([prompt]), state=[s.clone() for s in state], use_cache=True).logits[0, -1]
    out = model.generate(torch.tensor([prompt]), max_new_tokens=count, state=[s.clone() for s in state])
    return logits, tuple(out[0, len(prompt):].tolist())


def test_an_rwkv_runner_state_file_starts_a_session_as_its_matrices_dictate(tmp_path):
    model = tiny_model7(seed=1)
    time_state = runner_time_state(model)
    path = tmp_path / "persona.pth"
    torch.save(time_state, path)  # RWKV-PEFT's own save
    tree = SessionTree(model, model_id="tiny7")
    root = tree.add_state(load_state_file(path, model), "state file persona.pth").node
    assert tree.node(root).role == STATE and tree.node(root).parent == tree.root
    start = tree.extend_tokens(root, PROMPT).node
    _, logits = tree.state_at(start)
    expected_logits, expected_tokens = direct(model, runner_state(model, time_state), PROMPT)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=0)
    assert generated(tree, start) == expected_tokens
    # the matrices matter, in RWKV-Runner's orientation: neither the empty state nor the untransposed matrices
    # give these logits
    empty_logits, _ = direct(model, init_state7(model.config, 1, model.dtype, model.device), PROMPT)
    untransposed, _ = direct(model, runner_state(model, time_state, transpose=False), PROMPT)
    assert (logits - empty_logits).abs().max() > 1e-2
    assert (logits - untransposed).abs().max() > 1e-2


def rwkv4_file(state: list[torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    """An RWKV-4 state file as its layout documents it: five named (C,) / (A,) tensors per layer."""
    names = ("ffn.token_shift", "att.token_shift", "att.wkv_num", "att.wkv_den", "att.wkv_max")
    return {f"blocks.{i}.{name}": state[k][0, :, i].clone() for i in range(layers) for k, name in enumerate(names)}


@torch.no_grad()
def test_an_rwkv4_state_file_continues_exactly_where_its_text_left_off(tmp_path):
    model = tiny_model(3)
    prefix = [7, 3, 11, 29, 2]
    saved = model(input_ids=torch.tensor([prefix]), use_cache=True).state
    path = tmp_path / "persona.safetensors"
    save_file(rwkv4_file(saved, model.config.num_hidden_layers), str(path))
    tree = SessionTree(model, model_id="tiny")
    root = tree.add_state(load_state_file(path, model), "state file persona.safetensors").node
    start = tree.extend_tokens(root, PROMPT).node
    _, logits = tree.state_at(start)
    expected_logits, expected_tokens = direct(model, saved, PROMPT)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=0)
    assert generated(tree, start) == expected_tokens
    # the same as reading the prefix itself from the empty state
    whole = tree.extend_tokens(tree.root, prefix + PROMPT).node
    torch.testing.assert_close(tree.state_at(whole)[1], logits, atol=1e-5, rtol=0)
    assert generated(tree, whole) == expected_tokens


def tree_with_state_root(tmp_path):
    model = tiny_model7(seed=2)
    path = tmp_path / "persona.pth"
    torch.save(runner_time_state(model, seed=9), path)
    tree = SessionTree(model, model_id="tiny7")
    root = tree.add_state(load_state_file(path, model), "state file persona.pth", {"state_file": "persona.pth"}).node
    start = tree.extend_tokens(root, PROMPT).node
    generated(tree, start)
    return tree, root, start


def test_export_then_import_keeps_a_state_root_bit_for_bit(tmp_path):
    tree, root, start = tree_with_state_root(tmp_path)
    buffer = io.BytesIO()
    export_session(tree, buffer)
    again = import_session(buffer.getvalue(), tree.model, model_id="tiny7")
    assert again.node(root).role == STATE and again.node(root).meta == {"state_file": "persona.pth"}
    before, after = tree.state_at(root)[0], again.state_at(root)[0]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert again.state_at(root)[1] is None  # no logits: nothing was fed yet
    assert generated(again, start) == generated(tree, start)
    # the state root exported as a state file reads back bit for bit too
    path = save_state_file(before, tree.model, tmp_path / "again.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(before, load_state_file(path, tree.model)))


def test_a_state_root_is_never_dropped_and_deleting_it_frees_it(tmp_path):
    tree, root, _ = tree_with_state_root(tmp_path)
    small = SessionTree(tree.model, budget=StateBudget(max_states=3))
    node = small.add_state(tree.state_at(root)[0], "s").node
    for text in ([1, 2], [3, 4], [5, 6]):  # more nodes than the budget keeps
        small.extend_tokens(node, text)
    assert node in small.store and small.store.drops == 2
    small.delete(node)
    assert node not in small.store and node not in small.store.pinned
    small.add_state(tree.state_at(root)[0], "a")
    with pytest.raises(SessionError, match="budget"):  # the root, one state and one node fill 3 states
        small.add_state(tree.state_at(root)[0], "b")


def test_nothing_generates_at_a_state_root_before_text_is_added(tmp_path):
    tree, root, _ = tree_with_state_root(tmp_path)
    with pytest.raises(SessionError, match="loaded state: add some text"):
        tree.generate(root, None)
    with pytest.raises(SessionError, match="state node"):
        tree.edit(root, "x")


def test_a_state_of_the_wrong_shape_is_refused():
    model = tiny_model7(seed=1)
    tree = SessionTree(model)
    with pytest.raises(Exception, match="shape"):
        tree.add_state([torch.zeros(1, 3)] * 3, "bad")


def test_a_file_of_another_model_is_refused_naming_the_mismatch(tmp_path):
    model = tiny_model7(seed=1)
    bigger = tiny_model7(seed=1, num_hidden_layers=4)
    path = tmp_path / "other.pth"
    torch.save(runner_time_state(bigger), path)
    with pytest.raises(CheckpointError, match="4 layers .* but the model has 3 layers"):
        load_state_file(path, model)


def test_a_chat_starts_from_a_state_root(tmp_path):
    model = tiny_model(3, vocab_size=400)
    tree = SessionTree(model, build_tokenizer(), model_id="tiny")
    state = tree.state_at(tree.extend(tree.root, "Once upon a time").node)[0]
    root = tree.add_state(state, "state file persona.safetensors").node
    chat = ChatSession(tree, user="User", bot="Bot", system="Be kind.", start=root)
    run(chat.send("Hello", max_new_tokens=4))
    path = [node.id for node in tree.path(chat.current)]
    assert path[:2] == [tree.root, root]
    assert [m["role"] for m in chat.messages()] == ["system", "user", "assistant"]
    assert tree.meta["chat"]["start"] == root


def test_a_session_file_without_the_state_of_its_state_root_is_rejected(tmp_path):
    tree, root, _ = tree_with_state_root(tmp_path)
    buffer = io.BytesIO()
    export_session(tree, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        doc = json.loads(archive.read("tree.json"))
    edited = io.BytesIO()
    with zipfile.ZipFile(edited, "w") as archive:
        archive.writestr("tree.json", json.dumps(doc))
        archive.writestr("states.safetensors", save_bytes({}))
    with pytest.raises(SessionFileError, match="lacks the state of state node"):
        import_session(edited.getvalue(), tree.model, model_id="tiny7")


def test_mixing_in_the_service_makes_a_state_root_of_the_weighted_sum(tmp_path):
    """RWKV-4 mixes in the real domain (its WKV sums are stored scaled by exp(-max)): a state mixed with itself
    is itself, and weight 1 takes the first state alone."""
    from rwkv_app.services import personas

    from .app_helpers import tiny_playground, write_tiny_model

    playground = tiny_playground(write_tiny_model(tmp_path))
    session = playground.new_session()
    try:
        node = session.tree.extend(session.tree.root, "Once upon a time").node
        state = session.tree.state_at(node)[0]
        for first, second, weight in ((node, node, 0.3), (node, session.tree.root, 1.0)):
            mixed = personas.mix(session, first, None, second, None, weight)
            assert session.start == session.current == mixed and session.tree.node(mixed).role == STATE
            for got, expected in zip(session.tree.state_at(mixed)[0], state):
                torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
        with pytest.raises(Exception, match="from 0 to 1"):
            personas.mix(session, node, None, node, None, float("nan"))
    finally:
        session.close()
        playground.close()
