"""State files in the web app, through gradio_client on a tiny RWKV-7 `.pth` with the World tokenizer:
/load_state (the Playground's start), /start_empty, /mix_states, /chat_load_state; refused files."""
import pytest
import torch

gradio = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402

from rwkv_app.models.family import family_of  # noqa: E402
from rwkv_app.models.state_files import save_state_file  # noqa: E402
from rwkv_app.state_tree import SessionTree, export_session  # noqa: E402
from rwkv_app.tokenizers.tokenizer_select import tokenizer_in  # noqa: E402

from .app_helpers import launched  # noqa: E402
from .rwkv7_helpers import save_pth, tiny_model7  # noqa: E402
from .session_helpers import tiny_model  # noqa: E402
from .test_app_rwkv7 import WORLD  # noqa: E402
from .test_state_roots import runner_state, runner_time_state  # noqa: E402

PROMPT = "The weather today"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("personas")
    model = tiny_model7(seed=5, **WORLD)
    pth = save_pth(model, folder / "rwkv7-tiny.pth")
    with launched(pth) as (url, _):
        yield url, model, tokenizer_in(pth), folder


@pytest.fixture
def client(served):
    return Client(served[0], verbose=False)


@torch.no_grad()
def direct_text(model, tokenizer, state, prompt: str, count: int) -> str:
    """The model's greedy continuation of `prompt` run directly from `state`."""
    ids = tokenizer.encode(prompt)
    out = model.generate(torch.tensor([ids]), max_new_tokens=count, state=[s.clone() for s in state])
    return tokenizer.decode(out[0, len(ids):].tolist(), skip_special_tokens=True)


def persona_file(served, name: str, seed: int):
    _, model, _, folder = served
    time_state = runner_time_state(model, seed=seed, scale=2.0)
    torch.save(time_state, folder / name)  # RWKV-PEFT's layout
    return folder / name, time_state


def test_a_state_file_becomes_the_playground_start(client, served):
    _, model, tokenizer, _ = served
    path, time_state = persona_file(served, "persona.pth", seed=1)
    status = client.predict(handle_file(str(path)), api_name="/load_state")
    assert "state file persona.pth" in status
    root = next(n for n in client.predict(api_name="/tree") if n["role"] == "state")
    assert root["current"] and root["tokens"] == 0
    text = client.predict(PROMPT, "deterministic", 8, None, api_name="/generate")
    assert text == direct_text(model, tokenizer, runner_state(model, time_state), PROMPT, 8)
    prompt = next(n for n in client.predict(api_name="/tree") if n["role"] == "text")
    assert prompt["parent"] == root["id"]
    assert "empty state" in client.predict(api_name="/start_empty")
    empty = client.predict(PROMPT, "deterministic", 8, None, api_name="/generate")
    assert empty == direct_text(model, tokenizer, [s * 0 for s in runner_state(model, time_state)], PROMPT, 8)


def test_mixing_two_states_makes_a_new_root(client, served):
    _, model, tokenizer, _ = served
    first, first_state = persona_file(served, "first.pth", seed=2)
    second, second_state = persona_file(served, "second.pth", seed=3)
    client.predict(handle_file(str(first)), api_name="/load_state")
    node = next(n for n in client.predict(api_name="/tree") if n["role"] == "state")["id"]
    status = client.predict(node, None, "", handle_file(str(second)), 0.25, api_name="/mix_states")
    assert "mix 0.25" in status
    mixed_root = next(n for n in client.predict(api_name="/tree") if n["text"].startswith("mix"))
    assert mixed_root["role"] == "state" and mixed_root["current"]
    a, b = runner_state(model, first_state), runner_state(model, second_state)
    mixed = [0.25 * x + 0.75 * y for x, y in zip(a, b)]
    text = client.predict(PROMPT, "deterministic", 8, None, api_name="/generate")
    assert text == direct_text(model, tokenizer, mixed, PROMPT, 8)
    with pytest.raises(Exception, match="(?i)choose the second state"):
        client.predict(node, None, "", None, 0.5, api_name="/mix_states")


def test_a_chat_starts_from_a_state_file(client, served):
    path, _ = persona_file(served, "chat.pth", seed=4)
    assert client.predict(handle_file(str(path)), "", "User", "Assistant", api_name="/chat_load_state") == []
    messages = client.predict("Hello!", api_name="/chat")
    assert [m["role"] for m in messages] == ["user", "assistant"]
    nodes = {n["id"]: n for n in client.predict(api_name="/tree")}
    user = next(n for n in nodes.values() if n["role"] == "user")
    assert nodes[user["parent"]]["role"] == "state"


def test_a_file_of_another_shape_or_with_objects_is_refused(client, served):
    _, model, _, folder = served
    wrong = folder / "wrong.pth"
    torch.save(runner_time_state(tiny_model7(seed=1, **{**WORLD, "num_hidden_layers": 3})), wrong)
    with pytest.raises(Exception, match="3 layers .* but the model has 2 layers"):
        client.predict(handle_file(str(wrong)), api_name="/load_state")
    hostile = folder / "hostile.pth"
    torch.save({"blocks.0.att.time_state": torch.zeros(1, 64, 64), "payload": {"not": "a tensor"}}, hostile)
    with pytest.raises(Exception, match="only tensors|not a tensor"):
        client.predict(handle_file(str(hostile)), api_name="/load_state")
    assert not [n for n in client.predict(api_name="/tree") if n["role"] == "state"]


def test_a_file_that_is_not_a_state_or_session_file_is_refused_by_name(client, served):
    """The upload boxes take any file (Gradio's `file_types` refusal was a red error): the service names it."""
    folder = served[3]
    notes = folder / "notes.txt"
    notes.write_text("my shopping list\n")
    expected = r"(?i)expected a state file \(\.safetensors, \.state, \.pth, \.pt\), got notes\.txt"
    for args, api_name in [((handle_file(str(notes)),), "/load_state"),
                           ((None, handle_file(str(notes)), "", None, 0.5), "/mix_states"),
                           ((handle_file(str(notes)), "", "User", "Assistant"), "/chat_load_state")]:
        with pytest.raises(Exception, match=expected):
            client.predict(*args, api_name=api_name)
    with pytest.raises(Exception, match=r"(?i)expected a session file \(\.zip\), got notes\.txt"):
        client.predict(handle_file(str(notes)), api_name="/import_session")
    assert not [n for n in client.predict(api_name="/tree") if n["role"] == "state"]


def test_a_file_of_the_other_family_is_refused_naming_the_model_to_load_first(client, served):
    """An RWKV-4 session file or state file on this RWKV-7 server: the toast (and an API client's error) says
    which model the file needs and to load it first, and nothing is added to the session."""
    folder = served[3]
    rwkv4 = tiny_model(0)
    tree = SessionTree(rwkv4, model_id="demo")
    tree.extend_tokens(tree.root, [5, 6, 7])
    export_session(tree, folder / "rwkv4-session.zip")
    with pytest.raises(Exception, match=r"saved with an RWKV-4 model .* runs an RWKV-7 model .*\. To open this "
                                        r"file, load the RWKV-4 model demo \(float32\) first \(Models tab"):
        client.predict(handle_file(str(folder / "rwkv4-session.zip")), api_name="/import_session")
    save_state_file(family_of(rwkv4).empty_state(rwkv4, 1), rwkv4, folder / "rwkv4-state.safetensors")
    layers, channels = rwkv4.config.num_hidden_layers, rwkv4.config.attention_hidden_size
    with pytest.raises(Exception, match=rf"holds an RWKV-4 state \({layers} layers of {channels} channels\) but "
                                        rf"this model is an RWKV-7 model.*To open this file, load an RWKV-4 model "
                                        rf"with {layers} layers of {channels} channels first \(Models tab"):
        client.predict(handle_file(str(folder / "rwkv4-state.safetensors")), api_name="/load_state")
    assert not [n for n in client.predict(api_name="/tree") if n["role"] == "state"]


def test_equal_chat_names_are_refused_before_the_state_file_becomes_a_root(client, served):
    path, _ = persona_file(served, "names.pth", seed=6)
    with pytest.raises(Exception, match=r"user name 'Assistant' and the bot name 'Assistant' are the same"):
        client.predict(handle_file(str(path)), "", "Assistant", "", api_name="/chat_load_state")
    assert not [n for n in client.predict(api_name="/tree") if n["role"] == "state"]
