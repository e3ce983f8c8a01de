"""API clients' states: one session tree per (API key, model), under the browser sessions' memory budget.

A response's `state_id` is a node of its key's tree (the state after the reply); a request with that id
continues from it. Another key's ids are unknown here (404), as are expired ones: a node unused for
`state_ttl_s`, together with everything under it, is deleted, and a tree left empty gives its model back.
Beyond `max_nodes` nodes per tree the least recently used conversations are deleted first.
"""
from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..models.state_files import save_state_file
from ..state_tree import SessionTree
from .errors import bad_request, not_found


@dataclass
class ApiTree:
    key: str
    loaded: object  # the LoadedModel this tree holds borrowed
    model_name: str  # as the client named it
    tree: SessionTree
    lock: threading.RLock = field(default_factory=threading.RLock)
    used: dict[str, float] = field(default_factory=dict)  # node id -> last use (time.time())


class StateRegistry:
    def __init__(self, playground, options, clock=time.time):
        self.playground, self.options, self.clock = playground, options, clock
        self._lock = threading.Lock()
        self._trees: dict[tuple[str, object], ApiTree] = {}

    def tree_for(self, key: str, loaded, model_name: str) -> ApiTree:
        """The key's tree on this model; takes over the caller's borrow of `loaded` (released if not needed)."""
        with self._lock:
            found = self._trees.get((key, loaded.key))
            if found is None:
                tree = SessionTree(loaded.model, loaded.tokenizer, model_id=loaded.key.source,
                                   budget=self.playground.state_budget())
                found = self._trees[(key, loaded.key)] = ApiTree(key, loaded, model_name, tree)
                return found
        self.playground.manager.release(loaded)
        return found

    def find(self, key: str, state_id: str, loaded=None) -> ApiTree:
        """The tree (of this key) holding `state_id`; 404 if none, 400 if it is another model's."""
        with self._lock:
            trees = [t for (k, _), t in self._trees.items() if k == key]
        for api_tree in trees:
            if state_id in api_tree.tree.nodes and state_id != api_tree.tree.root:
                if loaded is not None and api_tree.loaded.key != loaded.key:
                    raise bad_request(f"state {state_id} belongs to model {api_tree.model_name}, not to the "
                                      "model this request names", "state_id")
                return api_tree
        raise not_found(f"unknown state_id {state_id!r:.40}: it expired, was deleted, or belongs to another key",
                        "state_id", "state_not_found")

    def touch(self, api_tree: ApiTree, *node_ids: str) -> None:
        now = self.clock()
        for node_id in node_ids:
            api_tree.used[node_id] = now

    def describe(self, key: str, state_id: str) -> dict:
        api_tree = self.find(key, state_id)
        with api_tree.lock:
            tree, node = api_tree.tree, api_tree.tree.node(state_id)
            return {"id": node.id, "object": "state", "model": api_tree.model_name,
                    "parent": None if node.parent == tree.root else node.parent, "role": node.role,
                    "tokens": node.size, "context_tokens": len(tree.path_tokens(node.id)), "text": node.text,
                    "finish_reason": node.meta.get("reason"), "children": list(node.children),
                    "kept": node.id in tree.store,
                    "expires_at": int(api_tree.used.get(node.id, 0) + self.options.state_ttl_s)}

    def state_file(self, key: str, state_id: str) -> bytes:
        """The node's state as a state file (safetensors, RWKV-Runner's `blocks.{i}.att.time_state` layout for
        RWKV-7 plus the token shifts; rwkv_app/models/state_files.py), to load elsewhere or with --state."""
        api_tree = self.find(key, state_id)
        with api_tree.lock:
            state, _ = api_tree.tree.state_at(state_id)
            self.touch(api_tree, state_id)
        with tempfile.TemporaryDirectory() as folder:
            return save_state_file(state, api_tree.tree.model, Path(folder) / "state.safetensors").read_bytes()

    def delete(self, key: str, state_id: str) -> dict:
        api_tree = self.find(key, state_id)
        with api_tree.lock:
            removed = api_tree.tree.delete(state_id).removed
            for node_id in removed:
                api_tree.used.pop(node_id, None)
        return {"id": state_id, "object": "state.deleted", "deleted": True, "removed": list(removed)}

    # ---- expiry ----------------------------------------------------------------------------------------
    def sweep(self) -> None:
        """Delete expired conversations (and the least recently used beyond max_nodes); free empty trees."""
        with self._lock:
            trees = list(self._trees.items())
        for slot, api_tree in trees:
            with api_tree.lock:
                self.expire(api_tree)
                empty = not api_tree.tree.nodes[api_tree.tree.root].children
            if empty:
                with self._lock:
                    if self._trees.get(slot) is api_tree:
                        del self._trees[slot]
                        self.playground.manager.release(api_tree.loaded)

    def expire(self, api_tree: ApiTree) -> None:
        tree, deadline = api_tree.tree, self.clock() - self.options.state_ttl_s
        last = self.last_use(api_tree)
        for node_id in [n for n in tree.nodes if n != tree.root]:
            if node_id in tree.nodes and last[node_id] < deadline:
                self.drop(api_tree, node_id)
        conversations = sorted(tree.nodes[tree.root].children, key=lambda n: last[n])
        while len(tree.nodes) > self.options.max_nodes and conversations:
            self.drop(api_tree, conversations.pop(0))

    def last_use(self, api_tree: ApiTree) -> dict[str, float]:
        """Node id -> latest use in its subtree."""
        tree, last = api_tree.tree, {}
        order, stack = [], [tree.root]
        while stack:
            node_id = stack.pop()
            order.append(node_id)
            stack.extend(tree.nodes[node_id].children)
        for node_id in reversed(order):
            own = api_tree.used.get(node_id, 0.0)
            last[node_id] = max([own] + [last[c] for c in tree.nodes[node_id].children])
        return last

    def drop(self, api_tree: ApiTree, node_id: str) -> None:
        for gone in api_tree.tree.delete(node_id).removed:
            api_tree.used.pop(gone, None)

    def close(self) -> None:
        with self._lock:
            trees, self._trees = list(self._trees.values()), {}
        for api_tree in trees:
            self.playground.manager.release(api_tree.loaded)
