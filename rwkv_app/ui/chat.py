"""Chat tab: Enter sends, replies stream, Stop; the Chatbot's own retry, undo, edit and clear; "‹ 2/3 ›" on each
message that has alternatives; names, system prompt, and the sampling knobs of the chosen preset.

The page uses the Chatbot's events (input errors are warning toasts that leave the chat as it was); the named
API endpoints (/chat, /chat_retry, ...) keep their inputs and outputs and raise errors, on a hidden trigger.
"""
from __future__ import annotations

import gradio as gr

from .chat_branches import BRANCH_JS, branch_marks  # noqa: F401 (the builder redraws the marks)
from .chat_events import DEFAULT_PRESET, REASONING_TAGS, THINKING_CHOICES, api_callbacks, page_callbacks, preset_values
from .common import QUIET, length_slider
from .inputs import Dropdown, Radio, Slider
from .personas import chat_controls

# Phones: the message box and Send above the conversation, so they sit near the top of the first screen.
# On a phone the Chatbot's floating label and toolbar (share, clear, copy) stood over the first message: the message
# list starts below them there (the wrapper's padding is the band they float in; the list scrolls under nothing).
CSS = """@media (max-width: 640px) { #chat-input { order: -1; } #chatbot { height: 50vh !important; }
  #chatbot > .wrapper { padding-top: calc(2 * var(--block-label-margin) + 30px); box-sizing: border-box; }
  #chatbot > .wrapper > .bubble-wrap { min-height: 0; } }"""


def build(ctx, refresh):
    playground = ctx.playground
    shown = preset_values(ctx, DEFAULT_PRESET)
    with gr.Row():
        with gr.Column(scale=3, elem_id="chat-main"):
            chatbot = gr.Chatbot(label="Chat", height=420, elem_id="chatbot", editable="all",
                                 reasoning_tags=REASONING_TAGS)  # a reply's <think>...</think> folds
            with gr.Group(elem_id="chat-input"):
                message = gr.Textbox(show_label=False, placeholder="Message (Enter sends, Shift+Enter adds a line)",
                                     lines=1, max_lines=8, elem_id="chat-message",
                                     submit_btn=False)  # no max_length: the browser would cut a paste; Send refuses it
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="chat-send", min_width=80)
                    stop = gr.Button("Stop", variant="stop", elem_id="chat-stop", min_width=80)
            branches = gr.HTML([], html_template="", js_on_load=BRANCH_JS, elem_id="chat-branches")
        with gr.Column(scale=2):
            with gr.Accordion("Conversation", open=False):
                fresh = playground.chat_settings()  # the model's own names (G1: User / Assistant)
                system = gr.Textbox("", label="System prompt", lines=3, elem_id="chat-system")
                user = gr.Textbox(label="User name", value=fresh["user"], placeholder="empty: the model's own",
                                  elem_id="chat-user")
                bot = gr.Textbox(label="Bot name", value=fresh["bot"], placeholder="empty: the model's own",
                                 elem_id="chat-bot")
                thinking = Radio(THINKING_CHOICES, value="auto", label="Thinking (RWKV-7 G1 models)",
                                    elem_id="chat-thinking", visible=fresh["thinking_format"])
                new_chat = gr.Button("New chat with these settings", elem_id="chat-new")
                chat_controls(ctx, refresh, chatbot, system, user, bot)
            with gr.Accordion("Sampling", open=False, elem_id="chat-sampling"):
                preset = Dropdown(ctx.presets, value=DEFAULT_PRESET if shown else None, label="Preset",
                                     elem_id="chat-preset")
                temperature, top_p, top_k, penalty, presence, frequency = knob_sliders(shown or {})
                length = length_slider(playground.options.max_new_tokens, 150, elem_id="chat-length")
        # API-only inputs (a message index and its new text) and the hidden trigger of the named endpoints
        turn = gr.Textbox(visible=False, label="Message index")
        edited = gr.Textbox(visible=False, label="New text for this message")
        api = gr.Button(visible=False)
    knobs = [preset, temperature, top_p, top_k, penalty, length]
    extra = [presence, frequency]
    wire(ctx, refresh, locals())
    return {"chatbot": chatbot, "branches": branches, "settings": [system, user, bot, thinking]}


def settings_values(ctx, session) -> tuple:
    """The Conversation panel showing the open conversation's settings (before the first action: the server
    model's); the Thinking choice only where the model's family has a thinking format."""
    shown = session.chat_settings() if session is not None else ctx.playground.chat_settings()
    return (shown["system"], shown["user"], shown["bot"],
            gr.update(value=shown["thinking"], visible=shown["thinking_format"]))


def knob_sliders(values: dict) -> tuple:
    """The knobs, showing `values` (a preset's) from the first visit on."""
    return (Slider(0.0, 2.0, value=values.get("temperature", 1.0), step=0.05, label="Temperature (0: greedy)",
                      elem_id="chat-temperature"),
            Slider(0.01, 1.0, value=values.get("top_p", 1.0), step=0.01, label="Top-p (1: off)",
                      elem_id="chat-top-p"),
            Slider(0, 200, value=values.get("top_k", 0), step=1, label="Top-k (0: off)", elem_id="chat-top-k"),
            Slider(1.0, 2.0, value=values.get("repetition_penalty", 1.0), step=0.01, label="Repetition penalty",
                      elem_id="chat-repetition"),
            Slider(0.0, 2.0, value=values.get("presence_penalty", 0.0), step=0.05, label="Presence penalty",
                      elem_id="chat-presence"),
            Slider(0.0, 2.0, value=values.get("frequency_penalty", 0.0), step=0.05, label="Frequency penalty",
                      elem_id="chat-frequency"))


def wire(ctx, refresh, c):
    state, knobs, extra, chatbot = ctx.state, c["knobs"], c["extra"], c["chatbot"]
    show = [chatbot, state]
    sending = [c["message"], *knobs, c["system"], c["user"], c["bot"], *extra, c["thinking"], state]
    page = page_callbacks(ctx)
    # One event for Send and Enter, "once": a second click (a double click) or Enter while the message is being
    # sent and answered is dropped by the browser, so it neither sends again nor warns of an empty box. Send is
    # greyed while its reply streams (Stop, beside it, works) and the box keeps whatever is typed meanwhile.
    taking = [c["message"], chatbot, c["send"], state]
    sent = gr.on([c["send"].click, c["message"].submit], page["send"], sending, taking, api_visibility="private",
                 concurrency_limit=None, trigger_mode="once", show_progress_on=[chatbot])
    refresh.append(sent)
    sent.then(lambda: gr.update(interactive=True), None, c["send"], api_visibility="private", show_progress="hidden")
    refresh.append(chatbot.retry(page["retry"], [*knobs, *extra, state], show, api_visibility="private",
                                 concurrency_limit=None))
    refresh.append(chatbot.undo(page["undo"], [state], [*show, c["message"]], api_visibility="private"))
    refresh.append(chatbot.edit(page["edit"], [*knobs, *extra, state], show, api_visibility="private",
                                concurrency_limit=None))
    refresh.append(chatbot.clear(page["clear"], [state], show, api_visibility="private"))
    refresh.append(c["branches"].click(page["switch"], [state], show, api_visibility="private"))
    wire_api(ctx, refresh, c, sending, show, page)


def wire_api(ctx, refresh, c, sending, show, page):
    """The named endpoints: the same services, errors raised to the caller; Stop, New chat and the preset
    knobs are the page's controls too."""
    state, knobs, extra, api = ctx.state, c["knobs"], c["extra"], c["api"].click
    calls = api_callbacks(ctx)
    api(calls["chat"], sending, show, api_name="chat", concurrency_limit=None)
    api(calls["chat"], sending, show, api_name="chat_submit", concurrency_limit=None)
    api(calls["retry"], [*knobs, *extra, state], show, api_name="chat_retry", concurrency_limit=None)
    api(calls["undo"], [state], show, api_name="chat_undo")
    api(calls["edit"], [c["turn"], c["edited"], state], show, api_name="chat_edit")
    api(calls["previous_branch"], [c["turn"], state], show, api_name="chat_previous_branch")
    api(calls["next_branch"], [c["turn"], state], show, api_name="chat_next_branch")
    c["stop"].click(calls["stop"], [state], None, api_name="chat_stop", concurrency_limit=None)
    # as Chat's other events: the page's click ends quietly on refused settings (a failed event draws Gradio's
    # Error badge over the Chatbot), /chat_new on a hidden trigger raises the message to its caller
    starting = [c["system"], c["user"], c["bot"], c["thinking"], state]
    refresh.append(api(calls["new_chat"], starting, show, api_name="chat_new", show_progress=QUIET))
    refresh.append(c["new_chat"].click(page["new_chat"], starting, show, api_visibility="private",
                                       show_progress=QUIET))
    c["preset"].change(calls["preset_knobs"], [c["preset"]], [*knobs[1:5], *extra], api_name="chat_preset_settings")

