"""The state budget: a long session stays under it, drops least recently used states (never the root),
and still resumes every node exactly."""
import random

import pytest
import torch

from rwkv_app.models.rwkv4.family import RWKV4_FAMILY
from rwkv_app.state_tree import StateBudget
from rwkv_app.state_tree.store import StateStore

from .session_helpers import assert_resumes_exactly, run, sampled, tiny_tree

ENTRY_BYTES = 5 * 32 * 4 * 4 + 400 * 4  # tiny model: five (1, 32, 4) float32 tensors and (400,) logits
ROOT_BYTES = 5 * 32 * 4 * 4


def test_a_long_session_stays_under_its_byte_budget_and_resumes_every_node():
    budget = StateBudget(max_states=1000, max_bytes=ROOT_BYTES + 6 * ENTRY_BYTES)
    tree, rng = tiny_tree(budget=budget), random.Random(1)
    ids = [tree.extend(tree.root, "Once upon a time").node]
    for step in range(50):
        parent = ids[-1] if rng.random() < 0.7 else rng.choice(ids)
        if step % 2:
            ids.append(run(tree.generate(parent, sampled(step, max_new_tokens=5)))[-1].node)
        else:
            ids.append(tree.extend(parent, rng.choice([" and", " then", " the fox", "\n\nUser: hi"])).node)
        assert tree.store.nbytes <= budget.max_bytes and len(tree.store) <= 7
    assert tree.root in tree.store and tree.store.drops >= 40
    for node_id in ids:
        assert_resumes_exactly(tree, node_id)
        assert tree.store.nbytes <= budget.max_bytes
    assert all(tree.node(i).tokens for i in ids)  # nothing the user wrote was lost


def test_least_recently_used_go_first_and_the_root_stays():
    store = StateStore(RWKV4_FAMILY, StateBudget(max_states=3, max_bytes=10 ** 9), torch.device("cpu"), pinned="root")
    state = [torch.zeros(1, 2, 1) for _ in range(5)]
    store.put("root", state, None)
    store.put("a", state, torch.zeros(3))
    store.put("b", state, torch.zeros(3))
    store.get("a")  # a is now more recent than b
    store.put("c", state, torch.zeros(3))
    assert list(store.entries) == ["root", "a", "c"]
    store.get("root")
    store.put("d", state, torch.zeros(3))
    assert "root" in store and "d" in store and len(store) == 3


def test_kept_states_are_copies_on_the_store_device():
    store = StateStore(RWKV4_FAMILY, StateBudget(), torch.device("cpu"), pinned=None)
    state = [torch.ones(1, 2, 1) for _ in range(5)]
    logits = torch.ones(1, 3, dtype=torch.float64)
    kept = store.put("a", state, logits)
    state[0].add_(1)
    assert kept.state[0].max() == 1 and kept.logits.shape == (3,) and kept.logits.dtype == torch.float32
    assert kept.nbytes == 5 * 2 * 4 + 3 * 4 == store.nbytes


def test_budget_arguments_are_checked():
    with pytest.raises(ValueError, match="max_states"):
        StateBudget(max_states=1)
    with pytest.raises(ValueError, match="max_bytes"):
        StateBudget(max_bytes=0)
