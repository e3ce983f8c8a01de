"""The checkpoint's tokenizer (`tokenizer.json`; GPT-NeoX 20B for the Pile models) and a streaming detokenizer.

`RwkvTokenizer` is also the interface of the World tokenizer (world_tokenizer.py, RWKV-7's): the subclass
overrides the backend hooks `encode`, `decode_unchecked`, `token_texts` and `fingerprint`; everything else
(the HF call shape, id checks, streaming, the chat and penalty helpers) is shared.

`tokenizer("text", return_tensors="pt")["input_ids"]` is shaped as in Hugging Face. `StreamDecoder` turns
token ids into text one at a time and only ever hands out complete characters: with byte-level BPE one
character can span several tokens, and decoding those tokens alone gives U+FFFD.
"""
from __future__ import annotations

import hashlib
import json
import operator
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from tokenizers import Tokenizer

from ..errors import CheckpointError, InputError, check_token_range

TOKENIZER_FILE = "tokenizer.json"
EOS_TOKEN = "<|endoftext|>"
REPLACEMENT = "\ufffd"  # what a decoder writes for bytes that are not (yet) a whole UTF-8 character


class TokenizerError(CheckpointError):
    """A tokenizer.json that is missing or cannot be parsed; the message names the file."""


class RwkvTokenizer:
    """A thin wrapper over `tokenizers.Tokenizer` with Hugging Face's call shape and id checks."""

    source: str
    vocab_size: int
    special_ids: frozenset[int]
    eos_token_id: int | None

    def __init__(self, backend: Tokenizer, source: str = "<in memory>"):
        self.backend = backend
        added = backend.get_added_tokens_decoder()
        self._setup(source, backend.get_vocab_size(with_added_tokens=True),
                    frozenset(i for i, token in added.items() if token.special),
                    backend.token_to_id(EOS_TOKEN))  # eos: 0 in the GPT-NeoX tokenizer; None if absent

    def _setup(self, source: str, vocab_size: int, special_ids: frozenset[int], eos_token_id: int | None) -> None:
        """The attributes every backend sets (subclasses call this instead of `__init__`)."""
        self.source = source
        self.vocab_size = vocab_size
        self.special_ids = special_ids
        self.eos_token_id = eos_token_id
        self._exempt: torch.Tensor | None = None
        self._line_break_start: tuple[int, ...] | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> RwkvTokenizer:
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"{path}: tokenizer file not found")
        try:
            backend = Tokenizer.from_file(str(path))
        except Exception as err:  # the Rust side raises a bare Exception for bad JSON or an unknown model
            raise TokenizerError(f"{path}: not a valid tokenizer.json ({err})") from None
        return cls(backend, str(path))

    @classmethod
    def from_pretrained(cls, repo_id_or_path: str | Path, revision: str | None = None, **hub_options) -> RwkvTokenizer:
        """The tokenizer of a checkpoint: a local folder or file, or a Hub repo id (through the Hub cache).

        `tokenizer.json` gives this class; the World vocabulary (RWKV-7's) gives a `WorldTokenizer`: see
        `tokenizer_select` for which checkpoints carry which.
        """
        return cls.select(repo_id_or_path, revision=revision, **hub_options)

    # tokenizer_select.tokenizer_for, set by rwkv_app/tokenizers/__init__.py (which every import of this module
    # runs first): the selector imports this module, so this module does not import it back.
    select: Callable = None

    def __repr__(self) -> str:
        return f"RwkvTokenizer(vocab_size={self.vocab_size}, source={self.source!r})"

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise InputError(f"encode() takes a string, got {type(text).__name__}")
        try:
            return self.backend.encode(text, add_special_tokens=False).ids
        except TypeError:  # the Rust side refuses a str it cannot turn into UTF-8 (a lone surrogate, from JSON)
            check_unicode(text)
            raise

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        """Token ids (a list or a 1-D tensor) -> text. Special tokens are kept unless asked, as in HF."""
        return self.decode_unchecked(self.check_ids(ids), skip_special_tokens)

    def decode_unchecked(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        """`decode` for ids already checked (the streaming decoder's inner loop)."""
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_texts(self) -> list[str]:
        """The text of each id decoded alone (U+FFFD where a token is part of a character)."""
        return self.backend.decode_batch([[i] for i in range(self.vocab_size)], skip_special_tokens=False)

    def fingerprint(self) -> str:
        """sha256 of the tokenizer's canonical JSON (keys sorted): which tokenizer a session file was made with."""
        canonical = json.dumps(json.loads(self.backend.to_str()), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def batch_decode(self, rows: Iterable[Iterable[int]] | torch.Tensor,
                     skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(row, skip_special_tokens) for row in rows]

    def __call__(self, text: str | Sequence[str], return_tensors: str | None = None) -> dict:
        """HF's call: {"input_ids", "attention_mask"}; (1, T) / (B, T) LongTensors with return_tensors="pt"."""
        if return_tensors not in (None, "pt"):
            raise InputError(f"return_tensors must be 'pt' or None, got {return_tensors!r}")
        batch = [text] if isinstance(text, str) else list(text)
        ids = [self.encode(row) for row in batch]
        if return_tensors is None:
            ids = ids[0] if isinstance(text, str) else ids
            ones = [1] * len(ids) if isinstance(text, str) else [[1] * len(row) for row in ids]
            return {"input_ids": ids, "attention_mask": ones}
        if len({len(row) for row in ids}) > 1:
            raise InputError(f"texts encode to different lengths {[len(row) for row in ids]}; RWKV has no padding: "
                             "encode them one at a time, or pass return_tensors=None for lists")
        input_ids = torch.tensor(ids, dtype=torch.long).view(len(ids), -1)  # (B, T)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}

    def check_ids(self, ids: Iterable[int] | torch.Tensor) -> list[int]:
        """A flat list of ints, each in the vocabulary; otherwise InputError naming the offending id."""
        try:
            ids = [operator.index(t) for t in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
        except TypeError:
            raise InputError(f"token ids must be a flat sequence of integers, got {ids!r:.80}") from None
        check_token_range(ids, self.vocab_size, f"the ids for {self.source}")
        return ids

    def stream_decoder(self, skip_special_tokens: bool = False) -> StreamDecoder:
        return StreamDecoder(self, skip_special_tokens)

    def line_break_start_ids(self) -> tuple[int, ...]:
        """Ids whose text starts with a line break: a chat reply must not begin with one (ChatRWKV bans "\\n"
        as a reply's first token, or the model may end its turn at once with an empty reply)."""
        if self._line_break_start is None:
            texts = self.token_texts()
            self._line_break_start = tuple(i for i, t in enumerate(texts) if t.startswith(("\n", "\r")))
        return self._line_break_start

    def penalty_exempt_mask(self, vocab_size: int | None = None) -> torch.Tensor:
        """(V,) bool: tokens whose text is only whitespace and digits, which ChatRWKV's penalties do not count.

        `vocab_size` pads (or trims) to the model's vocabulary; ids past the tokenizer's are not exempt.
        """
        if self._exempt is None:
            texts = self.token_texts()
            self._exempt = torch.tensor([is_exempt_text(t) for t in texts], dtype=torch.bool)  # (V_tok,)
        size = self.vocab_size if vocab_size is None else vocab_size
        mask = torch.zeros(size, dtype=torch.bool)  # (V,)
        keep = min(size, self.vocab_size)
        mask[:keep] = self._exempt[:keep]
        return mask


def check_unicode(text: str) -> None:
    """InputError for text that is not valid Unicode (a lone UTF-16 surrogate such as "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InputError(f"the text is not valid Unicode: a lone surrogate {text[err.start]!r} at character "
                         f"{err.start}") from None


def is_exempt_text(text: str) -> bool:
    return text != "" and REPLACEMENT not in text and all(ch.isspace() or ch.isdigit() for ch in text)


class StreamDecoder:
    """Incremental detokenizer: `step(id)` returns the text that became complete; `flush()` the rest.

    It decodes a small window: the tokens not yet shown, plus the tokens of the previous piece as left
    context (decoders such as SentencePiece's drop a leading space at the start of a sequence). Text is
    released up to the last complete character; a trailing U+FFFD means an unfinished UTF-8 sequence and
    is held until the next token finishes it (or `flush()` gives up on it). The window restarts whenever
    the decoded text ends cleanly, so the work per token stays constant however long the stream runs.
    """

    MAX_WINDOW = 64  # tokens; only an endless run of unfinished characters reaches it

    def __init__(self, tokenizer: RwkvTokenizer, skip_special_tokens: bool = False):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.window: list[int] = []  # context tokens, then pending tokens
        self.context_len = 0  # how many tokens at the front of `window` are context
        self.context_chars = 0  # len(decode(context))
        self.sent = 0  # characters past the context already handed out

    def step(self, token: int) -> str:
        self.tokenizer.check_ids([token])
        self.window.append(token)
        text = self._decode(self.window)
        stable = len(text.rstrip(REPLACEMENT))
        delta = text[self.context_chars + self.sent:stable]
        self.sent += len(delta)
        if stable == len(text):  # ends on a whole character: restart the window with this piece as context
            self._restart(self.window[self.context_len:])
        elif len(self.window) > self.MAX_WINDOW:
            delta += self._release(text)
        return delta

    def flush(self) -> str:
        """The text still held back (an unfinished character becomes U+FFFD, as in a full decode)."""
        delta = self._release(self._decode(self.window)) if self.window else ""
        self.window, self.context_len, self.context_chars, self.sent = [], 0, 0, 0
        return delta

    def _release(self, text: str) -> str:
        delta = text[self.context_chars + self.sent:]
        self._restart(self.window[self.context_len:])
        return delta

    def _restart(self, context: list[int]) -> None:
        self.window, self.context_len, self.sent = list(context), len(context), 0
        self.context_chars = len(self._decode(context)) if context else 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode_unchecked(ids, self.skip_special_tokens)
