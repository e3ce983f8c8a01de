"""Shared fixtures (and the int8 kernel's build before the run): tiny random configs and models, the kernel-impl
override, the conversation and session-store tests' models and stores (a real redis-server), and the browser tests'
app, Chromium and page (those import gradio and playwright only when a browser test asks: the GPU check runs without
them)."""
import pytest
import torch

from kernels import int8_cpu, wkv_loops
from rwkv_app import RwkvConfig, RwkvForCausalLM


def pytest_sessionstart(session) -> None:
    """Build kernels/int8_cpu and kernels/wkv_loops before any test (once per machine, then cached), so that an app a
    test starts in a subprocess, with its own startup deadline, finds them built."""
    int8_cpu.load()
    wkv_loops.load()


def tiny_config(**overrides) -> RwkvConfig:
    values = dict(vocab_size=97, hidden_size=32, num_hidden_layers=4, context_length=64, rescale_every=2)
    values.update(overrides)
    return RwkvConfig(**values)


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights with realistic scales; time parameters perturbed so no structure hides a bug."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        if name.endswith("time_decay"):
            param.copy_(noise * 2.0)  # decays from very fast to very slow
        elif name.endswith("time_first"):
            param.copy_(noise)
        elif "time_mix" in name:
            param.copy_(torch.rand(param.shape, generator=generator))
        elif name.endswith("embeddings.weight"):
            param.copy_(noise)
        elif "ln" in name.split(".")[-2]:
            param.copy_(1.0 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
        else:
            param.copy_(noise / param.shape[-1] ** 0.5)
    return model


@pytest.fixture
def tiny_lm():
    """A factory: tiny_lm(**config_overrides) -> eval-mode RwkvForCausalLM with random weights."""
    def build(seed: int = 0, **overrides) -> RwkvForCausalLM:
        torch.manual_seed(seed)
        return randomize(RwkvForCausalLM(tiny_config(**overrides)), seed).eval()
    return build


@pytest.fixture(scope="module")
def app():
    """The bundled demo model served for one browser test module: (url, playground). A module serving another
    model defines its own `app`."""
    from .browser_helpers import served_app

    with served_app() as served:
        yield served


@pytest.fixture(scope="module")
def browser():
    from .browser_helpers import chromium

    with chromium() as b:
        yield b


@pytest.fixture
def page(app, browser):
    """A fresh visitor at 1366x900; no error toast may have shown by the end of the test."""
    from .browser_helpers import open_page

    tab = open_page(browser, app[0])
    yield tab
    assert tab.locator(".toast-body.error").count() == 0, "an error toast was shown"
    tab.close()


# ---- conversations and session stores (test_conversations.py, test_conversation_names.py, test_session_stores.py)
@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Two tiny models of different widths, written once per module."""
    from .app_helpers import write_tiny_model

    root = tmp_path_factory.mktemp("conv")
    return write_tiny_model(root / "tiny-a", seed=1), write_tiny_model(root / "tiny-b", seed=2, hidden_size=24)


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A redis-server for the test module that asks for it: its URL (database 0)."""
    from .store_helpers import redis_server

    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["sqlite", "redis"])
def store_spec(request, data_dir):
    """The store both backends are tested on: a data folder, or an emptied Redis database."""
    if request.param == "sqlite":
        return str(data_dir)
    import redis

    url = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).flushdb()
    return url
