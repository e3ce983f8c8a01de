"""State files in the Playground and the Chat: start from a state file (a persona), mix two states into a new root.

A refused file (another model's shapes, not a tensor file, too large, not a state file at all) is a warning toast
naming the problem: the upload boxes take any file (no `file_types`, whose refusal is Gradio's red "Invalid file
type" error) and the service layer checks it. Every action is a named API endpoint too (/load_state, /start_empty,
/mix_states, /chat_load_state).
"""
from __future__ import annotations

import gradio as gr

from ..services import personas
from .chat_events import checked_conversation
from .common import QUIET, guarded, warned
from .inputs import Slider


def status_text(session) -> str:
    """Where the Playground's prompts start, as a line for people."""
    start = next((s for s in personas.starts(session) if s["current"]), None)
    if start is None or start["label"] == "empty state":
        return "Prompts start from the empty state."
    return f"Prompts start from **{start['label']}** (node `{start['id']}`)."


def playground_controls(ctx, refresh) -> None:
    """The Playground's accordion: load a state file as the start, go back to the empty state, mix two states."""
    with gr.Accordion("Start from a state file · mix two states", open=False, elem_id="pg-states"):
        upload = gr.File(label="State file (.safetensors, .state, .pth)", type="filepath",
                         elem_id="pg-state-upload")
        with gr.Row():
            load = gr.Button("Start from this state file", variant="primary", elem_id="pg-state-load")
            empty = gr.Button("Start from the empty state", elem_id="pg-state-empty")
        gr.Markdown("Mix: weight × first + (1 − weight) × second, each a node id (from the tree) or a state file.")
        with gr.Row():
            first_node = gr.Textbox(label="First: node id", max_lines=1, elem_id="pg-mix-first")
            second_node = gr.Textbox(label="Second: node id", max_lines=1, elem_id="pg-mix-second")
        with gr.Row():
            first_file = gr.File(label="or first: state file", type="filepath",
                                 elem_id="pg-mix-first-file")
            second_file = gr.File(label="or second: state file", type="filepath",
                                  elem_id="pg-mix-second-file")
        weight = Slider(0.0, 1.0, value=0.5, step=0.05, label="Weight of the first state", elem_id="pg-mix-weight")
        mix = gr.Button("Mix into a new root", elem_id="pg-mix")
        status = gr.Markdown("Prompts start from the empty state.", elem_id="pg-state-status")
    wire_playground(ctx, refresh, locals())


def wire_playground(ctx, refresh, c) -> None:
    state = ctx.state

    @guarded
    def load_state(path, session, request: gr.Request):
        session = ctx.ensure(session, request)
        personas.load_state_root(session, path)
        return status_text(session), session

    @guarded
    def start_empty(session, request: gr.Request):
        session = ctx.ensure(session, request)
        personas.start_empty(session)
        return status_text(session), session

    @guarded
    def mix_states(first_node, first_file, second_node, second_file, weight, session, request: gr.Request):
        session = ctx.ensure(session, request)
        personas.mix(session, first_node or None, first_file, second_node or None, second_file, weight)
        return status_text(session), session

    out = [c["status"], state]
    refresh.append(c["load"].click(load_state, [c["upload"], state], out, api_name="load_state", show_progress=QUIET))
    refresh.append(c["empty"].click(start_empty, [state], out, api_name="start_empty", show_progress=QUIET))
    inputs = [c["first_node"], c["first_file"], c["second_node"], c["second_file"], c["weight"], state]
    refresh.append(c["mix"].click(mix_states, inputs, out, api_name="mix_states", show_progress=QUIET))


def chat_controls(ctx, refresh, chatbot, system, user, bot) -> None:
    """The Chat's "start from a state file": a new conversation from the file's state (names and system prompt
    as set above)."""
    upload = gr.File(label="Start from a state file (.safetensors, .state, .pth)", type="filepath",
                     elem_id="chat-state-upload")
    start = gr.Button("New chat from this state file", elem_id="chat-state-load")

    api = gr.Button(visible=False)  # the named endpoint's trigger

    def chat_load_state(path, system_text, user_name, bot_name, session, request: gr.Request):
        session = ctx.ensure(session, request)
        system_text, user_name, bot_name = checked_conversation(session, system_text, user_name, bot_name)
        personas.start_chat_from_file(session, path, system_text or None, user_name or None, bot_name or None)
        return session.chat.messages(), session

    inputs, outputs = [upload, system, user, bot, ctx.state], [chatbot, ctx.state]
    # as the Chat's other events: the page's click ends quietly on a refused file (a failed event draws Gradio's
    # Error badge over the Chatbot, whatever show_progress says), the endpoint raises the message to its caller
    refresh.append(api.click(guarded(chat_load_state), inputs, outputs, api_name="chat_load_state",
                             show_progress=QUIET))  # first: the private page event below would take the name
    refresh.append(start.click(warned(chat_load_state), inputs, outputs, api_visibility="private",
                               show_progress=QUIET))
