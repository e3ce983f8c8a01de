"""The bundled demo model (demo-model/): it loads through the normal paths, scores its recorded held-out sample as
recorded, writes English, and the app falls back to it with no Hub."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import is_offline_mode
from safetensors import safe_open

from rwkv_app import RwkvConfig, RwkvForCausalLM, RwkvTokenizer, Rwkv7ForCausalLM
from rwkv_app.errors import InputError
from rwkv_app.services.default_model import DEFAULT_REPO, DEMO7_DIR, DEMO_DIR, best_demo, choose_default_model, is_cached
from rwkv_app.services.manager import ModelManager
from rwkv_app.core.sampling import SamplingSettings
from rwkv_app.train.evaluate import evaluate_text

from .conftest import randomize
from .hub_fixtures import populate_hub_cache

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = DEMO_DIR / "heldout-sample.txt"  # both demos are scored on the same excerpt of Persuasion
BUNDLED = [(DEMO_DIR, RwkvForCausalLM, "rwkv.embeddings.weight"), (DEMO7_DIR, Rwkv7ForCausalLM, "model.embeddings.weight")]
WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")


def english_fraction(text: str) -> float:
    """Share of the whitespace-separated pieces that are words (letters with punctuation around them)."""
    pieces = text.split()
    return sum(bool(WORD.fullmatch(p.strip(".,;:!?\"'()_-"))) for p in pieces) / max(len(pieces), 1)


@pytest.mark.parametrize("folder, _, embeddings", BUNDLED)
def test_demo_folder_is_a_small_hub_checkpoint(folder, _, embeddings):
    files = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "training.json"} <= set(files)
    assert sum(files.values()) < 10.5e6
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        assert weights.get_slice(embeddings).get_dtype() == "F16"


@pytest.mark.parametrize("folder, model_class, _", BUNDLED)
def test_demo_loads_in_float32_and_scores_the_recorded_heldout_loss(folder, model_class, _):
    recorded = json.loads((folder / "heldout-sample.json").read_text(encoding="utf-8"))
    model = model_class.from_pretrained(folder)
    tokenizer = RwkvTokenizer.from_pretrained(folder)
    assert model.dtype == torch.float32 and not model.training
    result = evaluate_text(model, tokenizer, SAMPLE.read_text(encoding="utf-8"))
    assert (result.tokens, result.chars) == (recorded["tokens"], recorded["chars"])
    assert result.loss == pytest.approx(recorded["loss"], abs=2e-3)
    assert result.bits_per_char == pytest.approx(recorded["bits_per_char"], abs=1e-3)
    assert result.bits_per_char < 2.5  # the target: well under 3 bits per character on unseen prose


def test_the_two_demos_share_tokenizer_and_the_better_one_is_demo():
    assert (DEMO_DIR / "tokenizer.json").read_bytes() == (DEMO7_DIR / "tokenizer.json").read_bytes()
    scores = {folder: json.loads((folder / "training.json").read_text())["heldout"]["bits_per_char"]
              for folder, *_ in BUNDLED}
    assert best_demo() == min(scores, key=scores.get)


@pytest.mark.parametrize("name, folder", [("demo", best_demo()), ("demo-rwkv4", DEMO_DIR), ("demo-rwkv7", DEMO7_DIR)])
def test_manager_loads_demo_by_name_and_it_writes_english(name, folder):
    manager = ModelManager(presets={}, local_files_only=True)
    with manager.use(name, device="cpu") as loaded:
        assert loaded.key.source == str(folder) and loaded.tokenizer is not None
        settings = SamplingSettings(do_sample=True, temperature=0.8, top_p=0.9, max_new_tokens=60, seed=1)
        text = "".join(event.delta or "" for event in loaded.model.stream_generate(
            "It was a fine morning, and", sampling=settings, tokenizer=loaded.tokenizer))
    assert len(text.split()) >= 20 and english_fraction(text) > 0.8, text


def test_default_choice_names_the_demo_or_passes_through():
    demo = choose_default_model("demo", probe=pytest.fail)
    assert demo.is_demo and demo.source == str(best_demo()) and "demo model" in demo.message
    named = choose_default_model("org/model", probe=pytest.fail)
    assert named.source == "org/model" and not named.is_demo and named.message == ""


def test_default_without_cache_or_hub_is_the_demo(tmp_path):
    choice = choose_default_model(None, cache_dir=tmp_path, probe=lambda timeout: False)
    assert choice.is_demo and choice.source == str(best_demo())
    assert DEFAULT_REPO in choice.message and "demo model" in choice.message


@pytest.mark.skipif(is_offline_mode(), reason="HF_HUB_OFFLINE is set: the Hub is never probed")
def test_default_with_a_reachable_hub_is_the_169m_model(tmp_path):
    asked = []
    choice = choose_default_model(None, cache_dir=tmp_path, probe=lambda timeout: asked.append(timeout) or True)
    assert choice.source == DEFAULT_REPO and not choice.is_demo and asked


def test_default_with_the_169m_model_cached_never_probes(tmp_path):
    folder = tmp_path / "model"
    randomize(RwkvForCausalLM(RwkvConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2))).save_pretrained(folder)
    cache = tmp_path / "cache"
    assert not is_cached(DEFAULT_REPO, cache)
    populate_hub_cache(cache, DEFAULT_REPO, {name: folder / name for name in ("config.json", "model.safetensors")})
    choice = choose_default_model(None, cache_dir=cache, probe=pytest.fail)
    assert choice.source == DEFAULT_REPO and not choice.is_demo and "cache" in choice.message


def test_app_starts_offline_with_an_empty_cache_on_the_demo_model(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "empty-cache"), HF_HOME=str(tmp_path))
    done = subprocess.run([sys.executable, str(ROOT / "app.py"), "--prompt", "She was", "--max-new-tokens", "24"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "demo model" in lines[0] and "HF_HUB_OFFLINE" in lines[0]
    completion = done.stdout.split("She was", 1)[1]
    assert len(completion.split()) >= 5 and english_fraction(completion) > 0.8, done.stdout


def test_demo_names_pick_the_bundled_models(tmp_path):
    from rwkv_app.services.default_model import resolve_demo

    assert resolve_demo("demo-rwkv4") == str(DEMO_DIR) and resolve_demo("org/model") == "org/model"
    assert resolve_demo("demo-rwkv7") == str(DEMO7_DIR)
    assert resolve_demo("demo") == str(best_demo())
    folders = []
    for name, bits in (("a", 1.6), ("b", 1.5), ("c", None)):
        folder = tmp_path / name
        folder.mkdir()
        if bits is not None:
            (folder / "training.json").write_text(json.dumps({"heldout": {"bits_per_char": bits}}))
        folders.append(folder)
    assert best_demo(tuple(folders)) == folders[1]  # the lower held-out bits per character
    assert best_demo((folders[2], tmp_path / "absent")) == folders[2]  # nothing scored: the first
    assert choose_default_model("demo-rwkv4").source == str(DEMO_DIR)


def test_both_bundled_demos_are_on_offer_and_switchable(tmp_path):
    """A visitor sees both demos by name (with their parameter counts) and switches to either with no network."""
    from .app_helpers import tiny_playground, write_tiny_model

    playground = tiny_playground(write_tiny_model(tmp_path / "model"))
    try:
        rows = {row["name"]: row for row in playground.model_table()}
        assert rows["demo"]["params"] == 4525824 and rows["demo-rwkv4"]["params"] == 4468736
        assert {"demo", "demo-rwkv4"} <= set(playground.model_choices())
        with pytest.raises(InputError, match=r"choose one of the presets or demos \(.*demo-rwkv4"):
            playground.check_source("someone/x")  # the refusal names what can be loaded, demos included
        session = playground.new_session()
        session.switch_model("demo-rwkv4")
        assert list(session.generate("It was", "balanced", 4, 1))[-1]
        session.close()
    finally:
        playground.close()
