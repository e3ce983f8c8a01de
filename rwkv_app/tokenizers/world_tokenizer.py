"""The RWKV "World" tokenizer (`rwkv_vocab_v20230424.txt`) that RWKV-7 checkpoints (and the World RWKV-4/5/6) use.

Tokens are byte strings, and encoding is greedy longest match over the text's UTF-8 bytes, exactly as BlinkDL's
`TRIE_TOKENIZER` (the `rwkv` pip package's rwkv_tokenizer.py). Two encoders give the same ids:
- `WorldVocab.encode_reference`: the obvious longest-match walk in Python, the oracle the tests compare to;
- the fast path: the Rust `pyrwkv-tokenizer` package, used only for the vocabulary this project ships (the one
  the tests verify it on) and only when it is installed; without it the reference runs (about 2 MB/s).
Decoding joins the tokens' bytes and decodes UTF-8 with U+FFFD for what is not (yet) a whole character, so the
shared `StreamDecoder` holds back a character split across tokens until it is complete.
Id 0 is not in the file: it is the end-of-text token (`<|endoftext|>`, special); ids past the file's last are
empty.
"""
from __future__ import annotations

import ast
import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InputError
from .tokenizer import EOS_TOKEN, RwkvTokenizer, TokenizerError, check_unicode

VOCAB_FILE = "rwkv_vocab_v20230424.txt"
SHIPPED_VOCAB = Path(__file__).resolve().parent / "vocab" / VOCAB_FILE
WORLD_VOCAB_SIZE = 65536  # the embedding rows of every World checkpoint; the file fills ids 1..65529
EOS_ID = 0
IMPLS = ("auto", "reference", "rust")


@dataclass(eq=False)
class WorldVocab:
    """The parsed vocabulary: `tokens[id]` is the token's bytes (b"" for id 0 and unused ids)."""

    tokens: list[bytes]
    source: str
    ids: dict[bytes, int] = field(init=False, repr=False)

    def __post_init__(self):
        self.ids = {token: i for i, token in enumerate(self.tokens) if token}

    @classmethod
    def from_file(cls, path: str | Path) -> WorldVocab:
        """Parse `id repr(token) length` lines; the shipped vocabulary's object when the content is the same."""
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"{path}: vocabulary file not found")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise TokenizerError(f"{path}: cannot read the vocabulary ({err})") from None
        entries = dict(parse_vocab_line(line, number, path) for number, line in enumerate(lines, 1) if line.strip())
        if not entries:
            raise TokenizerError(f"{path}: the vocabulary file is empty")
        if len(set(entries.values())) != len(entries):
            raise TokenizerError(f"{path}: two ids share the same token bytes")
        tokens = [b""] * max(WORLD_VOCAB_SIZE, max(entries) + 1)
        for i, token in entries.items():
            tokens[i] = token
        vocab = cls(tokens, str(path))
        if path.resolve() != SHIPPED_VOCAB and vocab.fingerprint == shipped_vocab().fingerprint:
            return shipped_vocab()  # the same content (line endings aside): share it and its fast encoder
        return vocab

    @functools.cached_property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(b"rwkv-world-vocab\n")
        for i, token in enumerate(self.tokens):
            digest.update(b"%d %d:" % (i, len(token)) + token)
        return digest.hexdigest()

    @functools.cached_property
    def prefixes(self) -> dict[bytes, int]:
        """Every prefix of every token -> its id, or -1 for a prefix that is not itself a token."""
        table: dict[bytes, int] = {}
        for token in self.ids:
            for end in range(1, len(token)):
                table.setdefault(token[:end], -1)
        table.update(self.ids)
        return table

    def encode_reference(self, data: bytes) -> list[int]:
        """Greedy longest match: at each position the longest token that the bytes start with."""
        prefixes, ids, pos = self.prefixes, [], 0
        while pos < len(data):
            best, best_end, end = -1, pos, pos + 1
            while end <= len(data) and (found := prefixes.get(data[pos:end])) is not None:
                if found >= 0:
                    best, best_end = found, end
                end += 1
            if best < 0:
                raise TokenizerError(f"{self.source}: no token starts with byte {data[pos]:#04x}")
            ids.append(best)
            pos = best_end
        return ids


def parse_vocab_line(line: str, number: int, path: Path) -> tuple[int, bytes]:
    """One `65529 b'\\xe4\\xb8' 2` or `33 'hello' 5` line -> (id, token bytes); literal_eval, never eval."""
    try:
        first, last = line.index(" "), line.rindex(" ")
        index, length = int(line[:first]), int(line[last:])
        token = ast.literal_eval(line[first:last].strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise TokenizerError(f"{path}:{number}: not a vocabulary line `id token length`: {line!r:.80}") from None
    token = token.encode("utf-8") if isinstance(token, str) else token
    if not isinstance(token, bytes) or len(token) != length or not token:
        raise TokenizerError(f"{path}:{number}: token {token!r:.40} does not have the stated length {length}")
    if not 0 < index < 2**20:
        raise TokenizerError(f"{path}:{number}: id {index} is out of range (ids start at 1; 0 is end-of-text)")
    return index, token


@functools.lru_cache(maxsize=1)
def shipped_vocab() -> WorldVocab:
    return WorldVocab.from_file(SHIPPED_VOCAB)


@functools.lru_cache(maxsize=1)
def rust_encoder() -> Callable[[str], list[int]] | None:
    """pyrwkv-tokenizer's encode over the shipped vocabulary, or None where the package is not installed."""
    try:
        import pyrwkv_tokenizer
    except ImportError:
        return None
    return pyrwkv_tokenizer.WorldTokenizer(str(SHIPPED_VOCAB)).encode


class WorldTokenizer(RwkvTokenizer):
    """`RwkvTokenizer`'s interface over a World vocabulary. `impl`: "auto" (the Rust encoder when it can serve
    this vocabulary, else the reference), "reference", or "rust" (an error where it cannot)."""

    def __init__(self, vocab: WorldVocab | None = None, impl: str = "auto"):
        if impl not in IMPLS:
            raise InputError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.vocab = shipped_vocab() if vocab is None else vocab
        self._setup(self.vocab.source, len(self.vocab.tokens), frozenset({EOS_ID}), EOS_ID)
        self.impl = impl
        self._with_specials = [EOS_TOKEN.encode("utf-8"), *self.vocab.tokens[1:]]
        if impl == "rust" and self._fast() is None:
            raise InputError("impl='rust' needs the pyrwkv-tokenizer package and the shipped World vocabulary "
                             f"({self.source} differs from it)" if rust_encoder() else
                             "impl='rust' needs the pyrwkv-tokenizer package: pip install pyrwkv-tokenizer")

    @classmethod
    def from_file(cls, path: str | Path, impl: str = "auto") -> WorldTokenizer:
        return cls(WorldVocab.from_file(path), impl)

    def __repr__(self) -> str:
        return f"WorldTokenizer(vocab_size={self.vocab_size}, source={self.source!r}, impl={self.impl!r})"

    def _fast(self) -> Callable[[str], list[int]] | None:
        if self.impl == "reference" or self.vocab is not shipped_vocab():
            return None
        return rust_encoder()

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise InputError(f"encode() takes a string, got {type(text).__name__}")
        fast = self._fast()
        try:
            return fast(text) if fast is not None else self.vocab.encode_reference(text.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate (from JSON) has no UTF-8 bytes to match
            check_unicode(text)
            raise

    def decode_unchecked(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        pieces = self.vocab.tokens if skip_special_tokens else self._with_specials
        return b"".join([pieces[i] for i in ids]).decode("utf-8", errors="replace")

    def token_texts(self) -> list[str]:
        return [token.decode("utf-8", errors="replace") for token in self._with_specials]

    def fingerprint(self) -> str:
        return self.vocab.fingerprint
