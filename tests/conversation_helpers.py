"""Shared by the conversation tests (test_conversations.py, test_conversation_names.py): one app process's services
on a store, a visitor on it, a chat turn. Their fixtures (model_dirs, data_dir, store_spec) are in conftest.py."""
from rwkv_app.services import conversations
from rwkv_app.services.stores import open_store

from .app_helpers import tiny_playground

MIB = 2 ** 20


def server(model_dirs, data_dir, quota=MIB):
    """One app process's services on the shared data folder or Redis URL (a new call: a restart, or a replica)."""
    playground = tiny_playground(model_dirs[0], allow_any_model=True)
    playground.store = open_store(str(data_dir), ttl_s=86400.0, quota_bytes=quota)
    return playground


def visitor(playground, owner):
    session = playground.new_session()
    conversations.identify(session, owner)
    return session


def chat(session, text, tokens=6):
    return list(session.chat_send(text, session.branch("chat", tokens, 3)))[-1]


def path_tokens(session):
    return session.tree.path_tokens(session.chat.current)
