"""Export and import: a round trip resumes exactly; another model or tokenizer is refused; corrupt and
hostile files are rejected without executing anything or reading past the limits."""
import io
import json
import os
import pickle
import random
import struct
import zipfile

import pytest
import torch
from tokenizers import Tokenizer

from rwkv_app import RwkvTokenizer
from rwkv_app.state_tree import (ArchiveLimits, SessionFileError, StateBudget, export_session, import_session)

from .session_helpers import assert_resumes_exactly, run, sampled, tiny_model, tiny_tree
from .test_tokenizer import build_backend


def saved_tree(budget=None):
    tree = tiny_tree(budget=budget)
    base = tree.extend(tree.root, "The quick brown fox").node
    done = run(tree.compare(base, [sampled(1, 6), sampled(2, 6)]))[-1]
    tree.fork(done.added[0], 3)
    tree.extend(done.added[1], " jumps")
    tree.meta["note"] = "kept"
    buffer = io.BytesIO()
    export_session(tree, buffer)
    return tree, buffer.getvalue()


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(entries: list[tuple[str, bytes]], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def load(data, tree, **kwargs):
    return import_session(data, tree.model, tree.tokenizer, **kwargs)


def test_round_trip_keeps_the_tree_and_resumes_exactly(tmp_path):
    tree, data = saved_tree()
    path = tmp_path / "session.zip"
    path.write_bytes(data)
    copy = load(path, tree)
    assert copy.root == tree.root and copy.meta == tree.meta and copy.identity == tree.identity
    assert {i: n.to_json() for i, n in copy.nodes.items()} == {i: n.to_json() for i, n in tree.nodes.items()}
    assert set(copy.store.entries) == set(tree.store.entries)
    for node_id in copy.nodes:
        if node_id != copy.root:
            assert_resumes_exactly(copy, node_id)
    leaf = tree.node(tree.root).children[0]
    again = [list(t.node(run(t.generate(leaf, sampled(8, 5)))[-1].node).tokens) for t in (tree, copy)]
    assert again[0] == again[1]
    assert members(data).keys() == {"tree.json", "states.safetensors"}


def test_import_into_a_smaller_budget_drops_states_but_resumes_everything():
    tree, data = saved_tree()
    copy = load(data, tree, budget=StateBudget(max_states=3))
    assert len(copy.store) == 3
    for node_id in copy.nodes:
        if node_id != copy.root:
            assert_resumes_exactly(copy, node_id)


def test_another_model_is_refused_naming_both():
    tree, data = saved_tree()
    other = tiny_model(seed=5)  # same shapes, other weights
    with pytest.raises(SessionFileError, match="saved with model tiny .*runs on other-model.*weights differs"):
        import_session(data, other, tree.tokenizer, model_id="other-model")
    with pytest.raises(SessionFileError, match="hidden_size differs"):
        import_session(data, tiny_model(hidden_size=16), tree.tokenizer)
    with pytest.raises(SessionFileError, match="dtype differs"):
        import_session(data, tiny_model().to(torch.bfloat16), tree.tokenizer)


def test_another_tokenizer_is_refused():
    tree, data = saved_tree()
    backend = Tokenizer.from_str(build_backend().to_str())
    backend.add_tokens(["<extra>"])
    with pytest.raises(SessionFileError, match="another tokenizer"):
        import_session(data, tree.model, RwkvTokenizer(backend))


def test_random_and_truncated_bytes_are_rejected():
    tree, data = saved_tree()
    rng = random.Random(0)
    for bad in [b"", b"PK\x03\x04", bytes(rng.randrange(256) for _ in range(5000)), data[: len(data) // 2],
                data[:-30]]:
        with pytest.raises(SessionFileError, match="session file rejected"):
            load(bad, tree)
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF
    with pytest.raises(SessionFileError):
        load(bytes(flipped), tree)


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("names", [["tree.json", "states.safetensors", "extra.txt"], ["tree.json"],
                                   ["../tree.json", "states.safetensors"], ["/tree.json", "states.safetensors"],
                                   ["tree.json", "tree.json", "states.safetensors"]])
def test_unexpected_member_names_are_rejected(names):
    tree, data = saved_tree()
    content = members(data)
    entries = [(name, content.get(name.strip("./"), b"{}")) for name in names]
    with pytest.raises(SessionFileError, match="expected exactly the members"):
        load(rezip(entries), tree)


def test_members_over_the_limits_are_not_read():
    tree, data = saved_tree()
    content = members(data)
    bomb = json.dumps({"pad": " " * (8 * 2 ** 20)}).encode()  # 8 MiB that deflate to a few KiB
    with pytest.raises(SessionFileError, match="tree.json is .* over the limit"):
        load(rezip([("tree.json", bomb), ("states.safetensors", content["states.safetensors"])]), tree,
             limits=ArchiveLimits(max_json_bytes=2 ** 20))
    with pytest.raises(SessionFileError, match="states.safetensors is .* over the limit"):
        load(data, tree, limits=ArchiveLimits(max_states_bytes=1000))
    with pytest.raises(SessionFileError, match="the file is.*over the limit"):
        load(b"\0" * (2 * 2 ** 20), tree, limits=ArchiveLimits(max_json_bytes=10, max_states_bytes=10))


def with_states(data: bytes, states: bytes) -> bytes:
    return rezip([("tree.json", members(data)["tree.json"]), ("states.safetensors", states)])


def safetensors_bytes(header: dict, payload: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + payload


def test_a_pickle_disguised_as_states_is_never_unpickled(tmp_path):
    tree, data = saved_tree()
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.mkdir, (str(marker),)
    for payload in [pickle.dumps(Exploit()), pickle.dumps({"x": 1})]:
        with pytest.raises(SessionFileError, match="states.safetensors"):
            load(with_states(data, payload), tree)
    buffer = io.BytesIO()
    torch.save({"x": torch.zeros(3)}, buffer)
    with pytest.raises(SessionFileError, match="states.safetensors"):
        load(with_states(data, buffer.getvalue()), tree)
    assert not marker.exists()


def test_safetensors_headers_are_checked_before_loading():
    tree, data = saved_tree()
    node = next(i for i in tree.store.entries if i != tree.root)
    huge = {f"{node}/num": {"dtype": "F32", "shape": [1, 2 ** 40, 4], "data_offsets": [0, 2 ** 44]}}
    cases = {
        "declares a": struct.pack("<Q", 2 ** 62) + b"{}",
        "this model's is F32": safetensors_bytes(huge, b""),
        "unexpected entry": safetensors_bytes({"../../etc/passwd": {"dtype": "F32", "shape": [1],
                                                                   "data_offsets": [0, 4]}}, b"\0" * 4),
        "without all of its entries": safetensors_bytes(
            {f"{node}/num": {"dtype": "F32", "shape": [1, 32, 4], "data_offsets": [0, 512]}}, b"\0" * 512),
        "does not fit its shape": safetensors_bytes(
            {f"{node}/logits": {"dtype": "F32", "shape": [400], "data_offsets": [0, 8]}}, b"\0" * 8),
        "unreadable header": struct.pack("<Q", 4) + b"\xff\xfe{[",
    }
    for message, states in cases.items():
        with pytest.raises(SessionFileError, match=message):
            load(with_states(data, states), tree)
    half = safetensors_bytes({f"{node}/logits": {"dtype": "F16", "shape": [400], "data_offsets": [0, 800]}},
                             b"\0" * 800)
    with pytest.raises(SessionFileError, match="F16"):
        load(with_states(data, half), tree)


def edited(data: bytes, change) -> bytes:
    content = members(data)
    doc = json.loads(content["tree.json"])
    change(doc)
    return rezip([("tree.json", json.dumps(doc).encode()), ("states.safetensors", content["states.safetensors"])])


def first_child(doc):
    root = next(n for n in doc["nodes"] if n["id"] == doc["root"])
    return next(n for n in doc["nodes"] if n["id"] == root["children"][0])


def make_cycle(doc):
    a, b = [n for n in doc["nodes"] if n["id"] != doc["root"]][-2:]
    for node in doc["nodes"]:
        node["children"] = [c for c in node["children"] if c not in (a["id"], b["id"])]
    a["parent"], b["parent"], a["children"], b["children"] = b["id"], a["id"], [b["id"]], [a["id"]]


BAD_DOCS = {
    "format": lambda d: d.update(format="something else"),
    "exactly the keys": lambda d: d.update(extra=1),
    "parent is missing|not its child": lambda d: first_child(d).update(parent="0123456789abcdef"),
    "reachable from the root|reached twice": make_cycle,
    "ids must be": lambda d: first_child(d).update(id="../../etc/passwd"),
    "not unique": lambda d: d["nodes"].append(dict(first_child(d))),
    "tokens must be": lambda d: first_child(d).update(tokens=[1, 400]),
    "not JSON": lambda d: first_child(d).update(probs=[float("nan")] * len(first_child(d)["tokens"])),
    "probs must hold": lambda d: first_child(d).update(probs=[0.5], top=[[]]),
    "not its child": lambda d: first_child(d)["children"].append(d["root"]),
    "'root' must name": lambda d: d.update(root=first_child(d)["id"]),
    "model.vocab_size must be": lambda d: d["model"].update(vocab_size="400"),
}


@pytest.mark.parametrize("message", BAD_DOCS)
def test_malformed_tree_json_is_rejected(message):
    tree, data = saved_tree()
    with pytest.raises(SessionFileError, match=message):
        load(edited(data, BAD_DOCS[message]), tree)


def test_deeply_nested_json_is_rejected_not_crashing():
    tree, data = saved_tree()
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(SessionFileError, match="not valid JSON"):
        load(rezip([("tree.json", deep), ("states.safetensors", members(data)["states.safetensors"])]), tree)


def test_unsupported_compression_is_rejected():
    tree, data = saved_tree()
    content = members(data)
    packed = rezip(list(content.items()), compression=zipfile.ZIP_BZIP2)
    with pytest.raises(SessionFileError, match="unsupported compression"):
        load(packed, tree)
