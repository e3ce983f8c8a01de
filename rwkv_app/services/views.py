"""What the UI draws, as plain data: the tree as rows, a node's tokens with their probabilities, a token's
alternatives, the chat's branch points, the chat's settings, the models panel."""
from __future__ import annotations

from ..core.presets import load_sampling_preset
from ..state_tree.nodes import BOT, GENERATED


BUCKETS = ((0.5, "p ≥ 0.5"), (0.2, "p ≥ 0.2"), (0.05, "p ≥ 0.05"), (0.0, "p < 0.05"))
PREVIEW = 48
TAIL = 160
JS_EXACT = 2 ** 53 - 1  # the largest whole number a browser's JSON (a double) holds exactly
WRITTEN = (GENERATED, BOT)  # the roles of the text the model wrote (the others were typed, or are starts)


def chat_settings(family, saved: dict | None) -> dict:
    """The Chat tab's Conversation panel: the open chat's system prompt, names and thinking (`saved`: its
    tree.meta["chat"]; None: no chat yet, the family's defaults), and whether the family has a thinking format
    (without one the chat never thinks: "auto", no prefill)."""
    saved = saved or {}
    thinking = (saved.get("thinking") or "auto") if family.thinking_format else "auto"
    return {"system": saved.get("system") or "", "user": saved.get("user") or family.chat_names[0],
            "bot": saved.get("bot") or family.chat_names[1], "thinking": thinking,
            "thinking_format": bool(family.thinking_format)}


def bucket(prob: float) -> str:
    return next(name for floor, name in BUCKETS if prob >= floor)


def preview(text: str, limit: int = PREVIEW) -> str:
    """`text` on one line, cut to `limit` characters with "…"."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def seed_used(seed) -> str:
    """A column's seed as shown beside it (and returned by /compare): its decimal digits (exact: a browser's numbers
    round beyond 2**53), or what stands for none (a greedy preset samples nothing)."""
    return "none (greedy)" if seed is None or seed == "" else str(int(seed))


def file_name(path) -> str:
    """An uploaded file's name as a message shows it (a long name cut in the middle)."""
    name = path.name
    return name if len(name) <= 60 else f"{name[:40]}…{name[-19:]}"


def exact_json(value, key: str | None = None):
    """`value` (JSON data) as a browser shows it digit for digit: every seed, and any other whole number beyond
    ±(2**53 - 1) (a double rounds 3007010865544379428 to ...400), becomes its decimal string; a seed copied from
    it replays the generation. Seeds are strings whatever their size, so the field keeps one type."""
    if isinstance(value, dict):
        return {k: exact_json(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [exact_json(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and (key == "seed" or abs(value) > JS_EXACT):
        return str(value)
    return value


def node_extra(node) -> list[str]:
    """What a node's label says beside its text: preset, seed, whether it was stopped, forced or rewound."""
    extra = []
    if node.meta.get("preset"):
        extra.append(str(node.meta["preset"]))
    if node.meta.get("seed") is not None:
        extra.append(f"seed {node.meta['seed']}")
    if node.meta.get("reason") == "cancelled":
        extra.append("stopped")
    forced = node.meta.get("forced")
    if isinstance(forced, dict):  # which token was forced: the text alone may not show it (cut, or past the preview)
        extra.append(f"forced {forced['text']!r}" if "text" in forced else f"forced token {forced.get('token')}")
    elif node.meta.get("forked_from") and node.meta.get("position"):  # a rewind point: its twin has the same start
        extra.append(f"rewound after token {node.meta['position']}")
    return extra


def continuation(tree, node_id: str) -> str:
    """What the model generated at this node: its own text when the model wrote it (a generation, a chat reply),
    as Generate, Continue, Rewind and Force show it once done; "" at a start or at typed text (nothing generated
    there yet: its continuations are its children)."""
    node = tree.node(node_id)
    return node.text if node.role in WRITTEN else ""


def tail(text: str, size: int = TAIL) -> str:
    """The end of `text` (what a continuation continues), whitespace collapsed: "…" + its last `size` characters."""
    text = " ".join(text.split())
    return text if len(text) <= size else "…" + text[-(size - 1):]


def tree_rows(tree, current: str) -> list[dict]:
    """Every node, depth first, as {id, depth, indent, label, role, snippet, extra, branches, current, on_path}.
    `indent` grows only under a node with more than one child (a chain of continuations stays in one column,
    as loom draws it; `chained`: the only child of the row above's node); `branches` is the number of children;
    `on_path`: an ancestor of the current node."""
    path = {node.id for node in tree.path(current)} if current in tree.nodes else set()
    rows, stack = [], [(tree.root, 0, 0, "", False)]
    while stack:
        node_id, depth, indent, lead, chained = stack.pop()
        node = tree.nodes[node_id]
        snippet = "(start)" if node.parent is None else (preview(node.text) or "∅")
        text = snippet if node.parent is None else f"{node.role}: {snippet}"
        extra = node_extra(node)
        label = lead + text + (f"  [{', '.join(extra)}]" if extra else "") + ("  ◀" if node_id == current else "")
        children = node.children
        rows.append({"id": node_id, "depth": depth, "indent": indent, "label": label, "role": node.role,
                     "snippet": snippet, "extra": extra, "branches": len(children), "current": node_id == current,
                     "on_path": node_id in path, "chained": chained})
        step = 1 if len(children) > 1 else 0
        for i, child in reversed(list(enumerate(children))):
            stack.append((child, depth + 1, indent + step,
                          "    " * depth + ("└─ " if i == len(children) - 1 else "├─ "), len(children) == 1))
    return rows


def token_rows(tree, node_id: str) -> list[dict]:
    """The node's tokens: {text, prob (None for text that was typed), bucket, position}."""
    node = tree.node(node_id)
    rows = []
    for position, token in enumerate(node.tokens):
        prob = node.prob(position)
        rows.append({"text": tree.decode([token]) if tree.tokenizer else str(token), "prob": prob,
                     "bucket": bucket(prob) if prob is not None else None, "position": position})
    return rows


def path_token_rows(tree, node_id: str) -> list[dict]:
    """The whole path's text: earlier nodes as plain text, the node's own tokens coloured."""
    before = "".join(n.text for n in tree.path(node_id)[:-1] if n.tokens)  # a state root's name is not text
    rows = [{"text": before, "prob": None, "bucket": None, "position": None}] if before else []
    return rows + token_rows(tree, node_id)


def alternatives(tree, node_id: str, position: int) -> list[dict]:
    """The token at `position` and the model's most likely alternatives there: {token, text, prob, chosen}."""
    node = tree.node(node_id)
    top = node.top_at(position) if 0 <= position < node.size else None
    if top is None:
        return []
    chosen = node.tokens[position]
    rows = [{"token": t, "text": tree.decode([t]), "prob": p, "chosen": t == chosen} for t, p in top]
    if all(not r["chosen"] for r in rows):
        rows.insert(0, {"token": chosen, "text": tree.decode([chosen]), "prob": node.prob(position), "chosen": True})
    return rows


def preset_values(presets, name, knobs: tuple[str, ...]) -> dict:
    """A preset's knob values as the sliders show them (a greedy preset shows temperature 0); {} if `name` is not
    one of `presets` (a name, never a path: load_sampling_preset also reads files)."""
    if name not in presets:
        return {}
    settings = load_sampling_preset(name)
    values = {k: getattr(settings, k) for k in knobs}
    if settings.greedy:
        values["temperature"] = 0.0
    return values
