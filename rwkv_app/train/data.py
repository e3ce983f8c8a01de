"""Training data: a byte-level BPE tokenizer trained on the corpus, token ids, random windows, the held-out split.

Documents in a corpus file are separated by `<|endoftext|>` (token id 0, as in the Pile's GPT-NeoX tokenizer);
the ids of consecutive documents are joined with that token between them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ..tokenizers.tokenizer import EOS_TOKEN, RwkvTokenizer

EOS_ID = 0


def split_documents(text: str) -> list[str]:
    """The corpus's documents, without the `<|endoftext|>` separators and the newlines around them."""
    return [doc.strip("\n") for doc in text.split(EOS_TOKEN) if doc.strip()]


def train_tokenizer(documents: list[str], vocab_size: int) -> RwkvTokenizer:
    """Byte-level BPE like GPT-NeoX's: all 256 bytes are tokens, so any text encodes; `<|endoftext|>` is id 0."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS_TOKEN], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(documents, trainer)
    return RwkvTokenizer(backend, "trained")  # the first special token gets id 0: EOS_ID


def encode_documents(tokenizer: RwkvTokenizer, documents: list[str]) -> torch.Tensor:
    """(N,) int64: the documents' ids joined by the end-of-text token."""
    ids: list[int] = []
    for index, encoding in enumerate(tokenizer.backend.encode_batch(documents, add_special_tokens=False)):
        if index:
            ids.append(EOS_ID)
        ids.extend(encoding.ids)
    return torch.tensor(ids, dtype=torch.long)


def split_heldout(documents: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """Hold out the last `fraction` of the text, cut at a paragraph boundary; training never sees it."""
    text = f"\n{EOS_TOKEN}\n".join(documents)
    cut = text.rfind("\n\n", 0, int(len(text) * (1 - fraction)))
    if not 0 < fraction < 1 or cut <= 0:
        raise ValueError(f"cannot hold out {fraction:.0%} of a {len(text)}-character corpus at a paragraph break")
    return split_documents(text[:cut]), split_documents(text[cut:])


@dataclass
class TokenData:
    """The training and held-out token ids."""

    train: torch.Tensor  # (N,) int64
    heldout: torch.Tensor  # (M,) int64

    def __post_init__(self) -> None:
        if self.train.numel() < 2 or self.heldout.numel() < 2:
            raise ValueError(f"too little text: {self.train.numel()} training and {self.heldout.numel()} held-out "
                             "tokens; give at least a few hundred characters of each")


def prepare(tokenizer: RwkvTokenizer, train_docs: list[str], heldout_docs: list[str]) -> TokenData:
    return TokenData(encode_documents(tokenizer, train_docs), encode_documents(tokenizer, heldout_docs))


def random_windows(ids: torch.Tensor, batch_size: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """(B, length) windows starting at random positions (drawn from `generator`, so a resume can replay them)."""
    length = min(length, ids.numel())
    starts = torch.randint(0, ids.numel() - length + 1, (batch_size,), generator=generator)  # (B,)
    offsets = torch.arange(length)  # (L,)
    return ids[starts[:, None] + offsets]  # (B, L)
