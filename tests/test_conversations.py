"""Conversations in the session store, through the services (tiny models, SQLite in a temporary folder): a chat
turn or a generation is saved as it ends, a reload or a restart resumes it token for token, a visitor sees only
their own, the list's actions, switching model keeps each model's conversations, quota, conflicts, delete all.
How conversations are named and which one a reload reopens: test_conversation_names.py."""
import pytest

from rwkv_app.errors import InputError
from rwkv_app.services import conversations
from rwkv_app.services.conversations import OtherModel
from rwkv_app.services.identity import new_visitor_key, owner_of
from rwkv_app.services.session_store import QuotaExceeded, StoreConflict
from rwkv_app.services.stores import open_store

from .app_helpers import tiny_playground
from .conversation_helpers import MIB, chat, path_tokens, server, visitor


def test_a_reload_and_a_restart_resume_the_conversation_token_for_token(model_dirs, data_dir):
    owner = owner_of(new_visitor_key())
    first = server(model_dirs, data_dir)
    tab = visitor(first, owner)
    chat(tab, "hello there")
    messages = chat(tab, "and again")
    tokens, name = path_tokens(tab), conversations.listing(tab)[0]["name"]
    reloaded = visitor(first, owner)  # a reload: a new browser session, the same visitor key
    assert reloaded.chat.messages() == messages and path_tokens(reloaded) == tokens
    tab.close(), reloaded.close(), first.close()
    restarted = server(model_dirs, data_dir)  # a restart: a new process on the same data folder
    back = visitor(restarted, owner)
    assert back.chat.messages() == messages and path_tokens(back) == tokens and name == "hello there"
    # the resumed conversation continues exactly as the original would have
    twin = visitor(restarted, owner)
    twin.saved = conversations.Saved()  # a copy that saves nothing (else the second save would be a conflict)
    assert chat(back, "one more") == chat(twin, "one more")
    restarted.close()


def test_a_visitor_cannot_list_or_open_another_visitors_conversations(model_dirs, data_dir):
    playground = server(model_dirs, data_dir)
    alice, bob = visitor(playground, owner_of(new_visitor_key())), visitor(playground, owner_of(new_visitor_key()))
    chat(alice, "alice's secret")
    mine = conversations.listing(alice)
    assert len(mine) == 1 and conversations.listing(bob) == []
    for action in (lambda: conversations.open_conversation(bob, mine[0]["id"]),
                   lambda: conversations.rename(bob, mine[0]["id"], "stolen"),
                   lambda: conversations.delete(bob, mine[0]["id"])):
        with pytest.raises(InputError, match="not yours"):
            action()
    assert conversations.listing(alice)[0]["name"] == "alice's secret" and len(bob.tree.nodes) == 1
    playground.close()


def test_open_rename_delete_and_new(model_dirs, data_dir):
    playground = server(model_dirs, data_dir)
    session = visitor(playground, owner_of(new_visitor_key()))
    chat(session, "first talk")
    first = session.saved.id
    conversations.new_conversation(session)
    assert len(session.tree.nodes) == 1 and session.chat is None
    session.generate_text = list(session.generate("a prompt", "balanced", 5, 1))
    listed = conversations.listing(session)
    assert [c["name"] for c in listed] == ["a prompt", "first talk"] and listed[0]["current"]
    conversations.open_conversation(session, first)
    assert session.chat.messages()[0]["content"] == "first talk"
    conversations.rename(session, first, "  Renamed   talk ")
    chat(session, "more")  # a later save keeps the new name
    assert conversations.listing(session)[0]["name"] == "Renamed talk"
    conversations.delete(session, first)  # the open one: the session moves to a new, empty conversation
    assert [c["name"] for c in conversations.listing(session)] == ["a prompt"] and len(session.tree.nodes) == 1
    with pytest.raises(InputError, match="at most"):
        conversations.rename(session, listed[0]["id"], "x" * 200)
    playground.close()


def test_switching_model_keeps_each_models_conversations(model_dirs, data_dir):
    playground = server(model_dirs, data_dir)
    session = visitor(playground, owner_of(new_visitor_key()))
    on_a = chat(session, "talk on model a")
    session.switch_model(str(model_dirs[1]))
    assert len(session.tree.nodes) == 1  # model b has no conversation yet
    on_b = chat(session, "talk on model b")
    session.switch_model(str(model_dirs[0]))  # back on a: its conversation resumes
    assert session.chat.messages() == on_a
    listed = conversations.listing(session)
    other = next(c for c in listed if not c["this_model"])
    with pytest.raises(OtherModel, match="made with tiny-b.*Switch model"):
        conversations.open_conversation(session, other["id"])
    conversations.open_conversation(session, other["id"], switch_model=True)
    assert session.chat.messages() == on_b and session.source == str(model_dirs[1])
    playground.close()


def test_loading_the_model_in_use_keeps_the_open_conversation(model_dirs, data_dir):
    """A walkthrough: "Load for this session" on the model the session already ran moved the visitor from the
    conversation they had opened to their latest one."""
    playground = server(model_dirs, data_dir)
    session = visitor(playground, owner_of(new_visitor_key()))
    first = chat(session, "first talk") and session.saved.id
    conversations.new_conversation(session)
    chat(session, "second talk")
    conversations.open_conversation(session, first)
    assert session.switch_model(str(model_dirs[0])) is False  # the model it runs: nothing to switch
    assert session.saved.id == first and session.chat.messages()[0]["content"] == "first talk"
    assert session.switch_model(str(model_dirs[1])) is True and session.source == str(model_dirs[1])
    playground.close()


def test_a_model_this_server_does_not_offer_is_named_when_opening(model_dirs, data_dir):
    playground = server(model_dirs, data_dir)
    session = visitor(playground, owner_of(new_visitor_key()))
    session.switch_model(str(model_dirs[1]))
    chat(session, "on b")
    cid = session.saved.id
    strict = tiny_playground(model_dirs[0])  # presets only: model b is not offered here
    strict.store = playground.store
    again = visitor(strict, session.saved.owner)
    with pytest.raises(InputError, match="unknown model"):
        conversations.open_conversation(again, cid, switch_model=True)
    playground.close()


def test_a_stale_tab_saves_a_copy_and_never_mixes(model_dirs, data_dir):
    playground = server(model_dirs, data_dir)
    owner = owner_of(new_visitor_key())
    a = visitor(playground, owner)
    chat(a, "shared")
    b = visitor(playground, owner)  # the same conversation opened in a second tab
    chat(b, "from b")
    with pytest.raises(StoreConflict, match="saved beside it"):
        chat(a, "from a")
    names = sorted(c["name"] for c in conversations.listing(a))
    assert names == ["shared", "shared (copy)"]
    stored = {c["name"]: c["id"] for c in conversations.listing(a)}
    conversations.open_conversation(b, stored["shared"])
    assert [m["content"] for m in b.chat.messages()][::2] == ["shared", "from b"]
    playground.close()


def test_the_quota_keeps_the_tree_without_states_then_refuses(model_dirs, data_dir):
    playground = server(model_dirs, data_dir, quota=3000)
    session = visitor(playground, owner_of(new_visitor_key()))
    chat(session, "small")
    assert session.saved.states == set()  # the tree (1.5 KB) fitted, its state (2.4 KB) did not
    with pytest.raises(QuotaExceeded, match="per visitor"):
        for i in range(40):
            chat(session, f"a longer message number {i} " * 4, tokens=20)
    playground.close()


def test_delete_all_my_data(model_dirs, data_dir):
    playground = server(model_dirs, data_dir)
    session = visitor(playground, owner_of(new_visitor_key()))
    other = visitor(playground, owner_of(new_visitor_key()))
    chat(session, "one"), conversations.new_conversation(session), chat(session, "two"), chat(other, "kept")
    assert conversations.delete_all(session) == 2
    assert conversations.listing(session) == [] and len(session.tree.nodes) == 1
    assert len(conversations.listing(other)) == 1
    playground.close()


def test_kept_states_are_stored_and_missing_ones_rebuilt(model_dirs, data_dir):
    from .session_helpers import assert_resumes_exactly

    playground = server(model_dirs, data_dir)
    owner = owner_of(new_visitor_key())
    session = visitor(playground, owner)
    chat(session, "hello"), chat(session, "again")
    assert session.chat.current in session.saved.states
    back = visitor(playground, owner)
    assert session.chat.current in back.tree.store  # stored: no recomputation to continue
    for node_id in back.tree.nodes:
        if node_id != back.tree.root:
            assert_resumes_exactly(back.tree, node_id)  # the others are rebuilt from the tokens, exactly
    playground.close()


def test_visitor_keys_and_owners():
    from rwkv_app.services.identity import check_key

    key = new_visitor_key()
    assert check_key(key) == key and owner_of(key) == owner_of(key) != owner_of(new_visitor_key())
    assert key not in owner_of(key)  # the store never sees the key itself
    assert owner_of(key, user="alice") == "hf:alice"  # a signed-in user owns their conversations on any browser
    for bad in ("", "short", "x" * 200, "bad key with spaces and more than thirty-two chars", None, 42):
        with pytest.raises(InputError, match="visitor key"):
            owner_of(bad)


def test_browser_storage_secrets_live_in_the_store(tmp_path):
    from rwkv_app.services.identity import browser_secrets

    first = browser_secrets(open_store(str(tmp_path), 3600.0, MIB))
    again = browser_secrets(open_store(str(tmp_path), 3600.0, MIB))  # a restart: the same key name and secret
    assert first == again and all(first) and browser_secrets(None) == (None, None)


def test_switching_between_rwkv4_and_rwkv7_keeps_each_familys_conversations(model_dirs, data_dir, tmp_path):
    """Issue 17: a visitor's RWKV-4 conversation stays intact while they use an RWKV-7 model, and the other way
    round; each resumes when its model is loaded again."""
    from .rwkv7_helpers import save_pth, tiny_model7

    pth = save_pth(tiny_model7(seed=5, vocab_size=65536, hidden_size=64, num_hidden_layers=2),
                   tmp_path / "rwkv7-tiny.pth")
    playground = server(model_dirs, data_dir, quota=16 * MIB)
    session = visitor(playground, owner_of(new_visitor_key()))
    on_rwkv4 = chat(session, "hello rwkv-4")
    session.switch_model(str(pth))
    on_rwkv7 = chat(session, "hello rwkv-7")
    tokens7 = path_tokens(session)
    session.switch_model(str(model_dirs[0]))
    assert session.chat.messages() == on_rwkv4
    session.switch_model(str(pth))
    assert session.chat.messages() == on_rwkv7 and path_tokens(session) == tokens7
    assert sorted(c["model"] for c in conversations.listing(session)) == sorted(["rwkv7-tiny.pth", "tiny-a"])
    playground.close()


def test_a_state_root_is_saved_at_once_and_comes_back(model_dirs, data_dir, tmp_path):
    """A state file loaded into the tree (personas.py) cannot be rebuilt from tokens: it is stored with the tree
    as soon as it is loaded, and a reload gets the same state and the same start."""
    import torch

    from rwkv_app.services import personas

    playground = server(model_dirs, data_dir)
    owner = owner_of(new_visitor_key())
    session = visitor(playground, owner)
    chat(session, "make a state")
    path = session.export_state(session.chat.current, tmp_path / "exports")
    conversations.new_conversation(session)
    node = personas.load_state_root(session, path)
    state, _ = session.tree.state_at(node)
    back = visitor(playground, owner)  # a reload before anything else was done
    assert back.start == node and back.tree.node(node).role == "state"
    for mine, theirs in zip(back.tree.state_at(node)[0], state):
        torch.testing.assert_close(mine, theirs, atol=0, rtol=0)
    playground.close()


def test_a_reopened_chat_gives_its_settings_and_rwkv4_ignores_thinking(model_dirs, data_dir, tmp_path):
    """The Chat tab's panel data: the open chat's system prompt, names and thinking; RWKV-4 has no thinking format
    (a "think" request is ignored), RWKV-7 has one."""
    from .rwkv7_helpers import save_pth, tiny_model7

    playground = server(model_dirs, data_dir, quota=16 * MIB)
    owner = owner_of(new_visitor_key())
    session = visitor(playground, owner)
    assert session.chat_settings() == {"system": "", "user": "User", "bot": "Bot", "thinking": "auto",
                                       "thinking_format": False} == playground.chat_settings()
    session.new_chat("You are Elizabeth Bennet.", "Darcy", "Elizabeth", thinking="think")
    chat(session, "Good morning")
    assert "<think" not in session.tree.path_text(session.chat.current)
    reloaded = visitor(playground, owner)
    assert reloaded.chat_settings() == {"system": "You are Elizabeth Bennet.", "user": "Darcy", "bot": "Elizabeth",
                                        "thinking": "auto", "thinking_format": False}
    session.switch_model(str(save_pth(tiny_model7(seed=5, vocab_size=65536, hidden_size=64, num_hidden_layers=2),
                                      tmp_path / "rwkv7-tiny.pth")))
    session.new_chat(None, None, None, thinking="no_think")
    assert session.chat_settings() == {"system": "", "user": "User", "bot": "Assistant", "thinking": "no_think",
                                       "thinking_format": True}
    playground.close()
