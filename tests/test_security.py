"""Security checks, one test each: sessions cannot reach each other's nodes or files, visitors cannot load server
paths or arbitrary Hub repos (unless the operator allows it), uploads are size-limited, nothing is ever
unpickled, and what the browser sees of an error holds no server path and no traceback."""
import ast
import json
import os
import pickle
import stat
from pathlib import Path

import pytest
import torch

gr = pytest.importorskip("gradio")
import httpx  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from rwkv_app.errors import CheckpointError, HubError, InputError  # noqa: E402
from rwkv_app.state_tree import SessionError  # noqa: E402
from rwkv_app.ui import build_app  # noqa: E402
from rwkv_app.ui.common import guarded  # noqa: E402
from rwkv_app.ui.errors import public_message  # noqa: E402

from .app_helpers import free_port, tiny_playground, write_tiny_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
UPLOAD_MB = 1


def launch(demo):
    """As app.py launches it: queue, loopback, the upload limit; show_error left at Gradio's default."""
    demo.queue()
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                            max_file_size=f"{UPLOAD_MB}mb")
    return url


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("security") / "tiny")


@pytest.fixture(scope="module")
def served(model_dir):
    playground = tiny_playground(model_dir, max_upload_mb=UPLOAD_MB, max_new_tokens=8)
    demo = build_app(playground)
    url = launch(demo)
    yield url, playground, demo
    demo.close()
    playground.close()


def snapshot(session) -> dict:
    return {i: (n.parent, tuple(n.tokens), tuple(n.children)) for i, n in session.tree.nodes.items()}


def generated(session, prompt="Hello there") -> str:
    for _ in session.generate(prompt, "balanced", 4, 1):
        pass
    return session.current


# ---- sessions are isolated --------------------------------------------------------------------------------
def test_a_session_cannot_name_another_sessions_nodes(model_dir):
    playground = tiny_playground(model_dir)
    a, b = playground.new_session(), playground.new_session()
    generated(a), generated(b, "Other text")
    before = snapshot(a)
    for node in [n for n in a.tree.nodes]:  # every id of A, the root included (B's root has another id)
        attempts = [lambda: b.select(node), lambda: list(b.continue_from(node, "more", "balanced", 2, 1)),
                    lambda: b.rewind(node, 1), lambda: b.force(node, 0, 1), lambda: b.delete(node),
                    lambda: list(b.compare(node, [("balanced", 1), ("balanced", 2)], 2))]
        for attempt in attempts:
            with pytest.raises(SessionError, match="unknown node id"):
                attempt()
    assert snapshot(a) == before and set(a.tree.nodes).isdisjoint(b.tree.nodes)
    playground.close()


def test_over_http_another_clients_node_is_refused_and_its_tree_untouched(served):
    url, playground, _ = served
    alice, mallory = Client(url, verbose=False), Client(url, verbose=False)
    alice.predict("Hello there", "balanced", 4, 1, api_name="/generate")
    mallory.predict("Something else", "balanced", 4, 1, api_name="/generate")
    session = playground.session_for(alice.session_hash)
    before, node = snapshot(session), session.current
    for api_name, args in [("/select_node", (node,)), ("/delete_node", (node,)),
                           ("/continue", (node, "more", "balanced", 2, 1)), ("/rewind", (node, 1, "balanced", 2, 1)),
                           ("/state", (node, None, "num"))]:
        with pytest.raises(Exception, match="(?i)unknown node"):
            mallory.predict(*args, api_name=api_name)
    assert snapshot(session) == before
    assert alice.predict("still mine", "balanced", 2, 1, api_name="/generate") is not None
    alice.close(), mallory.close()


def test_exports_go_to_separate_unguessable_private_folders(served):
    _, playground, demo = served
    export = next(fn for fn in demo.fns.values() if fn.api_name == "export_session").fn
    sessions = [playground.new_session(), playground.new_session()]
    paths = [Path(export(session, None)[0]) for session in sessions]
    folders = [path.parent for path in paths]
    assert folders[0] != folders[1] and folders[0].parent == folders[1].parent
    for folder in folders:
        assert len(folder.name) == 32 and int(folder.name, 16) >= 0  # 128 random bits
    assert stat.S_IMODE(folders[0].parent.stat().st_mode) == 0o700  # other users of the machine cannot list it
    for session in sessions:
        session.close()


def test_gradios_file_route_refuses_server_files(served, model_dir):
    url, playground, demo = served
    export = next(fn for fn in demo.fns.values() if fn.api_name == "export_session").fn
    session = playground.new_session()
    exported = export(session, None)[0]  # written on the server, not yet handed to Gradio's cache
    targets = [model_dir / "config.json", model_dir / "tokenizer.json", Path("/etc/passwd"), Path(exported),
               REPO / "demo-model" / "config.json", REPO / "app.py", Path(__file__)]
    with httpx.Client(timeout=10) as http:
        for target in targets:
            for route in (f"{url}gradio_api/file={target}", f"{url}gradio_api/file={os.path.relpath(target)}",
                          f"{url}file={target}"):
                response = http.get(route)
                assert response.status_code in (403, 404), (route, response.status_code)
                assert b"root:" not in response.content and b"hidden_size" not in response.content
    session.close()


def test_a_download_is_served_only_under_its_salted_hash(served):
    url, _, _ = served
    with httpx.Client(timeout=30) as http:
        event = http.post(f"{url}gradio_api/call/export_session", json={"data": []}).json()["event_id"]
        stream = http.get(f"{url}gradio_api/call/export_session/{event}").text
        data = next(line for line in stream.splitlines() if line.startswith("data: ["))
        file_url = json.loads(data[len("data: "):])[0]["url"]
        assert http.get(file_url).status_code == 200  # the owner's link works
        folder, name = file_url.rsplit("/", 1)
        digest = folder.rsplit("/", 1)[1]
        assert len(digest) == 64  # sha256 over Gradio's random seed and the content: not guessable
        guessed = f"{folder[:-64]}{'0' * 64}/{name}"
        assert http.get(guessed).status_code in (403, 404)


def test_an_import_cannot_name_a_server_file(served, model_dir):
    """The upload input takes files the visitor uploaded, not a path on the server (which would at least tell
    whether that file exists)."""
    url, _, _ = served
    with httpx.Client(timeout=30) as http:
        for target in [model_dir / "config.json", Path("/etc/passwd"), Path("/nonexistent/x.zip")]:
            body = {"data": [{"path": str(target), "meta": {"_type": "gradio.FileData"}}]}
            event = http.post(f"{url}gradio_api/call/import_session", json=body).json()["event_id"]
            stream = http.get(f"{url}gradio_api/call/import_session/{event}").text
            assert "event: error" in stream and "Session file rejected" not in stream, stream[:300]
            assert str(model_dir) not in stream and "No such file" not in stream


# ---- what visitors may load -------------------------------------------------------------------------------
TRICKY_SOURCES = ["../", "..", "/", "/etc", "/etc/passwd", "~", "~/.cache/huggingface", "demo-model", "./demo-model",
                  "demo-model/", str(REPO / "demo-model"), "../../../../etc", "file:///etc/passwd",
                  "https://huggingface.co/BlinkDL/rwkv-4-pile-169m", "hf://BlinkDL/rwkv-4-pile-169m",
                  "BlinkDL/rwkv-4-pile-169m", "someone/unknown-model", "RWKV/rwkv-4-169m-pile@main", "C:\\models",
                  "\\\\server\\share", "tiny\x00", "tiny/../tiny"]


def test_visitors_load_presets_only_unless_the_operator_allows_more(served, model_dir):
    _, playground, _ = served
    assert playground.options.allow_any_model is False
    for source in [*TRICKY_SOURCES, str(model_dir.parent), str(model_dir / "config.json"),
                   str(model_dir) + "/../tiny", str(model_dir) + "/"]:
        with pytest.raises(InputError, match="allow-any-model"):
            playground.check_source(source)
    assert playground.check_source(f"  {playground.default_source} ") == playground.default_source
    for preset in playground.model_choices():
        assert playground.check_source(preset) == preset


def test_the_operator_flag_opens_paths_and_repo_ids_but_not_nonsense(model_dir):
    playground = tiny_playground(model_dir, allow_any_model=True)
    assert playground.check_source(str(REPO / "demo-model")) == str(REPO / "demo-model")
    assert playground.check_source("someone/some-model") == "someone/some-model"
    with pytest.raises(InputError, match="not a preset, a Hub repo id"):
        playground.check_source("no-such-thing")
    playground.close()


def test_load_model_over_http_refuses_server_paths(served):
    url, _, _ = served
    client = Client(url, verbose=False)
    for source in ["../", "/etc", "demo-model", str(REPO / "demo-model"), "BlinkDL/rwkv-4-pile-169m"]:
        with pytest.raises(Exception, match="allow-any-model"):
            client.predict(source, api_name="/load_model")
    assert client.predict("works", "balanced", 2, 1, api_name="/generate") is not None
    client.close()


def test_a_sampling_preset_name_is_never_a_path(served):
    _, playground, demo = served
    knobs = next(fn for fn in demo.fns.values() if fn.api_name == "chat_preset_settings").fn
    session = playground.new_session()
    for name in ["/etc/passwd", "../sampling/balanced.yaml", str(REPO / "presets" / "sampling" / "balanced.yaml"),
                 "balanced/", "~/x.yaml"]:
        with pytest.raises(gr.Error, match="Unknown sampling preset"):
            knobs(name)
        with pytest.raises(InputError, match="unknown sampling preset"):
            session.branch(name)
    assert knobs("balanced")
    session.close()


# ---- uploads are size-limited -----------------------------------------------------------------------------
def test_an_import_over_the_limit_is_refused_by_the_service(served, tmp_path):
    _, playground, _ = served
    session = playground.new_session()
    big = tmp_path / "big.zip"
    big.write_bytes(b"\0" * (UPLOAD_MB * 2 ** 20 + 1))
    with pytest.raises(InputError, match=f"this server takes at most {UPLOAD_MB:g} MiB"):
        session.load_file(str(big))
    session.close()


def test_an_upload_over_the_limit_is_refused_over_http(served, tmp_path):
    url, _, _ = served
    big = tmp_path / "big.zip"
    big.write_bytes(b"\0" * (UPLOAD_MB * 2 ** 20 + 1))
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="(?i)size|large|413"):
        client.predict(handle_file(str(big)), api_name="/import_session")
    assert client.predict("still serving", "balanced", 2, 1, api_name="/generate") is not None
    client.close()


# ---- nothing is ever unpickled ----------------------------------------------------------------------------
def unpickling_calls(source: str) -> list[str]:
    """Calls in `source` that could unpickle: pickle/dill/joblib loads, Unpickler, torch.load without
    weights_only=True, numpy loads with allow_pickle=True, yaml loads with an unsafe loader."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if name.split(".")[-1] in ("Unpickler", "unsafe_load", "full_load") or name in (
                "pickle.load", "pickle.loads", "dill.load", "dill.loads", "joblib.load", "cloudpickle.loads",
                "marshal.loads", "shelve.open", "pd.read_pickle", "pandas.read_pickle"):
            found.append(name)
        elif name == "torch.load" and keywords.get("weights_only") != "True":
            found.append(f"{name} without weights_only=True")
        elif name in ("np.load", "numpy.load") and keywords.get("allow_pickle") == "True":
            found.append(f"{name} with allow_pickle=True")
        elif name == "yaml.load" and not keywords.get("Loader", "").endswith(("SafeLoader", "PlainLoader")):
            found.append(f"{name} with Loader={keywords.get('Loader')}")
    return found


def test_the_code_never_unpickles():
    files = [p for folder in ("rwkv_app", "kernels") for p in (REPO / folder).rglob("*.py")]
    assert len(files) > 20
    offenders = {str(p.relative_to(REPO)): calls for p in files if (calls := unpickling_calls(p.read_text()))}
    assert offenders == {}
    assert unpickling_calls("import torch\ntorch.load(f)\npickle.loads(b)\nyaml.load(s, Loader=yaml.Loader)") == [
        "torch.load without weights_only=True", "pickle.loads", "yaml.load with Loader=yaml.Loader"]


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_a_malicious_pickle_checkpoint_does_not_run(model_dir, tmp_path):
    marker = tmp_path / "pwned"
    hostile = write_tiny_model(tmp_path / "hostile", seed=2)
    for weights in hostile.glob("*.safetensors"):
        weights.unlink()
    torch.save({"rwkv.embeddings.weight": Exploit(marker)}, hostile / "pytorch_model.bin")
    playground = tiny_playground(model_dir, allow_any_model=True)  # the operator allows server paths
    session = playground.new_session()
    with pytest.raises(CheckpointError, match="only weights_only loading is allowed"):
        session.switch_model(str(hostile))
    (hostile / "pytorch_model.bin").write_bytes(pickle.dumps(Exploit(marker)))  # a bare pickle, not torch's zip
    with pytest.raises(CheckpointError):
        session.switch_model(str(hostile))
    assert not marker.exists()
    assert generated(session) in session.tree.nodes  # still serving, on the model it had
    session.close()
    playground.close()


def test_a_pickle_uploaded_as_a_session_file_does_not_run(served, tmp_path):
    url, _, _ = served
    marker = tmp_path / "pwned-upload"
    upload = tmp_path / "session.zip"
    upload.write_bytes(pickle.dumps(Exploit(marker)))
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="Session file rejected"):
        client.predict(handle_file(str(upload)), api_name="/import_session")
    assert not marker.exists()
    client.close()


# ---- errors shown to the browser --------------------------------------------------------------------------
def test_public_messages_keep_file_names_but_not_where_they_are():
    cases = {CheckpointError("cannot read PyTorch file /srv/models/secret-org/pytorch_model.bin (truncated)"):
             "Cannot read PyTorch file pytorch_model.bin (truncated)",
             HubError("model not in the cache /root/.cache/huggingface/hub: run online once"):
             "Model not in the cache hub: run online once",
             InputError("unknown model 'someone/x': choose one of the presets"):
             "Unknown model 'someone/x': choose one of the presets",
             FileNotFoundError(2, "No such file or directory", "/tmp/gradio/abc/x.zip"):
             "[Errno 2] No such file or directory: 'x.zip'",
             RuntimeError(""): "RuntimeError"}
    for err, text in cases.items():
        assert public_message(err) == text


def test_real_server_paths_are_scrubbed_wherever_they_stand():
    cases = {"cannot read /home/alice/models/rwkv/model.pth": "Cannot read model.pth",
             "no such file '/tmp/gradio/4f2a/upload.zip'": "No such file 'upload.zip'",
             "(/work/wt/main/demo-model/config.json) is broken": "(config.json) is broken",
             "C:\\Users\\bob\\rwkv\\model.pth is truncated": "Model.pth is truncated",
             "C:/Users/bob/rwkv/model.pth is truncated": "Model.pth is truncated",
             "~/private/keys/x.safetensors: bad header": "X.safetensors: bad header",
             "<b>/srv/secret-org/weights.bin</b>": "<b>weights.bin</b>",
             "</home/alice/secret.bin>": "<secret.bin>",
             "/etc/passwd and /var/lib/x/y": "Passwd and y"}
    for text, shown in cases.items():
        assert public_message(InputError(text)) == shown, text


def test_a_visitors_markup_and_slashes_are_echoed_as_typed():
    """An HTML end tag is not a path: "</b>" came back as "<b>" (the "/b>" was cut to its last part "b>")."""
    for typed in ("no conversation named '<b>x</b>'", "unknown node '</b>'", "a / b", "<br />", "x</i></b>",
                  "and/or 1/2 tokens/s", "see https://huggingface.co/BlinkDL/rwkv7-g1/tree/main", "(/)"):
        assert public_message(InputError(typed)) == typed[0].upper() + typed[1:], typed


def test_guarded_callbacks_show_the_public_message(model_dir):
    @guarded
    def load():
        raise CheckpointError(f"{model_dir / 'config.json'}: hidden_size must be positive")
    with pytest.raises(gr.Error) as caught:
        load()
    assert caught.value.message == "Config.json: hidden_size must be positive"
    assert str(model_dir) not in caught.value.message


def test_the_browser_sees_no_server_path_and_no_traceback(model_dir, served):
    assert served[2].show_error is False  # the app as launched: Gradio hides unexpected errors' text
    with gr.Blocks() as demo:
        box = gr.Textbox()

        @guarded
        def expected(text):
            raise CheckpointError(f"cannot read {model_dir / 'model.safetensors'} (truncated?)")

        @guarded
        def unexpected(text):
            raise RuntimeError(f"internal failure in {model_dir / 'secret.py'}")

        box.submit(expected, box, box, api_name="expected")
        box.change(unexpected, box, box, api_name="unexpected")
    url = launch(demo)
    try:
        client = Client(url, verbose=False)
        with pytest.raises(Exception) as caught:
            client.predict("x", api_name="/expected")
        assert "Cannot read model.safetensors (truncated?)" in str(caught.value)
        with pytest.raises(Exception) as caught:
            client.predict("x", api_name="/unexpected")
        text = str(caught.value)
        assert "secret.py" not in text and str(model_dir) not in text and "Traceback" not in text
        assert "show_error" in text or "error" in text.lower()  # gradio_client's generic "the app raised an error"
        client.close()
    finally:
        demo.close()
