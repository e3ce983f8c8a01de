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
