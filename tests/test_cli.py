"""`python -m rwkv_app generate`: loads through the manager, streams to stdout, errors on stderr with exit 2."""
import io

import pytest

from rwkv_app import RwkvConfig, RwkvForCausalLM
from rwkv_app.cli import main

from .conftest import randomize
from .test_tokenizer import build_backend


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cli") / "tiny"
    backend = build_backend(vocab_size=400)
    model = randomize(RwkvForCausalLM(RwkvConfig(vocab_size=backend.get_vocab_size(), hidden_size=16,
                                                 num_hidden_layers=2)), 1)
    model.save_pretrained(directory)
    backend.save(str(directory / "tokenizer.json"))
    return directory


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_streams_the_completion_after_the_prompt(model_dir):
    code, out, err = run("generate", "--model", str(model_dir), "--prompt", "Hello", "--max-new-tokens", "12",
                         "--seed", "5")
    assert code == 0 and out.startswith("Hello") and len(out) > len("Hello\n")
    assert "[ready" in err and "12 tokens" in err and "seed 5" in err
    assert "fetching" not in err  # a local folder is read, not downloaded (it said "[download 0.0%] fetching /...")
    again = run("generate", "--model", str(model_dir), "--prompt", "Hello", "--max-new-tokens", "12", "--seed", "5")
    assert again[1] == out  # same seed, same text


def test_greedy_flag_and_preset_file(model_dir, tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text("do_sample: true\ntemperature: 2.0\nmax_new_tokens: 6\n")
    code, out, err = run("generate", "--model", str(model_dir), "--prompt", "a", "--preset", str(preset), "--greedy")
    assert code == 0 and "6 tokens" in err


@pytest.mark.parametrize("argv, message", [
    (["--temperature", "-1"], "temperature"),
    (["--preset", "no-such-preset"], "unknown sampling preset"),
])
def test_bad_settings_are_named(model_dir, argv, message):
    code, out, err = run("generate", "--model", str(model_dir), "--prompt", "a", *argv)
    assert code == 2 and message in err and out == ""


def test_missing_model_is_a_clear_error(tmp_path):
    code, _, err = run("generate", "--model", str(tmp_path / "absent"), "--prompt", "a")
    assert code == 2 and "no such local" in err


def test_a_mistyped_model_name_lists_the_presets_and_demos():
    """A walkthrough: `--model rwkv-4-169m` (the preset is rwkv-4-169m-pile) said only "neither an existing local
    path nor a Hub repo id of the form 'org/name'", after a "fetching" line, so the names one can type stayed
    unknown."""
    code, out, err = run("generate", "--model", "rwkv-4-169m", "--prompt", "Hello")
    assert code == 2 and out == "" and "fetching" not in err
    assert "unknown model 'rwkv-4-169m'" in err and "rwkv-4-169m-pile" in err and "demo-rwkv4" in err
