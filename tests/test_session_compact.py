"""A node's tokens, probabilities and alternatives kept in flat arrays read back exactly as given."""
import sys

import pytest
from rwkv_app.core.generation import TokenEvent
from rwkv_app.state_tree.compact import TokenProbs
from rwkv_app.state_tree.nodes import Node

from .session_helpers import run, sampled, tiny_tree


def tuples_size(value) -> int:
    """Bytes of a nest of tuples of ints and floats, every object counted once."""
    if isinstance(value, tuple):
        return sys.getsizeof(value) + sum(tuples_size(item) for item in value)
    return sys.getsizeof(value)


def test_token_probs_read_back_what_was_given():
    probs = [0.5, 0.25, 1.0]
    top = [((7, 0.5), (3, 0.25)), (), ((1, 1.0),)]  # ragged: an imported file may give any number per token
    stats = TokenProbs(probs, top)
    assert len(stats) == 3 and stats.probs() == tuple(probs) and stats.tops() == tuple(top)
    assert stats.prob(1) == 0.25 and stats.top(0) == ((7, 0.5), (3, 0.25)) and stats.top(1) == ()
    with pytest.raises(ValueError):
        TokenProbs([0.5, 0.5], [((1, 0.5),)])


def test_a_generated_nodes_probabilities_take_a_ninth_of_their_tuples():
    tree = tiny_tree()
    start = tree.extend(tree.root, "The quick brown fox").node
    items = run(tree.generate(start, sampled(5, max_new_tokens=48)))
    events = [e for e in items if isinstance(e, TokenEvent)]
    node = tree.node(items[-1].node)
    assert node.probs == tuple(e.prob for e in events) and node.top == tuple(e.top for e in events)
    assert [node.prob(i) for i in range(node.size)] == [e.prob for e in events]
    assert [node.top_at(i) for i in range(node.size)] == [e.top for e in events]
    as_tuples = tuples_size(node.probs) + tuples_size(node.top)
    assert node._stats.nbytes() * 9 < as_tuples, (node._stats.nbytes(), as_tuples)


def test_nodes_round_trip_through_json_and_compare_by_content():
    node = Node("a" * 16, "b" * 16, "generated", (5, 9), "hi", (0.5, 0.125), (((5, 0.5), (2, 0.25)), ((9, 0.125),)),
                {"seed": 1}, ["c" * 16])
    again = Node.from_json(node.to_json())
    assert again == node and again.tokens == (5, 9) and again.top == node.top and again.probs == (0.5, 0.125)
    assert again != Node("a" * 16, "b" * 16, "generated", (5, 9), "hi")
    typed = Node("d" * 16, None, "text", [1, 2, 3], "typed")
    assert typed.probs is None and typed.top is None and typed.prob(0) is None and typed.top_at(0) is None
    assert typed.to_json()["tokens"] == [1, 2, 3] and typed.size == 3
