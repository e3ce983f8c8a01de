"""The session tree: every point of a conversation kept as a node, each resumable exactly.

    tree = SessionTree(model, tokenizer, model_id="RWKV/rwkv-4-169m-pile")
    start = tree.extend(tree.root, "The quick brown fox").node
    for item in tree.generate(start, "balanced", max_new_tokens=40):   # TokenEvents, FinishEvent, then a Change
        ...
    rewound = tree.fork(node_id, position=3).node                      # rewind to token 3 of a node
    for item in tree.compare(start, ["balanced", "creative", Branch("balanced", seed=7)]):  # one batch
        ...

An RWKV state has a fixed size whatever the context length, so the tree keeps each node's state after
its tokens (and the logits after its last token) in a StateStore under a budget. A dropped state is
recomputed from the nearest kept ancestor with ONE forward over the tokens in between. A state brought in
from outside (a state file, a mix of two states) becomes a second root, `add_state`: a "state" node under the
root, its state always kept (nothing could recompute it); everything under it works as under the root. Operations return
a Change (what was added or removed, and where it leads); generation streams the model's events and ends
with one. One operation at a time per tree: it is per-session data, not shared between users.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import torch

from ..errors import check_token_range
from ..core.sampling import token_probs
from ..models.family import family_of
from . import continuation
from .continuation import Branch
from .identity import ModelIdentity, tokenizer_fingerprint
from .nodes import BOT, GENERATED, ROLES, ROOT, STARTS, STATE, TEXT, Change, Node, SessionError, chat_messages, new_id
from .store import Kept, StateBudget, StateStore

MAX_COMPARE = 8


class SessionTree:
    def __init__(self, model, tokenizer=None, *, model_id: str | None = None, budget: StateBudget | None = None,
                 state_device: torch.device | str | None = None, top_alternatives: int = 5,
                 root_id: str | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.family = family_of(model)  # everything the tree does to a state goes through it
        self.identity = ModelIdentity.of(model, model_id)
        self.tokenizer_id = tokenizer_fingerprint(tokenizer)
        self.state_device = torch.device(state_device) if state_device is not None else model.device
        self.top_alternatives = top_alternatives
        self.meta: dict = {}  # session-level data saved with the tree (e.g. the chat's format and current node)
        self.recomputed_tokens = 0  # tokens run again to rebuild dropped states, over the tree's life
        root = Node(root_id or new_id(), None, ROOT, ())
        self.root = root.id
        self.nodes: dict[str, Node] = {root.id: root}
        self.store = StateStore(self.family, budget or StateBudget(), self.state_device, pinned=root.id)
        empty = self.family.empty_state(model, 1, self.state_device)
        self.check_budget(self.family.nbytes(empty))
        self.store.put(root.id, empty, None)

    def check_budget(self, state_bytes: int) -> None:
        entry = state_bytes + 4 * self.model.config.vocab_size  # a state and its float32 logits
        if self.store.budget.max_bytes < state_bytes + entry:
            raise SessionError(f"state budget of {self.store.budget.max_bytes} bytes cannot hold the root and one "
                               f"node ({state_bytes + entry} bytes for this model)")

    # ---- reading ---------------------------------------------------------------------------------------
    def node(self, node_id: str) -> Node:
        node = self.nodes.get(node_id) if isinstance(node_id, str) else None
        if node is None:
            raise SessionError(f"unknown node id {node_id!r:.40}")
        return node

    def children(self, node_id: str) -> list[Node]:
        return [self.nodes[i] for i in self.node(node_id).children]

    def path(self, node_id: str) -> list[Node]:
        """Root first, `node_id` last."""
        nodes = [self.node(node_id)]
        while nodes[-1].parent is not None:
            nodes.append(self.nodes[nodes[-1].parent])
        return nodes[::-1]

    def path_tokens(self, node_id: str) -> list[int]:
        return [t for node in self.path(node_id) for t in node.tokens]

    def path_text(self, node_id: str) -> str:
        """The exact text the model took in up to this node (special tokens shown)."""
        return self.require_tokenizer().decode(self.path_tokens(node_id))

    def chat_messages(self, node_id: str) -> list[dict[str, str]]:
        return chat_messages(self.path(node_id))

    def state_at(self, node_id: str) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Copies of the node's one-row state and its (V,) logits (None at the root), recomputed if dropped."""
        kept = self.resume(node_id)
        return self.family.clone(kept.state), None if kept.logits is None else kept.logits.clone()

    # ---- growing -------------------------------------------------------------------------------------
    def extend(self, parent: str, text: str, role: str = TEXT, meta: dict | None = None) -> Change:
        """Append text under `parent` (tokenized, one forward from the parent's state)."""
        if not isinstance(text, str) or not text:
            raise SessionError("extend() needs non-empty text")
        return self.extend_tokens(parent, self.require_tokenizer().encode(text), role, text, meta)

    def extend_tokens(self, parent: str, tokens: Iterable[int], role: str = TEXT, text: str | None = None,
                      meta: dict | None = None) -> Change:
        self.node(parent)
        tokens = self.check_tokens(tokens)
        if role not in ROLES or role in STARTS:
            raise SessionError(f"role must be one of {tuple(r for r in ROLES if r not in STARTS)}, got {role!r}")
        state, logits = self.run(self.resume(parent), tokens)
        node = self.add(parent, role, tokens, self.decode(tokens) if text is None else text, meta=meta)
        self.store.put(node.id, state, logits[-1])
        return Change(node.id, (node.id,))

    def generate(self, parent: str, sampling=None, *, role: str = GENERATED, label: str | None = None,
                 stopping_criteria=(), **overrides) -> Iterator:
        """Stream a continuation under `parent` from its kept state and logits (no tokens run again).

        `sampling`: a SamplingSettings, a preset name, a dict, or None (greedy); keyword overrides as in
        generate(); `label` names the settings in the node's meta (default: the preset name). Yields the
        model's TokenEvents and FinishEvent, then a Change naming the new node.
        Closing the generator early keeps what was generated so far as a node (meta reason "cancelled").
        """
        branch = Branch(sampling, label=label, overrides=overrides)
        return continuation.start(self, parent, [branch], role, stopping_criteria)

    def compare(self, parent: str, branches: Sequence, *, role: str = GENERATED) -> Iterator:
        """2 to 8 continuations of `parent` generated together, one batch per model.

        Each branch is a Branch, or what Branch takes as `sampling` (settings, preset name, dict). Each row
        samples with its own settings and seed, so a branch continues as it would alone. Events carry the
        branch's index as `row`; the final Change lists the new nodes in branch order.
        """
        if not 2 <= len(branches) <= MAX_COMPARE:
            raise SessionError(f"compare() takes 2 to {MAX_COMPARE} branches, got {len(branches)}")
        rows = [b if isinstance(b, Branch) else Branch(b) for b in branches]
        return continuation.start(self, parent, rows, role, ())

    def regenerate(self, node_id: str, sampling=None, **overrides) -> Iterator:
        """A new sibling continuation from the same parent: the node's own settings (a fresh seed) unless given."""
        node = self.node(node_id)
        if node.role in STARTS:
            raise SessionError(f"a {node.role} node cannot be regenerated")
        label = None
        if sampling is None and node.meta.get("sampling"):
            sampling, label = {**node.meta["sampling"], "seed": None}, node.meta.get("preset")
        role = node.role if node.role in (BOT, GENERATED) else GENERATED
        branch = Branch(sampling, label=label, overrides=overrides)
        return continuation.start(self, node.parent, [branch], role, ())

    def add_state(self, state: list[torch.Tensor], text: str, meta: dict | None = None) -> Change:
        """A new root carrying `state` (a one-row state of this tree's model, e.g. from a state file or a mix):
        a "state" node under the root, kept for good. Its next-token logits come from the first text added
        under it (extend), as at the root. `text` names it in the tree ("state file persona.pth")."""
        self.family.check_state(list(state), self.model, 1, device=state[0].device if state else None)
        if not self.family.is_finite(state):
            raise SessionError("the state holds NaN or infinite values")
        self.check_starts(self.family.nbytes(state))
        node = self.add(self.root, STATE, (), text, meta=meta)
        self.store.pinned.add(node.id)
        self.store.put(node.id, state, None)
        return Change(node.id, (node.id,))

    def check_starts(self, state_bytes: int) -> None:
        """Room for one more kept-for-good state, and still for one node beside all of them."""
        budget, pinned = self.store.budget, self.store.pinned
        entry = state_bytes + 4 * self.model.config.vocab_size
        if len(pinned) + 2 > budget.max_states or self.store.pinned_bytes() + state_bytes + entry > budget.max_bytes:
            raise SessionError(f"this session keeps {len(pinned) - 1} loaded state(s) already; the state budget "
                               f"({budget.max_bytes} bytes, {budget.max_states} states) has no room for another: "
                               "delete one first")

    def starts(self) -> list[Node]:
        """The states a conversation can start from: the root (the empty state) and the state roots."""
        return [self.nodes[self.root]] + [n for n in self.children(self.root) if n.role == STATE]

    # ---- branching -----------------------------------------------------------------------------------
    def fork(self, node_id: str, position: int | None = None) -> Change:
        """The point to branch from: the node itself, or (rewind) the state after its first `position` tokens.

        A position inside the node adds a sibling holding those tokens, its state computed from the nearest
        kept state (one forward) and kept; position 0 is the parent. Then extend or generate under it.
        """
        node = self.node(node_id)
        size = len(node.tokens)
        if position is None or position == size:
            return Change(node.id)
        if not isinstance(position, int) or not 0 <= position <= size:
            raise SessionError(f"position must be in [0, {size}] for this node, got {position!r}")
        if position == 0:
            return Change(node.parent)
        prefix = self.add(node.parent, node.role, node.tokens[:position], self.decode(node.tokens[:position]),
                          None if node.probs is None else node.probs[:position],
                          None if node.top is None else node.top[:position],
                          {**carried_meta(node), "forked_from": node.id, "position": position})
        self.resume(prefix.id)
        return Change(prefix.id, (prefix.id,))

    def force_token(self, node_id: str, position: int, token: int) -> Change:
        """A sibling with the node's first `position` tokens and then `token` instead of tokens[position];
        generate under the returned node to continue from the forced token."""
        node = self.node(node_id)
        if not isinstance(position, int) or not 0 <= position < len(node.tokens):
            raise SessionError(f"position must be in [0, {len(node.tokens)}) for this node, got {position!r}")
        tokens = list(node.tokens[:position]) + self.check_tokens([token])
        start, between = self.nearest_kept(node.parent)
        state, logits = self.run(start, between + tokens, keep=2)  # (k, V)
        before = logits[-2] if len(between) + len(tokens) > 1 else start.logits  # (V,) at the forced position
        probs = top = None
        if node.probs is not None and before is not None:
            chosen, ids, values = token_probs(before[None], torch.tensor([token], device=before.device),
                                              self.top_alternatives)
            probs = node.probs[:position] + (float(chosen[0]),)
            top = node.top[:position] + (tuple(zip(ids[0].tolist(), values[0].tolist())),)
        meta = {**carried_meta(node), "forced": {"position": position, "token": token, "text": self.decode([token]),
                                                  "replaced": node.tokens[position], "node": node.id}}
        forced = self.add(node.parent, node.role, tokens, self.decode(tokens), probs, top, meta)
        self.store.put(forced.id, state, logits[-1])
        return Change(forced.id, (forced.id,))

    def edit(self, node_id: str, text: str) -> Change:
        """A new sibling with edited text (same role); the original stays."""
        node = self.node(node_id)
        if node.role in STARTS:
            raise SessionError(f"a {node.role} node holds no text to edit")
        return self.extend(node.parent, text, node.role, {"edited_from": node.id})

    def deletable(self, node_id: str) -> Node:
        """The node `delete` would remove (with everything under it); the root is refused."""
        node = self.node(node_id)
        if node.parent is None:
            raise SessionError("the start of the tree cannot be deleted: select a node under it first")
        return node

    def delete(self, node_id: str) -> Change:
        """Remove a node and everything under it (not the root)."""
        node = self.deletable(node_id)
        removed, stack = [], [node.id]
        while stack:
            current = stack.pop()
            removed.append(current)
            stack.extend(self.nodes[current].children)
        self.nodes[node.parent].children.remove(node.id)
        for gone in removed:
            del self.nodes[gone]
            self.store.remove(gone)
        return Change(node.parent, removed=tuple(removed))

    # ---- states --------------------------------------------------------------------------------------
    def resume(self, node_id: str) -> Kept:
        """The node's kept entry; if dropped, rebuilt from the nearest kept ancestor by one forward, and kept."""
        kept = self.store.get(node_id)
        if kept is not None:
            return kept
        start, tokens = self.nearest_kept(node_id)
        state, logits = self.run(start, tokens)
        self.recomputed_tokens += len(tokens)
        return self.store.put(node_id, state, logits[-1])

    def nearest_kept(self, node_id: str) -> tuple[Kept, list[int]]:
        """The nearest kept entry at or above the node, and the tokens from there to the node's end."""
        chain, cursor = [], self.node(node_id)
        while (kept := self.store.get(cursor.id)) is None:
            chain.append(cursor)
            cursor = self.nodes[cursor.parent]
        return kept, [t for node in reversed(chain) for t in node.tokens]

    @torch.no_grad()
    def run(self, start: Kept, tokens: list[int], keep: int = 1) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One forward of `tokens` from a kept state: the new state and the last `keep` logits, (k, V) float32."""
        if not tokens:
            return start.state, None if start.logits is None else start.logits[None]  # (1, V)
        device = self.model.device
        ids = torch.tensor([tokens], dtype=torch.long, device=device)  # (1, T)
        out = self.model(input_ids=ids, state=self.family.to(start.state, device), use_cache=True,
                         logits_to_keep=keep)
        return out.state, out.logits[0].float()  # one row, (k, V)

    # ---- helpers -------------------------------------------------------------------------------------
    def add(self, parent: str, role: str, tokens, text: str, probs=None, top=None, meta=None) -> Node:
        node = Node(new_id(), parent, role, tokens, text, probs, top, dict(meta or {}))
        self.nodes[node.id] = node
        self.nodes[parent].children.append(node.id)
        return node

    def check_tokens(self, tokens: Iterable[int]) -> list[int]:
        tokens = [int(t) if isinstance(t, int) and not isinstance(t, bool) else t for t in tokens]
        if not tokens:
            raise SessionError("a node needs at least one token")
        bad = next((t for t in tokens if not isinstance(t, int)), None)
        if bad is not None:
            raise SessionError(f"token ids must be integers, got {bad!r:.40}")
        check_token_range(tokens, self.model.config.vocab_size, "the tokens", SessionError)
        return tokens

    def require_tokenizer(self):
        if self.tokenizer is None:
            raise SessionError("this session has no tokenizer: use token ids (extend_tokens) or pass tokenizer=")
        return self.tokenizer

    def decode(self, tokens: Sequence[int]) -> str:
        return "" if self.tokenizer is None else self.tokenizer.decode(list(tokens), skip_special_tokens=True)


def carried_meta(node: Node) -> dict:
    """What a rewound or forced copy keeps from the node's meta: how it was made, not how it ended."""
    return {k: v for k, v in node.meta.items() if k not in ("reason", "forked_from", "position", "forced")}
