"""RwkvTokenizer and StreamDecoder on tokenizers trained here (no Hub): byte-level BPE like GPT-NeoX's."""
import functools
import random

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from rwkv_app import InputError, RwkvTokenizer
from rwkv_app.tokenizers.tokenizer import REPLACEMENT, TokenizerError

CORPUS = [
    "The quick brown fox jumps over the lazy dog. 1234567890\n\nUser: hello there!\n\nBot: hi.",
    "Crème brûlée, naïve café, façade, jalapeño, Ångström, Zürich, e\u0301te\u0301 (combining accents).",
    "中文字符测试，日本語のテキスト、한국어 텍스트。你好世界！",
    "Emoji: 😀 🎉 👩‍💻 🇫🇷 🤖 ❤️ 🚀 — and math: ∑ ∫ √ ≤ ≥ π.",
    "    indented code:\n\tdef f(x):\n\t    return x * 2  # 42\n",
]
TEXTS = CORPUS + ["😀😀 中文 café 🇫🇷👩‍💻 e\u0301", "ß∂ƒ 漢字かな交じり文 🤖🤖🤖", "plain ascii only"]


@functools.lru_cache(maxsize=None)
def build_backend(vocab_size: int = 400) -> Tokenizer:
    """A byte-level BPE like GPT-NeoX's: every byte is a token, merges learned from CORPUS; token 0 is eos."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS * 5, trainer)
    return backend


def build_tokenizer() -> RwkvTokenizer:
    return RwkvTokenizer(build_backend(), "test-bpe")


@functools.lru_cache(maxsize=None)
def byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable-character table, inverted: how byte-level token strings map back to bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


@functools.lru_cache(maxsize=None)
def vocab_bytes() -> dict[bytes, int]:
    table = byte_decoder()
    return {bytes(table[c] for c in token): i for token, i in build_backend().get_vocab().items()
            if all(c in table for c in token)}


def random_split_ids(text: str, rng: random.Random) -> list[int]:
    """Token ids for `text` cut at random byte positions: any token of the vocabulary that matches next."""
    data, vocab, ids, pos = text.encode("utf-8"), vocab_bytes(), [], 0
    while pos < len(data):
        options = [n for n in range(1, 12) if data[pos:pos + n] in vocab and pos + n <= len(data)]
        n = rng.choice(options)
        ids.append(vocab[data[pos:pos + n]])
        pos += n
    return ids


def stream(tokenizer: RwkvTokenizer, ids: list[int]) -> list[str]:
    decoder = tokenizer.stream_decoder()
    return [decoder.step(i) for i in ids] + [decoder.flush()]


def test_encode_decode_round_trip_and_hf_call_shape():
    tok = build_tokenizer()
    for text in TEXTS:
        assert tok.decode(tok.encode(text)) == text
    inputs = tok("This is an example.", return_tensors="pt")
    assert inputs["input_ids"].dtype == torch.long
    assert inputs["input_ids"].shape == (1, len(tok.encode("This is an example.")))
    assert torch.equal(inputs["attention_mask"], torch.ones_like(inputs["input_ids"]))
    batch = tok(["ab cd", "ab cd"], return_tensors="pt")
    assert batch["input_ids"].shape[0] == 2
    as_lists = tok(["a", "bb ccc"])
    assert as_lists["input_ids"] == [tok.encode("a"), tok.encode("bb ccc")]
    assert tok("a")["input_ids"] == tok.encode("a")
    with pytest.raises(InputError, match="different lengths"):
        tok(["a", "bb ccc dddd"], return_tensors="pt")
    assert tok.decode(torch.tensor(tok.encode("café"))) == "café"


def test_special_tokens_kept_or_skipped_like_hf():
    tok = build_tokenizer()
    ids = tok.encode("hi") + [0]
    assert tok.decode(ids) == "hi<|endoftext|>"
    assert tok.decode(ids, skip_special_tokens=True) == "hi"
    assert 0 in tok.special_ids and tok.eos_token_id == 0


@pytest.mark.parametrize("text", TEXTS)
def test_stream_equals_full_decode_for_random_splits(text):
    tok = build_tokenizer()
    rng = random.Random(hash(text) % 1000)
    for _ in range(25):
        ids = random_split_ids(text, rng)
        assert tok.decode(ids) == text  # byte-level BPE is lossless whatever the split
        pieces = stream(tok, ids)
        assert "".join(pieces) == text
        assert not any(REPLACEMENT in piece for piece in pieces), pieces


def test_split_characters_are_released_as_soon_as_complete():
    tok = build_tokenizer()
    ids = [vocab_bytes()[bytes([b])] for b in "é😀".encode("utf-8")]  # 2 + 4 single-byte tokens
    decoder = tok.stream_decoder()
    assert [decoder.step(i) for i in ids] == ["", "é", "", "", "", "😀"]
    assert decoder.flush() == ""


def test_unfinished_character_at_the_end_is_flushed_like_full_decode():
    tok = build_tokenizer()
    ids = tok.encode("ok ") + [vocab_bytes()[b"\xe4"]]  # a lone lead byte of a 3-byte character
    pieces = stream(tok, ids)
    assert "".join(pieces) == tok.decode(ids) == "ok " + REPLACEMENT
    assert pieces[-1] == REPLACEMENT  # only flush() gives up on it
    invalid = tok.encode("a") + [vocab_bytes()[b"\xe4"]] + tok.encode("b")  # never completed: shown as U+FFFD
    assert "".join(stream(tok, invalid)) == tok.decode(invalid) == "a" + REPLACEMENT + "b"


def test_stream_decoder_keeps_a_small_window():
    tok = build_tokenizer()
    text = " ".join(TEXTS) * 20
    ids = random_split_ids(text, random.Random(0))
    decoder, out, longest = tok.stream_decoder(), [], 0
    for i in ids:
        out.append(decoder.step(i))
        longest = max(longest, len(decoder.window))
    out.append(decoder.flush())
    assert "".join(out) == text
    assert longest <= 16  # never the whole history


def test_decoders_that_need_left_context():
    """WordPiece drops '##' and SentencePiece ('▁') a leading space only at the start: context keeps them right."""
    vocab = {"[UNK]": 0, "hello": 1, "##s": 2, "world": 3, "▁hello": 4, "▁world": 5}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    for decoder, ids in [(decoders.WordPiece(), [1, 2, 3, 2]), (decoders.Metaspace(), [4, 5, 4])]:
        backend.decoder = decoder
        tok = RwkvTokenizer(backend)
        assert "".join(stream(tok, ids)) == tok.decode(ids)


def test_out_of_vocabulary_ids_are_errors():
    tok = build_tokenizer()
    V = tok.vocab_size
    with pytest.raises(InputError, match=rf"token id {V} is outside the vocabulary \[0, {V}\)"):
        tok.decode([1, tok.vocab_size])
    with pytest.raises(InputError, match="-1"):
        tok.stream_decoder().step(-1)
    with pytest.raises(InputError, match="flat sequence of integers"):
        tok.decode([[1, 2]])
    assert tok.decode(torch.tensor([5, 6])) == tok.decode([5, 6])


def test_missing_or_corrupt_tokenizer_json_names_the_file(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer.json: tokenizer file not found"):
        RwkvTokenizer.from_pretrained(tmp_path)
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerError, match=f"{bad}: not a valid tokenizer.json"):
        RwkvTokenizer.from_file(bad)


def test_from_pretrained_reads_the_checkpoint_folder(tmp_path):
    build_backend().save(str(tmp_path / "tokenizer.json"))
    tok = RwkvTokenizer.from_pretrained(tmp_path)
    reference = build_tokenizer()
    assert tok.vocab_size == reference.vocab_size and tok.encode("café 😀") == reference.encode("café 😀")
    assert RwkvTokenizer.from_pretrained(tmp_path / "tokenizer.json").source == str(tmp_path / "tokenizer.json")


def test_penalty_exempt_mask_marks_whitespace_and_digit_tokens():
    tok = build_tokenizer()
    mask = tok.penalty_exempt_mask(tok.vocab_size + 3)
    assert mask.shape == (tok.vocab_size + 3,) and not mask[-3:].any()
    for text in [" ", "7", "\n", "\t"]:
        (token,) = tok.encode(text)
        assert mask[token], text
    for text in ["a", ".", "é"]:
        assert not mask[tok.encode(text)].any(), text
    assert not mask[0]  # special tokens are text like any other: not exempt

