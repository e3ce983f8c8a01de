"""The web app launched on a free port with a tiny local model, driven through gradio_client."""
import threading

import pytest

gradio = pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402


from .app_helpers import launched, write_tiny_model  # noqa: E402


def text(message: dict) -> str:
    """A Gradio 6 chat message's text (its content is a list of parts)."""
    content = message["content"]
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


def users(messages: list) -> list[str]:
    return [text(m) for m in messages if m["role"] == "user"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with launched(write_tiny_model(tmp_path_factory.mktemp("app") / "tiny"), max_prompt_chars=5000) as app:
        yield app


@pytest.fixture
def client(served):
    return Client(served[0], verbose=False)


def test_api_lists_the_named_endpoints(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/generate", "/chat", "/continue", "/compare", "/keep_1", "/rewind", "/force", "/state",
            "/export_session", "/import_session", "/load_model", "/chat_retry", "/chat_undo"} <= names


def test_generate(client):
    text = client.predict("Hello there", "balanced", 12, 3, api_name="/generate")
    assert isinstance(text, str) and text
    assert client.predict("Hello there", "balanced", 12, 3, api_name="/generate") == text  # same seed


def test_chat_over_several_turns(client):
    messages = client.predict("hi bot", api_name="/chat")
    messages = client.predict("second message", api_name="/chat")
    messages = client.predict("third", api_name="/chat")
    assert users(messages) == ["hi bot", "second message", "third"] and messages[-1]["role"] == "assistant"
    assert len(client.predict(api_name="/chat_undo")) == 4


def test_bad_input_is_a_visible_error_and_the_session_goes_on(client):
    with pytest.raises(Exception, match="empty"):
        client.predict("   ", api_name="/chat")
    with pytest.raises(Exception, match="at most"):
        client.predict("x" * 100_000, "balanced", 4, 1, api_name="/generate")
    with pytest.raises(Exception, match="allow-any-model"):
        client.predict("someone/unknown-model", api_name="/load_model")
    assert client.predict("still works", api_name="/chat")[-1]["role"] == "assistant"


def test_a_value_outside_a_component_is_refused_by_name_without_a_traceback(client, capfd, caplog):
    """A walkthrough: Gradio itself refuses an API caller's value outside a slider's range or not among a
    dropdown's or radio's choices, but printed a traceback in the server log for it (and named one end of the range
    only). Now the message names the input and what it takes, and the log has one line."""
    capfd.readouterr()
    refusals = {"Max new tokens: 0 is outside 1 to ": ("Hello", "balanced", 0, 1, "/generate"),
                "Max new tokens: 9999 is outside 1 to ": ("Hello", "balanced", 9999, 1, "/generate"),
                "Preset: 'nope' is not one of balanced, chat": ("Hello", "nope", 4, 1, "/generate"),
                "Columns: 7 is not one of 2, 3, 4": (7, 4, "balanced", 1, "/compare"),
                "Temperature (0: greedy): 5 is outside 0 to 2": ("Hi", "chat", 5, "/chat")}
    for words, (*args, name) in refusals.items():
        with pytest.raises(Exception) as refused:
            client.predict(*args, api_name=name)
        assert words in str(refused.value), str(refused.value)
    assert "Traceback" not in capfd.readouterr().err
    assert len([r for r in caplog.records if r.getMessage().startswith("refused ")]) == len(refusals)
    assert client.predict("Hello", "balanced", 4, 1, api_name="/generate")


def test_equal_user_and_bot_names_are_refused_by_the_api_endpoints_and_the_session_goes_on(client):
    with pytest.raises(Exception, match=r"The user name 'User' and the bot name 'user ' are the same"):
        client.predict("", "User", "user ", api_name="/chat_new")
    with pytest.raises(Exception, match=r"bot name 'Bot' are the same"):
        client.predict("hello", user="Bot", bot="", api_name="/chat")  # the bot name left empty: the default, Bot
    assert users(client.predict("hello", user="Ann", bot="Bob", api_name="/chat")) == ["hello"]


def test_fork_and_compare(client):
    client.predict("Once upon a time", "balanced", 8, 1, api_name="/generate")
    out = client.predict(3, 8, "balanced", 1, "creative", 2, "deterministic", 3, "balanced", 4,
                         api_name="/compare")
    texts, seeds = out[:4], out[4:]
    assert len(out) == 8 and all(texts[:3]) and texts[3] == ""
    assert list(seeds) == ["1", "2", "none (greedy)", ""]  # the seeds given; the greedy column draws none
    client.predict(api_name="/keep_2")
    assert client.predict(None, 2, "balanced", 5, 9, api_name="/rewind")


def test_a_fractional_compare_seed_is_refused_by_name_and_a_big_one_is_exact(client):
    """The Compare seeds are text boxes, as the Playground's: gr.Number(precision=0) rounded 3.7 to 4 silently."""
    client.predict("Once upon a time", "balanced", 4, 1, api_name="/generate")
    with pytest.raises(Exception, match=r"Seed must be a whole number .*, got 3\.7"):
        client.predict(2, 4, "balanced", 3.7, "balanced", 2, "balanced", 3, "balanced", 4, api_name="/compare")
    with pytest.raises(Exception, match=r"got 3\.7"):
        client.predict(2, 4, "balanced", "3.7", "balanced", 2, "balanced", 3, "balanced", 4, api_name="/compare")
    big = 2 ** 64 - 1  # as a float it would be 2**64, out of range and refused
    out = client.predict(2, 8, "balanced", str(big), "balanced", 7, "balanced", 3, "balanced", 4, api_name="/compare")
    assert all(out[:2]) and list(out[2:4]) == ["", ""] and list(out[4:]) == [str(big), "7", "", ""]


def test_compare_draws_fresh_seeds_each_run_unless_given_and_shows_them_so_a_column_repeats(client):
    """Run twice with the seed boxes empty: other seeds (so other samples); a shown seed typed back makes its
    column again, token for token."""
    client.predict("Once upon a time", "balanced", 4, 1, api_name="/generate")
    runs = [client.predict(2, 12, "balanced", "", "creative", None, "balanced", "", "balanced", "",
                           api_name="/compare") for _ in range(2)]
    seeds = [run[4:6] for run in runs]
    assert all(s.isdigit() for run in seeds for s in run) and len({s for run in seeds for s in run}) == 4, seeds
    again = client.predict(2, 12, "balanced", seeds[1][0], "creative", seeds[1][1], "balanced", "", "balanced", "",
                           api_name="/compare")
    assert list(again[:2]) == list(runs[1][:2]) and list(again[4:6]) == list(seeds[1])


def test_a_fractional_length_is_refused_by_name_and_continue_at_the_root_says_what_is_missing(client):
    with pytest.raises(Exception, match=r"Max new tokens must be a whole number, got 2\.5"):
        client.predict("Once upon a time", "balanced", 2.5, 1, api_name="/generate")
    with pytest.raises(Exception, match="Nothing to continue at the start of the tree: type the text to add"):
        client.predict(client.predict(api_name="/tree")[0]["id"], "", "balanced", 4, 1, api_name="/continue")
    assert client.predict("Once upon a time", "balanced", 3.0, 1, api_name="/generate")  # a whole float is fine


def test_export_and_import(client, served, tmp_path):
    client.predict("keep this conversation", api_name="/chat")
    path = client.predict(api_name="/export_session")
    other = Client(served[0], verbose=False)
    from gradio_client import handle_file
    status = other.predict(handle_file(path), api_name="/import_session")
    assert "Resumed" in status
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"\xff\xfe\x80 not utf-8, not a zip")
    with pytest.raises(Exception, match="zip"):
        other.predict(handle_file(str(bad)), api_name="/import_session")


def test_two_clients_do_not_see_each_other(served):
    a, b = Client(served[0], verbose=False), Client(served[0], verbose=False)
    results = {}

    def talk(name, client, text):
        results[name] = client.predict(text, api_name="/chat")

    threads = [threading.Thread(target=talk, args=("a", a, "I am client A")),
               threading.Thread(target=talk, args=("b", b, "I am client B"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert users(results["a"]) == ["I am client A"] and users(results["b"]) == ["I am client B"]
    assert users(a.predict("again", api_name="/chat")) == ["I am client A", "again"]


def test_a_node_state_downloads_as_a_state_file(client, served):
    from rwkv_app.models.state_files import load_state_file
    import torch

    client.predict("A persona, built by prompting.", "deterministic", 4, 1, api_name="/generate")
    current = next(n for n in client.predict(api_name="/tree") if n["current"])
    path = client.predict(current["id"], api_name="/export_state")
    session = next(s for s in served[1]._clients.values() if current["id"] in s.tree.nodes)
    expected, _ = session.tree.state_at(current["id"])
    loaded = load_state_file(path, session.tree.model)
    assert all(torch.equal(a, b) for a, b in zip(loaded, expected))  # the node's state, bit for bit
    with pytest.raises(Exception, match="empty state"):
        client.predict(client.predict(api_name="/tree")[0]["id"], api_name="/export_state")  # the root
