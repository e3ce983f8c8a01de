"""RWKV-7 presets: presets/models.yaml's G1 entries validate, and a preset's `filename` fetches that one .pth
of a repo holding several (hf_hub_download, here from an offline cache), pinned at its revision."""
import json
import socket
import subprocess
import sys
import threading

import pytest
import torch

from rwkv_app import ConfigError, HubError, Rwkv7ForCausalLM
from rwkv_app.weights.hub import resolve_model_dir, resolve_model_file
from rwkv_app.services.manager import ModelManager
from rwkv_app.services.model_presets import ModelPreset, load_model_presets
from rwkv_app.tokenizers.world_tokenizer import WorldTokenizer

from .hub_fixtures import hub_env, populate_hub_cache
from .rwkv7_helpers import save_pth, tiny_model7

REPO = "tiny-org/rwkv7-g1"
FILES = ("rwkv7-g1a-tiny-a-ctx4096.pth", "rwkv7-g1a-tiny-b-ctx4096.pth")
COMMIT = "a07c6385ff76e5e5752d8b30b93b011df9ee5515"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A repo of two World-vocabulary RWKV-7 .pth files (bfloat16, as BlinkDL ships them), cached at COMMIT."""
    root = tmp_path_factory.mktemp("g1")
    paths = []
    for seed, name in enumerate(FILES):
        model = tiny_model7(seed=seed, vocab_size=65536, hidden_size=64, num_hidden_layers=2).to(torch.bfloat16)
        paths.append(save_pth(model, root / name))
    populate_hub_cache(root / "cache", REPO, {name: path for name, path in zip(FILES, paths)}, revision=COMMIT)
    return root


def preset(**changes) -> ModelPreset:
    values = dict(name="g1-tiny", repo=REPO, params=1, download_gb=0.01, dtype={"cpu": "float32"}, family="rwkv7",
                  filename=FILES[1], revision=COMMIT, chat=True)
    return ModelPreset(**{**values, **changes})


@torch.no_grad()
def test_a_preset_filename_loads_that_file_at_its_revision(hub):
    manager = ModelManager(cache_dir=hub / "cache", local_files_only=True, presets={"g1-tiny": preset()})
    with manager.use("g1-tiny") as loaded:
        assert loaded.key.filename == FILES[1] and loaded.key.revision == COMMIT
        assert isinstance(loaded.model, Rwkv7ForCausalLM) and isinstance(loaded.tokenizer, WorldTokenizer)
        assert loaded.model.config.eos_token_id == 0
        expected = Rwkv7ForCausalLM.from_pretrained(hub / FILES[1], dtype="float32")
        ids = torch.tensor([[1, 500, 65535]])
        assert torch.equal(loaded.model(ids).logits, expected(ids).logits)
        assert FILES[1] in loaded.key.describe()


def test_the_file_comes_alone_from_the_cache_and_unknown_files_are_named(hub):
    path = resolve_model_file(REPO, FILES[0], revision=COMMIT, cache_dir=hub / "cache", local_files_only=True)
    assert path.name == FILES[0] and COMMIT in str(path)
    with pytest.raises(HubError, match="not in the cache"):
        resolve_model_file(REPO, "rwkv7-g1a-absent.pth", revision=COMMIT, cache_dir=hub / "cache",
                           local_files_only=True)
    with pytest.raises(HubError, match="invalid file name"):
        resolve_model_file(REPO, "../escape.pth", revision=COMMIT, cache_dir=hub / "cache", local_files_only=True)
    with pytest.raises(HubError, match="several .pth"):  # without a filename the repo is ambiguous, as before
        resolve_model_dir(REPO, revision=COMMIT, cache_dir=hub / "cache", local_files_only=True)


def test_models_yaml_offers_the_g1_checkpoints_with_their_files():
    presets = load_model_presets()
    g1 = {name: p for name, p in presets.items() if p.family == "rwkv7"}
    assert sorted(g1) == ["rwkv7-g1a-0.1b", "rwkv7-g1a-0.4b", "rwkv7-g1a-1.5b", "rwkv7-g1a-2.9b"]
    for name, entry in g1.items():
        size = name.rsplit("-", 1)[1]
        assert entry.repo == "BlinkDL/rwkv7-g1" and entry.filename.startswith(f"rwkv7-g1a-{size}-")
        assert entry.filename.endswith("-ctx4096.pth") and len(entry.revision) == 40 and entry.chat
        assert entry.chat_format["user"] == "User: " and entry.chat_format["no_think"] == " <think>\n</think"
    assert all(p.family == "rwkv4" and p.filename is None for p in presets.values() if p not in g1.values())


@pytest.mark.parametrize("line, message", [
    ("family: rwkv5", "family: expected one of rwkv4, rwkv7"),
    ("filename: ../x.pth", "filename: expected a .pth or .safetensors path"),
    ("filename: notes.txt", "filename: expected a .pth or .safetensors path"),
    ("revision: ''", "revision: expected a branch"),
    ("chat_format: {system: 'S: '}", "chat_format: expected"),
])
def test_bad_rwkv7_preset_fields_are_named(tmp_path, line, message):
    path = tmp_path / "models.yaml"
    path.write_text(f"models:\n  m:\n    repo: a/b\n    params: 1\n    download_gb: 1\n    {line}\n")
    with pytest.raises(ConfigError, match=message):
        load_model_presets(path)


FILE_SCRIPT = """
import json, sys
from rwkv_app.errors import HubError
from rwkv_app.weights.hub import resolve_model_file
results = []
for name in json.loads(sys.argv[1]):
    try:
        results.append(str(resolve_model_file("%s", name, revision="%s")))
    except HubError as err:
        results.append(str(err))
print(json.dumps(results))
""" % (REPO, COMMIT)


def test_an_unreachable_hub_is_asked_once_per_file(hub):
    """A preset's .pth with no network: one request to the Hub, then the cache (or a clear error), instead of
    hf_hub_download's five retries (~25 s a file, what a visitor waited behind "download: 0.0%")."""
    connections, server = [], socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)

    def refuse() -> None:  # accept and hang up at once: each connection attempt counts
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            connections.append(1)
            conn.close()
    threading.Thread(target=refuse, daemon=True).start()
    env = hub_env(hub / "cache", hub / "home", offline=False, endpoint=f"http://127.0.0.1:{server.getsockname()[1]}")
    (hub / "home").mkdir(exist_ok=True)
    done = subprocess.run([sys.executable, "-c", FILE_SCRIPT, json.dumps([FILES[1], "rwkv7-g1a-absent.pth"])],
                          env=env, capture_output=True, text=True, timeout=300)
    server.close()
    cached, absent = json.loads(done.stdout.strip().splitlines()[-1])
    assert cached.endswith(FILES[1]) and absent.startswith("could not reach the Hugging Face Hub"), done.stderr
    assert len(connections) <= 4, f"{len(connections)} connections for 2 files"  # before: 6 a file
