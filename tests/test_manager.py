"""The model manager with tiny models saved in a local Hub cache (local_files_only: no network)."""
import threading

import pytest
import torch

from rwkv_app import HubError, RwkvConfig, RwkvForCausalLM
from rwkv_app.services.manager import MemoryBudgetError, ModelManager, estimate_bytes
from rwkv_app.services.model_presets import ModelPreset

from .conftest import randomize
from .hub_fixtures import populate_hub_cache

CONFIG = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, context_length=64)
REPOS = ["tiny-org/rwkv-a", "tiny-org/rwkv-b", "tiny-org/rwkv-c"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """Three tiny models in a Hub cache, one also as a plain local directory."""
    root = tmp_path_factory.mktemp("manager")
    for seed, repo in enumerate(REPOS):
        model = randomize(RwkvForCausalLM(RwkvConfig(**CONFIG)), seed)
        folder = root / repo.replace("/", "_")
        model.save_pretrained(folder)
        populate_hub_cache(root / "cache", repo, {name: folder / name for name in ("config.json", "model.safetensors")})
    return root


def manager_for(hub, budget_models: float | None = None, **kwargs) -> ModelManager:
    one_model = estimate_bytes(hub / "tiny-org_rwkv-a", torch.float32)
    presets = {"tiny": ModelPreset(name="tiny", repo=REPOS[0], params=1, download_gb=0.001, dtype={"cpu": "float32"})}
    budget = None if budget_models is None else int(one_model * budget_models)
    return ModelManager(budget_bytes=budget, cache_dir=hub / "cache", local_files_only=True, presets=presets, **kwargs)


def test_loads_by_preset_name_repo_id_and_local_path(hub):
    manager = manager_for(hub)
    stages = []
    with manager.use("tiny", progress=lambda stage, fraction, detail: stages.append(stage)) as by_preset:
        assert by_preset.key.source == REPOS[0] and by_preset.model.dtype == torch.float32
        assert by_preset.preset.name == "tiny"
    assert stages[0] == "download" and stages[-1] == "ready" and "load" in stages
    with manager.use(REPOS[0]) as by_repo:
        assert by_repo is by_preset  # same key: loaded once, shared
    with manager.use(str(hub / "tiny-org_rwkv-b"), dtype="bfloat16") as by_path:
        assert by_path.model.dtype == torch.bfloat16
    assert manager.loads == 2


def test_least_recently_used_idle_model_is_evicted(hub):
    clock = iter(range(1000))
    manager = manager_for(hub, budget_models=2.5, clock=lambda: next(clock))
    for repo in REPOS[:2]:
        with manager.use(repo):
            pass
    with manager.use(REPOS[0]):  # a is now more recent than b
        pass
    with manager.use(REPOS[2]):
        sources = {entry["source"] for entry in manager.loaded()}
    assert sources == {REPOS[0], REPOS[2]}
    assert manager.bytes_in_use() <= manager.budget_bytes


def test_a_model_in_use_is_not_evicted_and_the_error_is_clear(hub):
    manager = manager_for(hub, budget_models=1.5)
    with manager.use(REPOS[0]) as held:
        with pytest.raises(MemoryBudgetError, match="models in use"):
            manager.acquire(REPOS[1])
        assert held.model(torch.tensor([[1, 2]])).logits.shape == (1, 2, 64)  # still there, still works
    with manager.use(REPOS[1]):  # once released, it can be evicted to make room
        assert [entry["source"] for entry in manager.loaded()] == [REPOS[1]]


def test_model_larger_than_the_budget_is_refused(hub):
    manager = manager_for(hub, budget_models=0.5)
    with pytest.raises(MemoryBudgetError, match="more than the whole memory budget"):
        manager.acquire(REPOS[0])
    assert manager.loaded() == []


def test_concurrent_requests_for_one_model_load_it_once(hub):
    manager = manager_for(hub)
    results, errors = [], []
    barrier = threading.Barrier(6)

    def ask():
        barrier.wait()
        try:
            results.append(manager.acquire(REPOS[1]))
        except Exception as err:  # surfaced by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and manager.loads == 1
    assert all(result is results[0] for result in results) and results[0].users == 6


def test_failures_leave_the_manager_usable(hub):
    manager = manager_for(hub)
    with pytest.raises(HubError, match="tiny-org/never-cached"):
        manager.acquire("tiny-org/never-cached")
    with pytest.raises(HubError):  # a second try fails the same way, it is not stuck "loading"
        manager.acquire("tiny-org/never-cached")
    with manager.use(REPOS[2]) as loaded:
        assert loaded.model.config.hidden_size == 16
    with pytest.raises(Exception, match="dtype"):
        manager.acquire(REPOS[2], dtype="int4")  # int8 is a supported dtype (tests/test_quantize.py)
