"""Playground tab: free-text completion, the session tree (click a node to continue from it), the text
coloured by token probability, a token's alternatives, rewind-and-resample and force-an-alternative."""
from __future__ import annotations

import gradio as gr

from . import personas
from .common import QUIET, gpu, guarded, length_slider, length_value, number, seed_value, warned
from .inputs import Dropdown, Radio
from .render import tree_html

SELECTED = "clicked token"
COLOURS = {"p ≥ 0.5": "#b7e4c7", "p ≥ 0.2": "#fff3b0", "p ≥ 0.05": "#ffd6a5", "p < 0.05": "#ffadad",
           SELECTED: "#7fb3ff"}

# The tree's clicks: a row's click is the HTML component's select event, its id the event's value;
# a branch point's toggle folds its subtree (kept across redraws); the current row is scrolled into view.
TREE_JS = """
const folded = new Set();
const apply = () => {
  let below = null;
  for (const row of element.querySelectorAll('.tn')) {
    const indent = +row.dataset.indent;
    if (below !== null && indent > below) { row.style.display = 'none'; continue; }
    below = null;
    row.style.display = '';
    const fold = folded.has(row.dataset.id);
    row.classList.toggle('folded', fold);
    if (fold) below = indent;
  }
  const panel = element.querySelector('.rwkv-tree'), cur = element.querySelector('.tn.current');
  if (panel && cur && (cur.offsetTop < panel.scrollTop || cur.offsetTop > panel.scrollTop + panel.clientHeight - 24))
    panel.scrollTop = cur.offsetTop - panel.clientHeight / 2;
};
element.addEventListener('click', (e) => {
  const row = e.target.closest('.tn');
  if (!row) return;
  if (e.target.closest('.tog')) {
    folded.has(row.dataset.id) ? folded.delete(row.dataset.id) : folded.add(row.dataset.id);
    apply();
    return;
  }
  element.querySelectorAll('.tn.current').forEach(r => r.classList.remove('current'));
  row.classList.add('current');
  trigger('select', {index: [...element.querySelectorAll('.tn')].indexOf(row), value: row.dataset.id, selected: true});
});
watch('value', apply);
apply();
"""


def tree_update(session) -> str:
    """The tree panel's HTML (every node, the current path highlighted)."""
    if session is None:
        return tree_html([])
    return tree_html(session.tree_view())


def tokens_value(session, node_id, position=None):
    """The selected node's path as highlighted text; the token at `position` (clicked) stands out."""
    if session is None or not node_id or not session.has_node(node_id):
        return []
    return [(row["text"], SELECTED if position is not None and row["position"] == position else row["bucket"])
            for row in session.path_token_rows(node_id)]


def build(ctx, refresh):
    presets = ctx.presets
    default = "balanced" if "balanced" in presets else None
    limit = ctx.playground.options.max_prompt_chars
    with gr.Row(elem_id="pg-layout"):
        with gr.Column(scale=3, elem_id="pg-main"):
            prompt = gr.Textbox(label="Prompt", lines=4, placeholder="The quick brown fox", elem_id="pg-prompt",
                                info=f"Up to {limit:,} characters.")  # no max_length: the browser would cut a paste
            with gr.Row(elem_id="pg-settings"):
                preset = Dropdown(presets, value=default, label="Preset", min_width=120)
                length = length_slider(ctx.playground.options.max_new_tokens, 40, min_width=160, elem_id="pg-length")
                seed = gr.Textbox("", label="Seed (empty: random)", max_lines=1, min_width=120, elem_id="pg-seed",
                                  placeholder="random")
            with gr.Row(elem_id="pg-actions"):
                generate = gr.Button("Generate from the prompt", variant="primary", elem_id="pg-generate")
                resume = gr.Button("Continue from the selected node", elem_id="pg-continue")
                stop = gr.Button("Stop", variant="stop", elem_id="pg-stop")
            output = gr.Textbox(label="Continuation", lines=4, elem_id="pg-output", interactive=False)
            tokens = gr.HighlightedText(label="Selected node, coloured by token probability (click a token)",
                                        color_map=COLOURS, combine_adjacent=False, show_legend=True,
                                        elem_id="pg-tokens")
            with gr.Row(elem_id="pg-token-row"):
                position = gr.Number(None, label="Token position in the node", precision=0, elem_id="pg-position")
                alternative = Radio([], label="Top alternatives at this token", elem_id="pg-alternatives")
            with gr.Row(elem_id="pg-edit-row"):
                rewind = gr.Button("Rewind here and resample", elem_id="pg-rewind")
                force = gr.Button("Force the chosen alternative and continue", elem_id="pg-force")
        with gr.Column(scale=2, elem_id="pg-side"):
            tree = gr.HTML(tree_html([]), label="Session tree (click a node to select it; ▾ folds a branch)",
                           show_label=True, container=True, elem_id="pg-tree", js_on_load=TREE_JS)
            extra = gr.Textbox("", label="Text to add before continuing (optional)", lines=2, elem_id="pg-extra")
            delete = gr.Button("Delete the selected node and its branch", elem_id="pg-delete")
            with gr.Row(visible=False, elem_id="pg-confirm") as confirm:
                sure = gr.Button("Yes, delete it", variant="stop", elem_id="pg-delete-yes")
                cancel = gr.Button("Keep it", elem_id="pg-delete-no")
            personas.playground_controls(ctx, refresh)
            with gr.Accordion("Node details", open=False, elem_id="pg-details"):
                node = gr.Textbox("", label="Node id (set by the tree; API clients pass ids from /tree)",
                                  max_lines=1, elem_id="pg-node")
                token = gr.Number(None, label="Token id to force (set by the alternatives)", precision=0)
                details = gr.JSON(label="Selected node", elem_id="pg-node-json")
                show_tree = gr.Button("Show the tree as data")
                tree_data = gr.JSON(label="Tree (depth first)")
    wire(ctx, refresh, locals())
    return {"tree": tree, "tokens": tokens, "node": node, "position": position, "alternative": alternative,
            "output": output, "details": details}


def continuation_value(session) -> str:
    """The Continuation box: what the model generated at the selected node ("" before the first action)."""
    return session.continuation() if session is not None else ""


def node_details(session, node_id):
    """The "Selected node" JSON: the node's id, role, size, text and meta ({} before the session's first action)."""
    return {} if session is None or not node_id else session.node_details(node_id)


def tree_rows(session) -> list[dict]:
    """The tree as data for API clients: {id, parent, depth, role, text, tokens, current} per node, depth first."""
    return session.api_tree_rows()


def token_choice(value):
    """The chosen alternative's token id (the radio's value is the id as text)."""
    return int(value) if value not in (None, "") else None


def generation_callbacks(ctx):
    """Generate, continue, rewind and force: each streams (text so far, session)."""
    @gpu
    @guarded
    def generate(prompt, preset, length, seed, session, request: gr.Request):
        session = ctx.ensure(session, request)
        for text in session.generate(prompt, preset, length_value(length), seed_value(seed)):
            yield text, session

    @gpu
    @guarded
    def resume(node_id, text, preset, length, seed, session, request: gr.Request):
        session = ctx.ensure(session, request)
        for value in session.continue_from(node_id or session.current, text or None, preset, length_value(length),
                                           seed_value(seed)):
            yield value, session

    @gpu
    @guarded
    def rewind(node_id, position, preset, length, seed, session, request: gr.Request):
        session = ctx.ensure(session, request)
        session.branch(preset, length_value(length), seed_value(seed))  # bad settings fail before the tree changes
        point = session.rewind(node_id or session.current, number(position, what="the token position"))
        for value in session.continue_from(point, None, preset, length_value(length), seed_value(seed)):
            yield value, session

    @gpu
    @guarded
    def force(node_id, position, token, preset, length, seed, session, request: gr.Request):
        session = ctx.ensure(session, request)
        session.branch(preset, length_value(length), seed_value(seed))  # bad settings fail before the tree changes
        point = session.force(node_id or session.current, number(position, what="the token position"),
                              number(token, what="the token id"))
        for value in session.continue_from(point, None, preset, length_value(length), seed_value(seed)):
            yield value, session

    return generate, resume, rewind, force


def node_callbacks(ctx):
    """Select a node, the tree as data, pick a token, delete a branch."""
    @guarded
    def select(node_id, session, request: gr.Request):
        """Every control that depends on the selected node is redrawn or cleared (position, alternatives), and
        the Continuation box shows the node's own continuation."""
        session = ctx.ensure(session, request)
        if node_id:
            session.select(node_id)
        return (tokens_value(session, session.current), node_details(session, session.current),
                gr.update(choices=[], value=None), session.current, None, None, tree_update(session),
                continuation_value(session), session)

    @guarded
    def show_tree(session, request: gr.Request):
        session = ctx.ensure(session, request)
        return tree_rows(session), session

    @guarded
    def pick_token(session, evt: gr.SelectData, request: gr.Request):
        session = ctx.ensure(session, request)
        rows = session.path_token_rows()
        index = evt.index if isinstance(evt.index, int) else -1  # a browser sends an int; anything else picks nothing
        position = rows[index]["position"] if 0 <= index < len(rows) else None
        return (position, alternatives_update(session, session.current, position),
                tokens_value(session, session.current, position))

    @warned
    def ask_delete(node_id, session, request: gr.Request):
        """Delete's first step: "Yes, delete it / Keep it" for a node that can go; the root is refused at once."""
        session = ctx.ensure(session, request)
        session.check_delete(node_id or session.current)
        return gr.update(visible=True), session

    @guarded
    def delete(node_id, session, request: gr.Request):
        session = ctx.ensure(session, request)
        session.delete(node_id or session.current)
        return session, gr.update(visible=False)

    return select, show_tree, pick_token, ask_delete, delete


def stop(session) -> None:
    """Stop this session's generation (what was generated so far is kept); nothing to show."""
    if session is not None:
        session.stop()


def wire(ctx, refresh, c):
    state = ctx.state
    sampling = [c["preset"], c["length"], c["seed"]]
    generate, resume, rewind, force = generation_callbacks(ctx)
    select, show_tree, pick_token, ask_delete, delete = node_callbacks(ctx)

    def clicked(session, evt: gr.SelectData, request: gr.Request):
        return select(str(evt.value or ""), session, request)
    out = [c["output"], state]
    run = dict(concurrency_limit=None, show_progress=QUIET)
    refresh.append(c["generate"].click(generate, [c["prompt"], *sampling, state], out, api_name="generate", **run))
    resumed = c["resume"].click(resume, [c["node"], c["extra"], *sampling, state], out, api_name="continue", **run)
    refresh.append(resumed)
    resumed.success(lambda: "", None, c["extra"], api_visibility="private", show_progress="hidden")  # used once
    c["stop"].click(stop, [state], None, api_name="stop", concurrency_limit=None, show_progress="hidden")
    picked = [c["tokens"], c["details"], c["alternative"], c["node"], c["position"], c["token"], c["tree"],
              c["output"], state]
    hide = dict(api_visibility="private", show_progress="hidden")
    for selected in (c["tree"].select(clicked, [state], picked, api_visibility="private", show_progress=QUIET),
                     c["node"].submit(select, [c["node"], state], picked, api_name="select_node", show_progress=QUIET)):
        selected.then(lambda: gr.update(visible=False), None, c["confirm"], **hide)  # "delete it?" was another node's
    c["show_tree"].click(show_tree, [state], [c["tree_data"], state], api_name="tree")
    c["tokens"].select(pick_token, [state], [c["position"], c["alternative"], c["tokens"]], api_name="pick_token",
                       show_progress=QUIET)
    c["alternative"].change(token_choice, [c["alternative"]], [c["token"]], api_visibility="private")
    refresh.append(c["rewind"].click(rewind, [c["node"], c["position"], *sampling, state], out, api_name="rewind",
                                     **run))
    refresh.append(c["force"].click(force, [c["node"], c["position"], c["token"], *sampling, state], out,
                                    api_name="force", **run))
    c["delete"].click(ask_delete, [c["node"], state], [c["confirm"], state], **hide)
    c["cancel"].click(lambda: gr.update(visible=False), None, c["confirm"], **hide)
    deleted = c["sure"].click(delete, [c["node"], state], [state, c["confirm"]], api_name="delete_node",
                              show_progress=QUIET)
    refresh.append(deleted)  # the redraw shows the node selected now (the parent) and its continuation


def alternatives_update(session, node_id, position):
    if position is None:
        return gr.update(choices=[], value=None)
    rows = session.alternatives(node_id, position)
    choices = [(f"{row['text']!r}  {row['prob']:.3f}" + ("  (chosen)" if row["chosen"] else ""), str(row["token"]))
               for row in rows]
    return gr.update(choices=choices, value=None)
