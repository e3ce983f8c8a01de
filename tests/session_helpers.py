"""Shared by the session tests: a tiny model with the test tokenizer, and the exactness checks."""
import torch

from rwkv_app import RwkvForCausalLM, SamplingSettings
from rwkv_app.state_tree import SessionTree, StateBudget

from .conftest import randomize, tiny_config
from .test_tokenizer import build_tokenizer

TOL = 1e-5  # float32: resumed logits vs the whole path run from the root in one forward


def tiny_model(seed: int = 0, vocab_size: int = 400, **overrides) -> RwkvForCausalLM:
    torch.manual_seed(seed)
    return randomize(RwkvForCausalLM(tiny_config(vocab_size=vocab_size, **overrides)), seed).eval()


def tiny_tree(seed: int = 0, budget: StateBudget | None = None, **kwargs) -> SessionTree:
    tokenizer = build_tokenizer()
    return SessionTree(tiny_model(seed), tokenizer, model_id=kwargs.pop("model_id", "tiny"), budget=budget, **kwargs)


def sampled(seed: int, max_new_tokens: int = 8, **changes) -> SamplingSettings:
    values = dict(do_sample=True, temperature=1.2, top_k=50, seed=seed, max_new_tokens=max_new_tokens)
    return SamplingSettings(**{**values, **changes})


def run(gen) -> list:
    """Drain an operation's stream; the last item is its Change."""
    return list(gen)


@torch.no_grad()
def whole_path(tree: SessionTree, tokens: list[int]):
    """The last logits (V,) and the state after `tokens` run from the empty state in ONE forward."""
    out = tree.model(torch.tensor([tokens]), use_cache=True)
    return out.logits[0, -1], out.state


@torch.no_grad()
def assert_resumes_exactly(tree: SessionTree, node_id: str, tokens: list[int] | None = None) -> None:
    """The node's state and logits equal the whole path's, and one more token from either agrees too."""
    tokens = tree.path_tokens(node_id) if tokens is None else tokens
    state, logits = tree.state_at(node_id)
    expected_logits, expected_state = whole_path(tree, tokens)
    torch.testing.assert_close(logits, expected_logits, atol=TOL, rtol=0)
    for mine, reference in zip(state, expected_state):
        torch.testing.assert_close(mine, reference, atol=TOL, rtol=TOL)
    probe = torch.tensor([[tokens[-1]]])
    resumed = tree.model(probe, state=state).logits[0, -1]
    reference = tree.model(probe, state=expected_state).logits[0, -1]
    torch.testing.assert_close(resumed, reference, atol=TOL, rtol=0)
