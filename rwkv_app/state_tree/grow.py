"""Growing nodes under one parent from token events: the one way every generation becomes part of the tree.

A generation is several rows (continuations) under the same parent. Whatever produces their events (the
model's own `stream_generate` for the library, the shared Engine's handles for the app and the OpenAI API),
it yields TokenEvent and FinishEvent objects tagged with the row index; `Growth.feed` takes them in, a
finished row becomes a node (with its state kept when the tree's own model made it), and `keep_partial`
turns rows stopped early into nodes too, so a stopped or abandoned stream loses no token it delivered.
The parent lists the new nodes in branch order, however the rows finished.
"""
from __future__ import annotations

from ..core.generation import FinishEvent, TokenEvent


class Growth:
    """The rows of one generation under `parent`: events in, nodes out (`nodes`, in branch order)."""

    def __init__(self, tree, parent: str, rows: list, role: str):
        self.tree, self.parent, self.rows, self.role = tree, parent, rows, role

    @property
    def nodes(self) -> list[str | None]:
        """The node each row added so far (None: nothing kept yet)."""
        return [row.node for row in self.rows]

    def feed(self, event) -> str | None:
        """Take one event of row `event.row`: a token joins the row; a finish adds its node (returned)."""
        if isinstance(event, TokenEvent):
            self.rows[event.row].take(event)
            return None
        if isinstance(event, FinishEvent):
            return self.finish(event)
        raise TypeError(f"not a generation event: {type(event).__name__}")

    def finish(self, event: FinishEvent) -> str | None:
        """The finished row as a node (its state kept when the tree's model made it); None when it has no
        token or no state (stopped before it ran)."""
        row = self.rows[event.row]
        if not event.tokens or event.state is None or event.logits is None:
            return None
        meta = {"sampling": row.settings.replace(seed=event.seed).to_dict(), "preset": row.label,
                "seed": event.seed, "reason": event.reason, "model": row.model_id}
        node = self.tree.add(self.parent, self.role, event.tokens, event.text or "", tuple(row.probs),
                             tuple(row.top), meta)
        if row.model is self.tree.model:
            self.tree.store.put(node.id, event.state, event.logits)
        row.node = node.id
        self.in_branch_order()
        return node.id

    def keep_partial(self, indices=None) -> None:
        """The generation stopped early: these rows (default: all) that have tokens and no node become nodes,
        without kept states."""
        for index in range(len(self.rows)) if indices is None else indices:
            row = self.rows[index]
            if row.node is None and row.tokens:
                meta = {"sampling": row.settings.to_dict(), "preset": row.label, "seed": row.settings.seed,
                        "reason": "cancelled", "model": row.model_id}
                row.node = self.tree.add(self.parent, self.role, row.tokens, self.tree.decode(row.tokens),
                                         tuple(row.probs), tuple(row.top), meta).id
        self.in_branch_order()

    def in_branch_order(self) -> None:
        """Rows finish in any order; the parent lists the new nodes in branch order."""
        added = [node for node in self.nodes if node is not None]
        siblings = self.tree.nodes[self.parent].children
        siblings[:] = [i for i in siblings if i not in added] + added
