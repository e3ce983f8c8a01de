"""The session store: each visitor's conversations (session trees) kept across reloads, restarts and replicas.

    store = open_store("/data/rwkv" or "redis://host:6379/0", ttl_s=30 * 86400, quota_bytes=100 * 2**20)  # stores.py
    info = store.save(owner, conversation_id, name, model, tree=b"...", add={node: blob}, keep={node, ...},
                      expect=0, mark="")  # expect 0: a new conversation, else the version it was read at;
                                          # mark: name it apart from the owner's others (distinct_name)
    store.load(owner, conversation_id)    # -> Stored (info, tree bytes, state blobs) or None
    store.touch(owner, conversation_id)   # opened: first in the list, what a reload reopens

A conversation is stored as the two members of its session file (rwkv_app/state_tree/archive.py): the tree's
JSON (nodes, tokens, texts, settings) and its kept states, one safetensors blob per node, so a stored
conversation is a session file in pieces (the backup format, see services/backup.py) and loading one goes
through the session-file importer's checks. A node's state never changes once made, so a commit writes only
the states it adds and names those it keeps; the rest are deleted in the same transaction.

Every save is one transaction that checks the version it was read at (compare-and-set): two writers of one
conversation (two tabs, two replicas) are serialised, and the later one gets StoreConflict, never a mix of both.
A new conversation's name is chosen in that transaction too (`mark`), so two tabs naming new conversations at the
same instant get distinct names. The list is ordered by last use: a save or an open (`touch`) makes it the first.
Nothing is unpickled: the data are JSON, zlib and safetensors bytes.
"""
from __future__ import annotations

import itertools
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..errors import InputError
from .views import preview

Clock = Callable[[], float]
MIB = 2 ** 20
NAME_CHARS = 60


class StoreConflict(InputError):
    """The conversation changed since it was read (another tab or replica saved it first)."""


class QuotaExceeded(InputError):
    """Saving would take the visitor over the server's per-visitor storage quota."""


@dataclass(frozen=True)
class Info:
    """One stored conversation, as the Conversations list shows it."""

    id: str
    name: str
    model: str  # the model source it was made with (what the playground loads it with)
    created: float
    updated: float  # last used: saved or opened (seconds since the epoch)
    version: int
    nbytes: int  # what it takes in the store (counts towards the visitor's quota)


@dataclass
class Stored:
    info: Info
    tree: bytes  # tree.json
    states: dict[str, bytes] = field(default_factory=dict)  # node id -> safetensors blob of that node's state


class SessionStore(ABC):
    """What the services need from a store. Owners are opaque strings (services/identity.py)."""

    def __init__(self, ttl_s: float, quota_bytes: int, clock: Clock = time.time):
        self.ttl_s, self.quota_bytes, self.clock = float(ttl_s), int(quota_bytes), clock

    @abstractmethod
    def list(self, owner: str) -> list[Info]:
        """The owner's conversations, most recently used first."""

    @abstractmethod
    def load(self, owner: str, conversation: str) -> Stored | None:
        """The conversation, or None when the owner has none by that id (another owner's is never found)."""

    @abstractmethod
    def save(self, owner: str, conversation: str, name: str, model: str, tree: bytes, add: dict[str, bytes],
             keep: set[str], expect: int, mark: str | None = None) -> Info:
        """Write the tree, add these state blobs, keep those named (drop the others) in one transaction, if the
        stored version is still `expect` (0: it must not exist yet); returns what is stored (its new version, its
        name). `name` is used only when the conversation is created (rename changes it): as given, or, with
        `mark`, as the base of distinct_name against the owner's other names read in the same transaction.
        Raises StoreConflict or QuotaExceeded."""

    @abstractmethod
    def touch(self, owner: str, conversation: str) -> bool:
        """The conversation was opened: last used now (first in the list; a reload reopens it; the TTL starts
        again). Its version stays, so a tab that has it open still saves in place. False when there is none."""

    @abstractmethod
    def rename(self, owner: str, conversation: str, name: str) -> bool: ...

    @abstractmethod
    def delete(self, owner: str, conversation: str) -> bool: ...

    @abstractmethod
    def delete_owner(self, owner: str) -> int:
        """Delete every conversation of the owner ("delete all my data"); returns how many."""

    @abstractmethod
    def usage(self, owner: str) -> int:
        """Bytes the owner's conversations take."""

    @abstractmethod
    def expire(self) -> int:
        """Delete what was last used more than ttl_s ago; returns how many conversations went."""

    @abstractmethod
    def secret(self, name: str, make: Callable[[], str]) -> str:
        """A server-wide value made once (by `make`) and shared by every process using this store."""

    @abstractmethod
    def owners(self) -> list[str]:
        """Every owner with a stored conversation (for backups)."""

    def close(self) -> None:
        pass

    # ---- shared checks -------------------------------------------------------------------------------
    def check_quota(self, owner: str, others: int, new_bytes: int) -> None:
        """`others`: what the owner's other conversations take; raises QuotaExceeded past the quota."""
        if others + new_bytes > self.quota_bytes:
            raise QuotaExceeded(
                f"not saved: your conversations would take {(others + new_bytes) / MIB:.1f} MB, over this server's "
                f"limit of {self.quota_bytes / MIB:g} MB per visitor. Delete some in the Conversations list (or use "
                f"\"Delete all my data\"); this conversation stays open here until you leave the page")

    @staticmethod
    def new_name(name: str, mark: str | None, taken: Iterable[str]) -> str:
        return name if mark is None else distinct_name(name, mark, set(taken))

    def conflict(self, conversation: str) -> StoreConflict:
        return StoreConflict(f"conversation {conversation[:16]} was changed elsewhere (another tab or server) "
                             "since it was opened")



def distinct_name(base: str, mark: str, taken: set[str]) -> str:
    """The one rule for the names the app gives (a new conversation's, an import's, a conflict's copy): `base`, marked
    "(mark)" and numbered from 2 when it is `taken` ("Hello", "Hello (2)"; "Hello (imported)", "Hello (imported 2)"),
    the base shortened to keep it within NAME_CHARS. A name the visitor types (rename) is theirs, kept as typed."""
    for count in itertools.count(1):
        words = " ".join(word for word in (mark, str(count) if count > 1 else "") if word)
        suffix = f" ({words})" if words else ""
        name = preview(base, NAME_CHARS - len(suffix)) + suffix
        if name not in taken:
            return name
