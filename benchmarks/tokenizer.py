"""`python -m benchmarks.tokenizer [--mb 2] [--repeats 3]`: World tokenizer encode speed (MB/s of UTF-8 in)
for each candidate beside BlinkDL's TRIE_TOKENIZER, on one mixed corpus (English, code, Chinese, emoji, odd
whitespace), and whether each gives TRIE_TOKENIZER's ids. Needs the rwkv pip package (requirements-dev.txt);
optional candidates that are not installed are listed as such.

Hugging Face `tokenizers` can express greedy longest match exactly (WordPiece, no continuation prefix, the whole
text one word over GPT-2's byte alphabet) but its search is quadratic in the word's length, so it is measured on
a 4 KB slice only.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

from rwkv_app.tokenizers.world_tokenizer import SHIPPED_VOCAB, WorldTokenizer, shipped_vocab

Encoder = Callable[[str], list[int]]
ROOT = Path(__file__).resolve().parents[1]
MIXED = ("中文字符测试，日本語のテキスト、你好世界！《红楼梦》第一回 😀 🎉 👩‍💻 🇫🇷 ∑ ∫ √\r\n\t\t  \u200b e\u0301 "
         "Crème brûlée, naïve café " * 40)
WORDPIECE_SLICE = 4096


def corpus(megabytes: float) -> str:
    """This project's README and Python sources, interleaved with MIXED, repeated to about `megabytes`."""
    parts = [(ROOT / "README.md").read_text(encoding="utf-8")]
    parts += [p.read_text(encoding="utf-8") for p in sorted((ROOT / "rwkv_app").rglob("*.py"))[:40]]
    base = MIXED.join(parts)
    size = len(base.encode("utf-8"))
    return base * max(1, round(megabytes * 1e6 / size))


def hf_wordpiece() -> Encoder:
    """The World vocabulary as an HF WordPiece model (exact, quadratic): the `tokenizers` candidate."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    chars.update({b: chr(256 + n) for n, b in enumerate(b for b in range(256) if b not in chars)})
    vocab = {"".join(chars[b] for b in token): i for token, i in shipped_vocab().ids.items()}
    model = models.WordPiece({**vocab, "[UNK]": 0}, unk_token="[UNK]", continuing_subword_prefix="",
                             max_input_chars_per_word=10**9)
    backend = Tokenizer(model)
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    return lambda text: backend.encode(text, add_special_tokens=False).ids


def candidates() -> dict[str, Encoder | str]:
    """name -> encode function, or the reason it is not measured."""
    found: dict[str, Encoder | str] = {
        "this project (auto: pyrwkv-tokenizer)": WorldTokenizer(impl="auto").encode,
        "this project (reference, Python)": WorldTokenizer(impl="reference").encode,
    }
    for name, module in [("pyrwkv-tokenizer (Rust, direct)", "pyrwkv_tokenizer"),
                         ("rwkv-tokenizer (Rust, older package)", "rwkv_tokenizer")]:
        try:
            found[name] = __import__(module).WorldTokenizer(str(SHIPPED_VOCAB)).encode
        except ImportError:
            found[name] = "not installed"
    found[f"HF tokenizers WordPiece ({WORDPIECE_SLICE // 1024} KB slice)"] = hf_wordpiece()
    return found


def measure(encode: Encoder, text: str, repeats: int) -> tuple[float, list[int]]:
    """Best-of-`repeats` MB/s, and the ids."""
    encode(text[:1000])  # warm-up: lazy loading is not encoding
    best, ids = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        ids = encode(text)
        best = min(best, time.perf_counter() - start)
    return len(text.encode("utf-8")) / best / 1e6, ids


def run(megabytes: float, repeats: int) -> list[tuple[str, str, str]]:
    from rwkv.rwkv_tokenizer import TRIE_TOKENIZER

    text = corpus(megabytes)
    oracle = TRIE_TOKENIZER(str(SHIPPED_VOCAB)).encode
    speed, expected = measure(oracle, text, 1)
    rows = [("BlinkDL TRIE_TOKENIZER (rwkv 0.8.32, Python)", f"{speed:.2f}", "(the oracle)")]
    small = text[:WORDPIECE_SLICE]
    for name, encode in candidates().items():
        if isinstance(encode, str):
            rows.append((name, "-", encode))
            continue
        sample = small if "WordPiece" in name else text
        speed, ids = measure(encode, sample, repeats)
        exact = ids == (expected if sample is text else oracle(sample))
        rows.append((name, f"{speed:.2f}", "yes" if exact else "NO"))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tokenizer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=2.0, help="corpus size in MB of UTF-8")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows = run(args.mb, args.repeats)
    print(f"World tokenizer encode, {args.mb:g} MB mixed corpus, best of {args.repeats}\n")
    print("| encoder | MB/s | ids equal TRIE_TOKENIZER's |\n| --- | ---: | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
