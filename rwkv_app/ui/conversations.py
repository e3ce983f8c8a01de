"""The Conversations list (in the Chat and Playground tabs): each of the visitor's saved conversations with its
name, model and when it was last used; open, rename, delete, new, and "delete all my data" (both deletes ask
"Yes / Keep it" first). Opening one made with another model offers to switch model (or says why this server cannot).

Who the visitor is comes from a random key kept in the browser (gr.BrowserState; its storage key and secret live
in the session store, so a restart or another replica reads it), or the signed-in Hugging Face user on a Space
with sign-in. `identify` runs when the page loads and reopens the conversation the visitor last used (opened or
saved) on the session's model; the list is in that order too.
"""
from __future__ import annotations

import os
import time

import gradio as gr

from ..errors import InputError
from ..services import conversations as service
from ..services.conversations import OtherModel
from ..services.identity import browser_secrets, check_key, new_visitor_key, owner_of
from .common import QUIET, as_typed, guarded, warned
from .inputs import Radio


def ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"


def list_update(session):
    """The list's rows, "name · model · last used" valued by conversation id, the open one marked and selected."""
    now, rows, current = time.time(), [], None
    for c in service.listing(session):
        mark = "▶ " if c["current"] else ""
        rows.append((f"{mark}{c['name']} · {c['model']} · {ago(now - c['updated'])}", c["id"]))
        current = c["id"] if c["current"] else current
    return gr.update(choices=rows, value=current)


def follow_tab(ctx, tab, pick) -> None:
    """Select the open conversation in `pick` each time its tab is opened. Gradio 6.31 draws a Radio first shown in a
    tab opened later with the value it was built with: choices sent while the tab was closed arrive, the value does
    not, and sending the same value again changes nothing. So the value is cleared, then set (two steps: a change
    either way, whenever the tab's components mount)."""
    cleared = tab.select(lambda: gr.update(value=None), None, pick, api_visibility="private", show_progress="hidden")
    cleared.then(list_update, [ctx.state], pick, api_visibility="private", show_progress="hidden")


def identify(ctx, key, session, request, profile):
    """The visitor behind this browser session: the signed-in user, else the browser's key (a new one when it has
    none); the session belongs to them from now on. Returns (key, session)."""
    session = ctx.ensure(session, request)
    key = key if isinstance(key, str) and key else new_visitor_key()
    user = getattr(profile, "username", None)
    service.identify(session, owner_of(check_key(key), user))
    return key, session


def sign_in_enabled() -> bool:
    """Hugging Face sign-in is configured (a Space with `hf_oauth: true` sets OAUTH_CLIENT_ID)."""
    return bool(os.environ.get("OAUTH_CLIENT_ID"))


def build_identity(ctx, demo):
    """The browser's visitor key and the page-load event that identifies the visitor; returns the load event
    (the builder redraws every view after it)."""
    storage_key, secret = browser_secrets(ctx.playground.store)
    key = gr.BrowserState("", storage_key=storage_key, secret=secret)
    if sign_in_enabled():
        gr.LoginButton(elem_id="login")

    def on_load(stored, session, request: gr.Request, profile: gr.OAuthProfile | None = None):
        if ctx.playground.store is None:  # nothing is saved: no session is made before the first action
            return gr.skip(), session
        try:
            return identify(ctx, stored, session, request, profile)
        except Exception:  # a key the browser kept that is not one of ours: a new visitor
            return identify(ctx, None, session, request, profile)

    @guarded
    def api_identify(given, session, request: gr.Request, profile: gr.OAuthProfile | None = None):
        return identify(ctx, given, session, request, profile)

    box = gr.Textbox(visible=False, label="Visitor key (empty: a new one)")
    gr.Button(visible=False).click(api_identify, [box, ctx.state], [box, ctx.state], api_name="identify")
    return demo.load(on_load, [key, ctx.state], [key, ctx.state], api_visibility="private")


def build(ctx, refresh, api: bool) -> dict:
    """One Conversations panel; `api`: this one also registers the named endpoints (only one panel does)."""
    store = ctx.playground.store
    if store is None:  # nothing is saved on this server: no list (the endpoints say so)
        if api:
            wire_api(ctx, refresh)
        return {}
    with gr.Accordion("Conversations", open=True, elem_classes=["conversations"]):
        pick = Radio([], label="Your saved conversations (last used first)", elem_classes=["conv-list"],
                        info="Each chat and generation is saved as it ends; this browser finds them again.")
        with gr.Row():
            open_ = gr.Button("Open", size="sm", elem_classes=["conv-open"])
            new = gr.Button("New", size="sm", elem_classes=["conv-new"])
            delete = gr.Button("Delete", size="sm", variant="stop", elem_classes=["conv-delete"])
        delete_sure, delete_keep, delete_confirm = confirm_row("Yes, delete it", "conv-delete")
        with gr.Row():
            name = gr.Textbox(show_label=False, placeholder="New name", max_lines=1, scale=3,
                              elem_classes=["conv-name"])
            rename = gr.Button("Rename", size="sm", scale=1, elem_classes=["conv-rename"])
        switch = gr.Button("Switch model and open", visible=False, variant="primary", elem_classes=["conv-switch"])
        status = gr.Markdown(elem_classes=["conv-status"])
        with gr.Accordion("Delete all my data", open=False):
            gr.Markdown(f"Deletes every conversation saved for you on this server. Unused conversations are deleted "
                        f"after {store.ttl_s / 86400:g} days; each visitor may keep "
                        f"{store.quota_bytes / 2 ** 20:g} MB.")
            wipe = gr.Button("Delete all my data", variant="stop", size="sm", elem_classes=["conv-wipe"])
            wipe_sure, wipe_keep, wipe_confirm = confirm_row("Yes, delete all my data", "conv-wipe")
    wire(ctx, refresh, locals(), api)
    return {"list": pick}


def confirm_row(sure_text: str, name: str) -> tuple:
    """A hidden "Yes / Keep it" row, shown by a deleting button before it acts (as the Playground's node delete)."""
    with gr.Row(visible=False, elem_classes=[f"{name}-confirm"]) as row:
        sure = gr.Button(sure_text, variant="stop", size="sm", elem_classes=[f"{name}-yes"])
        keep = gr.Button("Keep it", size="sm", elem_classes=[f"{name}-no"])
    return sure, keep, row


def deleted_text(count: int) -> str:
    return f"Deleted {count} conversation{'' if count == 1 else 's'}."


def picked(conversation) -> str:
    if not isinstance(conversation, str) or not conversation:
        raise InputError("choose a conversation in the list first")
    return conversation


def opened(session, conversation, switch_model):
    service.open_conversation(session, conversation, switch_model=bool(switch_model))
    return f"Opened \"{session.saved.name}\"."


def wire(ctx, refresh, c, api):
    state, pick, status, switch = ctx.state, c["pick"], c["status"], c["switch"]
    view = [status, pick, switch, state]

    def page(action, arity):
        """A page button: `action(session, *inputs) -> status`; the list redrawn, the switch button hidden."""
        def run(session, request, *inputs):
            session = ctx.ensure(session, request)
            try:
                text = action(session, *inputs)
            except OtherModel as err:
                return str(err), gr.skip(), gr.update(visible=True), session
            return text, list_update(session), gr.update(visible=False), session
        return warned(with_inputs(run, arity))

    def wired(button, action, inputs, reopens=True):
        event = button.click(page(action, len(inputs)), [*inputs, state], view, api_visibility="private",
                             show_progress=QUIET)
        refresh.append(event)
        if reopens:  # another conversation may be open now: the Chat tab's panel shows its settings
            ctx.reopened.append(event)

    wired(c["open_"], lambda s, i: opened(s, picked(i), False), [pick])
    wired(switch, lambda s, i: opened(s, picked(i), True), [pick])
    wired(c["new"], lambda s: (service.new_conversation(s), "Started a new conversation.")[1], [])

    def renamed(session, picked_id, name: str) -> str:
        service.rename(session, picked(picked_id), name)
        return f"Renamed to \"{as_typed(' '.join(name.split()))}\"."

    wired(c["rename"], renamed, [pick, c["name"]], reopens=False)
    wired(c["delete_sure"], lambda s, i: (service.delete(s, picked(i)), "Deleted.")[1], [pick])
    wired(c["wipe_sure"], lambda s: deleted_text(service.delete_all(s)), [])
    for ask, sure, keep, row in ((c["delete"], c["delete_sure"], c["delete_keep"], c["delete_confirm"]),
                                 (c["wipe"], c["wipe_sure"], c["wipe_keep"], c["wipe_confirm"])):
        ask.click(lambda: gr.update(visible=True), None, row, api_visibility="private", show_progress="hidden")
        for answer in (sure, keep):
            answer.click(lambda: gr.update(visible=False), None, row, api_visibility="private",
                         show_progress="hidden")
    pick.select(lambda: gr.update(visible=False), None, switch, api_visibility="private", show_progress="hidden")
    if api:
        wire_api(ctx, refresh)


def wire_api(ctx, refresh):
    """The named endpoints: ids and names as plain inputs (see the README's table); errors raised to the caller."""
    state = ctx.state
    conversation = gr.Textbox(visible=False, label="Conversation id")
    name = gr.Textbox(visible=False, label="Name")
    flag = gr.Checkbox(visible=False, label="Switch model if it was made with another")
    data = gr.JSON(visible=False)
    text = gr.Textbox(visible=False)
    trigger = gr.Button(visible=False)

    def call(action, arity):
        def run(session, request, *inputs):
            session = ctx.ensure(session, request)
            return action(session, *inputs), session
        return guarded(with_inputs(run, arity))

    trigger.click(call(service.listing, 0), [state], [data, state], api_name="conversations")
    for api_name, action, inputs in (
            ("open_conversation", opened, [conversation, flag]),
            ("new_conversation", lambda s: (service.new_conversation(s), s.saved.id)[1], []),
            ("rename_conversation", lambda s, i, n: (service.rename(s, i, n), n)[1], [conversation, name]),
            ("delete_conversation", lambda s, i: (service.delete(s, i), i)[1], [conversation]),
            ("delete_my_data", lambda s: str(service.delete_all(s)), [])):
        refresh.append(trigger.click(call(action, len(inputs)), [*inputs, state], [text, state], api_name=api_name))


def with_inputs(run, arity: int):
    """`run(session, request, *inputs)` as the event function Gradio calls: the inputs, then the session state, and
    the request (Gradio passes it to a parameter annotated gr.Request, which *args cannot carry)."""
    if arity == 0:
        def event(session, request: gr.Request):
            return run(session, request)
    elif arity == 1:
        def event(first, session, request: gr.Request):
            return run(session, request, first)
    else:
        def event(first, second, session, request: gr.Request):
            return run(session, request, first, second)
    event.__name__ = getattr(run, "__name__", "event")
    return event
