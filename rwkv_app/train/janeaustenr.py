"""The demo model's corpus: Jane Austen's six novels, from Debian's `r-cran-janeaustenr` package.

    apt-get install --no-install-recommends r-cran-janeaustenr      # or: apt-get download + dpkg-deb -x
    python -m rwkv_app.train.janeaustenr --out corpus/                # corpus/train.txt, corpus/heldout.txt

The package (MIT, by Julia Silge; the novels themselves are public domain) stores each novel as an R character
vector, one line of the Project Gutenberg text per element, in R's lazy-load database (data/Rdata.rdx, an index,
and data/Rdata.rdb, zlib-compressed serialized objects). This module reads that database without R: it decodes
just the parts of R's XDR serialization format those files use. Paragraphs are unwrapped to one line each,
novels are joined with <|endoftext|>, and one whole novel (Persuasion) is written to heldout.txt, never trained on.
"""
from __future__ import annotations

import argparse
import gzip
import re
import struct
import zlib
from pathlib import Path

DEFAULT_DIR = Path("/usr/lib/R/site-library/janeaustenr/data")
HELDOUT = ("persuasion",)
EOS = "<|endoftext|>"
# R's SEXP types that appear in these files.
SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 1, 2, 9, 10, 13, 14, 16, 19
NILVALUE, REFSXP = 254, 255


class RReader:
    """A reader for R's XDR serialization (format 2 or 3) of vectors, pairlists and symbols."""

    def __init__(self, data: bytes):
        if data[:2] != b"X\n":
            raise ValueError("not an R XDR serialization (expected the 'X\\n' header)")
        self.data, self.pos, self.refs = data, 2, []
        version = self.int()
        self.pos += 8  # the writer's and the minimal reader's R versions
        if version == 3:
            length = self.int()
            self.pos += length  # the native encoding's name

    def int(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return value

    def array(self, code: str, size: int) -> list:
        count = self.int()
        values = list(struct.unpack_from(f">{count}{code}", self.data, self.pos))
        self.pos += size * count
        return values

    def item(self):
        """The next object: str, list, ('sym', name), a [(tag, value)] pairlist, or (value, attributes)."""
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind == NILVALUE:
            return None
        if kind == REFSXP:
            return self.refs[(flags >> 8 or self.int()) - 1]
        if kind == CHARSXP:
            length = self.int()
            text = None if length == -1 else self.data[self.pos:self.pos + length].decode("utf-8")
            self.pos += max(length, 0)
            return text
        if kind == SYMSXP:
            self.refs.append(("sym", self.item()))
            return self.refs[-1]
        if kind == LISTSXP:
            if has_attr:
                self.item()  # a pairlist's own attributes: none in these files, read past
            tag = self.item() if has_tag else None
            head = (tag, self.item())
            return [head] + (self.item() or [])
        value = self.vector(kind)
        return (value, self.item()) if has_attr else value

    def vector(self, kind: int) -> list:
        if kind in (STRSXP, VECSXP):
            return [self.item() for _ in range(self.int())]
        if kind in (INTSXP, LGLSXP):
            return self.array("i", 4)
        if kind == REALSXP:
            return self.array("d", 8)
        raise ValueError(f"unsupported R object type {kind} at byte {self.pos}")


def read_novels(data_dir: Path = DEFAULT_DIR) -> dict[str, list[str]]:
    """{name: lines} for every novel in the package's lazy-load database."""
    index = RReader(gzip.decompress((data_dir / "Rdata.rdx").read_bytes())).item()
    fields = dict(zip(_names(index), index[0]))
    variables = fields["variables"]
    database = (data_dir / "Rdata.rdb").read_bytes()
    novels = {}
    for name, (offset, length) in zip(_names(variables), variables[0]):
        blob = database[offset:offset + length]
        novels[name] = RReader(zlib.decompress(blob[4:])).item()  # 4 bytes: the uncompressed length
    return novels


def _names(value) -> list[str]:
    _, attributes = value
    return next(v for (tag, v) in attributes if tag == ("sym", "names"))


def unwrap(lines: list[str]) -> str:
    """Gutenberg's hard-wrapped lines -> one line per paragraph, paragraphs separated by a blank line."""
    paragraphs = re.split(r"\n\s*\n", "\n".join(line.rstrip() for line in lines))
    joined = (re.sub(r"\s+", " ", p).strip() for p in paragraphs)
    return "\n\n".join(p for p in joined if p)


def write_corpus(out: Path, data_dir: Path = DEFAULT_DIR) -> dict[str, int]:
    """train.txt and heldout.txt under `out`; returns each novel's character count."""
    novels = {name: unwrap(lines) for name, lines in read_novels(data_dir).items()}
    out.mkdir(parents=True, exist_ok=True)
    train = [text for name, text in sorted(novels.items()) if name not in HELDOUT]
    heldout = [text for name, text in sorted(novels.items()) if name in HELDOUT]
    (out / "train.txt").write_text(f"\n{EOS}\n".join(train) + "\n", encoding="utf-8")
    (out / "heldout.txt").write_text(f"\n{EOS}\n".join(heldout) + "\n", encoding="utf-8")
    return {name: len(text) for name, text in novels.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR, help="the package's data/ folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for train.txt and heldout.txt")
    args = parser.parse_args(argv)
    for name, chars in write_corpus(args.out, args.data_dir).items():
        print(f"{name}: {chars} characters{' (held out)' if name in HELDOUT else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
