"""Playground tab: free-text completion, the session tree (click a node to continue from it), the text
coloured by token probability, a token's alternatives, rewind-and-resample and force-an-alternative."""
from __future__ import annotations

import gradio as gr

from ..services import views
from .common import gpu, guarded, number

COLOURS = {"p ≥ 0.5": "#b7e4c7", "p ≥ 0.2": "#fff3b0", "p ≥ 0.05": "#ffd6a5", "p < 0.05": "#ffadad"}


def tree_update(session):
    if session is None:
        return gr.update(choices=[], value=None)
    rows = views.tree_rows(session.tree, session.current)
    return gr.update(choices=[(row["label"], row["id"]) for row in rows], value=session.current)


def tokens_value(session, node_id):
    if session is None or not node_id or node_id not in session.tree.nodes:
        return []
    return [(row["text"], row["bucket"]) for row in views.path_token_rows(session.tree, node_id)]


def build(ctx, refresh):
    presets = ctx.presets
    default = "balanced" if "balanced" in presets else None
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(label="Prompt", lines=4, max_length=ctx.playground.options.max_prompt_chars,
                                placeholder="The quick brown fox", elem_id="pg-prompt")
            with gr.Row():
                preset = gr.Dropdown(presets, value=default, label="Preset")
                length = gr.Slider(1, ctx.playground.options.max_new_tokens, value=40, step=1, label="Max new tokens")
                seed = gr.Number(None, label="Seed (empty: random)", precision=0)
            with gr.Row():
                generate = gr.Button("Generate from the prompt", variant="primary", elem_id="pg-generate")
                resume = gr.Button("Continue from the selected node", elem_id="pg-continue")
                stop = gr.Button("Stop", variant="stop")
            output = gr.Textbox(label="Continuation", lines=4, elem_id="pg-output")
            tokens = gr.HighlightedText(label="Selected node, coloured by token probability (click a token)",
                                        color_map=COLOURS, combine_adjacent=False, show_legend=True,
                                        elem_id="pg-tokens")
            with gr.Row():
                position = gr.Number(None, label="Token position in the node", precision=0)
                alternative = gr.Radio([], label="Top alternatives at this token", elem_id="pg-alternatives")
            with gr.Row():
                rewind = gr.Button("Rewind here and resample", elem_id="pg-rewind")
                force = gr.Button("Force the chosen alternative and continue", elem_id="pg-force")
        with gr.Column(scale=2):
            tree = gr.Radio([], label="Session tree (click a node to select it)", elem_id="pg-tree")
            extra = gr.Textbox("", label="Text to add before continuing (optional)", lines=2)
            delete = gr.Button("Delete the selected node and its branch")
            with gr.Accordion("Node details", open=False):
                node = gr.Textbox("", label="Node id (set by the tree; API clients pass ids from /tree)",
                                  max_lines=1, elem_id="pg-node")
                token = gr.Number(None, label="Token id to force (set by the alternatives)", precision=0)
                details = gr.JSON(label="Selected node")
                show_tree = gr.Button("Show the tree as data")
                tree_data = gr.JSON(label="Tree (depth first)")
    wire(ctx, refresh, locals())
    return {"tree": tree, "tokens": tokens, "node": node}


def node_details(session, node_id):
    if session is None or not node_id or node_id not in session.tree.nodes:
        return {}
    node = session.tree.node(node_id)
    return {"id": node.id, "role": node.role, "tokens": len(node.tokens), "text": node.text,
            "meta": {k: v for k, v in node.meta.items() if k != "sampling"}, "children": len(node.children)}


def tree_rows(session) -> list[dict]:
    """The tree as data for API clients: {id, parent, depth, role, text, tokens, current} per node, depth first."""
    rows = []
    for row in views.tree_rows(session.tree, session.current):
        node = session.tree.node(row["id"])
        rows.append({"id": node.id, "parent": node.parent, "depth": row["depth"], "role": node.role,
                     "text": node.text, "tokens": len(node.tokens), "current": row["current"]})
    return rows


def token_choice(value):
    """The chosen alternative's token id (the radio's value is the id as text)."""
    return int(value) if value not in (None, "") else None


def generation_callbacks(ctx):
    """Generate, continue, rewind and force: each streams (text so far, session)."""
    @gpu
    @guarded
    def generate(prompt, preset, length, seed, session, request: gr.Request):
        session = ctx.ensure(session, request)
        for text in session.generate(prompt, preset, number(length), number(seed)):
            yield text, session

    @gpu
    @guarded
    def resume(node_id, text, preset, length, seed, session, request: gr.Request):
        session = ctx.ensure(session, request)
        for value in session.continue_from(node_id or session.current, text or None, preset, number(length),
                                           number(seed)):
            yield value, session

    @gpu
    @guarded
    def rewind(node_id, position, preset, length, seed, session, request: gr.Request):
        session = ctx.ensure(session, request)
        point = session.rewind(node_id or session.current, number(position, -1))
        for value in session.continue_from(point, None, preset, number(length), number(seed)):
            yield value, session

    @gpu
    @guarded
    def force(node_id, position, token, preset, length, seed, session, request: gr.Request):
        session = ctx.ensure(session, request)
        if token is None or token == "":
            raise ValueError("pick one of the alternatives first")
        point = session.force(node_id or session.current, number(position, -1), number(token))
        for value in session.continue_from(point, None, preset, number(length), number(seed)):
            yield value, session

    return generate, resume, rewind, force


def node_callbacks(ctx):
    """Select a node, the tree as data, pick a token, delete a branch."""
    @guarded
    def select(node_id, session, request: gr.Request):
        session = ctx.ensure(session, request)
        if node_id:
            session.select(node_id)
        return (tokens_value(session, session.current), node_details(session, session.current), None,
                session.current, session)

    @guarded
    def show_tree(session, request: gr.Request):
        session = ctx.ensure(session, request)
        return tree_rows(session), session

    @guarded
    def pick_token(session, evt: gr.SelectData, request: gr.Request):
        session = ctx.ensure(session, request)
        rows = views.path_token_rows(session.tree, session.current)
        index = evt.index if isinstance(evt.index, int) else -1  # a browser sends an int; anything else picks nothing
        position = rows[index]["position"] if 0 <= index < len(rows) else None
        return position, alternatives_update(session, session.current, position)

    @guarded
    def delete(node_id, session, request: gr.Request):
        session = ctx.ensure(session, request)
        session.delete(node_id or session.current)
        return session

    return select, show_tree, pick_token, delete


def wire(ctx, refresh, c):
    state = ctx.state
    sampling = [c["preset"], c["length"], c["seed"]]
    generate, resume, rewind, force = generation_callbacks(ctx)
    select, show_tree, pick_token, delete = node_callbacks(ctx)
    out = [c["output"], state]
    refresh.append(c["generate"].click(generate, [c["prompt"], *sampling, state], out, api_name="generate",
                        concurrency_limit=None))
    refresh.append(c["resume"].click(resume, [c["node"], c["extra"], *sampling, state], out, api_name="continue",
                                     concurrency_limit=None))
    c["stop"].click(lambda s: s.stop() if s else None, [state], None, api_name="stop", concurrency_limit=None)
    picked = [c["tokens"], c["details"], c["alternative"], c["node"], state]
    c["tree"].select(select, [c["tree"], state], picked, api_visibility="private")  # a click in the tree
    c["node"].submit(select, [c["node"], state], picked, api_name="select_node")  # an id typed or sent by a client
    c["show_tree"].click(show_tree, [state], [c["tree_data"], state], api_name="tree")
    c["tokens"].select(pick_token, [state], [c["position"], c["alternative"]], api_name="pick_token")
    c["alternative"].change(token_choice, [c["alternative"]], [c["token"]], api_visibility="private")
    refresh.append(c["rewind"].click(rewind, [c["node"], c["position"], *sampling, state], out, api_name="rewind",
                                     concurrency_limit=None))
    refresh.append(c["force"].click(force, [c["node"], c["position"], c["token"], *sampling, state], out,
                                    api_name="force", concurrency_limit=None))
    refresh.append(c["delete"].click(delete, [c["node"], state], [state], api_name="delete_node"))


def alternatives_update(session, node_id, position):
    if position is None:
        return gr.update(choices=[], value=None)
    rows = views.alternatives(session.tree, node_id, position)
    choices = [(f"{row['text']!r}  {row['prob']:.3f}" + ("  (chosen)" if row["chosen"] else ""), str(row["token"]))
               for row in rows]
    return gr.update(choices=choices, value=None)
