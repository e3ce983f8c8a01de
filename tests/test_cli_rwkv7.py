"""`python -m rwkv_app generate` on an RWKV-7 `.pth` lying anywhere (bundled World tokenizer; a vocabulary file
beside it wins), `--state FILE` for both families, and World's eos for fla folders that carry fla's defaults."""
import io
import shutil

import pytest
import torch

from rwkv_app.cli import main
from rwkv_app.services.manager import ModelManager, load_tokenizer
from rwkv_app.models.state_files import save_state_file
from rwkv_app.tokenizers.world_tokenizer import SHIPPED_VOCAB, VOCAB_FILE, WorldTokenizer

from .rwkv7_helpers import save_pth, tiny_model7
from .test_cli import model_dir  # noqa: F401  (the RWKV-4 fixture)
from .test_rwkv7_loading import write_fla_folder

WORLD = dict(vocab_size=65536, hidden_size=64, num_hidden_layers=2)  # World's vocabulary, one head of 64


@pytest.fixture(scope="module")
def world_pth(tmp_path_factory):
    model = tiny_model7(seed=4, **WORLD)
    return model, save_pth(model, tmp_path_factory.mktemp("anywhere") / "rwkv7-tiny-world.pth")


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def greedy(path, *extra):
    return run("generate", "--model", str(path), "--prompt", "Hello there", "--greedy", "--max-new-tokens", "8",
               *extra)


@torch.no_grad()
def test_generate_on_an_rwkv7_pth_uses_the_world_tokenizer(world_pth):
    model, pth = world_pth
    code, out, err = greedy(pth)
    assert code == 0, err
    tokenizer = WorldTokenizer()
    ids = model.generate(torch.tensor([tokenizer.encode("Hello there")]), max_new_tokens=8, do_sample=False)
    assert out == tokenizer.decode(ids[0].tolist()) + "\n"  # the prompt, then exactly the model's greedy tokens


def test_a_vocabulary_file_beside_the_pth_wins(world_pth, tmp_path):
    model, pth = world_pth
    bundled = load_tokenizer(pth)
    assert isinstance(bundled, WorldTokenizer) and bundled.source == WorldTokenizer().source
    shutil.copy(pth, tmp_path / pth.name)
    swapped = SHIPPED_VOCAB.read_text(encoding="utf-8").replace("300 ' A' 2\n301 ' B' 2\n", "300 ' B' 2\n301 ' A' 2\n")
    (tmp_path / VOCAB_FILE).write_text(swapped, encoding="utf-8")  # a vocabulary of its own: ' A' and ' B' swapped
    beside = load_tokenizer(tmp_path / pth.name)
    assert bundled.encode(" A") == [300] and beside.encode(" A") == [301]


@torch.no_grad()
def test_state_file_starts_rwkv7_generation_from_it(world_pth, tmp_path):
    model, pth = world_pth
    tokenizer = WorldTokenizer()
    state = model(torch.tensor([tokenizer.encode("You are a pirate.\n\n")])).state
    state_file = save_state_file(state, model, tmp_path / "pirate.state", token_shifts=False)
    code, out, err = greedy(pth, "--state", str(state_file))
    assert code == 0, err
    zeroed = [torch.zeros_like(state[0]), torch.zeros_like(state[1]), state[2]]  # the file keeps time_state only
    ids = model.generate(torch.tensor([tokenizer.encode("Hello there")]), max_new_tokens=8, do_sample=False,
                         state=zeroed)
    assert out == tokenizer.decode(ids[0].tolist()) + "\n"
    assert out != greedy(pth)[1]


def test_state_file_for_another_model_is_refused(world_pth, tmp_path):
    other = tiny_model7(seed=1, vocab_size=65536, hidden_size=128, num_hidden_layers=2)
    state_file = save_state_file(other(torch.tensor([[1, 2]])).state, other, tmp_path / "other.safetensors")
    code, out, err = greedy(world_pth[1], "--state", str(state_file))
    assert code == 2 and "does not fit this model" in err and "2 heads but the model has 1" in err


@torch.no_grad()
def test_state_file_on_rwkv4(model_dir, tmp_path):  # noqa: F811
    with ModelManager().use(str(model_dir)) as loaded:
        model, tokenizer = loaded.model, loaded.tokenizer
        state = model(torch.tensor([[5, 6, 7]])).state
        state_file = save_state_file(state, model, tmp_path / "rwkv4.pth")
        prompt = torch.tensor([tokenizer.encode("a")])
        expected = tokenizer.decode(model.generate(prompt, max_new_tokens=4, do_sample=False, state=state)[0].tolist())
        assert not torch.equal(model(prompt, state=state).logits, model(prompt).logits)
    code, out, err = run("generate", "--model", str(model_dir), "--prompt", "a", "--greedy", "--max-new-tokens", "4",
                         "--state", str(state_file))
    assert code == 0 and "4 tokens" in err and out == expected + "\n"


def test_fla_folder_with_fla_default_eos_stops_on_world_eos(tmp_path):
    folder = write_fla_folder(tiny_model7(seed=2, **WORLD), tmp_path / "fla", bos_token_id=1, eos_token_id=2)
    with ModelManager().use(str(folder)) as loaded:
        assert isinstance(loaded.tokenizer, WorldTokenizer)
        assert loaded.model.config.eos_token_id == 0 == loaded.tokenizer.eos_token_id
