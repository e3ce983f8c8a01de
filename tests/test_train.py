"""`python -m rwkv_app.train` on a tiny corpus: the loss goes down, a resumed run replays the uninterrupted one
exactly, and the output folder loads like a Hub checkpoint."""
import json
import random

import pytest
import torch

from safetensors.torch import load_file

from rwkv_app import Rwkv7ForCausalLM, RwkvForCausalLM, RwkvTokenizer, from_pretrained
from rwkv_app.errors import ConfigError
from rwkv_app.train.evaluate import main as evaluate_main
from rwkv_app.train.families import decays
from rwkv_app.train.families import new_model as new_family_model
from rwkv_app.train.loop import TrainConfig, Trainer, fit
from rwkv_app.train.__main__ import main as train_main
from rwkv_app.train.data import EOS_ID, random_windows, split_heldout
from rwkv_app.train.loop import learning_rate

NAMES = ["Anne", "Elizabeth", "Mr. Darcy", "Emma", "Captain Wentworth", "Mrs. Smith", "Lady Russell"]
VERBS = ["walked to", "wrote to", "thought of", "spoke with", "laughed at", "waited for", "looked at"]
PLACES = ["the garden", "Bath", "the park", "the house", "Lyme", "the library", "the village"]


def tiny_corpus(seed: int = 0, sentences: int = 900) -> str:
    """Simple, learnable English: template sentences in paragraphs, two documents."""
    rng = random.Random(seed)
    lines = [f"{rng.choice(NAMES)} {rng.choice(VERBS)} {rng.choice(NAMES)} in {rng.choice(PLACES)}."
             for _ in range(sentences)]
    paragraphs = [" ".join(lines[i:i + 5]) for i in range(0, len(lines), 5)]
    half = len(paragraphs) // 2
    return "\n\n".join(paragraphs[:half]) + "\n<|endoftext|>\n" + "\n\n".join(paragraphs[half:]) + "\n"


def tiny_config(tmp_path, name: str, **overrides) -> TrainConfig:
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(tiny_corpus(), encoding="utf-8")
    values = dict(text=str(corpus), out=str(tmp_path / name), heldout_fraction=0.1, vocab_size=300, num_layers=2,
                  hidden_size=32, context=32, batch_size=4, steps=8, warmup=2, lr=3e-3, eval_every=4,
                  eval_tokens=256, checkpoint_every=100, progress=False)
    values.update(overrides)
    return TrainConfig(**values)


def test_schedule_warms_up_then_decays_to_min_lr(tmp_path):
    config = tiny_config(tmp_path, "lr", steps=100, warmup=10, lr=1e-3, min_lr=1e-4)
    rates = [learning_rate(config, step) for step in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:])) and rates[-1] == pytest.approx(1e-4, rel=0.01)


def test_heldout_split_and_windows():
    documents = ["one\n\ntwo\n\nthree", "four\n\nfive\n\nsix\n\nseven"]
    train, heldout = split_heldout(documents, 0.3)
    assert heldout and "seven" in heldout[-1] and "seven" not in "".join(train)
    ids = torch.arange(50)
    windows = random_windows(ids, 3, 10, torch.Generator().manual_seed(0))  # (3, 10)
    assert windows.shape == (3, 10) and bool((windows[:, 1:] - windows[:, :-1] == 1).all())


def test_training_lowers_the_loss_and_exports_a_hub_checkpoint(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, "run", steps=40, eval_every=20, eval_tokens=2048))
    before = trainer.evaluate(2048).loss
    result = fit(trainer)
    assert sum(trainer.losses[-5:]) / 5 < sum(trainer.losses[:5]) / 5 - 0.5
    assert result["heldout"]["loss"] < before - 0.5 and result["steps"] == 40
    out = tmp_path / "run"
    model = RwkvForCausalLM.from_pretrained(out)  # config.json + model.safetensors (float16) -> float32
    tokenizer = RwkvTokenizer.from_pretrained(out)
    assert model.dtype == torch.float32 and tokenizer.eos_token_id == EOS_ID
    assert json.loads((out / "training.json").read_text())["heldout"] == result["heldout"]
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 2


def test_resume_replays_the_uninterrupted_run_exactly(tmp_path):
    whole = Trainer(tiny_config(tmp_path, "whole"))
    fit(whole)
    first = Trainer(tiny_config(tmp_path, "split", stop_after=3))
    assert fit(first) is None and first.step == 3
    assert first.losses == whole.losses[:3]
    resumed = Trainer.resume(tmp_path / "split", progress=False)
    assert resumed.step == 3 and resumed.history == first.history
    fit(resumed)
    assert resumed.losses == whole.losses[3:]  # same batches, learning rates and optimizer state: same losses
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_cli_trains_and_refuses_to_overwrite_a_run(tmp_path, capsys):
    config = tiny_config(tmp_path, "cli")
    argv = ["--text", config.text, "--out", config.out, "--vocab-size", "300", "--num-layers", "1",
            "--hidden-size", "16", "--context", "16", "--batch-size", "2", "--steps", "3", "--warmup", "1",
            "--eval-every", "3", "--eval-tokens", "64", "--heldout-fraction", "0.1", "--no-progress"]
    assert train_main(argv) == 0
    assert "bits/char" in capsys.readouterr().out
    assert train_main(argv) == 2
    assert "--resume" in capsys.readouterr().err


def test_rwkv7_family_trains_exports_and_resumes_exactly(tmp_path):
    rwkv7 = dict(family="rwkv7", hidden_size=64, tie_embeddings=True)  # one head of 64
    trainer = Trainer(tiny_config(tmp_path, "r7", steps=30, eval_every=15, eval_tokens=1024, lr=5e-3, **rwkv7))
    before = trainer.evaluate(1024).loss
    result = fit(trainer)
    assert result["heldout"]["loss"] < before - 0.5
    model = from_pretrained(tmp_path / "r7")
    assert isinstance(model, Rwkv7ForCausalLM) and model.config.tie_word_embeddings
    assert not any(".lm_head" in key or key == "lm_head.weight" for key in load_file(str(tmp_path / "r7" /
                                                                                          "model.safetensors")))
    whole = Trainer(tiny_config(tmp_path, "r7whole", **rwkv7))
    fit(whole)
    first = Trainer(tiny_config(tmp_path, "r7split", stop_after=3, **rwkv7))
    assert fit(first) is None
    resumed = Trainer.resume(tmp_path / "r7split", progress=False)
    assert resumed.config.family == "rwkv7" and isinstance(resumed.model, Rwkv7ForCausalLM)
    fit(resumed)
    assert first.losses + resumed.losses == whole.losses


def test_rwkv7_weight_decay_skips_mixes_biases_and_embeddings():
    model = new_family_model("rwkv7", 300, 64, 2, 16, tie_embeddings=False)
    decayed = {name for name, p in model.named_parameters() if decays("rwkv7", name, p)}
    assert "model.layers.0.attn.r_proj.weight" in decayed and "lm_head.weight" in decayed
    assert "model.layers.1.attn.w_lora.lora.0.weight" in decayed
    for name in ("model.layers.0.attn.x_r", "model.layers.0.attn.r_k", "model.embeddings.weight",
                 "model.layers.0.attn.w_lora.lora.2.bias", "model.layers.0.attn_norm.weight"):
        assert name not in decayed
    zeroed = ("o_proj.weight", "ffn.value.weight")  # each block starts as the identity
    assert all(p.abs().sum() == 0 for n, p in model.named_parameters() if n.endswith(zeroed))


def test_cli_family_flag(tmp_path, capsys):
    config = tiny_config(tmp_path, "cli7")
    argv = ["--family", "rwkv7", "--text", config.text, "--out", config.out, "--vocab-size", "300",
            "--num-layers", "1", "--hidden-size", "64", "--context", "16", "--batch-size", "2", "--steps", "2",
            "--warmup", "1", "--eval-every", "2", "--eval-tokens", "64", "--heldout-fraction", "0.1",
            "--no-progress"]
    assert train_main(argv) == 0
    assert json.loads((tmp_path / "cli7" / "config.json").read_text())["model_type"] == "rwkv7"
    capsys.readouterr()
    assert evaluate_main(["--model", config.out, "--text", config.text]) == 0  # scores either family
    assert json.loads(capsys.readouterr().out)["bits_per_char"] > 0
    with pytest.raises(SystemExit):
        train_main(["--family", "rwkv5", "--text", config.text, "--out", str(tmp_path / "x")])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown model family 'gpt'"):
        TrainConfig(text="", out="", family="gpt")
