"""The services run every model family through the family interface only: RWKV-7 and a fake non-RWKV RNN go
through the engine, the session tree (extend, generate, fork, rewind, compare), session files and the state
inspector's data, exactly as RWKV-4 does; a session file of one family is refused by another."""
import pytest
import torch

from rwkv_app.engine import Engine
from rwkv_app.core.generation import FinishEvent
from rwkv_app.models.family import family_of
from rwkv_app.models.state_files import StateModelError, load_state_file, save_state_file
from rwkv_app.services import state_inspector
from rwkv_app.state_tree import SessionFileError, SessionTree, export_session, import_session

from .fake_family import TinyRnnConfig, TinyRnnForCausalLM
from .rwkv7_helpers import tiny_model7
from .session_helpers import TOL, run, sampled, tiny_model

PROMPT = [5, 17, 42, 99, 7, 3]


def rwkv7():
    return tiny_model7(0)


def rnn():
    return TinyRnnForCausalLM(TinyRnnConfig()).eval()


FAMILIES = {"rwkv7": rwkv7, "tiny-rnn": rnn}


@torch.no_grad()
def assert_resumes(tree, node_id):
    """The node's state and logits equal the whole path run from the empty state in one forward."""
    state, logits = tree.state_at(node_id)
    out = tree.model(torch.tensor([tree.path_tokens(node_id)]), use_cache=True)
    torch.testing.assert_close(logits, out.logits[0, -1].float(), atol=TOL, rtol=0)
    for mine, whole in zip(state, out.state):
        torch.testing.assert_close(mine, whole, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("build", FAMILIES.values(), ids=FAMILIES)
def test_the_engine_batches_rows_of_any_family_and_matches_generate(build):
    model = build()
    expected = model.generate(torch.tensor([PROMPT]), max_new_tokens=6, do_sample=False)[0, len(PROMPT):].tolist()
    with Engine(model, max_batch=4) as engine:
        handles = [engine.submit(PROMPT, max_new_tokens=6) for _ in range(3)]
        finishes = [[e for e in h if isinstance(e, FinishEvent)][0] for h in handles]
        assert all(list(f.tokens) == expected for f in finishes)
        resumed = engine.submit(state=finishes[0].state, logits=finishes[0].logits, max_new_tokens=2)
        assert len([e for e in resumed if isinstance(e, FinishEvent)][0].tokens) == 2
        with pytest.raises(Exception, match="state"):
            engine.submit(PROMPT, state=[torch.zeros(1, 3)])


@pytest.mark.parametrize("build", FAMILIES.values(), ids=FAMILIES)
def test_the_tree_forks_rewinds_and_compares_any_family_exactly(build):
    tree = SessionTree(build(), model_id="m")
    start = tree.extend_tokens(tree.root, PROMPT).node
    made = run(tree.generate(start, sampled(1, max_new_tokens=5)))[-1].node
    rewound = tree.fork(made, position=2).node
    compared = run(tree.compare(rewound, [sampled(2, max_new_tokens=4), sampled(3, max_new_tokens=4)]))[-1]
    for node_id in (start, made, rewound, *compared.added):
        assert_resumes(tree, node_id)
    family = family_of(tree.model)
    assert tree.store.entries[start].nbytes == family.state_bytes(tree.model) + 4 * tree.model.config.vocab_size


@pytest.mark.parametrize("build", FAMILIES.values(), ids=FAMILIES)
def test_session_files_round_trip_for_any_family(build, tmp_path):
    tree = SessionTree(build(), model_id="m")
    node = run(tree.generate(tree.extend_tokens(tree.root, PROMPT).node, sampled(4, max_new_tokens=4)))[-1].node
    export_session(tree, tmp_path / "s.zip")
    again = import_session(tmp_path / "s.zip", build(), model_id="m")
    assert again.path_tokens(node) == tree.path_tokens(node)
    for mine, saved in zip(again.state_at(node)[0], tree.state_at(node)[0]):
        torch.testing.assert_close(mine, saved, atol=0, rtol=0)
    assert_resumes(again, node)


def test_a_session_file_of_one_family_is_refused_by_another(tmp_path):
    tree = SessionTree(rwkv7(), model_id="m")
    tree.extend_tokens(tree.root, PROMPT)
    export_session(tree, tmp_path / "s.zip")
    with pytest.raises(SessionFileError, match="saved with an RWKV-7 model .* runs an RWKV-4 model"):
        import_session(tmp_path / "s.zip", tiny_model(0, vocab_size=300), model_id="m")


@pytest.mark.parametrize("build", FAMILIES.values(), ids=FAMILIES)
def test_the_inspector_describes_any_familys_state_as_plain_data(build):
    tree = SessionTree(build(), model_id="m")
    start = tree.extend_tokens(tree.root, PROMPT).node
    node = tree.extend_tokens(start, [8, 9, 10]).node
    report = state_inspector.state_report(tree, node, None, start)
    family, layers = tree.family, tree.model.config.num_hidden_layers
    assert [t["name"] for t in report["tensors"]] == list(family.state_names)
    assert len(report["norms"]) == layers * len(family.state_names)
    assert report["heatmap"]["tensor"] == family.memory_tensor and len(report["heatmap"]["values"]) == layers
    assert len(report["trace"]) == 3 * layers and any(r["norm"] > 0 for r in report["diff"])
    assert all(isinstance(v, (int, float, str)) for row in report["norms"] + report["trace"] for v in row.values())
    with pytest.raises(Exception, match="unknown state tensor"):
        state_inspector.state_report(tree, node, "not-a-tensor")


def test_rwkv7_heatmap_of_the_wkv_state_has_one_column_per_head_and_its_budget_counts_real_bytes():
    model = rwkv7()
    tree = SessionTree(model, model_id="m")
    node = tree.extend_tokens(tree.root, PROMPT).node
    heat = state_inspector.heatmap(tree.family, tree.state_at(node)[0], "wkv")
    assert len(heat["values"][0]) == model.config.num_heads
    c = model.config
    matrices = c.num_hidden_layers * c.num_heads * c.head_dim ** 2 * 4
    assert tree.family.state_bytes(model) == matrices + 2 * c.num_hidden_layers * c.hidden_size * 4


def test_a_state_file_of_one_family_is_refused_by_another_naming_the_model_it_is_for(tmp_path):
    model7, path = rwkv7(), tmp_path / "s.safetensors"
    save_state_file(family_of(model7).empty_state(model7, 1), model7, path)
    c = model7.config
    sizes = f"{c.num_hidden_layers} layers, {c.num_heads} heads of {c.head_dim}"
    with pytest.raises(StateModelError, match=rf"holds an RWKV-7 state \({sizes}\) but this model is an RWKV-4") as caught:
        load_state_file(path, tiny_model(0))
    assert caught.value.needed == f"an RWKV-7 model with {sizes}"
