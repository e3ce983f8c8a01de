"""Chat tab: streaming replies, Stop, retry, undo, edit, a branch switcher, names, system prompt, sampling."""
from __future__ import annotations

import gradio as gr

from ..errors import InputError
from ..presets import load_sampling_preset
from .common import gpu, guarded, number

NO_TURN = "(pick a message)"


def turn_choices(session) -> list[tuple[str, str]]:
    """(label, index) for each message; those with alternatives show "(2/3)"."""
    if session is None or session.chat is None:
        return []
    choices = []
    for index, node_id in enumerate(session.turns()):
        node = session.tree.node(node_id)
        siblings = session.chat.siblings(node_id)
        where = f" ({siblings.index(node_id) + 1}/{len(siblings)})" if len(siblings) > 1 else ""
        text = " ".join(node.text.split())[:40]
        choices.append((f"{index}: {node.role}{where}: {text}", str(index)))
    return choices


def build(ctx, refresh):
    playground = ctx.playground
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(label="Chat", height=420, elem_id="chatbot")
            message = gr.Textbox(label="Message", placeholder="Say something and press Enter", lines=2,
                                 max_length=playground.options.max_prompt_chars, elem_id="chat-message")
            with gr.Row():
                send = gr.Button("Send", variant="primary", elem_id="chat-send")
                stop = gr.Button("Stop", variant="stop", elem_id="chat-stop")
                retry = gr.Button("Retry")
                undo = gr.Button("Undo")
        with gr.Column(scale=2):
            with gr.Accordion("Conversation", open=False):
                system = gr.Textbox("", label="System prompt", lines=3)
                user = gr.Textbox(label="User name", value="User")
                bot = gr.Textbox(label="Bot name", value="Bot")
                new_chat = gr.Button("New chat with these settings")
            with gr.Accordion("Sampling", open=False):
                preset = gr.Dropdown(ctx.presets, value="chat" if "chat" in ctx.presets else None, label="Preset")
                temperature = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Temperature")
                top_p = gr.Slider(0.0, 1.0, value=0.7, step=0.01, label="Top-p")
                top_k = gr.Slider(0, 200, value=0, step=1, label="Top-k (0: off)")
                penalty = gr.Slider(1.0, 2.0, value=1.0, step=0.01, label="Repetition penalty")
                length = gr.Slider(1, playground.options.max_new_tokens, value=min(150, playground.options.max_new_tokens),
                                   step=1, label="Max new tokens")
            with gr.Accordion("Edit and branches", open=True):
                turn = gr.Dropdown([], label="Message", elem_id="chat-turn", allow_custom_value=True)
                with gr.Row():
                    previous = gr.Button("◀ previous branch")
                    following = gr.Button("next branch ▶")
                edited = gr.Textbox("", label="New text for this message", lines=2)
                save_edit = gr.Button("Save edit")
    knobs = [preset, temperature, top_p, top_k, penalty, length]
    wire(ctx, refresh, locals())
    return {"chatbot": chatbot, "turn": turn}


MAX_NAME_CHARS = 60


def checked_conversation(session, system, user, bot) -> tuple:
    """The system prompt and the two names, each text (or empty) within the server's limits."""
    for what, value, limit in (("system prompt", system, session.options.max_prompt_chars),
                               ("user name", user, MAX_NAME_CHARS), ("bot name", bot, MAX_NAME_CHARS)):
        if value is not None and not isinstance(value, str):
            raise InputError(f"the {what} must be text, got {type(value).__name__}")
        if value and len(value) > limit:
            raise InputError(f"the {what} has {len(value):,} characters; this server takes at most {limit:,}")
    return system, user, bot


def branch_of(session, preset, temperature, top_p, top_k, penalty, length):
    return session.branch(preset, number(length), None, temperature=temperature, top_p=top_p,
                          top_k=number(top_k), repetition_penalty=penalty)


def reply_callbacks(ctx):
    """Send and retry: each streams (messages, session)."""
    @gpu
    @guarded
    def chat(message, preset, temperature, top_p, top_k, penalty, length, system, user, bot, session,
             request: gr.Request):
        session = ctx.ensure(session, request)
        branch = branch_of(session, preset, temperature, top_p, top_k, penalty, length)
        for messages in session.chat_send(message, branch, *checked_conversation(session, system, user, bot)):
            yield messages, session

    @gpu
    @guarded
    def retry(preset, temperature, top_p, top_k, penalty, length, session, request: gr.Request):
        session = ctx.ensure(session, request)
        for messages in session.chat_retry(branch_of(session, preset, temperature, top_p, top_k, penalty, length)):
            yield messages, session

    return chat, retry


def turn_callbacks(ctx):
    """Stop, undo, new chat, edit, and the branch switcher."""
    @guarded
    def stop(session):
        if session is not None:
            session.stop()

    @guarded
    def undo(session, request: gr.Request):
        session = ctx.ensure(session, request)
        return session.chat_undo(), session

    @guarded
    def new_chat(system, user, bot, session, request: gr.Request):
        session = ctx.ensure(session, request)
        session.new_chat(*checked_conversation(session, system, user, bot))
        return session.chat.messages(), session

    @guarded
    def edit(index, text, session, request: gr.Request):
        session = ctx.ensure(session, request)
        return session.chat_edit(number(index, -1), text), session

    @guarded
    def switch(index, step, session, request: gr.Request):
        session = ctx.ensure(session, request)
        return session.chat_switch(number(index, -1), step), session

    def previous_branch(index, session, request: gr.Request):
        return switch(index, -1, session, request)

    def next_branch(index, session, request: gr.Request):
        return switch(index, 1, session, request)

    return stop, undo, new_chat, edit, previous_branch, next_branch


def preset_callback(ctx):
    @guarded
    def preset_knobs(name):
        if name not in ctx.presets:  # a name, never a path: load_sampling_preset also reads files
            raise InputError(f"unknown sampling preset {str(name)[:40]!r}")
        s = load_sampling_preset(name)
        return s.temperature, s.top_p, s.top_k, s.repetition_penalty

    return preset_knobs


def wire(ctx, refresh, c):
    state, knobs = ctx.state, c["knobs"]
    chat, retry = reply_callbacks(ctx)
    stop, undo, new_chat, edit, previous_branch, next_branch = turn_callbacks(ctx)
    preset_knobs = preset_callback(ctx)
    show = [c["chatbot"], state]
    inputs = [c["message"], *knobs, c["system"], c["user"], c["bot"], state]
    for trigger in (c["send"].click, c["message"].submit):
        event = trigger(chat, inputs, show, api_name="chat" if trigger == c["send"].click else "chat_submit",
                        concurrency_limit=None)
        refresh.append(event.then(lambda: "", None, c["message"], api_visibility="private"))
    c["stop"].click(stop, [state], None, api_name="chat_stop", concurrency_limit=None)
    refresh.append(c["retry"].click(retry, [*knobs, state], show, api_name="chat_retry", concurrency_limit=None))
    refresh.append(c["undo"].click(undo, [state], show, api_name="chat_undo"))
    refresh.append(c["new_chat"].click(new_chat, [c["system"], c["user"], c["bot"], state], show, api_name="chat_new"))
    refresh.append(c["save_edit"].click(edit, [c["turn"], c["edited"], state], show, api_name="chat_edit"))
    refresh.append(c["previous"].click(previous_branch, [c["turn"], state], show, api_name="chat_previous_branch"))
    refresh.append(c["following"].click(next_branch, [c["turn"], state], show, api_name="chat_next_branch"))
    c["preset"].change(preset_knobs, [c["preset"]], knobs[1:5], api_name="chat_preset_settings")
