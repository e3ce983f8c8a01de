"""The pieces of a session tree: nodes, what an operation changed, and how a node's role reads as chat.

A node is one step of a conversation: the tokens it added to the state of its parent, its text, and for
generated tokens each token's probability and top alternatives. Its id is random and unguessable, so a
node id handed to a browser cannot be used to guess another session's nodes.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

ROOT, SYSTEM, TEXT, USER, BOT, GENERATED = "root", "system", "text", "user", "bot", "generated"
ROLES = (ROOT, SYSTEM, TEXT, USER, BOT, GENERATED)
MESSAGE_ROLES = {SYSTEM: "system", TEXT: "user", USER: "user", BOT: "assistant", GENERATED: "assistant"}
ID_BYTES = 8  # 16 hex characters, 64 random bits


class SessionError(InputError):
    """An operation the tree cannot do (unknown node, deleting the root, generating from nothing...)."""


def new_id() -> str:
    return secrets.token_hex(ID_BYTES)


@dataclass
class Node:
    """One step of a conversation. `tokens` are what the state took in after the parent's state.

    `text` is the node's content as shown: what was typed (a chat message without its "User: " framing), or
    the generated text cut before a stop string. The exact context the model saw is the path's tokens.
    `probs[i]` and `top[i]` belong to tokens[i] (generated nodes only): the model's own probability of the
    token and its most likely alternatives as (token id, probability), most likely first.
    `meta` records how the node came to be: sampling settings, preset, seed, finish reason, model id...
    """

    id: str
    parent: str | None
    role: str
    tokens: tuple[int, ...]
    text: str = ""
    probs: tuple[float, ...] | None = None
    top: tuple[tuple[tuple[int, float], ...], ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "parent": self.parent, "role": self.role, "tokens": list(self.tokens),
                "text": self.text, "probs": None if self.probs is None else list(self.probs),
                "top": None if self.top is None else [[list(pair) for pair in alts] for alts in self.top],
                "meta": self.meta, "children": list(self.children)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Node:
        """From an already validated dict (see archive.validate_document)."""
        top = data["top"]
        return cls(id=data["id"], parent=data["parent"], role=data["role"], tokens=tuple(data["tokens"]),
                   text=data["text"], probs=None if data["probs"] is None else tuple(float(p) for p in data["probs"]),
                   top=None if top is None else tuple(tuple((int(t), float(p)) for t, p in alts) for alts in top),
                   meta=dict(data["meta"]), children=list(data["children"]))


@dataclass(frozen=True)
class Change:
    """What an operation did: `node` is where it leads (the new node, the fork point, or the parent of a
    deleted branch); `added` and `removed` list node ids in order."""

    node: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def chat_messages(nodes: list[Node]) -> list[dict[str, str]]:
    """A path as chat messages ({"role", "content"}): system / user / assistant; consecutive nodes of one
    role (a reply continued after a rewind) are one message."""
    messages: list[dict[str, str]] = []
    for node in nodes:
        role = MESSAGE_ROLES.get(node.role)
        if role is None:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += node.text
        else:
            messages.append({"role": role, "content": node.text})
    return [{"role": m["role"], "content": m["content"].strip()} for m in messages]
