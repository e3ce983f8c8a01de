"""Every named API endpoint of the web app, fed hostile arguments by hypothesis.

Property, for each endpoint: the callback returns normally or raises gr.Error (never another exception), the
error's text names the problem without a server path or a traceback, and afterwards the same session still
generates with its tree intact while another session is untouched. The callbacks are driven in-process
(the BlockFunction's fn with the session's state value); a few calls go through the live HTTP API.
"""
import math
import re
import zipfile
from pathlib import Path
from typing import NamedTuple

import pytest

gr = pytest.importorskip("gradio")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gradio.helpers import special_args  # noqa: E402

from rwkv_app.services import conversations  # noqa: E402
from rwkv_app.services.identity import new_visitor_key, owner_of  # noqa: E402
from rwkv_app.services.stores import open_store  # noqa: E402
from rwkv_app.ui import build_app  # noqa: E402

from .app_helpers import free_port, tiny_playground, write_tiny_model  # noqa: E402

MAX_PROMPT = 300  # the fuzzed playground's limits: small, so "over the limit" strings stay cheap
MAX_NEW = 8
MAX_UPLOAD_MB = 0.5
OWN, OTHER, UNKNOWN = "<own node>", "<other session's node>", "<unknown node>"  # resolved at call time
MINE, THEIRS = "<own conversation>", "<other visitor's conversation>"
FUZZ = settings(max_examples=12, deadline=None, derandomize=True, database=None, phases=(Phase.explicit, Phase.generate),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# ---- hostile values -------------------------------------------------------------------------------------
SPECIAL_TEXT = ["", " ", "\t\n  \r", "\x00", "\x00\x01\x1b[31m\x7f", "\ud800", "a\udfffb", "\u202e\u200b\ufeff",
                "x" * (MAX_PROMPT + 1), "y" * 5000, "../../etc/passwd", "/etc/passwd", "demo-model",
                "https://huggingface.co/BlinkDL/rwkv-4-pile-169m", "BlinkDL/rwkv-4-pile-169m", "<|endoftext|>",
                "{'__class__': 1}", "balanced.yaml", "../sampling/balanced", "%s%n{0}", "NaN", "-1", "1e309"]
TEXT = st.one_of(st.sampled_from(SPECIAL_TEXT), st.text(st.characters(codec=None), max_size=40),
                 st.text(st.characters(codec="utf-8"), min_size=1, max_size=40))
NUMBER = st.one_of(st.sampled_from([0, -1, 1, 2 ** 31, 2 ** 63, -(2 ** 70), 10 ** 30, 0.5, -0.0]),
                   st.floats(allow_nan=True, allow_infinity=True), st.integers())
ANYTHING = st.one_of(st.none(), st.booleans(), NUMBER, TEXT, st.lists(st.integers(), max_size=3),
                     st.dictionaries(st.text(max_size=5), st.integers(), max_size=2), st.just(b"\xff\xfe"))


class Arg(NamedTuple):
    """One input's values: what a browser sends (`usual`) and what a hostile client may send (`hostile`)."""
    usual: st.SearchStrategy
    hostile: st.SearchStrategy


def arg(usual, special=None) -> Arg:
    return Arg(usual, st.one_of(special, ANYTHING) if special is not None else ANYTHING)


def arguments(inputs: tuple) -> st.SearchStrategy:
    """Mostly one hostile argument among usual ones (so it reaches deep into the callback), sometimes all."""
    one = st.integers(0, max(len(inputs) - 1, 0)).flatmap(
        lambda k: st.tuples(*[a.hostile if i == k else a.usual for i, a in enumerate(inputs)]))
    return st.one_of(one, one, one, st.tuples(*[st.one_of(a.usual, a.hostile) for a in inputs]))


def strategies(presets, files, default_model) -> dict[str, tuple]:
    """The values of each non-state input of each named endpoint, in the endpoint's input order."""
    text = arg(st.sampled_from(["Hello", "The fox"]), TEXT)
    extra = arg(st.sampled_from(["", " and then"]), TEXT)
    node = arg(st.sampled_from([OWN, "", None]), st.sampled_from([OTHER, UNKNOWN, "root", "0" * 16]))
    seed = arg(st.one_of(st.integers(0, 9), st.none()), NUMBER)
    length = arg(st.integers(1, MAX_NEW), NUMBER)
    pick = arg(st.sampled_from(presets), TEXT)

    def knob(low, high):
        return arg(st.floats(low, high), NUMBER)
    chat_knobs = (pick, knob(0, 2), knob(0, 1), knob(0, 200), knob(1, 2), length)
    penalties = (knob(0, 2), knob(0, 2))  # presence, frequency: the last inputs of /chat and /chat_retry
    names = (arg(st.sampled_from(["User", "Ann"]), TEXT), arg(st.sampled_from(["Bot", "Emma"]), TEXT))
    system = arg(st.sampled_from(["", "Be brief."]), TEXT)
    thinking = arg(st.sampled_from(["auto", "think", "no_think", None]), TEXT)
    turn = arg(st.sampled_from(["0", "1", "2", None]), st.sampled_from(["-1", "99", "1.5", "1e9"]))
    position = arg(st.integers(0, 3), st.integers(-10 ** 20, 10 ** 20))
    token = arg(st.sampled_from(["0", "1", "42"]), st.sampled_from(["399", "400", "-1", "1e3", "0x10"]))
    select = arg(st.integers(0, 5), st.integers(-10 ** 20, 10 ** 20))
    count = arg(st.integers(2, 4), st.integers(-5, 10))
    tensor = arg(st.sampled_from(["num", "den", "max", "att_shift", "ffn_shift"]), TEXT)
    layer_or_head = arg(st.integers(0, 1), st.one_of(NUMBER, TEXT))
    source = arg(st.just(default_model), st.sampled_from(["tiny-test-model", "demo-model", "../demo-model", "/etc",
                                                          "someone/unknown-model", ".", default_model + "/.."]))
    upload = arg(st.just("<real export>"), st.sampled_from(sorted(files)))
    state_file = arg(st.just("<real state>"), st.sampled_from(sorted(files)))
    no_file = arg(st.just(None), st.sampled_from(sorted(files)))
    weight = arg(st.floats(0, 1), NUMBER)
    conversation = arg(st.just(MINE), st.sampled_from([THEIRS, "f" * 16, "", "../x"]))
    return {
        "chat": (text, *chat_knobs, system, *names, *penalties, thinking),
        "chat_submit": (text, *chat_knobs, system, *names, *penalties, thinking),
        "chat_stop": (), "chat_retry": (*chat_knobs, *penalties), "chat_undo": (), "chat_new": (system, *names, thinking),
        "chat_edit": (turn, text), "chat_previous_branch": (turn,), "chat_next_branch": (turn,),
        "chat_preset_settings": (pick,),
        "generate": (text, pick, length, seed), "continue": (node, extra, pick, length, seed), "stop": (),
        "select_node": (node,), "tree": (), "pick_token": (select,), "rewind": (node, position, pick, length, seed),
        "force": (node, position, token, pick, length, seed), "delete_node": (node,),
        "compare": (count, length, *(pick, seed) * 4), "compare_stop": (),
        "keep_1": (), "keep_2": (), "keep_3": (), "keep_4": (),
        "state": (node, node, tensor), "state_heads": (node, node, layer_or_head, layer_or_head),
        "load_model": (source,), "models_info": (), "export_session": (), "export_state": (node,),
        "import_session": (upload,), "load_state": (state_file,), "start_empty": (),
        "mix_states": (node, no_file, node, no_file, weight), "chat_load_state": (state_file, system, *names),
        "identify": (arg(st.sampled_from(["", "k" * 43]), TEXT),), "conversations": (), "new_conversation": (),
        "open_conversation": (conversation, arg(st.booleans())), "rename_conversation": (conversation, text),
        "delete_conversation": (conversation,), "delete_my_data": (),
    }


# ---- the app and its sessions ---------------------------------------------------------------------------
class App:
    def __init__(self, directory, files_dir):
        self.playground = tiny_playground(directory, max_prompt_chars=MAX_PROMPT, max_new_tokens=MAX_NEW,
                                          max_upload_mb=MAX_UPLOAD_MB)
        self.playground.store = open_store(str(files_dir.parent / "store"), ttl_s=3600.0, quota_bytes=2 ** 24)
        self.demo = build_app(self.playground)
        self.endpoints = {fn.api_name: fn for fn in self.demo.fns.values()
                          if fn.api_name and fn.api_visibility != "private"}
        self.server_paths = [str(directory), str(files_dir)]
        self.files: dict[str, str] = {}
        self.files = hostile_files(files_dir, self)
        self.a, self.b = self.playground.new_session(), self.playground.new_session()
        for session in (self.a, self.b):
            conversations.identify(session, owner_of(new_visitor_key()))  # two visitors, each saving
            self.call("generate", ["Hello", "balanced", 3, 1], session)
        self.b_snapshot = snapshot(self.b)

    def call(self, name, args, session):
        """The endpoint's callback on `args` plus the state value; generators are run to the end."""
        fn = self.endpoints[name]
        args = [self.resolve(value) for value in args]
        event = None
        if fn.collects_event_data:  # the clicked item's index, which a browser sends as event data
            event = gr.SelectData(None, {"index": args.pop(), "value": "x", "selected": True})
        state = [session] if any(isinstance(c, gr.State) for c in fn.inputs) else []
        args, *_ = special_args(fn.fn, [*args, *state], request=None, event_data=event)  # as Gradio calls it
        result = fn.fn(*args)
        if hasattr(result, "__next__"):
            for result in result:
                pass
        return result

    def resolve(self, value):
        if value == OWN:
            return self.a.current
        if value == OTHER:
            return next(n for n in self.b.tree.nodes if n != self.b.tree.root)
        if value == UNKNOWN:
            return "f" * 16
        if value in (MINE, THEIRS):
            return (self.a if value == MINE else self.b).saved.id
        return self.files.get(value, value) if isinstance(value, str) else value


def snapshot(session) -> dict:
    return {i: (n.parent, tuple(n.tokens), tuple(n.children), n.text) for i, n in session.tree.nodes.items()}


def session_state(app, directory) -> str:
    """A state file exported from a fresh session's node (a copy: closing the session deletes its exports)."""
    session = app.playground.new_session()
    app.call("generate", ["Hello", "balanced", 3, 1], session)
    data = Path(session.export_state(None, directory / "states")).read_bytes()
    session.close()
    copy = directory / "exported-state.safetensors"
    copy.write_bytes(data)
    return str(copy)


def hostile_files(directory, app) -> dict[str, str]:
    """Upload candidates by name: a real export, garbage, a truncated zip, one over the size limit, a pickle."""
    directory.mkdir(exist_ok=True)
    session = app.playground.new_session()
    app.call("generate", ["Hello", "balanced", 3, 1], session)
    data = Path(session.export(directory)).read_bytes()
    session.close()  # which deletes its export: the fuzzing uploads a copy
    real = directory / "real.zip"
    real.write_bytes(data)
    paths = {"<real export>": str(real)}
    state = Path(session_state(app, directory))  # a real state file of this model, and hostile ones
    paths["<real state>"] = str(state)
    for name, content in {"garbage.safetensors": b"\x00garbage" * 10, "pickle.pth": b"\x80\x04\x95cos\nsystem\n.",
                          "truncated.safetensors": state.read_bytes()[:100]}.items():
        (directory / name).write_bytes(content)
        paths[f"<{name}>"] = str(directory / name)
    for name, content in {"garbage.zip": b"\x00garbage" * 10, "truncated.zip": data[: len(data) // 2],
                          "huge.zip": b"\0" * int(MAX_UPLOAD_MB * 2 ** 20 + 1),
                          "pickle.zip": b"\x80\x04\x95cos\nsystem\n."}.items():
        (directory / name).write_bytes(content)
        paths[f"<{name}>"] = str(directory / name)
    with zipfile.ZipFile(directory / "traversal.zip", "w") as archive:
        archive.writestr("../../escape.json", "{}")
    paths["<traversal.zip>"] = str(directory / "traversal.zip")
    paths["<directory>"] = str(directory)
    paths["<missing>"] = str(directory / "missing.zip")
    return paths


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    app = App(write_tiny_model(root / "tiny"), root / "files")
    yield app
    app.a.close()
    app.b.close()
    app.playground.close()


# ---- the property ---------------------------------------------------------------------------------------
TRACEBACK = re.compile(r"Traceback|File \"|line \d+, in ")


def check_error_text(text: str, app: App) -> None:
    assert text and len(text.split()) >= 2, f"an error should say what is wrong: {text!r}"
    assert not TRACEBACK.search(text), text
    for path in app.server_paths:
        assert path not in text, text
    assert not re.search(r"(?<![\w.~/:-])/(?:[^\s'\"/]+/)+", text), f"a server path in {text!r}"


def check_still_serving(app: App) -> None:
    """The fuzzed session's tree is consistent and it still generates; the other session is untouched."""
    app.a.stop()
    tree = app.a.tree
    for node_id, node in tree.nodes.items():
        if node_id != tree.root:
            assert node.parent in tree.nodes and node_id in tree.nodes[node.parent].children
        assert all(tree.nodes[child].parent == node_id for child in node.children)
    assert app.a.current in tree.nodes
    before = set(tree.nodes)
    text = app.call("generate", ["Once upon a time", "balanced", 2, 7], app.a)[0]
    assert isinstance(text, str) and app.a.current not in before and app.a.tree.path_text(app.a.current) != ""
    assert snapshot(app.b) == app.b_snapshot


def fuzz_once(app: App, name: str, args: list) -> None:
    try:
        app.call(name, args, app.a)
    except gr.Error as err:
        check_error_text(err.message, app)
    finally:
        if app.a.closed or app.a.loaded.key.source != app.playground.default_source:
            app.a.close()  # load_model may (rightly) switch this session to another model: start a fresh one
            app.a = app.playground.new_session()
    check_still_serving(app)


def test_every_named_endpoint_has_a_strategy_for_each_input(app):
    table = strategies(app.playground.sampling_presets(), app.files, app.playground.default_source)
    assert set(table) == set(app.endpoints), "a new endpoint needs a strategy here"
    for name, fn in app.endpoints.items():
        inputs = [c for c in fn.inputs if not isinstance(c, gr.State)] + ([None] if fn.collects_event_data else [])
        assert len(table[name]) == len(inputs), name


ENDPOINTS = ["chat", "chat_submit", "chat_stop", "chat_retry", "chat_undo", "chat_new", "chat_edit",
             "chat_previous_branch", "chat_next_branch", "chat_preset_settings", "generate", "continue", "stop",
             "select_node", "tree", "pick_token", "rewind", "force", "delete_node", "compare", "compare_stop", "keep_1",
             "keep_2", "keep_3", "keep_4", "state", "state_heads", "load_model", "models_info", "export_session",
             "export_state", "import_session", "load_state", "start_empty", "mix_states", "chat_load_state",
             "identify", "conversations", "new_conversation", "open_conversation", "rename_conversation",
             "delete_conversation", "delete_my_data"]


def test_the_parametrized_list_is_every_endpoint(app):
    assert set(ENDPOINTS) == set(app.endpoints), "add the new endpoint to ENDPOINTS and to strategies()"


def fuzz_endpoint(app, name, examples: int) -> None:
    inputs = strategies(app.playground.sampling_presets(), app.files, app.playground.default_source)[name]

    @settings(FUZZ, max_examples=examples)
    @given(arguments(inputs))
    def run(args):
        fuzz_once(app, name, list(args))
    run()


@pytest.mark.parametrize("name", ENDPOINTS)
def test_hostile_arguments_get_a_clear_error_and_everyone_keeps_working(app, name):
    fuzz_endpoint(app, name, examples=8)


@pytest.mark.slow
@pytest.mark.parametrize("name", ENDPOINTS)
def test_many_hostile_arguments(app, name):
    fuzz_endpoint(app, name, examples=60)


def test_number_inputs_that_are_not_finite_are_refused_clearly(app):
    for value in (math.nan, math.inf, -math.inf, "abc", 1e300):
        with pytest.raises(gr.Error, match="(?i)number|max_new_tokens|seed|integer"):
            app.call("generate", ["Hello", "balanced", value, 1], app.a)
    check_still_serving(app)


def test_another_sessions_node_is_an_unknown_node(app):
    for name, args in [("select_node", [OTHER]), ("continue", [OTHER, "", "balanced", 2, 1]),
                       ("delete_node", [OTHER]), ("rewind", [OTHER, 0, "balanced", 2, 1])]:
        with pytest.raises(gr.Error, match="(?i)unknown node|no node"):
            app.call(name, args, app.a)
    check_still_serving(app)


# ---- through the live HTTP API ----------------------------------------------------------------------------
GENERIC = "has not enabled verbose error reporting"  # gradio_client's text for an error the app did not explain


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-http")
    playground = tiny_playground(write_tiny_model(root / "tiny"), max_prompt_chars=MAX_PROMPT,
                                 max_new_tokens=MAX_NEW, max_upload_mb=1)
    demo = build_app(playground)
    demo.queue()
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                            max_file_size="1mb")
    garbage = root / "garbage.zip"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    yield url, garbage
    demo.close()
    playground.close()


def test_hostile_calls_over_http_get_clear_errors_and_the_server_keeps_serving(served):
    from gradio_client import Client, handle_file

    url, garbage = served
    client, bystander = Client(url, verbose=False), Client(url, verbose=False)
    first = bystander.predict("A quiet bystander", "balanced", 4, 3, api_name="/generate")
    hostile = [("/generate", ("x" * (MAX_PROMPT + 1), "balanced", 4, 1), "at most"),
               ("/generate", ("Hi", "../../etc/passwd", 4, 1), "Preset: '../../etc/passwd' is not one of balanced"),
               ("/generate", ("Hi", "balanced", 10 ** 9, 1), "Max new tokens: 1000000000 is outside 1 to "),
               ("/select_node", ("f" * 16,), "(?i)unknown node"),
               ("/chat_edit", ("99", "new text"), "(?i)no conversation|no message"),
               ("/compare", (9, 4, *("balanced", 1) * 4), "Columns: 9 is not one of 2, 3, 4"),
               ("/chat_preset_settings", ("/etc/passwd",), "Preset: '/etc/passwd' is not one of balanced"),
               ("/load_model", ("../",), "allow-any-model"),
               ("/import_session", (handle_file(str(garbage)),), "Session file rejected")]
    for api_name, args, expected in hostile:
        with pytest.raises(Exception) as caught:
            client.predict(*args, api_name=api_name)
        text = str(caught.value)
        assert re.search(expected, text) and GENERIC not in text, (api_name, text)
        assert not TRACEBACK.search(text) and str(garbage.parent) not in text, text
    assert client.predict("Once upon a time", "balanced", 4, 1, api_name="/generate")
    assert bystander.predict("A quiet bystander", "balanced", 4, 3, api_name="/generate") == first
    client.close(), bystander.close()


def test_a_lone_surrogate_in_raw_json_is_a_clear_error(served):
    """gradio_client cannot encode one; a hand-written JSON body ("\\ud800") can, and Python decodes it."""
    import httpx

    url, _ = served
    body = '{"data": ["\\ud800 lone surrogate", "balanced", 4, 1]}'
    with httpx.Client(timeout=30) as http:
        event = http.post(f"{url}gradio_api/call/generate", content=body,
                          headers={"Content-Type": "application/json"}).json()["event_id"]
        stream = http.get(f"{url}gradio_api/call/generate/{event}").text
    assert "event: error" in stream and "not valid Unicode" in stream, stream[:300]
