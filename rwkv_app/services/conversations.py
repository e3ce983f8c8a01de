"""A visitor's conversations in the session store: saving a UserSession's tree as it changes, the list, open,
rename, delete, new, delete all.

Every action that changes the tree ends with `commit` (at the end of each generation, chat turn or comparison, as
UserSession.busy ends, even when the tab has gone meanwhile; the `@saves` decorator on the other methods: edit,
undo, delete...): one store transaction with the tree's JSON and the states of the conversation's tips (the current
nodes and the leaves still kept in memory, at most SAVED_STATES), each node's state written once. A state not stored
is rebuilt from the tokens when needed, as the tree always does. Nothing is saved before the visitor is identified
(services/identity.py) or while the tree is empty.
"""
from __future__ import annotations

import functools
import hashlib
import secrets
import threading
from dataclasses import dataclass, field

import safetensors.torch

from ..errors import InputError
from ..state_tree.archive import STATES_MEMBER, TREE_MEMBER, session_from_members, state_tensors, tree_json
from ..state_tree.nodes import TEXT, USER
from ..state_tree.validate import SessionFileError
from .default_model import public_name
from .session_store import NAME_CHARS, QuotaExceeded, StoreConflict
from .views import preview

SAVED_STATES = 8  # states stored per conversation: its tips, most recently used first
CURRENT = "playground_current"  # tree.meta key: the Playground's node, so a reopened conversation is where it was
START = "playground_start"  # tree.meta key: where the Playground's prompts start (the root or a state root)
NOT_SAVED = "Conversations are not saved on this server (it runs without a session store)."


@dataclass
class Saved:
    """Where a session's tree lives in the store: owner, conversation id, the version it was read or written at,
    its name, the node ids whose states are stored, and a digest of the tree last written (an unchanged tree is not).
    Until its first save, `mark` says how the store names it, in the save's transaction: apart from the owner's other
    conversations (session_store.distinct_name of `name`, else of the first thing typed, marked "(mark)"), or, None,
    `name` as the visitor typed it."""

    owner: str | None = None
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    version: int = 0
    name: str = ""
    states: set[str] = field(default_factory=set)
    digest: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    mark: str | None = ""


class OtherModel(InputError):
    """The conversation was made with another model than the session's (the UI offers to switch)."""

    def __init__(self, message: str, model: str):
        super().__init__(message)
        self.model = model


def saves(method):
    """Commit the session's tree to the store once `method` is done. Called while the session generates, it leaves
    the commit to that generation's end (a generation commits as it ends: UserSession.busy)."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        result = method(self, *args, **kwargs)
        commit_unless_generating(self)
        return result
    return call


def commit_unless_generating(session) -> None:
    """Commit now, unless one of the session's generations runs (its end commits the tree)."""
    if not session.generating:
        commit(session)


def commit(session) -> None:
    """Write the session's tree (if it changed) in one transaction. Over the quota, the tree is saved without new
    states, else QuotaExceeded; changed elsewhere since it was read, it is saved as a copy (and the visitor told).
    A session closed while it generated still commits as that generation ends (what was streamed is kept); once its
    tree is freed there is nothing to write."""
    store, saved = session.playground.store, session.saved
    if store is None or saved.owner is None or session.tree is None or len(session.tree.nodes) < 2:
        return
    with saved.lock:
        session.tree.meta[CURRENT], session.tree.meta[START] = session.current, session.start
        data = tree_json(session.tree)
        digest = hashlib.sha256(data).hexdigest()
        if digest == saved.digest:
            return
        try:
            write(session, data, tips(session))
        except StoreConflict:
            old = saved.name or default_name(session)
            session.saved = saved = Saved(saved.owner, name=old, lock=saved.lock, mark="copy")
            write(session, data, tips(session))
            raise StoreConflict(f"\"{old}\" was changed elsewhere (another tab or server) since you opened it: "
                                f"this version is saved beside it as \"{saved.name}\"") from None
        saved.digest = digest


def write(session, data: bytes, keep: list[str]) -> None:
    store, saved = session.playground.store, session.saved
    args = (saved.owner, saved.id, saved.name or default_name(session), session.source, data)

    def save(nodes):
        add = {n: safetensors.torch.save(state_tensors(session.tree, [n])) for n in nodes if n not in saved.states}
        info = store.save(*args, add, set(nodes), saved.version, mark=saved.mark)  # named there, once, if new
        saved.version, saved.name, saved.mark, saved.states = info.version, info.name, None, set(nodes)
    try:
        save(keep)
    except QuotaExceeded:  # the tips' states only save recomputation: try without them before refusing
        save([n for n in keep if n in session.tree.store.pinned])  # a state root's state cannot be rebuilt


def tips(session) -> list[str]:
    """The nodes whose states are stored: every state root (a state file or a mix: no tokens rebuild it), then
    where the visitor is and each branch's end, if kept in memory, most recently used first (SAVED_STATES)."""
    tree = session.tree
    roots = [n for n in tree.store.pinned if n != tree.root and n in tree.store.entries]
    wanted = {session.current, *(session.compared or ())}
    if session.chat is not None:
        wanted.add(session.chat.current)
    wanted |= {node_id for node_id, node in tree.nodes.items() if not node.children}
    wanted -= {tree.root, *roots}
    return roots + [n for n in reversed(tree.store.entries) if n in wanted][:SAVED_STATES]


def default_name(session) -> str:
    """The first thing the visitor typed (a chat message or a prompt), shortened."""
    for node in session.tree.nodes.values():
        if node.role in (USER, TEXT) and node.text.strip():
            return preview(node.text, NAME_CHARS)
    return "Untitled"


def listed(session) -> list:
    """The owner's stored conversations (none without a store or an identified visitor)."""
    store, owner = session.playground.store, session.saved.owner
    return [] if store is None or owner is None else store.list(owner)


# ---- the visitor's list ------------------------------------------------------------------------------
def store_of(session):
    if session.playground.store is None:
        raise InputError(NOT_SAVED)
    if session.saved.owner is None:
        raise InputError("this browser has no visitor key yet: reload the page (API clients: call /identify first)")
    return session.playground.store


def identify(session, owner: str) -> None:
    """The session belongs to `owner` from now on; an empty session (a page load) reopens the conversation the owner
    last used on its model (resume_latest)."""
    if session.saved.owner == owner:
        return
    session.saved = Saved(owner)  # what the session holds (if anything) becomes a new conversation of the owner
    if session.playground.store is not None and len(session.tree.nodes) < 2:
        resume_latest(session)


def resume_latest(session) -> None:
    """Open the owner's most recently used conversation made with the session's model, if there is one: the one
    last opened (open_conversation touches it) or saved, in any tab; the first of the list on this model."""
    if session.playground.store is None or session.saved.owner is None:
        return
    session.playground.wait_saved(session.saved.owner)  # a tab of theirs reloaded mid-stream saves what it streamed
    for info in session.playground.store.list(session.saved.owner):
        if info.model == session.source:
            try:
                open_conversation(session, info.id)
            except SessionFileError:  # its weights changed on this server: the list still offers it
                continue
            return


def listing(session) -> list[dict]:
    """The owner's conversations, most recently used first: {id, name, model, updated, kb, current, this_model}."""
    if session is None:
        return []
    return [{"id": i.id, "name": i.name, "model": public_name(i.model), "updated": i.updated,
             "kb": round(i.nbytes / 1024, 1), "current": i.id == session.saved.id,
             "this_model": i.model == session.source} for i in listed(session)]


def open_conversation(session, conversation: str, switch_model: bool = False) -> None:
    """Make a stored conversation the session's. Made with another model: OtherModel, unless `switch_model`
    (then that model is loaded for this session first, or the reason it cannot be is raised)."""
    store = store_of(session)
    if session.generating:
        raise InputError("stop the running generation before opening another conversation")
    stored = store.load(session.saved.owner, str(conversation))
    if stored is None:
        raise InputError("no such conversation: it was deleted, it expired, or it is not yours")
    if stored.info.model != session.source:
        if not switch_model:
            raise OtherModel(f"\"{stored.info.name}\" was made with {public_name(stored.info.model)}; this session "
                             f"runs {public_name(session.source)}. Switch model to open it (API: switch_model=True).",
                             stored.info.model)
        session.switch_model(stored.info.model, resume=False)  # InputError/ModelLoadError say why it cannot
    loaded = session.loaded
    members = {TREE_MEMBER: stored.tree, STATES_MEMBER: merged_states(stored.states)}
    tree = session_from_members(members, loaded.model, loaded.tokenizer, model_id=session.model_id(),
                                budget=session.playground.state_budget())
    session.adopt(tree)
    session.saved = Saved(session.saved.owner, stored.info.id, stored.info.version, stored.info.name,
                          set(stored.states), hashlib.sha256(stored.tree).hexdigest(), mark=None)
    store.touch(session.saved.owner, stored.info.id)  # used now: first in the list, what a reload reopens


def merged_states(blobs: dict[str, bytes]) -> bytes:
    """One states.safetensors from the per-node blobs (each holds only its node's entries)."""
    tensors = {}
    for node_id, blob in blobs.items():
        for key, tensor in safetensors.torch.load(blob).items():
            if not key.startswith(node_id + "/"):
                raise SessionFileError(f"stored state of node {node_id[:16]} holds another node's entry")
            tensors[key] = tensor
    return safetensors.torch.save(tensors)


def new_conversation(session) -> None:
    """A fresh, empty tree on the session's model; the one left stays in the store."""
    if session.generating:
        raise InputError("stop the running generation before starting a new conversation")
    session.adopt(session.new_tree())
    session.saved = Saved(session.saved.owner)


def rename(session, conversation: str, name) -> None:
    if not isinstance(name, str) or not name.strip():
        raise InputError("type a name for the conversation first")
    name = " ".join(name.split())
    if len(name) > NAME_CHARS:
        raise InputError(f"a conversation's name takes at most {NAME_CHARS} characters, got {len(name)}")
    store = store_of(session)
    found = store.rename(session.saved.owner, str(conversation), name)
    if conversation == session.saved.id:
        session.saved.name, session.saved.mark = name, None  # also names the open one before its first save, as typed
    elif not found:
        raise InputError("no such conversation: it was deleted, it expired, or it is not yours")


def delete(session, conversation: str) -> None:
    """Delete a stored conversation; deleting the open one leaves the session on a new, empty one."""
    store = store_of(session)
    if conversation == session.saved.id:
        new_conversation(session)
        store.delete(session.saved.owner, str(conversation))
    elif not store.delete(session.saved.owner, str(conversation)):
        raise InputError("no such conversation: it was deleted, it expired, or it is not yours")


def delete_all(session) -> int:
    """"Delete all my data": every stored conversation of the visitor; the session starts a new, empty one."""
    store = store_of(session)
    new_conversation(session)
    return store.delete_owner(session.saved.owner)
