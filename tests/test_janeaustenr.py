"""The demo corpus reader on a tiny lazy-load database written here in R's XDR serialization format."""
import gzip
import struct
import zlib

from rwkv_app.train.janeaustenr import EOS, read_novels, unwrap, write_corpus

NAMES_FIRST, NAMES_AGAIN = "sym", "ref"  # the first use of a symbol defines it; later uses refer back


def xdr_int(*values: int) -> bytes:
    return struct.pack(f">{len(values)}i", *values)


def header() -> bytes:
    return b"X\n" + xdr_int(3, 0x040201, 0x030500, 5) + b"UTF-8"


def chars(text: str) -> bytes:
    data = text.encode("utf-8")
    return xdr_int(9 | (1 << 15), len(data)) + data  # CHARSXP, flagged UTF-8


def strings(values: list[str], names: list[str] | None = None, symbol: str = NAMES_FIRST) -> bytes:
    flags = 16 | ((1 << 9) if names is not None else 0)  # STRSXP, with attributes
    return xdr_int(flags, len(values)) + b"".join(chars(v) for v in values) + attributes(names, symbol)


def attributes(names: list[str] | None, symbol: str) -> bytes:
    if names is None:
        return b""
    tag = xdr_int(1) + chars("names") if symbol == NAMES_FIRST else xdr_int((1 << 8) | 255)  # SYMSXP or REFSXP
    return xdr_int(2 | (1 << 10)) + tag + strings(names) + xdr_int(254)  # LISTSXP (tagged), names, NILVALUE


def index(entries: dict[str, tuple[int, int]]) -> bytes:
    """Rdata.rdx: list(variables = list(name = c(offset, length)), references = list(), compressed = TRUE)."""
    pairs = b"".join(xdr_int(13, 2, *span) for span in entries.values())  # INTSXP of length 2 each
    variables = xdr_int(19 | (1 << 9), len(entries)) + pairs + attributes(list(entries), NAMES_FIRST)
    references = xdr_int(19 | (1 << 9), 0) + attributes([], NAMES_AGAIN)
    compressed = xdr_int(10, 1, 1)
    return header() + xdr_int(19 | (1 << 9), 3) + variables + references + compressed + attributes(
        ["variables", "references", "compressed"], NAMES_AGAIN)


def write_package(folder, novels: dict[str, list[str]]) -> None:
    database, entries = b"", {}
    for name, lines in novels.items():
        raw = header() + strings(lines)
        blob = struct.pack(">I", len(raw)) + zlib.compress(raw)
        entries[name] = (len(database), len(blob))
        database += blob
    (folder / "Rdata.rdb").write_bytes(database)
    (folder / "Rdata.rdx").write_bytes(gzip.compress(index(entries)))


def test_reads_novels_and_writes_train_and_heldout(tmp_path):
    novels = {"emma": ["EMMA", "", "Emma Woodhouse, handsome,", "clever, and rich.", "", "", "Next — café."],
              "persuasion": ["Persuasion", "", "Sir Walter Elliot,", "of Kellynch Hall."]}
    write_package(tmp_path, novels)
    assert read_novels(tmp_path) == novels
    sizes = write_corpus(tmp_path / "out", tmp_path)
    train = (tmp_path / "out" / "train.txt").read_text(encoding="utf-8")
    heldout = (tmp_path / "out" / "heldout.txt").read_text(encoding="utf-8")
    assert train == "EMMA\n\nEmma Woodhouse, handsome, clever, and rich.\n\nNext — café.\n"
    assert heldout == "Persuasion\n\nSir Walter Elliot, of Kellynch Hall.\n" and EOS not in heldout
    assert sizes == {"emma": len(train) - 1, "persuasion": len(heldout) - 1}


def test_unwrap_joins_lines_and_collapses_spaces():
    assert unwrap(["A  line", "wrapped.", "   ", "", "Two."]) == "A line wrapped.\n\nTwo."
