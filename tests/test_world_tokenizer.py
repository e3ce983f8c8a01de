"""The World tokenizer (RWKV-7's) against BlinkDL's TRIE_TOKENIZER (the `rwkv` pip package), both encoders."""
import functools
import hashlib
import random
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rwkv.rwkv_tokenizer import TRIE_TOKENIZER
from tokenizers import Tokenizer, models

from rwkv_app import InputError, RwkvTokenizer
from rwkv_app.state_tree.identity import tokenizer_fingerprint
from rwkv_app.tokenizers.tokenizer import REPLACEMENT, TokenizerError
from rwkv_app.tokenizers.tokenizer_select import is_world_repo
from rwkv_app.tokenizers.world_tokenizer import SHIPPED_VOCAB, WorldTokenizer, WorldVocab, rust_encoder, shipped_vocab

CORPUS = [
    "The quick brown fox jumps over the lazy dog. 1234567890\n\nUser: hello there!\n\nAssistant: hi.",
    "中文字符测试，日本語のテキスト、한국어 텍스트。你好世界！《红楼梦》第一回：甄士隐梦幻识通灵",
    "def f(x):\n\tif x > 0:\n\t\treturn {'a': [1, 2, 3]}  # comment\r\n    else:\r\n        pass\n",
    "Emoji: 😀 🎉 👩‍💻 🇫🇷 🤖 ❤️ 🚀 🏳️‍🌈 — math: ∑ ∫ √ ≤ ≥ π ∞",
    "tabs\t\t\tand   runs      of          spaces\n\n\n\r\n\r\r\n" + " " * 200 + "\t" * 50,
    "zero\u200bwidth\u200c\u200d\ufeffjoiners\u2060 and \u0301\u0301lone combining\u0308 marks \u20dd",
    "odd: \x00\x01\x7f\x80\x9f \ufffd \U0010ffff \ue000 private \U0001f9ff \u2028\u2029 \u00a0nbsp",
    "Crème brûlée, naïve café, e\u0301te\u0301, Ångström, ﬁ ligature, ǅ, İstanbul, ß, Ελληνικά, русский",
    "<|endoftext|> is plain text here; \\n \\t \\\\ 'quotes' \"double\" `back`",
    "",
]


@functools.lru_cache(maxsize=None)
def trie() -> TRIE_TOKENIZER:
    return TRIE_TOKENIZER(str(SHIPPED_VOCAB))


@functools.lru_cache(maxsize=None)
def world(impl: str = "auto") -> WorldTokenizer:
    return WorldTokenizer(impl=impl)


def stream(tok: RwkvTokenizer, ids: list[int]) -> list[str]:
    decoder = tok.stream_decoder()
    return [decoder.step(i) for i in ids] + [decoder.flush()]


def random_split_ids(text: str, rng: random.Random) -> list[int]:
    """Ids spelling `text` with a random token at each step (not the greedy one): splits characters often."""
    data, ids, pos, vocab = text.encode("utf-8"), [], 0, shipped_vocab().ids
    while pos < len(data):
        options = [n for n in range(1, min(16, len(data) - pos) + 1) if data[pos:pos + n] in vocab]
        n = rng.choice(options)
        ids.append(vocab[data[pos:pos + n]])
        pos += n
    return ids


def test_the_shipped_vocabulary_is_blinkdls_file():
    import rwkv

    original = Path(rwkv.__file__).parent / "rwkv_vocab_v20230424.txt"
    assert hashlib.sha256(SHIPPED_VOCAB.read_bytes()).digest() == hashlib.sha256(original.read_bytes()).digest()
    assert (SHIPPED_VOCAB.parent / "NOTICE").is_file()
    tok = world()
    assert tok.vocab_size == 65536 and len(tok.vocab.ids) == 65529
    assert tok.eos_token_id == 0 and tok.special_ids == {0}
    assert all(tok.vocab.tokens[i] == trie().idx2token[i] for i in range(1, 65530))


@pytest.mark.parametrize("impl", ["auto", "reference"])
def test_ids_equal_trie_tokenizer_on_the_corpus(impl):
    tok = world(impl)
    for text in CORPUS + ["".join(CORPUS) * 3]:
        ids = tok.encode(text)
        assert ids == trie().encode(text), text
        assert tok.decode(ids) == text


def test_the_fast_path_is_the_rust_encoder():
    assert rust_encoder() is not None, "pyrwkv-tokenizer (requirements.txt) is not installed"
    assert world("auto")._fast() is rust_encoder() and world("reference")._fast() is None
    assert WorldTokenizer(impl="rust").encode("hello") == trie().encode("hello")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60) | st.text(st.sampled_from("".join(CORPUS)), max_size=120))
def test_arbitrary_text_matches_trie_and_round_trips(text):
    expected = trie().encode(text)
    assert world("auto").encode(text) == expected
    assert world("reference").encode(text) == expected
    assert world().decode(expected) == text


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 65535), max_size=40))
def test_stream_of_arbitrary_ids_equals_full_decode(ids):
    """Any ids, valid UTF-8 or not: the pieces add up to decode(ids), U+FFFD exactly where decode puts one."""
    assert "".join(stream(world(), ids)) == world().decode(ids)


@pytest.mark.parametrize("text", CORPUS[:-1])
def test_stream_never_shows_a_broken_character(text):
    tok, rng = world(), random.Random(len(text))
    for _ in range(10):
        ids = random_split_ids(text, rng)
        assert tok.decode(ids) == text
        pieces = stream(tok, ids)
        assert "".join(pieces) == text
        if REPLACEMENT not in text:
            assert not any(REPLACEMENT in piece for piece in pieces), pieces


def test_character_split_across_tokens_is_released_when_complete():
    tok = world()
    ids = [tok.vocab.ids[bytes([b])] for b in "é😀".encode("utf-8")]
    decoder = tok.stream_decoder()
    assert [decoder.step(i) for i in ids] == ["", "é", "", "", "", "😀"]
    assert decoder.flush() == ""
    unfinished = tok.encode("ok") + [tok.vocab.ids[b"\xe4"]]
    assert stream(tok, unfinished)[-1] == REPLACEMENT == tok.decode(unfinished)[-1]


def test_special_and_unused_ids_and_hf_call_shape():
    tok = world()
    ids = tok.encode("hi")
    assert tok.decode(ids + [0]) == "hi<|endoftext|>"
    assert tok.decode(ids + [0], skip_special_tokens=True) == "hi"
    assert tok.decode([65530, 65535]) == ""  # in the model's vocabulary, but no token in the file
    with pytest.raises(InputError, match=r"token id 65536 is outside the vocabulary \[0, 65536\)"):
        tok.decode([65536])
    batch = tok(["Hello world", "Hello world"], return_tensors="pt")
    assert batch["input_ids"].shape == (2, len(tok.encode("Hello world"))) and batch["input_ids"].dtype == torch.long
    assert tok("a b")["input_ids"] == tok.encode("a b")
    with pytest.raises(InputError, match="lone surrogate"):
        tok.encode("a\ud800b")
    with pytest.raises(InputError, match="takes a string"):
        tok.encode(b"bytes")


def test_chat_and_penalty_helpers():
    tok = world()
    assert set(tok.encode("\n\nUser:")[:1]) <= set(tok.line_break_start_ids())
    assert 0 not in tok.line_break_start_ids()
    mask = tok.penalty_exempt_mask(65536 + 4)
    for text in [" ", "\n", "7", "  \t"]:
        assert all(mask[i] for i in tok.encode(text)), text
    assert not mask[tok.encode("a")].any() and not mask[0] and not mask[-4:].any()


def test_fingerprint_names_the_vocabulary_not_the_line_endings(tmp_path):
    lf = tmp_path / "rwkv_vocab_v20230424.txt"
    lf.write_bytes(SHIPPED_VOCAB.read_bytes().replace(b"\r\n", b"\n"))
    assert WorldVocab.from_file(lf) is shipped_vocab()  # same content: shared, and so is the fast encoder
    assert tokenizer_fingerprint(world()) == world().fingerprint() == shipped_vocab().fingerprint
    assert tokenizer_fingerprint(None) is None


def write_small_vocab(path: Path) -> Path:
    """All 256 bytes, then a few longer tokens where greedy longest match must fall back ("abcx")."""
    lines = [f"{b + 1} {bytes([b])!r} 1" for b in range(256)]
    extra = [b"ab", b"abcd", "中文".encode(), "中".encode()[:2], b"  "]
    lines += [f"{300 + i} {token!r} {len(token)}" for i, token in enumerate(extra)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_checkpoints_own_vocabulary_uses_the_reference(tmp_path):
    file = write_small_vocab(tmp_path / "rwkv_vocab_v20230424.txt")
    tok, oracle = RwkvTokenizer.from_pretrained(tmp_path), TRIE_TOKENIZER(str(file))
    assert isinstance(tok, WorldTokenizer) and tok._fast() is None and tok.vocab_size == 65536
    for text in ["abcx abcd ab a", "中文中中", "    x", "ab\xe9"]:
        assert tok.encode(text) == oracle.encode(text), text
        assert tok.decode(tok.encode(text)) == text
    with pytest.raises(InputError, match="differs from it"):
        WorldTokenizer.from_file(file, impl="rust")
    with pytest.raises(InputError, match="impl must be one of"):
        WorldTokenizer(impl="fast")


@pytest.mark.parametrize("line, problem", [("1 'a' 2", "stated length 2"), ("x 'a' 1", "not a vocabulary line"),
                                           ("0 'a' 1", "id 0 is out of range"), ("5 __import__('os') 1",
                                                                                  "not a vocabulary line")])
def test_bad_vocabulary_lines_name_the_file_and_line(tmp_path, line, problem):
    file = tmp_path / "vocab.txt"
    file.write_text("1 'q' 1\n" + line + "\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match=f"vocab.txt:2: .*{problem}"):
        WorldVocab.from_file(file)
    with pytest.raises(TokenizerError, match="vocabulary file not found"):
        WorldVocab.from_file(tmp_path / "missing.txt")


def save_pth(path: Path, vocab_rows: int) -> Path:
    torch.save({"emb.weight": torch.zeros(vocab_rows, 1), "blocks.0.ln0.weight": torch.ones(1)}, path)
    return path


def test_from_pretrained_picks_the_world_tokenizer(tmp_path):
    (tmp_path / "fla").mkdir()
    (tmp_path / "fla" / "config.json").write_text('{"model_type": "rwkv7"}', encoding="utf-8")
    assert isinstance(RwkvTokenizer.from_pretrained(tmp_path / "fla"), WorldTokenizer)
    pth = save_pth(tmp_path / "rwkv7-g1-0.1b.pth", 65536)
    assert RwkvTokenizer.from_pretrained(pth).vocab is shipped_vocab()
    for repo in ["BlinkDL/rwkv7-g1", "fla-hub/rwkv7-1.5B-world", "fla-hub/rwkv7-0.1B-g1"]:
        assert is_world_repo(repo)
        assert isinstance(RwkvTokenizer.from_pretrained(repo), WorldTokenizer)  # offline: nothing downloaded
    assert not is_world_repo("fla-hub/rwkv7-168M-pile") and not is_world_repo("RWKV/rwkv-4-169m-pile")


def test_a_vocabulary_beside_the_pth_wins_and_rwkv4_is_unchanged(tmp_path):
    pth = save_pth(tmp_path / "model.pth", 50277)
    with pytest.raises(TokenizerError, match="vocabulary of 50277 tokens is not the World tokenizer's 65536"):
        RwkvTokenizer.from_pretrained(pth)
    backend = Tokenizer(models.WordLevel({"<|endoftext|>": 0, "[UNK]": 1}, unk_token="[UNK]"))
    backend.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "config.json").write_text('{"model_type": "rwkv"}', encoding="utf-8")
    for path in [tmp_path, pth]:
        assert type(RwkvTokenizer.from_pretrained(path)) is RwkvTokenizer
    write_small_vocab(tmp_path / "rwkv_vocab_v20230424.txt")
    assert isinstance(RwkvTokenizer.from_pretrained(pth), WorldTokenizer)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text('{"model_type": "rwkv"}', encoding="utf-8")
    with pytest.raises(TokenizerError, match="tokenizer.json: tokenizer file not found"):
        RwkvTokenizer.from_pretrained(tmp_path / "empty")


@pytest.mark.slow
def test_fast_path_encodes_at_least_5_mb_per_second():
    text = "".join(CORPUS) * 400  # about 0.5 MB
    tok = world("auto")
    tok.encode(text[:1000])
    start = time.perf_counter()
    tok.encode(text)
    assert len(text.encode("utf-8")) / (time.perf_counter() - start) / 1e6 >= 5.0
