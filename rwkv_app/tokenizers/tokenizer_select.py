"""Which tokenizer a checkpoint carries: its `tokenizer.json` (RWKV-4 Pile: GPT-NeoX) or the World vocabulary.

In order, for a folder: `rwkv_vocab_v20230424.txt` in it -> that World vocabulary; `tokenizer.json` -> that;
a `config.json` with model_type "rwkv7" -> the World vocabulary shipped here. For a BlinkDL `.pth`: a vocabulary
file beside it, else a `tokenizer.json` beside it, else the shipped World vocabulary when the embedding has
World's 65,536 rows (anything else is refused: it needs its own tokenizer.json). A known World RWKV-7 repository
id (BlinkDL/rwkv7-g1, fla-hub/rwkv7-*) gets the shipped vocabulary without a download, so it works offline.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from .tokenizer import TOKENIZER_FILE, RwkvTokenizer, TokenizerError
from .world_tokenizer import EOS_ID, VOCAB_FILE, WORLD_VOCAB_SIZE, WorldTokenizer

# The World-tokenized RWKV-7 repositories; their Pile-trained siblings ("...-pile") carry GPT-NeoX's tokenizer.json.
WORLD_REPOS = re.compile(r"BlinkDL/rwkv7-g1[A-Za-z0-9._-]*|BlinkDL/rwkv-7-world|fla-hub/rwkv7-[A-Za-z0-9._-]+",
                         re.IGNORECASE)
WORLD_MODEL_TYPES = ("rwkv7",)


def is_world_repo(name: str) -> bool:
    return WORLD_REPOS.fullmatch(name) is not None and "pile" not in name.lower()


def tokenizer_for(repo_id_or_path: str | Path, revision: str | None = None, **hub_options) -> RwkvTokenizer:
    """The tokenizer of a local folder or file, or a Hub repo id (through the Hub cache); see the module doc."""
    from ..weights.hub import resolve_model_dir

    text = str(repo_id_or_path)
    if not isinstance(repo_id_or_path, Path) and not Path(os.path.expanduser(text)).exists() and is_world_repo(text):
        return WorldTokenizer()
    return tokenizer_in(resolve_model_dir(repo_id_or_path, revision=revision, **hub_options))


def tokenizer_in(path: Path) -> RwkvTokenizer:
    """The tokenizer of a local checkpoint folder, a `.pth` file, or a tokenizer file itself."""
    if path.is_dir():
        return _from_folder(path)
    if path.name == VOCAB_FILE:
        return WorldTokenizer.from_file(path)
    if path.suffix in (".pth", ".pt"):
        return _from_pth(path)
    return RwkvTokenizer.from_file(path)


def _from_folder(directory: Path) -> RwkvTokenizer:
    if (directory / VOCAB_FILE).is_file():
        return WorldTokenizer.from_file(directory / VOCAB_FILE)
    if (directory / TOKENIZER_FILE).is_file() or config_model_type(directory) not in WORLD_MODEL_TYPES:
        return RwkvTokenizer.from_file(directory / TOKENIZER_FILE)  # a missing file is an error naming it
    return WorldTokenizer()


def _from_pth(path: Path) -> RwkvTokenizer:
    if (path.parent / VOCAB_FILE).is_file():
        return WorldTokenizer.from_file(path.parent / VOCAB_FILE)
    if (path.parent / TOKENIZER_FILE).is_file():
        return RwkvTokenizer.from_file(path.parent / TOKENIZER_FILE)
    rows = pth_vocab_rows(path)
    if rows != WORLD_VOCAB_SIZE:
        raise TokenizerError(f"{path}: no {TOKENIZER_FILE} or {VOCAB_FILE} beside it, and its vocabulary of {rows} "
                             f"tokens is not the World tokenizer's {WORLD_VOCAB_SIZE}: put the checkpoint's "
                             f"{TOKENIZER_FILE} beside it")
    return WorldTokenizer()


def config_model_type(directory: Path) -> str | None:
    """config.json's model_type, or None where there is no readable config.json."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config.get("model_type") if isinstance(config, dict) else None


def pth_vocab_rows(path: Path) -> int:
    """Rows of a BlinkDL `.pth`'s `emb.weight`, read through mmap (weights_only: the file runs no code)."""
    try:
        weights = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        return int(weights["emb.weight"].shape[0])
    except Exception as err:  # torch raises many kinds for a file that is not a readable checkpoint
        raise TokenizerError(f"{path}: cannot read the vocabulary size from emb.weight "
                             f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None


def align_eos(model, tokenizer: RwkvTokenizer | None) -> None:
    """Make a World-tokenized model stop on World's `<|endoftext|>` (id 0).

    A BlinkDL `.pth` has no config, and its inferred one already says bos = eos = 0. An fla folder's config.json
    may carry fla's library defaults (bos 1, eos 2), which are not World token ids (World's 1 and 2 are the bytes
    0x00 and 0x01): with the World tokenizer the model's eos becomes 0, so generation ends where the text does.
    Other tokenizers keep the config's eos.
    """
    if isinstance(tokenizer, WorldTokenizer) and model.config.eos_token_id != EOS_ID:
        model.config.eos_token_id = EOS_ID
