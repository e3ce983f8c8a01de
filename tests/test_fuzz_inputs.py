"""Hostile files and token streams, fuzzed with hypothesis: the session-file importer, the sampling-preset
loader and the streaming detokenizer each answer with their own clear error (or a correct result), never
another exception, never by unpickling. The hand-picked cases live in test_session_archive.py,
test_presets.py and test_tokenizer.py; these add generated ones."""
import json
import os
import pickle
import struct

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rwkv_app import ConfigError, InputError, SamplingSettings
from rwkv_app.core.presets import load_sampling_preset
from rwkv_app.state_tree import SessionFileError, SessionTree
from rwkv_app.models.rwkv4.state import STATE_NAMES

from .test_session_archive import load, members, rezip, safetensors_bytes, saved_tree
from .test_tokenizer import build_tokenizer, random_split_ids

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                phases=(Phase.explicit, Phase.generate), suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def saved():
    return saved_tree()


def imported_or_refused(data: bytes, tree):
    """The importer's only two answers: a tree, or SessionFileError with a 'session file rejected' text."""
    try:
        result = load(data, tree)
    except SessionFileError as err:
        assert str(err).startswith(("session file rejected", "cannot import")), str(err)
        return None
    assert isinstance(result, SessionTree)
    return result


# ---- the session-file importer ----------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused(saved, data):
    assert imported_or_refused(data, saved[0]) is None


def test_every_truncation_of_a_valid_file_is_refused(saved):
    tree, data = saved
    step = max(1, len(data) // 2000)  # every cut for a small file; about 2000 evenly spaced cuts otherwise
    for cut in range(0, len(data), step):
        assert imported_or_refused(data[:cut], tree) is None, cut


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10 ** 9), st.integers(0, 7)), min_size=1, max_size=4))
def test_bit_flips_are_refused_or_load_a_valid_tree(saved, flips):
    tree, data = saved
    flipped = bytearray(data)
    for position, bit in flips:
        flipped[position % len(data)] ^= 1 << bit
    result = imported_or_refused(bytes(flipped), tree)
    if result is not None:  # a flip the checks cannot see (a timestamp, say) still gives a consistent tree
        assert set(result.nodes) == set(tree.nodes)


MEMBER_NAMES = st.one_of(st.sampled_from(["tree.json", "states.safetensors", "../tree.json", "/tree.json",
                                          "..\\states.safetensors", "a/../../tree.json", "tree.json/",
                                          "C:/tree.json", "tree.json\x00.txt", "états.safetensors"]),
                         st.text(min_size=1, max_size=30))


@pytest.mark.filterwarnings("ignore:Duplicate name")
@FUZZ
@given(st.lists(MEMBER_NAMES, min_size=1, max_size=4))
def test_unexpected_member_names_are_refused(saved, names):
    tree, data = saved
    content = members(data)
    if sorted(names) == sorted(content):
        return  # exactly the two expected members: that is a valid file
    entries = [(name, content.get(name, b"{}")) for name in names]
    with pytest.raises(SessionFileError, match="expected exactly the members"):
        load(rezip(entries), tree)


DTYPES = ["F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "F8_E4M3", "F32", "XX", ""]


@FUZZ
@given(st.data())
def test_hostile_safetensors_headers_are_refused_before_allocating(saved, data):
    tree, saved_bytes = saved
    kept = [i for i in tree.store.entries if i != tree.root]
    names = [f"{node}/{entry}" for node in kept for entry in (*STATE_NAMES, "logits")]
    keys = data.draw(st.lists(st.one_of(st.sampled_from(names), st.text(max_size=20)), min_size=1, max_size=6))
    header = {}
    for key in keys:
        shape = data.draw(st.lists(st.integers(0, 2 ** 62), max_size=4))
        start = data.draw(st.integers(0, 2 ** 62))
        header[key] = {"dtype": data.draw(st.sampled_from(DTYPES)), "shape": shape,
                       "data_offsets": [start, start + data.draw(st.integers(-8, 2 ** 62))]}
    payload = data.draw(st.binary(max_size=256))
    states = safetensors_bytes(header, payload)
    archive = rezip([("tree.json", members(saved_bytes)["tree.json"]), ("states.safetensors", states)])
    assert imported_or_refused(archive, tree) is None


def test_a_huge_declared_header_length_is_refused(saved):
    tree, data = saved
    for length in (2 ** 63 - 1, 2 ** 40, 17 * 2 ** 20):
        states = struct.pack("<Q", length) + b"{}"
        archive = rezip([("tree.json", members(data)["tree.json"]), ("states.safetensors", states)])
        with pytest.raises(SessionFileError):
            load(archive, tree)


JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                              st.text(max_size=20)),
                    lambda inner: st.one_of(st.lists(inner, max_size=4),
                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=20)


@FUZZ
@given(JSON)
def test_random_json_documents_are_refused(saved, doc):
    tree, data = saved
    archive = rezip([("tree.json", json.dumps(doc).encode()), ("states.safetensors", members(data)["states.safetensors"])])
    assert imported_or_refused(archive, tree) is None


def field_paths(value, path=()):
    """Every (path to a value) inside a JSON document."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from field_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from field_paths(item, (*path, index))


@FUZZ
@given(st.data())
def test_one_field_of_a_valid_document_replaced_is_refused_or_consistent(saved, data):
    tree, saved_bytes = saved
    content = members(saved_bytes)
    doc = json.loads(content["tree.json"])
    path = data.draw(st.sampled_from([p for p in field_paths(doc) if p]))
    replacement = data.draw(JSON)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = replacement
    archive = rezip([("tree.json", json.dumps(doc).encode()), ("states.safetensors", content["states.safetensors"])])
    result = imported_or_refused(archive, tree)
    if result is not None:  # e.g. a new text for a node or a new meta value: still a tree whose links agree
        for node_id, node in result.nodes.items():
            assert all(result.nodes[child].parent == node_id for child in node.children)


def test_cyclic_and_invalid_json_is_refused(saved):
    tree, data = saved
    states = members(data)["states.safetensors"]
    for text in [b'{"a": ', b"\xff\xfe{}", b"NaN", b'{"format": Infinity}', b"[" * 50_000,
                 b'{"nodes": [' + b'{"id": "x", "children": ["x"]},' * 1000 + b"{}]}"]:
        with pytest.raises(SessionFileError):
            load(rezip([("tree.json", text), ("states.safetensors", states)]), tree)


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_pickles_anywhere_in_the_file_are_never_unpickled(saved, tmp_path):
    tree, data = saved
    content = members(data)
    marker = tmp_path / "pwned"
    bomb = pickle.dumps(Exploit(marker))
    for entries in [[("tree.json", bomb), ("states.safetensors", content["states.safetensors"])],
                    [("tree.json", content["tree.json"]), ("states.safetensors", bomb)],
                    [("tree.json", content["tree.json"]), ("states.safetensors", content["states.safetensors"]),
                     ("data.pkl", bomb)]]:
        with pytest.raises(SessionFileError):
            load(rezip(entries), tree)
    with pytest.raises(SessionFileError):
        load(bomb, tree)
    assert not marker.exists()


# ---- the sampling-preset loader ---------------------------------------------------------------------------
def preset_file(tmp_path_factory, content: bytes):
    path = tmp_path_factory.mktemp("preset") / "fuzzed.yaml"
    path.write_bytes(content)
    return path


def loaded_or_refused(path):
    """The loader's only two answers: settings, or a ConfigError that names the file."""
    try:
        return load_sampling_preset(path)
    except ConfigError as err:
        assert str(err).startswith(f"{path}: "), str(err)
        assert len(str(err)) < 2000, "an error message should stay short whatever the file holds"
        return None


FIELDS = ["temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens", "do_sample", "stop", "seed",
          "logit_bias", "presence_penalty", "frequency_penalty", "temprature", "", "__class__"]
YAML_VALUES = st.one_of(JSON, st.floats(allow_nan=True, allow_infinity=True), st.integers(-2 ** 70, 2 ** 70))


@FUZZ
@given(st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=10)), YAML_VALUES, max_size=5))
def test_random_preset_mappings_load_or_name_the_file(tmp_path_factory, mapping):
    path = preset_file(tmp_path_factory, yaml.safe_dump(mapping, allow_unicode=True).encode())
    result = loaded_or_refused(path)
    assert result is None or isinstance(result, SamplingSettings)


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_random_preset_bytes_load_or_name_the_file(tmp_path_factory, content):
    result = loaded_or_refused(preset_file(tmp_path_factory, content))
    assert result is None or isinstance(result, SamplingSettings)


def billion_laughs(key: str, levels: int = 10) -> str:
    """A few hundred bytes of nested aliases that expand to 9**9 items, all under a known setting."""
    items = ['&a0 ["lol"]'] + [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return f"{key}: [{', '.join(items)}]\n"


@pytest.mark.parametrize("key", ["banned_tokens", "stop", "logit_bias", "temperature"])
def test_a_yaml_bomb_is_refused_at_once_with_a_short_message(tmp_path_factory, key):
    path = preset_file(tmp_path_factory, billion_laughs(key).encode())
    with pytest.raises(ConfigError, match=f"^{path}: cannot read sampling preset: aliases .* are not allowed"):
        load_sampling_preset(path)


def test_a_huge_value_is_quoted_short(tmp_path_factory):
    path = preset_file(tmp_path_factory, yaml.safe_dump({"banned_tokens": ["x" * 50] * 10_000}).encode())
    with pytest.raises(ConfigError, match=f"^{path}: banned_tokens: ") as caught:
        load_sampling_preset(path)
    assert len(str(caught.value)) < 500


def test_yaml_tags_and_odd_documents_load_or_name_the_file(tmp_path_factory):
    for text in ["stop: &s [*s]\n", "!!python/object/apply:os.system ['true']\n",
                 "temperature: !!binary aGVsbG8=\n", "? [1, 2]\n: 3\n", "temperature: 0.5\n" * 2,
                 "<<: {temperature: 0.5}\ntop_k: 2\n", "%YAML 9.9\n---\ntemperature: 1\n"]:
        result = loaded_or_refused(preset_file(tmp_path_factory, text.encode()))
        assert result is None or isinstance(result, SamplingSettings), text


def test_non_utf8_preset_names_the_file(tmp_path_factory):
    path = preset_file(tmp_path_factory, "temperature: 0.5 # caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=f"^{path}: cannot read sampling preset"):
        load_sampling_preset(path)


# ---- the streaming detokenizer ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def streamed(tokenizer, ids) -> str:
    decoder = tokenizer.stream_decoder()
    return "".join(decoder.step(token) for token in ids) + decoder.flush()


@FUZZ
@given(st.lists(st.integers(0, 399), max_size=80))
def test_stream_of_any_in_range_ids_equals_the_full_decode(tokenizer, ids):
    assert streamed(tokenizer, ids) == tokenizer.decode(ids)


@FUZZ
@given(st.text(max_size=60), st.randoms(use_true_random=False))
def test_stream_of_text_split_anywhere_equals_the_text(tokenizer, text, rng):
    ids = random_split_ids(text, rng)  # the text's bytes cut into tokens at random points
    assert streamed(tokenizer, ids) == tokenizer.decode(ids) == text


@FUZZ
@given(st.lists(st.integers(0, 399), max_size=30), st.integers(-2 ** 70, 2 ** 70).filter(lambda t: not 0 <= t < 400),
       st.integers(0, 30))
def test_an_out_of_range_id_is_a_clear_error_and_the_stream_goes_on(tokenizer, ids, bad, where):
    decoder = tokenizer.stream_decoder()
    where = min(where, len(ids))
    text = "".join(decoder.step(token) for token in ids[:where])
    with pytest.raises(InputError, match=f"token id {bad} is outside the vocabulary"):
        decoder.step(bad)
    text += "".join(decoder.step(token) for token in ids[where:]) + decoder.flush()
    assert text == tokenizer.decode(ids)


def test_ids_of_the_wrong_type_are_clear_errors(tokenizer):
    decoder = tokenizer.stream_decoder()
    for bad in [1.5, "3", None, [1], float("nan")]:
        with pytest.raises(InputError):
            decoder.step(bad)
    with pytest.raises(InputError):
        tokenizer.decode([1, 2.0])
    assert streamed(tokenizer, [1, 2]) == tokenizer.decode([1, 2])
