"""On a CUDA GPU: a session whose states live on the CPU while the model runs on the GPU (fused decode).

Skipped without a GPU. The tolerance is the fused decode path's float32 one (tests/test_fused_decode.py).
"""
import pytest
import torch

from rwkv_app.state_tree import SessionTree

from .session_helpers import run, sampled, tiny_model
from .test_tokenizer import build_tokenizer

GPU_TOL = dict(rtol=1e-4, atol=1e-4)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_states_on_cpu_model_on_gpu_resume_and_compare():
    model = tiny_model().cuda()
    tree = SessionTree(model, build_tokenizer(), model_id="tiny", state_device="cpu")
    base = tree.extend(tree.root, "The quick brown fox").node
    done = run(tree.compare(base, [sampled(1, 8), sampled(2, 8), sampled(3, 8)]))[-1]
    assert all(t.device.type == "cpu" for kept in tree.store.entries.values() for t in kept.state)
    for seed, node_id in zip((1, 2, 3), done.added):
        alone = run(tree.generate(base, sampled(seed, 8)))[-1].node
        assert tree.node(alone).tokens == tree.node(node_id).tokens
        state, logits = tree.state_at(node_id)
        with torch.no_grad():
            whole = model(torch.tensor([tree.path_tokens(node_id)], device="cuda")).logits[0, -1].cpu()
        torch.testing.assert_close(logits, whole, **GPU_TOL)
        tree.store.drop(node_id)
        torch.testing.assert_close(tree.state_at(node_id)[1], whole, **GPU_TOL)
