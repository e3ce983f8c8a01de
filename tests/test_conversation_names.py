"""How conversations are named and which one a reload reopens, through the services on SQLite and on a real
redis-server: an imported file is named apart from its original, equal names get distinct ones within the limit,
a reload or a restart reopens the conversation last opened, and two tabs naming new conversations at once get
distinct names."""
import threading

from rwkv_app.services import conversations
from rwkv_app.services.identity import new_visitor_key, owner_of
from rwkv_app.services.session_store import distinct_name

from .conversation_helpers import chat, server, visitor


def test_an_imported_session_file_is_named_apart_from_its_original(model_dirs, data_dir, tmp_path):
    playground = server(model_dirs, data_dir)
    tab = visitor(playground, owner_of(new_visitor_key()))
    chat(tab, "hello there")
    tab.load_file(tab.export(tmp_path))
    assert sorted(c["name"] for c in conversations.listing(tab)) == ["hello there", "hello there (imported)"]
    tab.close(), playground.close()


def test_the_same_file_imported_twice_and_two_chats_alike_get_distinct_names(model_dirs, data_dir, tmp_path):
    """One rule for the names the app gives: the second import of a file is "(imported 2)", a second chat that
    starts with the same words is "(2)"; a name the visitor types is kept as typed."""
    playground = server(model_dirs, data_dir)
    tab = visitor(playground, owner_of(new_visitor_key()))
    chat(tab, "hello there")
    exported = tab.export(tmp_path)
    tab.load_file(exported)
    tab.load_file(exported)
    conversations.new_conversation(tab)
    chat(tab, "hello   there")  # the same words: the list could not tell them apart
    assert sorted(c["name"] for c in conversations.listing(tab)) == [
        "hello there", "hello there (2)", "hello there (imported 2)", "hello there (imported)"]
    assert [c["name"] for c in conversations.listing(tab) if c["current"]] == ["hello there (2)"]
    first = next(c["id"] for c in conversations.listing(tab) if c["name"] == "hello there (imported)")
    conversations.rename(tab, first, "hello there")  # typed by the visitor: theirs, even if another has it
    assert sorted(c["name"] for c in conversations.listing(tab)).count("hello there") == 2
    tab.close(), playground.close()


def test_a_distinct_name_keeps_within_the_limit(model_dirs, data_dir):
    playground = server(model_dirs, data_dir)
    tab = visitor(playground, owner_of(new_visitor_key()))
    long = "word " * 30
    chat(tab, long)
    conversations.new_conversation(tab)  # names are told apart from the visitor's other conversations
    names = {c["name"] for c in conversations.listing(tab)}
    for mark in ("", "imported", "copy"):
        name = distinct_name(long, mark, names)
        assert len(name) <= conversations.NAME_CHARS and name not in names and name.endswith(")")
    assert distinct_name(long, "copy", names).endswith("… (copy)")
    assert distinct_name("fresh words", "", names) == "fresh words"
    tab.close(), playground.close()


def test_a_reload_and_a_restart_reopen_the_conversation_last_opened(model_dirs, store_spec):
    """Before, a reload reopened the conversation saved last: a visitor who opened an older one from the list to
    read it, generating nothing, and reloaded, landed in another. Opening one is using it: the list puts it first,
    and a reload (a new session of the same visitor) or a restart reopens it; then working in another puts that one
    first. Per model: a conversation of another model opened last is reopened when that model is loaded."""
    owner = owner_of(new_visitor_key())
    first = server(model_dirs, store_spec)
    tab = visitor(first, owner)
    older = chat(tab, "the older letter")
    older_id = tab.saved.id
    conversations.new_conversation(tab)
    newer = chat(tab, "the newer letter")
    newer_id = tab.saved.id
    conversations.open_conversation(tab, older_id)  # read, nothing generated
    assert [c["name"] for c in conversations.listing(tab)] == ["the older letter", "the newer letter"]
    reloaded = visitor(first, owner)
    assert reloaded.saved.id == older_id and reloaded.chat.messages() == older
    tab.close(), reloaded.close(), first.close()

    restarted = server(model_dirs, store_spec)
    back = visitor(restarted, owner)
    assert back.saved.id == older_id and back.chat.messages() == older
    conversations.open_conversation(back, newer_id)
    assert chat(back, "a postscript")[:2] == newer  # worked in: the newer one is first again
    assert [c["id"] for c in conversations.listing(back)] == [newer_id, older_id]
    back.switch_model(str(model_dirs[1]))
    chat(back, "on model b")
    conversations.open_conversation(back, older_id, switch_model=True)  # model a again, the older one
    back.switch_model(str(model_dirs[1]))  # model b's own last one resumes
    assert [m["content"] for m in back.chat.messages()][0] == "on model b"
    assert visitor(restarted, owner).saved.id == older_id  # a reload (on model a): the one last opened on it
    restarted.close()


class GatedStore:
    """A store whose saves wait until `barrier` is full: the racing tabs have each done all they do before saving
    (before the fix: reading the names taken) when the first save starts."""

    def __init__(self, store, barrier):
        self.store, self.barrier = store, barrier

    def __getattr__(self, name):
        return getattr(self.store, name)

    def save(self, *args, **kwargs):
        self.barrier.wait(timeout=120)  # a guard against a hang, not a timing
        return self.store.save(*args, **kwargs)


def test_two_tabs_naming_new_conversations_at_once_get_distinct_names(model_dirs, store_spec):
    """Two tabs of one visitor (here on two replicas) save new conversations that start alike at the same instant:
    the name is chosen in the save's own transaction, so they are "hello there" and "hello there (2)". Before, each
    tab read the names taken, then saved: both were "hello there"."""
    owner, barrier, tabs = owner_of(new_visitor_key()), threading.Barrier(2), []
    for _ in range(2):
        playground = server(model_dirs, store_spec)
        tab = playground.new_session()
        chat(tab, "hello   there")  # not saved yet: the visitor is not identified
        conversations.identify(tab, owner)
        playground.store = GatedStore(playground.store, barrier)
        tabs.append(tab)
    errors = []

    def commit(tab):
        try:
            conversations.commit(tab)
        except Exception as err:  # noqa: BLE001 (reported by the assertion below)
            errors.append(err)
    threads = [threading.Thread(target=commit, args=(tab,)) for tab in tabs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(c["name"] for c in conversations.listing(tabs[0])) == ["hello there", "hello there (2)"]
    assert sorted(tab.saved.name for tab in tabs) == ["hello there", "hello there (2)"]
    for tab in tabs:
        tab.playground.close()
