"""The pieces of a session tree: nodes, what an operation changed, and how a node's role reads as chat.

A node is one step of a conversation: the tokens it added to the state of its parent, its text, and for
generated tokens each token's probability and top alternatives. Its id is random and unguessable, so a
node id handed to a browser cannot be used to guess another session's nodes.

A "state" node is a second kind of start: a root carrying a state that came from outside the tree (a state
file, or a mix of two states), a child of the tree's root with no tokens. Its state cannot be recomputed, so it
is always kept; it has no logits (nothing was fed yet), so the first text added under it gives the next-token
logits, as at the root.
"""
from __future__ import annotations

import secrets
from array import array
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..errors import InputError
from .compact import TokenProbs

ROOT, SYSTEM, TEXT, USER, BOT, GENERATED = "root", "system", "text", "user", "bot", "generated"
STATE = "state"  # a root carrying a state from a file or a mix (see above)
ROLES = (ROOT, SYSTEM, TEXT, USER, BOT, GENERATED, STATE)
STARTS = (ROOT, STATE)  # the nodes without tokens: the empty state and the states brought in
MESSAGE_ROLES = {SYSTEM: "system", TEXT: "user", USER: "user", BOT: "assistant", GENERATED: "assistant"}
ID_BYTES = 8  # 16 hex characters, 64 random bits


class SessionError(InputError):
    """An operation the tree cannot do (unknown node, deleting the root, generating from nothing...)."""


def new_id() -> str:
    return secrets.token_hex(ID_BYTES)


class Node:
    """One step of a conversation. `tokens` are what the state took in after the parent's state.

    `text` is the node's content as shown: what was typed (a chat message without its "User: " framing), or
    the generated text cut before a stop string. The exact context the model saw is the path's tokens.
    `probs[i]` and `top[i]` belong to tokens[i] (generated nodes only): the model's own probability of the
    token and its most likely alternatives as (token id, probability), most likely first.
    `meta` records how the node came to be: sampling settings, preset, seed, finish reason, model id...

    Tokens, probabilities and alternatives are kept in flat arrays (see compact.py): `tokens`, `probs` and
    `top` read them back as tuples; `prob(i)` and `top_at(i)` read one token's without building the rest.
    """

    __slots__ = ("id", "parent", "role", "_tokens", "text", "_stats", "meta", "children")

    def __init__(self, id: str, parent: str | None, role: str, tokens: Iterable[int], text: str = "",
                 probs: Sequence[float] | None = None, top: Sequence[Sequence[tuple[int, float]]] | None = None,
                 meta: dict[str, Any] | None = None, children: list[str] | None = None):
        if (probs is None) != (top is None):
            raise ValueError("a node has both probs and top, or neither")
        self.id, self.parent, self.role, self.text = id, parent, role, text
        self._tokens = array("i", tokens)  # (n,) int32 token ids
        self._stats = None if probs is None else TokenProbs(probs, top)
        self.meta: dict[str, Any] = {} if meta is None else meta
        self.children: list[str] = [] if children is None else children

    @property
    def tokens(self) -> tuple[int, ...]:
        return tuple(self._tokens)

    @property
    def probs(self) -> tuple[float, ...] | None:
        return None if self._stats is None else self._stats.probs()

    @property
    def top(self) -> tuple[tuple[tuple[int, float], ...], ...] | None:
        return None if self._stats is None else self._stats.tops()

    @property
    def size(self) -> int:
        return len(self._tokens)

    def prob(self, position: int) -> float | None:
        return None if self._stats is None else self._stats.prob(position)

    def top_at(self, position: int) -> tuple[tuple[int, float], ...] | None:
        return None if self._stats is None else self._stats.top(position)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and self.to_json() == other.to_json()

    __hash__ = None  # mutable and compared by value: not hashable

    def __repr__(self) -> str:
        return (f"Node(id={self.id!r}, parent={self.parent!r}, role={self.role!r}, tokens={self.size}, "
                f"text={self.text[:40]!r}, children={len(self.children)})")

    def to_json(self) -> dict[str, Any]:
        top = self.top
        return {"id": self.id, "parent": self.parent, "role": self.role, "tokens": list(self._tokens),
                "text": self.text, "probs": None if self._stats is None else list(self.probs),
                "top": None if top is None else [[list(pair) for pair in alts] for alts in top],
                "meta": self.meta, "children": list(self.children)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Node:
        """From an already validated dict (see archive.validate_document)."""
        top = data["top"]
        return cls(id=data["id"], parent=data["parent"], role=data["role"], tokens=data["tokens"],
                   text=data["text"], probs=None if data["probs"] is None else [float(p) for p in data["probs"]],
                   top=None if top is None else [[(int(t), float(p)) for t, p in alts] for alts in top],
                   meta=dict(data["meta"]), children=list(data["children"]))


@dataclass(frozen=True)
class Change:
    """What an operation did: `node` is where it leads (the new node, the fork point, or the parent of a
    deleted branch); `added` and `removed` list node ids in order."""

    node: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def prefill_of(node: Node) -> str:
    """What a user turn prefilled of the reply (its cue's end after "Bot:", e.g. " <think"); "" for other nodes."""
    prefill = node.meta.get("prefill", "") if node.role == USER else ""
    return prefill if isinstance(prefill, str) else ""  # an imported file's meta is any JSON


def chat_messages(nodes: list[Node]) -> list[dict[str, str]]:
    """A path as chat messages ({"role", "content"}): system / user / assistant; consecutive nodes of one
    role (a reply continued after a rewind) are one message. A reply starts with what its user turn prefilled
    (meta "prefill", e.g. " <think": the bot's turn opened with it), so the reply reads as the model wrote it."""
    messages: list[dict[str, str]] = []
    prefill = ""
    for node in nodes:
        role = MESSAGE_ROLES.get(node.role)
        if role is None:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += node.text
        else:
            messages.append({"role": role, "content": (prefill if role == "assistant" else "") + node.text})
        prefill = prefill_of(node)
    return [{"role": m["role"], "content": m["content"].strip()} for m in messages]
