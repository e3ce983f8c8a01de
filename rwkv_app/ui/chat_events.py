"""The Chat tab's callbacks: the page's (Chatbot events; input errors are warning toasts, outputs unchanged)
and the named API endpoints' (the same services; input errors raised to the caller)."""
from __future__ import annotations


import gradio as gr

from ..errors import InputError
from ..services import views
from .chat_branches import edit_text, message_index
from .common import gpu, guarded, length_value, number, warned

DEFAULT_PRESET = "chat"
MAX_NAME_CHARS = 60
QUEUE_WAIT_S = 600.0  # a message sent while a reply streams waits this long for that reply to end
REASONING_TAGS = [("<think>", "</think>")]  # the G1 models' thinking: the Chatbot shows it as a folded thought
THINKING_CHOICES = [("Model decides", "auto"), ("Think first", "think"), ("No thinking", "no_think")]
KNOBS = ("temperature", "top_p", "top_k", "repetition_penalty", "presence_penalty", "frequency_penalty")


def preset_values(ctx, name) -> dict:
    """A preset's knob values as the sliders show them (a greedy preset shows temperature 0); {} if unknown."""
    return views.preset_values(ctx.presets, name, KNOBS)


def checked_conversation(session, system, user, bot) -> tuple:
    """The system prompt and the two names, each text (or empty) within the server's limits."""
    for what, value, limit in (("system prompt", system, session.options.max_prompt_chars),
                               ("user name", user, MAX_NAME_CHARS), ("bot name", bot, MAX_NAME_CHARS)):
        if value is not None and not isinstance(value, str):
            raise InputError(f"the {what} must be text, got {type(value).__name__}")
        if value and len(value) > limit:
            raise InputError(f"the {what} has {len(value):,} characters; this server takes at most {limit:,}")
    return system, user, bot


def turn_of(session, shown) -> int | None:
    """The conversation's message index behind a message index as the Chatbot and /chat show them (a reply's
    thinking is a message of its own there); None for a thought."""
    shown = number(shown, -1)
    if session.chat is None or shown < 0:
        return shown
    return message_index(session.chat.messages(), shown)


def checked_thinking(value) -> str:
    """The Thinking choice (None: the model decides)."""
    if value is None or value == "":
        return "auto"
    if value not in [v for _, v in THINKING_CHOICES]:
        raise InputError(f"thinking must be one of {', '.join(v for _, v in THINKING_CHOICES)}, got {value!r:.40}")
    return value


def branch_of(session, preset, temperature, top_p, top_k, penalty, length, presence=None, frequency=None):
    """The knobs as shown are the settings used: each is an override of the preset."""
    return session.branch(preset, length_value(length), None, temperature=temperature, top_p=top_p,
                          top_k=number(top_k, what="Top-k"), repetition_penalty=penalty, presence_penalty=presence,
                          frequency_penalty=frequency)


def replies(ctx):
    """Send, retry and edit: each streams (messages, session)."""
    def chat(text, preset, temperature, top_p, top_k, penalty, length, system, user, bot, presence=None,
             frequency=None, thinking=None, session=None, request: gr.Request = None):
        session = ctx.ensure(session, request)
        branch = branch_of(session, preset, temperature, top_p, top_k, penalty, length, presence, frequency)
        conversation = checked_conversation(session, system, user, bot)
        for messages in session.chat_send(text, branch, *conversation, thinking=checked_thinking(thinking)):
            yield messages, session

    def retry(preset, temperature, top_p, top_k, penalty, length, presence=None, frequency=None, session=None,
              request: gr.Request = None):
        session = ctx.ensure(session, request)
        branch = branch_of(session, preset, temperature, top_p, top_k, penalty, length, presence, frequency)
        for messages in session.chat_retry(branch):
            yield messages, session

    def edit(edit: gr.EditData, preset, temperature, top_p, top_k, penalty, length, presence, frequency,
             session, request: gr.Request):
        session = ctx.ensure(session, request)
        branch = branch_of(session, preset, temperature, top_p, top_k, penalty, length, presence, frequency)
        index = turn_of(session, edit.index)
        if index is None:  # a thought: the Chatbot sends its reply's edit too, which is the one that counts
            yield gr.skip(), session
            return
        for messages in session.chat_edit_reply(index, edit_text(edit.value), branch):
            yield messages, session

    return chat, retry, edit


def new_chat_starter(ctx):
    """A new conversation with the panel's system prompt, names and Thinking choice (the page's button and
    /chat_new: wrapped by each for its way of refusing)."""
    def new_chat(system, user, bot, thinking=None, session=None, request: gr.Request = None):
        session = ctx.ensure(session, request)
        session.new_chat(*checked_conversation(session, system, user, bot), thinking=checked_thinking(thinking))
        return session.chat.messages(), session
    return new_chat


def page_callbacks(ctx) -> dict:
    chat, retry, edit = replies(ctx)

    @gpu
    @warned
    def send(text, preset, temperature, top_p, top_k, penalty, length, system, user, bot, presence, frequency,
             thinking, session, request: gr.Request):
        """The box is emptied and Send greyed when the message is taken (never while another reply streams), then
        both are left alone (the event's next step gives Send back)."""
        knobs = (preset, temperature, top_p, top_k, penalty, length, system, user, bot, presence, frequency, thinking)
        session = ctx.ensure(session, request)
        session.check_text(text)
        if not session.wait_idle(QUEUE_WAIT_S):
            raise InputError("the previous reply is still being written: press Stop or wait, then send again")
        taken = ("", gr.update(interactive=False))
        for messages, session in chat(text, *knobs, session=session, request=request):
            yield taken[0], messages, taken[1], session
            taken = (gr.skip(), gr.skip())

    @warned
    def undo(session, request: gr.Request):
        session = ctx.ensure(session, request)
        messages, text = session.chat_undo_to_box()
        return messages, session, text  # the undone message back in the box

    @warned
    def clear(session, request: gr.Request):
        session = ctx.ensure(session, request)
        return session.chat_clear(), session

    @warned
    def switch(event: gr.EventData, session, request: gr.Request):
        """A click on "‹" or "›" of a message (the data the branch script sends: index and step)."""
        session = ctx.ensure(session, request)
        return session.chat_switch(number(event.index, -1), -1 if number(event.step, 1) < 0 else 1), session

    return {"send": send, "retry": gpu(warned(retry)), "edit": gpu(warned(edit)), "undo": undo, "clear": clear,
            "switch": switch, "new_chat": warned(new_chat_starter(ctx))}


def api_callbacks(ctx) -> dict:
    chat, retry, _ = replies(ctx)

    @guarded
    def stop(session):
        if session is not None:
            session.stop()

    @guarded
    def undo(session, request: gr.Request):
        session = ctx.ensure(session, request)
        return session.chat_undo(), session

    @guarded
    def edit(index, text, session, request: gr.Request):
        session = ctx.ensure(session, request)
        turn = turn_of(session, index)
        if turn is None:
            raise InputError("that message is the reply's thinking: edit the reply itself")
        return session.chat_edit(turn, text), session

    def switch(step):
        @guarded
        def branch(index, session, request: gr.Request):
            session = ctx.ensure(session, request)
            turn = turn_of(session, index)
            return session.chat_switch(-1 if turn is None else turn, step), session
        return branch

    @guarded
    def preset_knobs(name):
        values = preset_values(ctx, name)
        if not values:
            raise InputError(f"unknown sampling preset {str(name)[:40]!r}")
        return tuple(values[k] for k in KNOBS)

    return {"chat": gpu(guarded(chat)), "retry": gpu(guarded(retry)), "stop": stop, "undo": undo,
            "new_chat": guarded(new_chat_starter(ctx)), "edit": edit, "previous_branch": switch(-1),
            "next_branch": switch(1), "preset_knobs": preset_knobs}
