"""The Blocks app: the tabs, one per module, sharing one per-session state; after each action every view
(tree, tokens, chat branches, node pickers) is redrawn from the session."""
from __future__ import annotations

import html

import gradio as gr

from . import chat, compare, conversations, models, playground, session, state, state_heads
from .common import Context

# A tree row is a flex line: the toggle, the role, the preset and seed keep their width and the text preview shrinks
# (with "…"), so sibling generations stay told apart by their seeds on a laptop and on a phone.
# The tree's label stays in the flow (Gradio floats it over the panel), so the panel starts below it however many
# lines it wraps to on a narrow column (a phone, a small laptop); on one line it looks as the floating one did.
TREE_CSS = """
#pg-tree > label[data-testid="block-label"] { position: static; display: flex; width: fit-content;
  max-width: calc(100% - 2 * var(--block-label-margin));
  margin: var(--block-label-margin) 0 0 var(--block-label-margin); }
#pg-tree .html-container { padding-top: 0; }
.rwkv-tree { position: relative; max-height: min(480px, 60vh); overflow: auto; font-size: 13px; line-height: 1.5;
  border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 4px 0; }
.rwkv-tree .tn { display: flex; align-items: baseline; white-space: nowrap; overflow: hidden; cursor: pointer;
  padding: 1px 6px; border-left: 3px solid transparent; }
.rwkv-tree .tn > * { flex: none; }  /* never shrunk, not even by a fraction of a pixel ("…" over a seed) */
.rwkv-tree .tn > .snip { flex: 0 1000 auto; min-width: 0; overflow: hidden; text-overflow: ellipsis; }
.rwkv-tree .tn:hover { background: var(--background-fill-secondary); }
.rwkv-tree .tn.on-path { border-left-color: #7fb3ff; background: rgba(127, 179, 255, 0.12); }
.rwkv-tree .tn.current { background: rgba(127, 179, 255, 0.35); font-weight: 600; }
.rwkv-tree .tog, .rwkv-tree .tog-space { display: inline-block; width: 1.2em; text-align: center; }
.rwkv-tree .tn.folded .tog { transform: rotate(-90deg); }
.rwkv-tree .role { font-size: 11px; padding: 0 4px; margin-right: 4px; border-radius: 4px;
  background: var(--background-fill-secondary); color: var(--body-text-color-subdued); }
.rwkv-tree .extra { color: var(--body-text-color-subdued); font-size: 11px; margin-left: 6px; }
"""
# A phone (390 px): a short banner; the Playground's prompt and its buttons first, then settings, output, the tree
# (a row's preset and seed on a line of their own under its text: a 19-digit random seed leaves no room beside it),
# then the token tools;
# wide tables scroll sideways instead of breaking words.
MOBILE_CSS = """
#banner h1 { margin: 0 0 2px 0; }
#banner p { margin: 0; font-size: 13px; }
#models-info table { display: block; overflow-x: auto; }
#models-info th, #models-info td { white-space: nowrap; }
@media (max-width: 640px) {
  #banner h1 { font-size: 20px; }
  #banner p { font-size: 12px; line-height: 1.3; }
  .tab-container button { padding: 4px 7px !important; font-size: 13px !important; }
  #pg-layout { flex-direction: column; }
  #pg-main, #pg-side { display: contents; }
  PHONE_ORDER
  .rwkv-tree { max-height: 40vh; }
  .rwkv-tree .tn { flex-wrap: wrap; }
  .rwkv-tree .tn > .snip { flex: 1 1 0; }
  .rwkv-tree .tn > .extra { flex: 0 0 100%; margin-left: 0; padding-left: 1.2em; box-sizing: border-box;
    white-space: normal; overflow-wrap: anywhere; }  /* a deep row's "· forced ..." / "· stopped" wraps, not cut */
}
"""
PHONE_ORDER = ("pg-prompt", "pg-actions", "pg-settings", "pg-output", "pg-tree", "pg-extra", "pg-delete", "pg-confirm",
               "pg-tokens", "pg-token-row", "pg-edit-row", "pg-details", "pg-states")
# Gradio wraps form components in its own divs: each wrapper holding one of these gets the order
MOBILE_CSS = MOBILE_CSS.replace("PHONE_ORDER", "\n  ".join(
    f":is(#pg-main, #pg-side) > :is(#{name}, :has(#{name})) {{ order: {i}; }}" for i, name in enumerate(PHONE_ORDER, 1)))
CSS = ".state-heatmap svg { max-width: 100%; height: auto; }" + TREE_CSS + MOBILE_CSS + chat.CSS + state_heads.CSS
THEME = "soft"


def build_app(playground_service, message: str = "") -> gr.Blocks:
    # Gradio's copies of uploads and downloads are deleted an hour after they were made (every 10 minutes)
    with gr.Blocks(title="RWKV Playground", delete_cache=(600, 3600)) as demo:
        ctx = Context(playground_service)
        gr.Markdown("# RWKV Playground" + (f"\n{message}" if message else ""), elem_id="banner")
        refresh: list = []  # events after which every view is redrawn (wired below, once every view exists)
        parts, lists = {}, []
        loaded = conversations.build_identity(ctx, demo)  # who the visitor is; reopens their latest conversation
        with gr.Tabs():
            for name, module in (("Chat", chat), ("Playground", playground), ("Compare", compare),
                                 ("State", state), ("Models", models), ("Session", session)):
                with gr.Tab(name, id=name.lower()) as tab:
                    parts.update({f"{name.lower()}.{k}": v for k, v in module.build(ctx, refresh).items()})
                    if module in (chat, playground):  # the visitor's saved conversations, in both
                        lists.append(conversations.build(ctx, refresh, api=module is chat).get("list"))
                        if lists[-1] is not None:
                            conversations.follow_tab(ctx, tab, lists[-1])
                if module is state:  # the selected node's state, drawn as the tab opens
                    parts.pop("state.opened")(tab)
                if module is models:  # what is loaded and who uses it, as of when the tab is opened
                    tab.select(lambda s: models.info_markdown(ctx, s), [ctx.state], [parts["models.info"]],
                               api_visibility="private", show_progress="hidden")
        outputs = [parts["playground.tree"], parts["playground.tokens"], parts["chat.branches"], parts["chat.chatbot"],
                   parts["state.node"], parts["state.other"], parts["compare.source"], parts["playground.node"],
                   parts["playground.position"], parts["playground.alternative"], parts["playground.output"],
                   parts["playground.details"]]
        lists = [c for c in lists if c is not None]
        for event in refresh + [loaded]:
            event.then(redraw, [ctx.state], outputs, api_visibility="private")
            if lists:
                # one update per list: Gradio pops "value" from an update dict as it applies it, so one dict sent
                # to both lists reached the second without its value (the Playground's list showed none selected)
                event.then(lambda s: [conversations.list_update(s) for _ in lists], [ctx.state], lists,
                           api_visibility="private", show_progress="hidden")
        for event in ctx.reopened + [loaded]:  # the Chat tab's panel: the settings of the conversation now open
            event.then(lambda s: chat.settings_values(ctx, s), [ctx.state], parts["chat.settings"],
                       api_visibility="private", show_progress="hidden")
        demo.unload(ctx.unload)
    return demo


def redraw(session):
    """Every view's new value, from the session (empty views before its first action)."""
    tree_update = playground.tree_update(session)
    tokens = playground.tokens_value(session, session.current) if session is not None else []
    marks = chat.branch_marks(session)
    messages = session.chat.messages() if session is not None and session.chat is not None else []
    rows = session.tree_view() if session is not None else []
    nodes = [(row["label"].strip(" ├└─"), row["id"]) for row in rows]
    source = "Select a node in the Playground tab (or chat first); the comparison starts there."
    tail = session.current_tail() if session is not None else None
    if tail is not None:
        source = f"Comparing continuations of: **{html.escape(tail)}**"
    return (tree_update, tokens, marks, messages,
            gr.update(choices=nodes, value=session.current if session else None),
            gr.update(choices=nodes, value=None), source, session.current if session is not None else "",
            None, gr.update(choices=[], value=None),  # the token position and alternatives of the old node
            playground.continuation_value(session),  # the Continuation box follows the selected node
            playground.node_details(session, session.current if session is not None else None))  # and so does the JSON
